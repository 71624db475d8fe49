"""Compare RL agents on the ETPO data-science envs: agents x datasets x seeds on one budget of env actions.

    python benchmarks/compare.py --quick --output-dir runs/compare-quick     # smoke run, a few minutes on 2 CPUs
    python benchmarks/compare.py --output-dir benchmarks/results            # the default preset
    python benchmarks/compare.py --agents etpo,ppo,sb3-ppo --datasets pharyngitis --seeds 0,1,2 --total-actions 64
    python benchmarks/compare.py --import my_agents --agents etpo,my-agent  # names registered in my_agents.py

Every agent gets the same budget, counted in env actions (code executions); tokens and wall time are reported
too. Each finished cell is appended as one JSON line to ``results.jsonl`` with its config, git commit, device,
metrics and curves. A cell's key, ``<agent>-<dataset>-seed<N>-<budget>actions-<hash>``, names its record and its
folder under ``cells/``; the hash covers every setting that determines its result (model and other agent settings,
env settings, budget), so re-running into the same folder continues where an interrupted run stopped, never
recomputes a finished cell, and never reuses a cell run with other settings. The curves live in the records, so
``results.jsonl`` alone regenerates every output (re-run the same command: nothing is recomputed).

At the end it writes ``summary.json``, ``summary.csv``, ``summary.md`` (mean +- 95% CI over seeds, the best agent
and a Welch t-test against the runner-up; the wall time is the sum over the current grid's cells) and
``curves.png`` (training reward vs env actions, mean with a 95% CI band over seeds), plus ``curves_kl_ref.png`` and
``curves_entropy.png`` for the agents that log them. It exits non-zero if a cell failed.

The headline is the held-out test AUC of one greedy action per dataset after training. A failed greedy action (the
code did not return a working model) counts as AUC 0.5 (:data:`FAILED_GREEDY_AUC`, chance level: what a constant
predictor scores) in both greedy AUCs' means, CIs, significance test and ranking, so failing never helps; the
greedy success rate is reported next to them.

Agents are looked up in ``etpo_agents.registry`` (``etpo``, ``etpo-official-loss``, ``etpo-td-lambda``, ``ppo``,
``reinforce``, ``base``, ``sb3-ppo``, ``sb3-a2c``, names registered by a module given to ``--import``, or
``module:function``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
import traceback
from typing import Any

import numpy as np

METRICS = (
    "greedy_test_auc",
    "greedy_success_rate",
    "greedy_auc",
    "train_reward_mean",
    "success_rate",
    "num_tokens",
    "wall_time_s",
)
"""Reported per cell, in this order; the first is the headline (who wins)."""

RANKING_METRICS = ("greedy_test_auc", "greedy_auc", "train_reward_mean")
"""The ranking's sort keys: the headline, then the next ones for ties (e.g. agents whose greedy code always failed)."""

