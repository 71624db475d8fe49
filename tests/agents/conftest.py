"""Fixtures of the agents' tests: the model a short run trains and whether a run changed it."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch

EMBEDDED = os.path.join(os.path.dirname(__file__), "..", "..", "agents", "assets", "etpo-tiny-coder")


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir) -> str:
    """The embedded model when installed, else the tiny random Llama over the env's packaged tokenizer."""
    return EMBEDDED if os.path.exists(os.path.join(EMBEDDED, "config.json")) else tiny_model_dir


@pytest.fixture(scope="module")
def model_changed(model_dir) -> Callable[[str], bool]:
    """``changed(output_dir)``: whether the run's ``checkpoint.pt`` holds LM weights other than ``model_dir``'s."""
    from etpo_agents.policy import load_policy

    def changed(output_dir: str) -> bool:
        initial, _ = load_policy(model_dir)
        path = os.path.join(output_dir, "checkpoint.pt")
        trained = torch.load(path, map_location="cpu", weights_only=False)["policy"]
        return any(not torch.equal(v, trained[f"model.{k}"]) for k, v in initial.state_dict().items())

    return changed
