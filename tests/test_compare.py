"""benchmarks/compare.py end to end on real envs with fast, torch-free agents; resume keys; failures; scoring of
failed greedy actions; the command line."""

import dataclasses
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
import pandas as pd
import pytest
from scipy import stats as scipy_stats

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
        {
            "status": "ok",
            "agent": agent,
            "dataset": "iris",
            "seed": seed,
            "metrics": {
                "greedy_test_auc": value + step * seed,
                "greedy_auc": value,
                "train_reward_mean": value,
                "success_rate": 1.0,
                "num_tokens": 1,
                "wall_time_s": 1.0,
            },
        }
        for agent, value, step in (("a", 0.9, 0.002), ("b", 0.6, 0.001))
        for seed in range(4)
    ]  # fmt: skip  (paired over seeds: the differences 0.3 + 0.001 * seed vary, so a t-test is defined)
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


def test_resume_reruns_cells_trained_under_other_agent_defaults(tmp_path, monkeypatch, capsys):
    """The key hashes the preset's agent_kwargs only: a changed registered default is caught by the record's
    agent_config, and that cell alone is re-run."""
    preset = Preset(("test-curve-agent",), ("iris",), (0, 1), 1)
    defaults = {"test-curve-agent": {"beta": 0.05}}
    monkeypatch.setattr(compare, "agent_defaults", lambda agent: defaults[agent])
    run_benchmark(preset, str(tmp_path))
    run_benchmark(preset, str(tmp_path))
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2
    defaults["test-curve-agent"] = {"beta": 0.1}
    capsys.readouterr()
    run_benchmark(preset, str(tmp_path))
    assert "2 cells trained under other agent defaults are re-run" in capsys.readouterr().out
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["agent_config"] for r in records] == [{"beta": 0.05}] * 2 + [{"beta": 0.1}] * 2
    legacy = {k: v for k, v in records[-1].items() if k != "agent_config"}  # records written before 0.2
    assert compare.is_current(legacy, "test-curve-agent")


def test_agent_defaults_are_the_registered_config():
    from etpo_agents.config import ETPOConfig

    assert compare.agent_defaults("etpo")["beta"] == ETPOConfig.beta
    assert compare.agent_defaults("etpo-one-step")["td_lambda"] == 0.0
    assert compare.agent_defaults("examples.custom_agent:run") is None


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


# -- your own CSV, one-dataset tables, listed outputs, distinguishable lines (issue 14) ----------------------------


def _patients_csv(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 2))
    frame = pd.DataFrame({"f1": x[:, 0], "f2": x[:, 1], "outcome": (x[:, 0] + rng.normal(size=150) > 0).astype(int)})
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "patients.csv", index=False)
    return folder / "patients.csv"


def test_datasets_option_runs_a_csv_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # main() puts the working directory on it
    path = _patients_csv(tmp_path / "data")
    output_dir = tmp_path / "out"
    code = compare.main(["--agents", "test-fixed-logreg", "--datasets", f"{path}:outcome", "--seeds", "0",
                         "--total-actions", "2", "--output-dir", str(output_dir)])  # fmt: skip
    assert code == 0
    record = json.loads((output_dir / "results.jsonl").read_text())
    assert record["status"] == "ok" and record["dataset"] == "patients"
    assert 0.5 < record["metrics"]["greedy_test_auc"] <= 1.0  # LogisticRegression on a real, learnable CSV
    assert re.fullmatch(r"test-fixed-logreg-patients-seed0-2actions-[0-9a-f]{8}", record["key"])
    markdown = (output_dir / "summary.md").read_text()
    assert "| patients |" in markdown and "**overall**" not in markdown  # one dataset: no repeated overall row
    assert "**overall**" not in capsys.readouterr().out

    # The key follows the file's content and settings, not its path; another target is another cell.
    moved = _patients_csv(tmp_path / "elsewhere")
    same, _ = parse_args(["--datasets", f"{moved}:outcome", "--agents", "base"])
    first, _ = parse_args(["--datasets", f"{path}:outcome", "--agents", "base"])
    assert compare.cell_key("base", "patients", 0, same) == compare.cell_key("base", "patients", 0, first)
    renamed, _ = parse_args(["--datasets", str(path), "--target", "outcome", "--dataset-name", "recovery"])
    assert renamed.datasets == ("recovery",) and renamed.user_datasets["recovery"]["target"] == "outcome"
    assert compare.dataset_env_kwargs("recovery", renamed)["dataset_name"] == "recovery"


