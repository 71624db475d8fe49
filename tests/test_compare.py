"""benchmarks/compare.py end to end on real envs with fast, torch-free agents; resume keys; failures; scoring of
failed greedy actions; the command line."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import etpo_gym  # noqa: F401
from etpo_agents import registry
from etpo_agents.registry import register_agent

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import compare  # noqa: E402
from benchmarks.compare import Preset, mean_ci, parse_args, run_benchmark, summarize, verdict_text  # noqa: E402
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


@register_agent("test-curve-agent", replace=True)
def curve_agent(env_kwargs, total_actions, seed, output_dir, **kwargs):
    """No env: logs a curve of one point per action whose reward is the budget, as an agent's ``metrics.csv``."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "metrics.csv")
    with open(path, "w") as f:
        f.write("env_actions,reward_mean,kl_ref\n")
        f.writelines(f"{step},{total_actions},0.01\n" for step in range(1, total_actions + 1))
    return {
        "train_reward_mean": float(total_actions), "success_rate": 1.0, "greedy_auc": 0.8, "greedy_test_auc": 0.8,
        "num_actions": total_actions, "num_tokens": total_actions, "wall_time_s": 0.0, "metrics_csv": path,
    }  # fmt: skip


def summary_record(agent: str, dataset: str, seed: int, test_auc: float | None) -> dict:
    """A finished cell as ``summarize`` reads it; ``test_auc=None``: its greedy action failed (reward -1)."""
    metrics = {"greedy_test_auc": test_auc, "greedy_auc": -1.0 if test_auc is None else test_auc,
               "train_reward_mean": 0.0, "success_rate": 1.0, "num_tokens": 1, "wall_time_s": 1.0}  # fmt: skip
    return {"status": "ok", "agent": agent, "dataset": dataset, "seed": seed, "metrics": metrics}


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
    markdown = (tmp_path / "summary.md").read_text()
    assert "overall" in markdown and "greedy success" in markdown and "failed greedy action" in markdown

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


def test_failed_greedy_action_counts_as_chance_and_cannot_win():
    # "flaky" writes the best code on wine but fails its greedy action on iris on every seed
    records = [summary_record("flaky", "iris", seed, None) for seed in range(3)]
    records += [summary_record("flaky", "wine", seed, 0.95 + 0.001 * seed) for seed in range(3)]
    records += [
        summary_record("steady", name, seed, 0.8 + 0.001 * seed) for name in ("iris", "wine") for seed in range(3)
    ]
    summary = summarize(records, Preset(("flaky", "steady"), ("iris", "wine"), (0, 1, 2), 1))
    iris = summary["table"]["flaky"]["iris"]
    assert iris["greedy_test_auc"]["mean"] == iris["greedy_auc"]["mean"] == 0.5 and iris["greedy_test_auc"]["n"] == 3
    assert iris["greedy_success_rate"]["mean"] == 0.0
    assert summary["table"]["flaky"]["overall"]["greedy_test_auc"]["mean"] == pytest.approx((0.5 + 0.951) / 2)
    assert summary["table"]["steady"]["overall"]["greedy_success_rate"]["mean"] == 1.0
    assert summary["verdict"]["ranking"] == ["steady", "flaky"] and summary["verdict"]["significant"]


def test_one_seed_says_too_few_seeds_even_when_scores_differ():
    preset = Preset(("a", "b"), ("iris",), (0,), 1)
    verdict = summarize([summary_record("a", "iris", 0, 0.9), summary_record("b", "iris", 0, 0.6)], preset)["verdict"]
    assert verdict["p_value"] is None and "too few seeds" in verdict["note"]
    assert "scored the same" not in verdict_text(verdict, preset)