FAILED_GREEDY_AUC = 0.5
"""AUC a failed greedy action counts as: chance level, what a constant predictor scores (the user gets no working
model). Leaving failures out would judge an agent on the seeds where its greedy code happened to work."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """One benchmark configuration.

    Attributes:
        agents: agent names (see ``etpo_agents.registry.list_agents()``).
        datasets: dataset names; each cell trains on one dataset.
        seeds: run seeds; the 95% CIs are over these.
        total_actions: env actions (code executions) per cell, the same for every agent.
        agent_kwargs: extra settings passed to every agent (``RunConfig`` / algorithm fields).
        env_kwargs: ``gym.make`` arguments of every cell's env besides ``dataset`` (e.g. ``max_action_tokens``).
    """

    agents: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    total_actions: int
    agent_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


PRESETS = {
    "quick": Preset(("etpo", "ppo", "reinforce", "base"), ("kidney_stone",), (0,), 8, {"actions_per_rollout": 4}),
    "default": Preset(
        ("etpo", "etpo-official-loss", "ppo", "reinforce", "base"),
        ("pharyngitis", "kidney_stone"),
        (0, 1, 2),
        128,
        {"actions_per_rollout": 16},
    ),
}


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cell_key(agent: str, dataset: str, seed: int, preset: Preset) -> str:
    """``<agent>-<dataset>-seed<N>-<budget>actions-<hash>``: names a cell's record and its folder.

    The 8-hex-digit hash covers everything that determines the cell's result (agent, dataset, seed, budget, agent
    settings including the model, env settings), so a cell run with other settings never stands in for this one.
    Settings that are not JSON values hash by their ``str``.
    """
    settings = {"agent": agent, "dataset": dataset, "seed": seed, "total_actions": preset.total_actions,
                "agent_kwargs": preset.agent_kwargs, "env_kwargs": preset.env_kwargs}  # fmt: skip
    digest = hashlib.sha256(json.dumps(_jsonable(settings), sort_keys=True).encode()).hexdigest()[:8]
    readable = re.sub(r"[^\w.-]", "_", f"{agent}-{dataset}")  # "module:function" agents: a valid folder name
    return f"{readable}-seed{seed}-{preset.total_actions}actions-{digest}"


def load_finished(path: str) -> dict[str, dict]:
    """Cells already in ``results.jsonl`` (successful ones only: a failed cell is retried on resume)."""
    finished: dict[str, dict] = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                record = json.loads(line)
                if record.get("status") == "ok":
                    finished[record["key"]] = record
    return finished


def run_cell(agent: str, dataset: str, seed: int, preset: Preset, output_dir: str) -> dict[str, Any]:
    """Train one agent on one dataset with one seed; returns the JSON record (status ok or failed)."""
    from etpo_agents.registry import get_agent

    key = cell_key(agent, dataset, seed, preset)
    cell_dir = os.path.join(output_dir, "cells", key)
    start = time.perf_counter()
    record: dict[str, Any] = {
        "key": key,
        "agent": agent,
        "dataset": dataset,
        "seed": seed,
        "total_actions": preset.total_actions,
        "agent_kwargs": preset.agent_kwargs,
        "env_kwargs": preset.env_kwargs,
        "commit": git_commit(),
    }
    try:
        metrics = get_agent(agent)(
            {**preset.env_kwargs, "dataset": dataset},
            preset.total_actions,
            seed,
            output_dir=cell_dir,
            **preset.agent_kwargs,
        )
        record.update(status="ok", metrics=_jsonable(metrics), curve=read_curve(metrics.get("metrics_csv")))
        record["device"] = metrics.get("device", "cpu")
    except Exception as error:  # a failed cell is recorded and reported, and the run goes on
        record.update(status="failed", error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
    record["cell_wall_time_s"] = time.perf_counter() - start
    return record


CURVE_COLUMNS = ("reward_mean", "kl_ref", "entropy")
"""Per-update columns of an agent's ``metrics.csv`` stored in its record as curves (the last two where the agent logs
them), so ``results.jsonl`` alone regenerates every plot."""


def read_curve(metrics_csv: str | None) -> dict[str, list[float]]:
    """Curves vs env actions from an agent's ``metrics.csv``: ``env_actions`` and :data:`CURVE_COLUMNS`."""
    if not metrics_csv or not os.path.exists(metrics_csv):
        return {}
    with open(metrics_csv) as f:
        rows = [row for row in csv.DictReader(f) if row.get("env_actions") and row.get("reward_mean")]
    curve = {"env_actions": [float(row["env_actions"]) for row in rows]}
    for column in CURVE_COLUMNS:
        if rows and all(row.get(column) not in (None, "") for row in rows):
            curve[column] = [float(row[column]) for row in rows]
    return curve


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def ci_half_width(values: np.ndarray) -> np.ndarray:
    """Half-width of the 95% Student-t confidence interval of the mean over axis 0 (needs >= 2 rows)."""
    from scipy import stats

    return stats.t.ppf(0.975, len(values) - 1) * values.std(axis=0, ddof=1) / math.sqrt(len(values))


