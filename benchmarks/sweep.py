"""Choose the agents' optimisation defaults by a small recorded sweep on the DEVELOPMENT datasets (issue 12).

    python benchmarks/sweep.py --dry-run                                  # the settings and the cost estimate
    python benchmarks/sweep.py --output benchmarks/results/sweep.jsonl    # run (resumable), then print the best
    python benchmarks/sweep.py --agents grpo --grid learning_rate=1e-4,3e-4 --grid num_epochs=2 --seeds 0,1
    python benchmarks/sweep.py --summary-only --output benchmarks/results/sweep.jsonl

For each agent, settings are drawn from its grid (:data:`GRIDS`: actions per rollout, optimiser steps per rollout
as ``num_epochs`` x ``num_minibatches``, learning rate, and the agent's own knobs such as ETPO's β, τ, λ). A full
grid is large, so ``--max-settings`` draws that many settings at random (random search, Bergstra & Bengio 2012,
seeded by ``--sweep-seed``); the current defaults are always one of them. Every setting is trained on each dataset
(default: the development datasets pharyngitis and kidney_stone, never the report preset's) with each seed, then
scored by the shared sampled evaluation (:func:`etpo_agents.evaluation.evaluate_policy`: K first-turn samples at
the training temperature, evaluation seeds shared by every agent and the base). The score of a setting is the mean
of ``sample_reward_mean`` over its (dataset, seed) cells. ``base`` (the untrained model) is evaluated once per
dataset at each temperature of the report's frontier (the evaluation's seeds do not depend on the run seed). Each
setting gets its difference to the base at temperature 1 and to the base's temperature frontier at the cell's KL
per action (the report's verdict), paired on the same evaluation draws; their CIs cover the seeds' spread, not
the base's own sampling error, which is common to every cell of a dataset. Settings are ranked by the difference
to the frontier.

Each finished cell is appended to the JSON-lines ``--output`` (settings, dataset, seed, git commit, wall time,
sampled metrics); a cell whose key is already there is skipped, so an interrupted sweep continues where it stopped
(unless the agent's registered defaults changed since: the record keeps them, and such a cell is re-run).
At the end it prints, per agent, every setting's score (mean, 95% CI, KL, paired differences to the base and to
its frontier) and the best. Wall time: about (total actions + K) x 0.5 s per trained cell and K x 0.5 s per base
cell for the embedded model on the 2-core CPU (``--dry-run`` prints the estimate for the cells not yet run).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import math
import os
import random
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script: the checkout
from benchmarks.compare import (  # noqa: E402
    FRONTIER_TEMPERATURES,
    agent_defaults,
    git_commit,
    is_current,
    load_finished,
    mean_ci,
)
from etpo_agents.stats import frontier_value  # noqa: E402

DEV_DATASETS = ("pharyngitis", "kidney_stone")
"""Datasets the defaults are tuned on; the report preset (credit_g, diabetes) is never swept."""

COMMON_GRID: dict[str, tuple[Any, ...]] = {
    "actions_per_rollout": (8, 16, 32),
    "num_epochs": (1, 2, 4),
    "num_minibatches": (1, 2),
    "learning_rate": (3e-5, 1e-4, 3e-4),
}
"""Axes every learner shares (``RunConfig`` and ``_UpdateConfig`` names): rollout size and optimiser steps per
rollout (``num_epochs`` x ``num_minibatches``, 1 to 8 Adam steps), step size."""

GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "etpo": {**COMMON_GRID, "beta": (0.02, 0.05, 0.1), "tau": (0.01, 0.05, 0.2), "td_lambda": (0.0, 0.95)},
    "ppo": {**COMMON_GRID, "kl_coef": (0.02, 0.05, 0.1)},
    "reinforce": {**COMMON_GRID, "kl_coef": (0.0, 0.05)},
    "grpo": {**COMMON_GRID, "kl_coef": (0.0, 0.04)},
    "rft": {**COMMON_GRID, "keep_fraction": (0.25, 0.5, 1.0), "kl_coef": (0.0, 0.3, 1.0)},
    "base": {"temperature": FRONTIER_TEMPERATURES},
}
"""Axes per agent; ``base`` (the untrained model) is evaluated at the frontier's temperatures: at 1.0 it is the
paired reference, all of them together are its temperature frontier."""

SCORE = "sample_reward_mean"
"""The score of a cell: mean reward of K first-turn samples at the training temperature."""

KL = "kl_per_action"
"""The cell's KL(π_sample‖π_ref) per action, where it sits on the base's temperature frontier."""

SECONDS_PER_ACTION = 0.5
"""Wall seconds per env action trained or first-turn sample evaluated, for the estimate: 0.3-1.0 s (median 0.4)
in ``benchmarks/results/sweep_rft_frontier.jsonl`` (embedded model, development datasets, 2-core CPU; the base at
low temperatures is the slowest, its programs run longer)."""


def default_setting(agent: str, axes: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    """The agent's current defaults on the grid's axes (``RunConfig`` and the agent's config)."""
    from etpo_agents.config import RunConfig
    from etpo_agents.train import default_algo_config

    algo, run = default_algo_config(agent), RunConfig(algo=agent)
    return {name: getattr(algo, name) if hasattr(algo, name) else getattr(run, name) for name in sorted(axes)}


def draw_settings(
    axes: dict[str, tuple[Any, ...]], max_settings: int, seed: int, default: dict[str, Any]
) -> list[dict[str, Any]]:
    """The full grid if it has at most ``max_settings`` points, else ``default`` plus a seeded random sample.

    Returns:
        Distinct settings (dicts over the axes), ``default`` first when sampled.
    """
    names = sorted(axes)
    grid = [dict(zip(names, values, strict=True)) for values in itertools.product(*(axes[n] for n in names))]
    if len(grid) <= max_settings:
        return grid
    others = [s for s in grid if s != default]
    return [default, *random.Random(seed).sample(others, max_settings - 1)]


def cell_key(agent: str, setting: dict[str, Any], dataset: str, seed: int | None, fixed: dict[str, Any]) -> str:
    """``<agent>-<dataset>-seed<N>-<hash>``, the hash over everything that determines the cell's result."""
    blob = json.dumps({"agent": agent, "setting": setting, "dataset": dataset, "seed": seed, **fixed},
                      sort_keys=True, default=str)  # fmt: skip
    return f"{agent}-{dataset}-seed{seed}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def summarize(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per agent, every setting's score, best first: mean ``SCORE`` over its cells with 95% CI, mean ``KL``, the
    mean difference to ``base`` at temperature 1 and the mean difference to the base's temperature frontier at the
    cell's KL (:func:`~etpo_agents.stats.frontier_value`), each over the cells whose dataset has them.

    Settings are ranked by the difference to the frontier (the report's verdict: more reward than sharpening buys
    at the same KL) when every cell has a frontier of >= 2 temperatures, else by ``SCORE``. Only settings with the
    most cells of their agent are ranked (an unfinished setting is listed, never best).
    """
    base_records = [r for r in records if r["agent"] == "base"]
    base = {r["dataset"]: r["metrics"][SCORE] for r in base_records if r["setting"].get("temperature", 1.0) == 1.0}
    frontier: dict[str, tuple[list[float], list[float]]] = {}
    for r in base_records:
        kls, scores = frontier.setdefault(r["dataset"], ([], []))
        kls.append(r["metrics"].get(KL, 0.0))
        scores.append(r["metrics"][SCORE])
    by_setting: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        by_setting.setdefault((r["agent"], json.dumps(r["setting"], sort_keys=True)), []).append(r)
    out: dict[str, list[dict[str, Any]]] = {}
    for (agent, setting), cells in by_setting.items():
        scores = [c["metrics"][SCORE] for c in cells]
        diffs = [c["metrics"][SCORE] - base[c["dataset"]] for c in cells if c["dataset"] in base]
        above = [c["metrics"][SCORE] - frontier_value(c["metrics"].get(KL, 0.0), *frontier[c["dataset"]])
                 for c in cells if len(frontier.get(c["dataset"], ([], []))[0]) >= 2]  # fmt: skip
        mean, half, _ = mean_ci(scores)
        diff, diff_half, _ = mean_ci(diffs)
        gap, gap_half, _ = mean_ci(above)
        kl = sum(c["metrics"].get(KL, float("nan")) for c in cells) / len(cells)
        row = {"setting": json.loads(setting), "score": mean, "ci": half, "kl": kl, "vs_base": diff,
               "vs_base_ci": diff_half, "vs_frontier": gap, "vs_frontier_ci": gap_half,
               "ranked_by_frontier": len(above) == len(cells)}  # fmt: skip
        out.setdefault(agent, []).append({**row, "num_cells": len(cells)})
    for rows in out.values():
        most = max(r["num_cells"] for r in rows)
        by_frontier = all(r["ranked_by_frontier"] for r in rows)
        rows.sort(key=lambda r: (r["num_cells"] == most, r["vs_frontier"] if by_frontier else r["score"]),
                  reverse=True)  # fmt: skip
    return out


def format_summary(summary: dict[str, list[dict[str, Any]]]) -> str:
    """Human-readable table per agent and the best setting of each."""
    lines = []
    for agent, rows in sorted(summary.items()):
        lines.append(f"== {agent} ({len(rows)} settings)")
        for r in rows:
            lines.append(f"  {SCORE} {r['score']:.3f} ± {r['ci']:.3f}  KL {r['kl']:.3f}  vs base {r['vs_base']:+.3f} "
                         f"± {r['vs_base_ci']:.3f}  vs frontier {r['vs_frontier']:+.3f} ± {r['vs_frontier_ci']:.3f}  "
                         f"cells {r['num_cells']}  {json.dumps(r['setting'])}")  # fmt: skip
        lines.append(f"  BEST {agent}: {json.dumps(rows[0]['setting'])}")
    return "\n".join(lines)


def run_cell(agent: str, setting: dict[str, Any], dataset: str, seed: int | None, args: argparse.Namespace,
             executor: Any, work_dir: str) -> dict[str, Any]:  # fmt: skip
    """Train ``agent`` with ``setting`` on ``dataset`` (skipped for ``base``, whose ``seed`` is None), then the
    sampled evaluation.

    Returns:
        The evaluation's flat metrics and the training's final metrics.
    """
    import torch

    from etpo_agents.config import RunConfig
    from etpo_agents.evaluation import SAMPLE_METRICS, EvalConfig, evaluate_policy
    from etpo_agents.train import build_policy, default_algo_config, train

    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    algo_config = default_algo_config(agent)
    algo_config = dataclasses.replace(algo_config, **{k: v for k, v in setting.items() if k not in run_fields})
    run = RunConfig(algo=agent, dataset=dataset, model=args.model, total_steps=args.total_actions, seed=seed or 0,
                    output_dir=work_dir, max_turns=args.max_turns, progress_bar=False, greedy_eval=False,
                    save_every=0, env_kwargs={"executor": executor},
                    **{k: v for k, v in setting.items() if k in run_fields})  # fmt: skip
    final = train(run, algo_config) if agent != "base" else {}
    policy = build_policy(run, agent)
    if agent != "base":
        checkpoint = torch.load(os.path.join(work_dir, "checkpoint.pt"), map_location="cpu", weights_only=False)
        policy.load_checkpoint_state(checkpoint["policy"])
    config = EvalConfig(num_samples=args.eval_samples, episode_samples=args.episode_samples, greedy=False)
    env_kwargs = {"max_turns": run.max_turns, "max_action_tokens": run.max_action_tokens, "executor": executor}
    result = evaluate_policy(policy, [dataset], config, temperature=run.temperature, top_k=run.top_k,
                             env_kwargs=env_kwargs)  # fmt: skip
    metrics = {k: result[k] for k in SAMPLE_METRICS}
    metrics.update({k: final[k] for k in ("train_reward_mean", "success_rate", "num_tokens") if k in final})
    return metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default="base,etpo,ppo,reinforce,grpo,rft", help="comma-separated, see GRIDS")
    parser.add_argument("--datasets", default=",".join(DEV_DATASETS))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--total-actions", type=int, default=128, help="training budget per cell (env actions)")
    parser.add_argument("--eval-samples", type=int, default=64, help="K first-turn samples per cell")
    parser.add_argument("--episode-samples", type=int, default=0, help="whole episodes per cell (0: none)")
    parser.add_argument("--max-turns", type=int, default=5)
    parser.add_argument("--model", default="etpo-tiny-coder")
    parser.add_argument("--max-settings", type=int, default=6, help="settings drawn per agent (random search)")
    parser.add_argument("--sweep-seed", type=int, default=0, help="seeds the draw of settings")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                        help="replace an axis of every agent having it (repeatable); values are JSON")  # fmt: skip
    parser.add_argument("--output", default="benchmarks/results/sweep.jsonl")
    parser.add_argument("--work-dir", default="runs/sweep", help="checkpoints of the cells")
    parser.add_argument("--dry-run", action="store_true", help="print the settings and the estimate, run nothing")
    parser.add_argument("--summary-only", action="store_true", help="summarise --output, run nothing")
    args = parser.parse_args(argv)
    args.agents = [a for a in args.agents.split(",") if a]
    unknown = [a for a in args.agents if a not in GRIDS]
    if unknown:
        parser.error(f"no grid for {unknown}; known: {sorted(GRIDS)}")
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    overrides = {}
    for item in args.grid:
        name, _, values = item.partition("=")
        if not values:
            parser.error(f"--grid {item!r}: expected NAME=V1,V2")
        overrides[name] = tuple(json.loads(v) for v in values.split(","))
    args.overrides = overrides
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """(agent, setting) pairs of the sweep; the base's frontier temperatures are never subsampled."""
    pairs = []
    for agent in args.agents:
        axes = {name: args.overrides.get(name, values) for name, values in GRIDS[agent].items()}
        default = default_setting(agent, axes) if axes else {}
        max_settings = args.max_settings if agent != "base" else math.prod(len(v) for v in axes.values())
        pairs += [(agent, s) for s in draw_settings(axes, max_settings, args.sweep_seed, default)]
    return pairs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    failed = 0
    if not args.summary_only:
        pairs = plan(args)
        cells = [(agent, key) for agent, key, *_ in sweep_cells(args, pairs)]
        done = load_finished(args.output)
        todo = [agent for agent, key in cells if not (key in done and is_current(done[key], agent))]
        units = sum(args.eval_samples + (0 if agent == "base" else args.total_actions) for agent in todo)
        print(f"{len(pairs)} settings x {len(args.datasets)} datasets x {len(args.seeds)} seeds: {len(cells)} cells, "
              f"{len(cells) - len(todo)} already in {args.output}; ~{units * SECONDS_PER_ACTION / 3600:.1f} h "
              "on the 2-core CPU for the rest")  # fmt: skip
        if args.dry_run:
            for agent, setting in pairs:
                print(f"  {agent}: {json.dumps(setting)}")
            return 0
        failed = run_sweep(args, pairs)
        if failed:
            print(f"{failed} cells failed (see {args.output})", file=sys.stderr)
    print(format_summary(summarize(list(load_finished(args.output).values()))))
    return 1 if failed else 0


def sweep_cells(args: argparse.Namespace, pairs: list[tuple[str, dict[str, Any]]]):
    """Yields ``(agent, key, setting, dataset, seed, fixed)`` for every cell of the sweep, in run order."""
    fixed = {"total_actions": args.total_actions, "eval_samples": args.eval_samples, "model": args.model,
             "episode_samples": args.episode_samples, "max_turns": args.max_turns}  # fmt: skip
    for agent, setting in pairs:
        seeds = [None] if agent == "base" else args.seeds  # the evaluation's seeds do not depend on the run's
        for dataset, seed in itertools.product(args.datasets, seeds):
            yield agent, cell_key(agent, setting, dataset, seed, fixed), setting, dataset, seed, fixed


def run_sweep(args: argparse.Namespace, pairs: list[tuple[str, dict[str, Any]]]) -> int:
    """Run the cells not yet in ``args.output``; returns the number of failures."""
    from etpo_gym.executor import CodeExecutor

    done = load_finished(args.output)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    failed = 0
    with CodeExecutor() as executor:  # one cache for all cells: repeated bodies are cache hits
        for agent, key, setting, dataset, seed, fixed in sweep_cells(args, pairs):
            if key in done and is_current(done[key], agent):  # else new, or trained under other defaults
                continue
            start = time.perf_counter()
            record = {"key": key, "agent": agent, "setting": setting, "dataset": dataset, "seed": seed,
                      **fixed, "agent_config": agent_defaults(agent), "commit": git_commit()}  # fmt: skip
            try:
                work_dir = os.path.join(args.work_dir, key)
                metrics = run_cell(agent, setting, dataset, seed, args, executor, work_dir)
                record.update(status="ok", metrics=metrics)
            except Exception as error:  # noqa: BLE001  (recorded; the sweep goes on and exits non-zero)
                record.update(status="failed", error=f"{type(error).__name__}: {error}")
                failed += 1
            record["wall_time_s"] = time.perf_counter() - start
            with open(args.output, "a") as f:
                f.write(json.dumps(record, default=str) + "\n")
            print(f"{key}: {record['status']} {record.get('metrics', {}).get(SCORE, '')}", flush=True)
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