@pytest.mark.parametrize(
    "datasets, message",
    [
        ("pharyngtis", "Did you mean 'pharyngitis'?"),
        ("CSV", "needs target=<column name>"),
        ("CSV:nope", "target column 'nope' not in dataset"),
        ("pharyngitis:age", "target='age' was given with the named dataset 'pharyngitis'"),
    ],
)
def test_bad_datasets_are_usage_errors_before_any_folder(datasets, message, tmp_path, capsys):
    datasets = datasets.replace("CSV", str(_patients_csv(tmp_path / "data")))
    output_dir = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        compare.main(["--agents", "test-crashing-agent", "--datasets", datasets, "--output-dir", str(output_dir)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err
    assert not output_dir.exists()


def test_dataset_names_are_normalised_and_agents_get_suggestions(capsys):
    preset, _ = parse_args(["--datasets", "KidneyStone,Pharyngitis"])
    assert preset.datasets == ("kidney_stone", "pharyngitis") and not preset.user_datasets
    with pytest.raises(SystemExit):
        parse_args(["--agents", "etpoo"])
    assert "Did you mean 'etpo'?" in capsys.readouterr().err


def test_console_lists_every_png_written(tmp_path, capsys):
    preset = Preset(("test-curve-agent",), ("iris",), (0,), 2)
    (tmp_path / "curves_entropy.png").write_bytes(b"an earlier run's plot")
    old = time.time() - 3600
    os.utime(tmp_path / "curves_entropy.png", (old, old))
    run_benchmark(preset, str(tmp_path))
    out = capsys.readouterr().out
    for name in ("curves.png", "curves_kl_ref.png", "summary.md", "summary.json", "summary.csv", "results.jsonl"):
        assert str(tmp_path / name) in out, name
    assert "curves_entropy.png" not in out  # not written by this run (the agent logs no entropy)


def test_curve_lines_differ_in_marker_and_dash_style(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    curve = {"env_actions": [1.0, 2.0, 3.0], "reward_mean": [0.1, 0.2, 0.3]}
    agents = ("ppo", "base", "etpo")
    records = [{"status": "ok", "agent": a, "dataset": "iris", "curve": curve} for a in agents]  # identical curves
    compare.plot_curves(records, Preset(agents, ("iris",), (0,), 3), str(tmp_path / "curves.png"))
    lines = figures[0].axes[0].get_lines()
    assert len(lines) == 3
    assert len({line.get_marker() for line in lines}) == 3 and len({str(line.get_linestyle()) for line in lines}) == 3


def sampled_cell(agent: str, dataset: str, seed: int, reward: float, kl: float, success: float = 0.9) -> dict:
    """A finished cell with the sampled evaluation's metrics, as ``summarize`` reads it."""
    metrics = {"sample_reward_mean": reward, "sample_success_rate": success, "kl_per_action": kl,
               "greedy_test_auc": 0.8, "greedy_auc": 0.8, "train_reward_mean": 0.0, "eval_wall_time_s": 2.0}  # fmt: skip
    return {"status": "ok", "kind": "cell", "agent": agent, "dataset": dataset, "seed": seed, "metrics": metrics,
            "cell_wall_time_s": 5.0}  # fmt: skip


def frontier_record(dataset: str, temperature: float, kl: float, rewards: list[float], success: float) -> dict:
    samples = [{"reward": r, "success": r > -1, "test_auc": 0.7, "kl": kl} for r in rewards]
    metrics = {"sample_reward_mean": float(np.mean(rewards)), "sample_success_rate": success, "kl_per_action": kl,
               "sample_test_auc_mean": 0.7, "sampled": {dataset: {"samples": samples}}}  # fmt: skip
    return {"status": "ok", "kind": "frontier", "agent": "base", "dataset": dataset, "temperature": temperature,
            "metrics": metrics, "cell_wall_time_s": 3.0}  # fmt: skip


def test_frontier_verdicts_from_hand_made_records(tmp_path):
    """Frontier (KL 0, 0.4) and (KL 1, 0.6): at KL 0.5 it is 0.5. "up" scores 0.6/0.7/0.8 there (+0.1/+0.2/+0.3),
    "flat" sits on it with noise; the base cells score 0.4."""
    preset = Preset(("up", "flat", "base"), ("iris",), (0, 1, 2), 1, frontier_temperatures=(0.5, 1.0))
    records = [frontier_record("iris", 1.0, 0.0, [0.4, 0.2, 0.6], 0.8), frontier_record("iris", 0.5, 1.0, [0.6], 0.9)]
    records += [sampled_cell("up", "iris", seed, 0.6 + 0.1 * seed, 0.5) for seed in range(3)]
    records += [sampled_cell("flat", "iris", seed, 0.5 + d, 0.5) for seed, d in enumerate((0.01, -0.02, 0.005))]
    records += [sampled_cell("base", "iris", seed, 0.4, 0.0) for seed in range(3)]
    summary = summarize(records, preset)
    assert summary["frontier"]["iris"][1]["reward_se"] == pytest.approx(0.2 / math.sqrt(3))  # sd 0.2 over K = 3
    found = {(c["agent"], c["reference"], c["metric"]): c for c in summary["comparisons"]}
    up = found[("up", "frontier", "sample_reward_mean")]
    assert [u["difference"] for u in up["units"]] == pytest.approx([0.1, 0.2, 0.3])
    assert up["p_value"] == pytest.approx(scipy_stats.ttest_1samp([0.1, 0.2, 0.3], 0.0).pvalue)
    vs_base = found[("up", "base", "sample_reward_mean")]
    assert [u["difference"] for u in vs_base["units"]] == pytest.approx([0.2, 0.3, 0.4])
    success = found[("up", "frontier", "sample_success_rate")]  # success frontier at KL 0.5: 0.85
    assert success["mean"] == pytest.approx(0.05) and success["p_value"] is None
    # Holm over the 4 reward tests and the ranking's test: the smallest p is multiplied by 5
    tested = sorted(c["p_value"] for c in summary["comparisons"] if c["p_value"] is not None)
    assert summary["num_comparisons"] == 5
    smallest = min(summary["comparisons"], key=lambda c: c["p_value"] if c["p_value"] is not None else 1)
    assert smallest["p_holm"] == pytest.approx(min(1.0, 5 * min(tested + [summary["verdict"]["p_value"]])))
    assert found[("flat", "frontier", "sample_reward_mean")]["verdict"] == "on"
    assert summary["wall_time_split"] == {"training": 27.0, "evaluation": 18.0, "frontier": 6.0}

    text = compare.write_outputs(summary, records, preset, str(tmp_path), 51.0)
    assert "- **flat**: on (not distinguishable from) the base's frontier" in text
    assert "- **up**:" in text and "Holm-corrected p =" in text and "minimal detectable effect" in text
    assert (tmp_path / "frontier.png").stat().st_size > 0
    assert "training 0.5, evaluation 0.3, frontier 0.1 min" in (tmp_path / "summary.md").read_text()


def test_one_unit_gives_no_frontier_verdict():
    preset = Preset(("up",), ("iris",), (0,), 1, frontier_temperatures=(1.0,))
    records = [frontier_record("iris", 1.0, 0.0, [0.4, 0.4], 0.8), sampled_cell("up", "iris", 0, 0.9, 0.2)]
    summary = summarize(records, preset)
    frontier = [c for c in summary["comparisons"] if c["reference"] == "frontier"][0]
    assert frontier["p_value"] is None and frontier["verdict"] == "undetermined" and "needs >= 2" in frontier["note"]
    assert "undetermined against the base's frontier" in compare.frontier_text(summary, preset)


def test_eval_settings_are_part_of_every_key():
    from etpo_agents.evaluation import EvalConfig

    preset = Preset(("base",), ("iris",), (0,), 1, frontier_temperatures=(1.0,))
    other = dataclasses.replace(preset, evaluation=EvalConfig(num_samples=65))
    assert compare.cell_key("base", "iris", 0, preset) != compare.cell_key("base", "iris", 0, other)
    assert compare.frontier_key("iris", 1.0, preset) != compare.frontier_key("iris", 1.0, other)
    assert compare.frontier_key("iris", 1.0, preset) != compare.frontier_key("iris", 0.5, preset)


@pytest.mark.slow
def test_quick_preset_end_to_end_prints_sampled_metrics_and_frontier_verdicts(tmp_path):
    """``compare.py --quick`` (2 seeds): the sampled columns, the frontier table and a verdict per learner."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--quick", "--output-dir",
                             str(tmp_path)], capture_output=True, text=True, timeout=3600, cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "sampled reward" in result.stdout and "temperature frontier" in result.stdout
    for agent in compare.PRESETS["quick"].agents:
        if agent != "base":
            assert f"- **{agent}**:" in result.stdout and "the base's frontier" in result.stdout
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "frontier" for r in records) == len(compare.PRESETS["quick"].frontier_temperatures)
    assert (tmp_path / "frontier.png").exists()
