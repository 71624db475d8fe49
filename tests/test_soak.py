"""Soak: many executions (good, failing, hanging, crashing, memory-hungry) through an async vector env."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
from soak import EXPECTED_STATUSES, soak  # noqa: E402


def check(figures: dict, num_actions: int) -> None:
    assert figures["num_actions"] == num_actions  # every step answered
    assert EXPECTED_STATUSES <= set(figures["statuses"]), figures["statuses"]  # "crash" included: real crashes
    assert figures["processes_after_close"] == 0
    assert figures["leaked_temp_dirs"] == []
    assert figures["fds_end"] <= figures["fds_warm"] + 2


def test_short_soak_leaves_nothing_behind():
    check(soak(num_actions=40, num_envs=2, timeout_s=1.0, warmup=20), 40)


@pytest.mark.slow
def test_soak_1000_executions_memory_flat():
    figures = soak(num_actions=1000, num_envs=2, timeout_s=1.0, warmup=100)
    check(figures, 1000)
    assert figures["rss_growth"] <= 0.10, figures