def mean_ci(values: list[float]) -> tuple[float, float, int]:
    """Mean and half-width of the 95% Student-t confidence interval (NaN half-width for one value)."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(data) == 0:
        return float("nan"), float("nan"), 0
    if len(data) == 1:
        return float(data[0]), float("nan"), 1
    return float(data.mean()), float(ci_half_width(data)), len(data)


def cell_scores(metrics: dict[str, Any]) -> dict[str, Any]:
    """A cell's :data:`METRICS`, with a failed greedy action counted as :data:`FAILED_GREEDY_AUC`.

    A cell trains and evaluates on one dataset, so its greedy evaluation is one action. It failed when the agent
    reports no finite ``greedy_test_auc`` (NaN, stored as null, when no greedy action succeeded); its reward, -1, is
    no AUC either. ``greedy_success_rate`` is inferred from that where the agent does not report it.
    """
    scores = {metric: metrics.get(metric) for metric in METRICS}
    failed = not _finite(scores["greedy_test_auc"])
    if failed:
        scores["greedy_test_auc"] = scores["greedy_auc"] = FAILED_GREEDY_AUC
    elif not _finite(scores["greedy_auc"]):
        scores["greedy_auc"] = FAILED_GREEDY_AUC
    if scores["greedy_success_rate"] is None:
        scores["greedy_success_rate"] = 0.0 if failed else 1.0
    return scores


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def summarize(records: list[dict], preset: Preset) -> dict[str, Any]:
    """Per (agent, dataset) and overall mean +- CI of :data:`METRICS` (:func:`cell_scores`); the winner and its
    significance.

    Overall scores average a seed's cells over the datasets first, so the CI is over seeds.
    """
    from scipy import stats

    scored = [(r, cell_scores(r["metrics"])) for r in records if r["status"] == "ok"]
    table: dict[str, dict[str, dict[str, Any]]] = {}
    per_seed: dict[str, dict[int, list[float]]] = {}
    for agent in preset.agents:
        table[agent] = {}
        per_seed[agent] = {}
        for dataset in (*preset.datasets, "overall"):
            cells = [(r, s) for r, s in scored if r["agent"] == agent and dataset in ("overall", r["dataset"])]
            row = {}
            for metric in METRICS:
                if dataset == "overall":
                    by_seed: dict[int, list[float]] = {}
                    for r, scores in cells:
                        if scores[metric] is not None:
                            by_seed.setdefault(r["seed"], []).append(scores[metric])
                    values = [float(np.mean(v)) for v in by_seed.values()]
                    if metric == METRICS[0]:
                        per_seed[agent] = by_seed
                else:
                    values = [scores[metric] for _, scores in cells]
                mean, half, n = mean_ci(values)
                row[metric] = {"mean": mean, "ci95": half, "n": n}
            table[agent][dataset] = row
    ranking = sorted(
        preset.agents, key=lambda a: tuple(-_nan_low(table[a]["overall"][m]["mean"]) for m in RANKING_METRICS)
    )
    verdict: dict[str, Any] = {"metric": METRICS[0], "ranking": ranking, "best": ranking[0]}
    if len(ranking) > 1:
        best = [float(np.mean(v)) for v in per_seed[ranking[0]].values()]
        second = [float(np.mean(v)) for v in per_seed[ranking[1]].values()]
        verdict.update(runner_up=ranking[1], p_value=None, significant=None)
        if len(best) < 2 or len(second) < 2:
            verdict["note"] = "too few seeds for a significance test (needs >= 2 per agent)"
        elif np.ptp(best) == 0 and np.ptp(second) == 0:
            # a t-test is undefined without variance (e.g. agents whose greedy code never changed across seeds)
            verdict["note"] = "both agents scored the same on every seed: no seed variance to test against"
        else:
            test = stats.ttest_ind(best, second, equal_var=False)
            verdict.update(p_value=float(test.pvalue), significant=bool(test.pvalue < 0.05))
    return {"table": table, "verdict": verdict}


def _nan_low(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def _fmt(cell: dict[str, Any], digits: int = 3) -> str:
    if not math.isfinite(cell["mean"]):
        return "n/a"
    if not math.isfinite(cell["ci95"]):
        return f"{cell['mean']:.{digits}f}"
    return f"{cell['mean']:.{digits}f} ± {cell['ci95']:.{digits}f}"


def write_outputs(summary: dict, records: list[dict], preset: Preset, output_dir: str, wall_time_s: float) -> str:
    """``summary.json``, ``summary.csv``, ``summary.md`` and the curve plots; returns the Markdown table and verdict.

    Args:
        wall_time_s: the summed wall time of the grid's cells.
    """
    table = summary["table"]
    with open(os.path.join(output_dir, "summary.json"), "w") as f:
        json.dump(_jsonable({"preset": dataclasses.asdict(preset), "wall_time_s": wall_time_s, **summary}), f, indent=2)
    with open(os.path.join(output_dir, "summary.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["agent", "dataset", *[f"{m}_{s}" for m in METRICS for s in ("mean", "ci95", "n")]])
        for agent, rows in table.items():
            for dataset, row in rows.items():
                writer.writerow([agent, dataset, *[row[m][s] for m in METRICS for s in ("mean", "ci95", "n")]])
    header = (
        "| agent | dataset | held-out test AUC (greedy) | greedy success | reward-split AUC (greedy) | train reward "
        "| success rate | tokens | wall s |"
    )
    lines = [header, "|" + "---|" * (2 + len(METRICS))]
    for agent, rows in table.items():
        for dataset, row in rows.items():
            name = f"**{dataset}**" if dataset == "overall" else dataset
            lines.append(
                f"| {agent} | {name} | "
                + " | ".join(_fmt(row[m], 0 if m in ("num_tokens", "wall_time_s") else 3) for m in METRICS)
                + " |"
            )
    rule = (
        f"Both greedy AUCs count a failed greedy action (its code returned no working model) as {FAILED_GREEDY_AUC} "
        "(chance level, what a constant predictor scores) in their means, CIs, the t-test and the ranking; "
        "greedy success is the share of greedy actions whose code worked."
    )
    text = "\n".join(lines) + f"\n\n{rule}\n\n" + verdict_text(summary["verdict"], preset) + "\n"
    with open(os.path.join(output_dir, "summary.md"), "w") as f:
        f.write(
            f"Preset: {len(preset.agents)} agents x {len(preset.datasets)} datasets x {len(preset.seeds)} seeds, "
            f"{preset.total_actions} env actions per cell; wall time {wall_time_s / 60:.1f} min (summed over this "
            f"grid's cells).\n\n{text}"
        )
    plot_curves(records, preset, os.path.join(output_dir, "curves.png"))
    for column in CURVE_COLUMNS[1:]:  # diagnostics: how far each agent moved from π_ref, and how it explores
        plot_curves(records, preset, os.path.join(output_dir, f"curves_{column}.png"), column)
    return text


def verdict_text(verdict: dict[str, Any], preset: Preset) -> str:
    text = f"Ranking by overall {verdict['metric']} (mean over datasets, then over seeds): " + " > ".join(
        verdict["ranking"]
    )
    if verdict.get("p_value") is not None:
        word = "significant" if verdict["significant"] else "not significant"
        text += (
            f". {verdict['best']} vs {verdict['runner_up']}: Welch t-test p = {verdict['p_value']:.3f} "
            f"({word} at 0.05, n = {len(preset.seeds)} seeds)."
        )
    elif verdict.get("note"):
        text += f". {verdict['best']} vs {verdict['runner_up']}: {verdict['note']}."
    else:
        text += "."
    return text


def plot_curves(records: list[dict], preset: Preset, path: str, column: str = "reward_mean") -> bool:
    """``column`` vs env actions: one panel per dataset, one line per agent, 95% CI band over seeds.

    Returns:
        Whether any agent logged ``column``. The reward plot is always written (empty panels for agents that
        report no curve); the diagnostic plots only when some agent logged their column.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"reward_mean": "mean training reward per action", "kl_ref": "KL(π ‖ π_ref) per token",
              "entropy": "policy entropy per token"}  # fmt: skip
    fig, axes = plt.subplots(1, len(preset.datasets), figsize=(4.5 * len(preset.datasets), 3.6), squeeze=False)
    plotted = False
    for ax, dataset in zip(axes[0], preset.datasets, strict=True):
        for agent in preset.agents:
            curves = [r["curve"] for r in records if r["status"] == "ok" and r["agent"] == agent
                      and r["dataset"] == dataset and r.get("curve", {}).get(column)]  # fmt: skip
            if not curves:
                continue
            plotted = True
            grid = np.unique(np.concatenate([c["env_actions"] for c in curves]))
            values = np.array([np.interp(grid, c["env_actions"], c[column]) for c in curves])
            mean = values.mean(axis=0)
            (line,) = ax.plot(grid, mean, marker="o", markersize=3, label=agent)
            if len(curves) > 1:
                half = ci_half_width(values)
                ax.fill_between(grid, mean - half, mean + half, color=line.get_color(), alpha=0.2)
        ax.set_title(dataset)
        ax.set_xlabel("env actions (code executions)")
        ax.set_ylabel(labels.get(column, column))
        ax.grid(alpha=0.3)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    if plotted or column == "reward_mean":
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return plotted


