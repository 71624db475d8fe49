"""benchmarks/sweep.py: settings draw, summary on hand-made records, and a 1-action resumable smoke run."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import compare, sweep


def test_draw_settings_full_grid_or_default_plus_random_sample():
    axes = {"a": (1, 2), "b": (3, 4, 5)}
    assert len(sweep.draw_settings(axes, 10, 0, {"a": 1, "b": 3})) == 6
    drawn = sweep.draw_settings(axes, 3, 0, {"a": 2, "b": 5})
    assert drawn[0] == {"a": 2, "b": 5} and len(drawn) == 3
    assert len({json.dumps(s, sort_keys=True) for s in drawn}) == 3
    assert drawn == sweep.draw_settings(axes, 3, 0, {"a": 2, "b": 5})  # seeded
    assert sweep.draw_settings({}, 3, 0, {}) == [{}]  # the base: one empty setting


def _record(agent, setting, dataset, seed, score, kl=0.0):
    return {"agent": agent, "setting": setting, "dataset": dataset, "seed": seed, "status": "ok",
            "metrics": {sweep.SCORE: score, sweep.KL: kl}}  # fmt: skip


def test_summarize_scores_pairs_with_base_and_ranks_complete_settings():
    records = [
        _record("base", {}, "d1", None, 0.3),
        _record("grpo", {"lr": 1}, "d1", 0, 0.3), _record("grpo", {"lr": 1}, "d1", 1, 0.7),
        _record("grpo", {"lr": 2}, "d1", 0, 0.9),  # higher, but unfinished: never best
    ]  # fmt: skip
    summary = sweep.summarize(records)
    best, unfinished = summary["grpo"]
    assert best["setting"] == {"lr": 1} and best["score"] == pytest.approx(0.5)
    assert best["vs_base"] == pytest.approx(0.2)  # (0.3 - 0.3 + 0.7 - 0.3) / 2
    assert best["vs_base_ci"] == pytest.approx(best["ci"])  # the base is one number per dataset
    # 95% t CI of (0.3, 0.7): t(0.975, 1) = 12.706, sd = 0.2828, n = 2.
    assert best["ci"] == pytest.approx(12.706 * 0.28284 / math.sqrt(2), rel=1e-3)
    assert unfinished["num_cells"] == 1 and math.isnan(unfinished["ci"])
    assert 'BEST grpo: {"lr": 1}' in sweep.format_summary(summary)


def test_summarize_ranks_by_distance_above_the_base_temperature_frontier():
    records = [
        _record("base", {"temperature": 1.0}, "d1", None, 0.3, kl=0.0),
        _record("base", {"temperature": 0.5}, "d1", None, 0.7, kl=1.0),
        _record("rft", {"lr": 1}, "d1", 0, 0.6, kl=0.5),  # frontier at KL 0.5: 0.5 -> +0.1
        _record("rft", {"lr": 2}, "d1", 0, 0.65, kl=2.0),  # higher score, but the frontier at KL 2 is 0.7 -> -0.05
    ]  # fmt: skip
    efficient, sharpened = sweep.summarize(records)["rft"]
    assert efficient["setting"] == {"lr": 1} and efficient["vs_frontier"] == pytest.approx(0.1)
    assert sharpened["vs_frontier"] == pytest.approx(-0.05) and sharpened["kl"] == pytest.approx(2.0)
    assert efficient["vs_base"] == pytest.approx(0.3)  # the base at temperature 1 only
    assert "vs frontier +0.100" in sweep.format_summary(sweep.summarize(records))


def test_cell_key_covers_setting_and_fixed_settings():
    fixed = {"total_actions": 8}
    key = sweep.cell_key("grpo", {"lr": 1}, "d1", 0, fixed)
    assert key == sweep.cell_key("grpo", {"lr": 1}, "d1", 0, dict(fixed))
    assert key != sweep.cell_key("grpo", {"lr": 2}, "d1", 0, fixed)
    assert key != sweep.cell_key("grpo", {"lr": 1}, "d1", 0, {"total_actions": 16})


def test_sweep_smoke_one_action_resumes(tmp_path, model_dir, capsys, monkeypatch):
    output = tmp_path / "sweep.jsonl"
    argv = ["--agents", "base,rft", "--datasets", "kidney_stone", "--seeds", "0", "--total-actions", "1",
            "--eval-samples", "1", "--max-turns", "1", "--max-settings", "1", "--model", model_dir,
            "--output", str(output), "--work-dir", str(tmp_path / "cells")]  # fmt: skip
    assert sweep.main(argv) == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    frontier = [r["setting"]["temperature"] for r in records if r["agent"] == "base"]
    assert frontier == list(compare.FRONTIER_TEMPERATURES)  # always complete, whatever --max-settings says
    assert [r["agent"] for r in records[len(frontier) :]] == ["rft"] and all(r["status"] == "ok" for r in records)
    records = records[len(frontier) - 1 :]  # the base at temperature 1, then rft
    assert records[1]["setting"] == sweep.default_setting("rft", sweep.GRIDS["rft"])
    assert set(records[1]["metrics"]) >= {sweep.SCORE, "sample_success_rate", "kl_per_action", "train_reward_mean"}
    assert records[0]["metrics"]["kl_per_action"] == pytest.approx(0.0, abs=1e-5)  # the base is π_ref
    lines = len(frontier) + 1
    assert sweep.main(argv) == 0 and len(output.read_text().splitlines()) == lines  # resumed: nothing re-run
    assert "BEST rft" in capsys.readouterr().out
    assert sweep.main([*argv, "--dry-run"]) == 0
    assert f"{lines} cells, {lines} already in" in capsys.readouterr().out  # the estimate counts no done cell

    registered = compare.agent_defaults  # rft's defaults change: its cell alone is re-run
    changed = lambda agent: {"keep_fraction": 0.1} if agent == "rft" else registered(agent)  # noqa: E731
    monkeypatch.setattr(compare, "agent_defaults", changed)
    monkeypatch.setattr(sweep, "agent_defaults", changed)
    assert sweep.main(argv) == 0
    rerun = [json.loads(line) for line in output.read_text().splitlines()[lines:]]
    assert [(r["agent"], r["agent_config"]) for r in rerun] == [("rft", {"keep_fraction": 0.1})]
