"""benchmarks/compare.py end to end on real envs with two fast, torch-free agents; resume; failures."""

import json
import math
import os
import sys
import time

import gymnasium as gym
import numpy as np
import pytest

import etpo_gym  # noqa: F401
from agents.registry import register_agent

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from benchmarks.compare import Preset, mean_ci, run_benchmark, summarize  # noqa: E402
from examples.custom_agent import write_action  # noqa: E402

LOGREG = "from sklearn.linear_model import LogisticRegression\n    model = LogisticRegression(max_iter=500).fit(x_train, y_train)"


@register_agent("test-fixed-logreg", replace=True)
def fixed_logreg(env_kwargs, total_actions, seed, **kwargs):
    """Writes the same LogisticRegression body every action (a real env, token by token)."""
    start = time.perf_counter()
    env = gym.make("ETPO-DataSci-v0", **env_kwargs)
    tokenizer = env.unwrapped.tokenizer
    ids = tokenizer.encode(LOGREG, add_special_tokens=False) + [tokenizer.eos_token_id]
    env.reset(seed=seed)
    rewards = []
    for _ in range(total_actions):
        reward, over, info, _ = write_action(env, ids)
        rewards.append(reward)
        env.reset()
    env.close()
    return {
        "train_reward_mean": float(np.mean(rewards)),
        "success_rate": 1.0,
        "greedy_auc": rewards[-1],
        "greedy_test_auc": info["test_auc"],
        "num_actions": total_actions,
        "num_tokens": len(ids) * total_actions,
        "wall_time_s": time.perf_counter() - start,
    }


@register_agent("test-crashing-agent", replace=True)
def crashing_agent(env_kwargs, total_actions, seed, **kwargs):
    raise RuntimeError("agent bug")


def test_compare_runs_summarises_and_resumes(tmp_path):
    preset = Preset(("examples.custom_agent:run", "test-fixed-logreg"), ("iris", "kidney_stone"), (0, 1), 3)
    summary, failed = run_benchmark(preset, str(tmp_path))
    assert failed == 0
    for name in ("results.jsonl", "summary.json", "summary.csv", "summary.md", "curves.png"):
        assert (tmp_path / name).stat().st_size > 0
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 8
    record = json.loads(lines[0])
    assert record["status"] == "ok" and record["commit"] and record["metrics"]["num_actions"] == 3
    row = summary["table"]["test-fixed-logreg"]["kidney_stone"]["greedy_test_auc"]
    assert row["n"] == 2 and 0.5 < row["mean"] <= 1.0
    assert summary["verdict"]["ranking"][0] in preset.agents and "p_value" in summary["verdict"]
    assert "overall" in (tmp_path / "summary.md").read_text()

    # resume: nothing is recomputed, the summary is the same
    again, failed = run_benchmark(preset, str(tmp_path))
    assert failed == 0 and len((tmp_path / "results.jsonl").read_text().splitlines()) == 8
    assert again["verdict"]["ranking"] == summary["verdict"]["ranking"]


def test_failed_cell_is_reported_and_retried(tmp_path):
    preset = Preset(("test-crashing-agent",), ("iris",), (0,), 1)
    _, failed = run_benchmark(preset, str(tmp_path))
    assert failed == 1
    record = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])
    assert record["status"] == "failed" and "agent bug" in record["error"]
    _, failed = run_benchmark(preset, str(tmp_path))
    assert failed == 1 and len((tmp_path / "results.jsonl").read_text().splitlines()) == 2


def test_mean_ci_matches_student_t():
    mean, half, n = mean_ci([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3)
    assert half == pytest.approx(4.302652729911275 * 1.0 / math.sqrt(3))  # t_{0.975, 2} * s / sqrt(n)
    assert math.isnan(mean_ci([1.0])[1]) and mean_ci([])[2] == 0


def test_summary_significance_between_clearly_different_agents():
    records = [
        {"status": "ok", "agent": agent, "dataset": "iris", "seed": seed,
         "metrics": {"greedy_test_auc": value + 0.001 * seed, "greedy_auc": value, "train_reward_mean": value,
                     "success_rate": 1.0, "num_tokens": 1, "wall_time_s": 1.0}}
        for agent, value in (("a", 0.9), ("b", 0.6)) for seed in range(4)
    ]  # fmt: skip
    verdict = summarize(records, Preset(("b", "a"), ("iris",), (0, 1, 2, 3), 1))["verdict"]
    assert verdict["ranking"] == ["a", "b"] and verdict["significant"] and verdict["p_value"] < 1e-6


def test_no_significance_claim_without_seed_variance():
    records = [
        {"status": "ok", "agent": agent, "dataset": "iris", "seed": seed,
         "metrics": {"greedy_test_auc": value, "greedy_auc": value, "train_reward_mean": value,
                     "success_rate": 1.0, "num_tokens": 1, "wall_time_s": 1.0}}
        for agent, value in (("a", 0.8), ("b", 0.7)) for seed in range(3)
    ]  # fmt: skip
    verdict = summarize(records, Preset(("a", "b"), ("iris",), (0, 1, 2), 1))["verdict"]
    assert verdict["p_value"] is None and verdict["significant"] is None and "no seed variance" in verdict["note"]