def _names(text: str) -> tuple[str, ...]:
    """argparse type: a comma-separated list of names."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _seeds(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated distinct non-negative integers."""
    try:
        seeds = tuple(int(seed) for seed in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,1,2, got {text!r}") from None
    if any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct non-negative integers, got {text!r}")
    return seeds


def parse_args(argv: list[str] | None = None) -> tuple[Preset, str]:
    """The command line as a preset and an output folder; bad input is a usage error (exit status 2)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the smoke preset (one dataset, one seed, 8 actions)")
    parser.add_argument("--output-dir", default=None, help="where results go (default runs/compare-<preset>)")
    parser.add_argument("--agents", type=_names, help="comma-separated agent names (overrides the preset)")
    parser.add_argument("--datasets", type=_names, help="comma-separated dataset names (overrides the preset)")
    parser.add_argument("--seeds", type=_seeds, help="comma-separated seeds (overrides the preset)")
    parser.add_argument("--total-actions", type=int, help="env actions per cell (overrides the preset)")
    parser.add_argument("--model", help="policy for every agent: 'etpo-tiny-coder' (default), a path or hub id")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, so that the agents it registers can be named (repeatable)",
    )
    args = parser.parse_args(argv)
    name = "quick" if args.quick else "default"
    preset = PRESETS[name]
    changes: dict[str, Any] = {}
    if args.agents:
        changes["agents"] = args.agents
    if args.datasets:
        changes["datasets"] = args.datasets
    if args.seeds:
        changes["seeds"] = args.seeds
    if args.total_actions is not None:
        if args.total_actions < 1:
            parser.error("--total-actions must be >= 1")
        changes["total_actions"] = args.total_actions
    if args.model:
        changes["agent_kwargs"] = {**preset.agent_kwargs, "model": args.model}
    preset = dataclasses.replace(preset, **changes)
    from etpo_agents.registry import get_agent, import_modules, list_agents

    import_modules(parser, args.imports)
    known_agents = list_agents()
    unknown = [a for a in preset.agents if a not in known_agents and ":" not in a]
    if unknown:
        parser.error(
            f"unknown agents {unknown}; known: {', '.join(known_agents)} "
            "(--import the module that registers yours, or name it as module:function)"
        )
    for agent in preset.agents:
        if ":" in agent:
            try:
                get_agent(agent)
            except (ImportError, AttributeError) as error:
                parser.error(f"agent {agent!r} not found: {error}")
    import etpo_gym

    known_datasets = etpo_gym.list_datasets()
    unknown = [d for d in preset.datasets if d not in known_datasets]
    if unknown:
        parser.error(f"unknown datasets {unknown}; see etpo_gym.list_datasets()")
    return preset, args.output_dir or os.path.join("runs", f"compare-{name}")


def run_benchmark(preset: Preset, output_dir: str) -> tuple[dict[str, Any], int]:
    """Run (or resume) every cell of ``preset`` into ``output_dir``; returns the summary and the failed cells."""
    from tqdm.auto import tqdm

    os.makedirs(output_dir, exist_ok=True)
    results_path = os.path.join(output_dir, "results.jsonl")
    finished = load_finished(results_path)
    cells = [(a, d, s) for d in preset.datasets for s in preset.seeds for a in preset.agents]
    num_done = sum(cell_key(*cell, preset) in finished for cell in cells)
    print(
        f"{len(preset.agents)} agents x {len(preset.datasets)} datasets x {len(preset.seeds)} seeds = "
        f"{len(cells)} cells, {preset.total_actions} env actions each; {num_done} already in {results_path}"
    )
    records, failed = [], 0
    with tqdm(cells, unit="cell", desc="compare") as bar:
        for agent, dataset, seed in bar:
            bar.set_postfix(agent=agent, dataset=dataset, seed=seed)
            key = cell_key(agent, dataset, seed, preset)
            if key in finished:  # not recomputed: its record has the metrics and the curves
                records.append(finished[key])
                continue
            record = run_cell(agent, dataset, seed, preset, output_dir)
            with open(results_path, "a") as f:
                f.write(json.dumps(_jsonable(record)) + "\n")
            records.append(record)
            if record["status"] != "ok":
                failed += 1
                tqdm.write(f"cell {key} failed: {record['error']}")
    wall = sum(r["cell_wall_time_s"] for r in records)  # this grid's cells only, resumed ones included
    summary = summarize(records, preset)
    print(write_outputs(summary, records, preset, output_dir, wall))
    print(f"results in {output_dir}: results.jsonl, summary.json, summary.csv, summary.md, curves.png")
    return summary, failed


def main(argv: list[str] | None = None) -> int:
    # "module:function" agents and --import modules are imported relative to the working directory, as with -m
    sys.path.insert(0, os.getcwd())
    preset, output_dir = parse_args(argv)
    _, failed = run_benchmark(preset, output_dir)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