def test_resume_key_covers_every_setting_and_curves_come_from_the_records(tmp_path, monkeypatch):
    def run(total_actions: int, model: str) -> None:
        preset = Preset(("test-curve-agent",), ("iris",), (0,), total_actions, {"model": model})
        assert run_benchmark(preset, str(tmp_path))[1] == 0

    run(2, "model-a")
    run(2, "model-b")  # another model: a new cell, not the stale one
    run(3, "model-a")  # another budget: a new cell in its own folder
    keys = [json.loads(line)["key"] for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(set(keys)) == 3
    assert all(re.fullmatch(r"test-curve-agent-iris-seed0-[23]actions-[0-9a-f]{8}", key) for key in keys)
    assert sorted(os.listdir(tmp_path / "cells")) == sorted(keys)

    plotted = []
    monkeypatch.setattr(compare, "plot_curves", lambda records, *args: plotted.append(records))
    run(2, "model-a")  # resumed: its own budget's curves, with the kl_ref column
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 3
    assert plotted[0][0]["curve"] == {"env_actions": [1.0, 2.0], "reward_mean": [2.0, 2.0], "kl_ref": [0.01, 0.01]}

    monkeypatch.undo()
    shutil.rmtree(tmp_path / "cells")  # git-ignored: results.jsonl alone regenerates every plot
    (tmp_path / "curves_kl_ref.png").unlink()
    run(2, "model-a")
    assert (tmp_path / "curves.png").exists() and (tmp_path / "curves_kl_ref.png").exists()


def test_summary_wall_time_counts_only_the_current_grid(tmp_path):
    other = {"key": "other-grid", "status": "ok", "agent": "x", "dataset": "iris", "seed": 0, "cell_wall_time_s": 1e6}
    (tmp_path / "results.jsonl").write_text(json.dumps(other) + "\n")
    preset = Preset(("test-curve-agent",), ("iris",), (0,), 1)
    for _ in range(2):  # run, then resume
        run_benchmark(preset, str(tmp_path))
        record = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[-1])
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary["wall_time_s"] == pytest.approx(record["cell_wall_time_s"])
        assert "wall time 0.0 min" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "0,a"], "comma-separated integers"),
        (["--seeds", "1,1"], "distinct"),
        (["--total-actions", "0"], ">= 1"),
        (["--agents", "no-such-agent"], "unknown agents"),
        (["--agents", "no_such_module:run"], "not found"),
        (["--import", "no_such_module"], "--import no_such_module"),
    ],
)
def test_bad_command_line_input_is_a_usage_error(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # main() puts the working directory on it
    tiny = ["--agents", "test-crashing-agent", "--datasets", "iris", "--seeds", "0", "--total-actions", "1"]
    with pytest.raises(SystemExit) as exit_info:  # the last value wins: should argv pass, a one-cell grid runs
        compare.main([*tiny, *argv, "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not os.listdir(tmp_path)  # nothing ran


def test_import_option_makes_registered_names_usable(tmp_path, monkeypatch):
    (tmp_path / "my_compare_agents.py").write_text(
        "from etpo_agents.registry import register_agent\n\n\n@register_agent('tmp-registered-agent')\n"
        "def run(env_kwargs, total_actions, seed, **kwargs):\n    return {}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the registration ends with the test
    with pytest.raises(SystemExit):
        parse_args(["--agents", "tmp-registered-agent"])
    preset, _ = parse_args(["--import", "my_compare_agents", "--agents", "tmp-registered-agent,etpo"])
    assert preset.agents == ("tmp-registered-agent", "etpo")


def test_train_cli_import_option_makes_registered_algorithms_usable(tmp_path, monkeypatch):
    train = pytest.importorskip("etpo_agents.train")
    (tmp_path / "my_train_algos.py").write_text(
        "from etpo_agents.config import BaseConfig\nfrom etpo_agents.train import AgentSpec, register_algorithm\n\n"
        "register_algorithm('tmp-registered-algo', AgentSpec(BaseConfig, None))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(train, "ALGORITHMS", dict(train.ALGORITHMS))  # the registration ends with the test
    with pytest.raises(SystemExit):
        train.parse_args(["--algo", "tmp-registered-algo"])
    run, _ = train.parse_args(["--import", "my_train_algos", "--algo", "tmp-registered-algo"])
    assert run.algo == "tmp-registered-algo"


def test_command_line_runs_the_example_agent_by_its_registered_name(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "benchmarks/compare.py", "--import", "examples.custom_agent", "--agents",
               "template-bandit", "--datasets", "iris", "--seeds", "0", "--total-actions", "2", "--output-dir",
               str(tmp_path)]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "results.jsonl").read_text())
    assert record["agent"] == "template-bandit" and record["status"] == "ok"
    assert record["metrics"]["num_actions"] == 2
