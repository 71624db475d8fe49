"""Compare RL agents on the ETPO data-science envs: agents x datasets x seeds on one budget of env actions.

    python benchmarks/compare.py --quick --output-dir runs/compare-quick     # smoke run, < 10 min on 2 CPUs
    python benchmarks/compare.py --output-dir benchmarks/results/default    # the default preset
    python benchmarks/compare.py --agents etpo,ppo,sb3-ppo --datasets pharyngitis --seeds 0,1,2 --total-actions 64
    python benchmarks/compare.py --import my_agents --agents etpo,my-agent  # names registered in my_agents.py
    python benchmarks/compare.py --agents etpo,base --datasets my_data.csv:label --total-actions 32  # your CSV

Every agent gets the same budget, counted in env actions (code executions); tokens and wall time are reported
too. Each finished cell is appended as one JSON line to ``results.jsonl`` with its config, git commit, device,
metrics and curves. A cell's key, ``<agent>-<dataset>-seed<N>-<budget>actions-<hash>``, names its record and its
folder under ``cells/``; the hash covers every setting that determines its result (model and other agent settings,
env settings, budget), so re-running into the same folder continues where an interrupted run stopped, never
recomputes a finished cell, and never reuses a cell run with other settings. The curves live in the records, so
``results.jsonl`` alone regenerates every output (re-run the same command: nothing is recomputed).

The protocol (``docs/benchmark_protocol.md``):

* **Sampled evaluation.** After training, every cell samples K first-turn actions and a few whole episodes per
  dataset from its policy at the training temperature (:mod:`etpo_agents.evaluation`; ``Preset.evaluation``), with
  evaluation seeds shared by every agent and seed. The headline is the mean sampled reward; success rate, AUCs
  among successes, best-of-K held-out AUC, episode success and the exact KL(π_sample ‖ π_ref) per action are
  reported next to it, the greedy action's AUC as a secondary column.
* **Temperature frontier.** The base model is evaluated at ``Preset.frontier_temperatures`` with the same K and
  seeds, once per dataset (records of ``"kind": "frontier"`` in ``results.jsonl``, resumable like cells; skipped
  when no agent ran the sampled evaluation). Sharpening alone reaches those (KL, reward) points; an agent has
  learned something only if it is above that curve.
* **Statistics** (:mod:`etpo_agents.stats`). Every agent is compared with the base at its training temperature and
  with the frontier at the agent's KL, paired per (dataset, seed) unit; paired t-tests, Holm–Bonferroni across all
  comparisons made, mean differences with 95% CIs and the minimal detectable effect (80% power) of each.

At the end it writes ``summary.json``, ``summary.csv``, ``summary.md`` (mean +- 95% CI over seeds, the frontier
verdict per agent, where the wall time went: training, evaluation, frontier), ``frontier.png`` (reward and success
vs KL per action: the base's temperature curve, each agent as a point with 95% CIs) and ``curves.png`` (training
reward vs env actions, mean with a 95% CI band over seeds), plus ``curves_kl_ref.png`` and ``curves_entropy.png``
for the agents that log them. It exits non-zero if a cell failed.

A failed greedy action (the code did not return a working model) counts as AUC 0.5 (:data:`FAILED_GREEDY_AUC`,
chance level: what a constant predictor scores) in the greedy columns, so failing never helps there; the sampled
metrics count a failure as reward -1 (the env's) and in the success rate.

Agents are looked up in ``etpo_agents.registry`` (``etpo``, ``etpo-one-step``, ``etpo-official-loss``,
``etpo-td-lambda``, ``ppo``, ``reinforce``, ``grpo``, ``dr-grpo``, ``rft``, ``grpo-placebo``, ``base``, ``sb3-ppo``,
``sb3-a2c``, ``trl-grpo``, names registered by a module given to ``--import``, or ``module:function``).
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
import warnings
from typing import Any

import numpy as np

from etpo_agents.evaluation import EvalConfig
from etpo_agents.stats import ALPHA, PairedResult, frontier_value, holm_bonferroni, paired_test
from etpo_agents.stats import verdict as stats_verdict

METRICS = (
    "sample_reward_mean",
    "sample_success_rate",
    "sample_test_auc_mean",
    "best_of_k_test_auc",
    "episode_success_rate",
    "kl_per_action",
    "greedy_test_auc",
    "greedy_success_rate",
    "greedy_auc",
    "train_reward_mean",
    "success_rate",
    "num_tokens",
    "wall_time_s",
    "eval_wall_time_s",
)
"""Reported per cell, in this order; the first is the headline (see :mod:`etpo_agents.evaluation` for the sampled
ones). Agents that do not run the sampled evaluation (``sb3-*``, most custom agents) have n/a there."""

RANKING_METRICS = ("sample_reward_mean", "greedy_test_auc", "greedy_auc", "train_reward_mean")
"""The ranking's sort keys: the headline, then the next ones for agents without it or for ties."""

FRONTIER_TEMPERATURES = (0.25, 0.5, 0.7, 0.85, 0.95, 1.0)
"""Temperatures of the base model's frontier in the presets: 1.0 is the base itself (KL 0); 0.25 is close to
greedy (issue 12 measured T = 0.5 above every trained agent). Reward grows roughly like √KL near T = 1, so a
straight line from T = 1 to the next point runs below the true frontier; 0.95 and 0.85 (KL ~0.02 and ~0.14 nats
per action) keep those chords short, so a learner at low KL is not credited with what mild sharpening buys."""

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
        evaluation: the sampled evaluation of every cell and of the frontier (part of every key).
        frontier_temperatures: temperatures at which the base model is evaluated once per dataset; empty: no
            frontier (and no frontier verdict).
        user_datasets: datasets of ``datasets`` that are CSV files (``--datasets FILE.csv:TARGET``), by their
            display name: the ``gym.make`` arguments that load it (``dataset`` path, ``target``...) and
            ``fingerprint``, the hash of its preprocessed content that the cell keys use instead of the path.
    """

    agents: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    total_actions: int
    agent_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    user_datasets: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    evaluation: EvalConfig = EvalConfig()
    frontier_temperatures: tuple[float, ...] = ()


PRESETS = {
    "quick": Preset(
        ("rft", "grpo", "base"),
        ("kidney_stone",),
        (0, 1),
        8,
        {"actions_per_rollout": 4},
        evaluation=EvalConfig(num_samples=8, episode_samples=2),
        frontier_temperatures=(0.5, 1.0),
    ),
    "default": Preset(
        ("etpo", "ppo", "reinforce", "grpo", "rft", "grpo-placebo", "base"),
        ("credit_g", "diabetes"),
        (0, 1, 2, 3, 4),
        96,
        {"actions_per_rollout": 16},
        evaluation=EvalConfig(num_samples=64, episode_samples=8),
        frontier_temperatures=FRONTIER_TEMPERATURES,
    ),
}
"""``--quick``: a smoke run of the whole protocol (sampled metrics, frontier, verdicts) on a development dataset,
2 seeds, 8 actions per cell, K = 8: measured 4.0 min wall (``/usr/bin/time python benchmarks/compare.py --quick``)
on the 2-core machine while other jobs kept its load average near 10, so well under 10 min idle.

``default``: the reported comparison, on the report datasets (never the development datasets pharyngitis and
kidney_stone, on which the agents' defaults were tuned), with every agent's defaults untouched and 16 actions per
rollout for every agent (6 updates; the RFT sweep on the development datasets, ``benchmarks/results/sweep_rft.md``,
found 16 closer to the frontier than 8, and 8-action batches swing from 0.125 to 1.0 success): 7 agents x 2
datasets x 5 seeds = 70 cells and 12 frontier points (6 temperatures x 2 datasets). Measured: 124.6 min summed
over cells and frontier points (training 70.9, evaluation 42.9, frontier 10.8 min; ``benchmarks/results/default/``),
with other jobs on the machine for its first ~25 min (those cells took 106-155 s, the later ones 65-100 s), so
~1.9-2 h idle. The base's 5 seed cells per dataset repeat the same sampled evaluation (the evaluation's seeds do
not depend on the run's). The ``sample_reward_mean`` standard error of one cell at K = 64 is ~0.1 at temperature 1
(reward sd ~0.76 when 20-30% of samples fail), below the seed-to-seed spread of trained agents that issue 12
measured."""


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
                "agent_kwargs": preset.agent_kwargs, "env_kwargs": preset.env_kwargs,
                "evaluation": dataclasses.asdict(preset.evaluation)}  # fmt: skip
    if dataset in preset.user_datasets:  # a CSV: its content and load options, not its path (a moved file keeps it)
        settings["user_dataset"] = {k: v for k, v in preset.user_datasets[dataset].items() if k != "dataset"}
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


def agent_defaults(agent: str) -> dict[str, Any] | None:
    """The agent's registered default config as JSON (``None`` for agents outside ``etpo_agents.train``).

    Stored in each cell's record: on resume, a cell trained under other defaults (a default changed since) is
    re-run, since the cell key hashes only the preset's ``agent_kwargs``. Records without it (written before
    etpo-gym 0.2) are reused.
    """
    from etpo_agents.train import ALGORITHMS, default_algo_config

    if agent not in ALGORITHMS:
        return None
    with warnings.catch_warnings():  # a deprecated alias's warning is for users who train it, not for this check
        warnings.simplefilter("ignore", FutureWarning)
        return _jsonable(dataclasses.asdict(default_algo_config(agent)))


def is_current(record: dict, agent: str) -> bool:
    """Whether a finished cell's record was trained under the agent's present defaults (see :func:`agent_defaults`)."""
    return "agent_config" not in record or record["agent_config"] == agent_defaults(agent)


def run_cell(agent: str, dataset: str, seed: int, preset: Preset, output_dir: str, executor: Any = None) -> dict:
    """Train one agent on one dataset with one seed, then evaluate it (``preset.evaluation``); returns the JSON
    record (status ok or failed).

    Args:
        executor: a ``CodeExecutor`` shared by the run's envs (its cache makes repeated bodies free), or None.
    """
    from etpo_agents.registry import get_agent

    key = cell_key(agent, dataset, seed, preset)
    cell_dir = os.path.join(output_dir, "cells", key)
    start = time.perf_counter()
    record: dict[str, Any] = {
        "key": key,
        "kind": "cell",
        "agent": agent,
        "dataset": dataset,
        "seed": seed,
        "total_actions": preset.total_actions,
        "agent_kwargs": preset.agent_kwargs,
        "agent_config": agent_defaults(agent),
        "env_kwargs": preset.env_kwargs,
        "evaluation": dataclasses.asdict(preset.evaluation),
        "commit": git_commit(),
    }
    if dataset in preset.user_datasets:  # a CSV: where it was read from, how, and its content hash
        record["user_dataset"] = preset.user_datasets[dataset]
    env_kwargs = {**preset.env_kwargs, **dataset_env_kwargs(dataset, preset)}
    if executor is not None:
        env_kwargs["executor"] = executor
    try:
        metrics = get_agent(agent)(
            env_kwargs,
            preset.total_actions,
            seed,
            output_dir=cell_dir,
            evaluation=preset.evaluation,
            **preset.agent_kwargs,
        )
        record.update(status="ok", metrics=_jsonable(metrics), curve=read_curve(metrics.get("metrics_csv")))
        record["device"] = metrics.get("device", "cpu")
    except Exception as error:  # a failed cell is recorded and reported, and the run goes on
        record.update(status="failed", error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
    record["cell_wall_time_s"] = time.perf_counter() - start
    return record


def frontier_key(dataset: str, temperature: float, preset: Preset) -> str:
    """``frontier-<dataset>-T<temperature>-<hash>``: the record of one frontier point (the base model at
    ``temperature``), hashed over everything that determines it (model and env settings, the evaluation)."""
    settings = {"frontier_temperature": temperature, "dataset": dataset, "agent_kwargs": preset.agent_kwargs,
                "env_kwargs": preset.env_kwargs, "evaluation": dataclasses.asdict(preset.evaluation)}  # fmt: skip
    if dataset in preset.user_datasets:
        settings["user_dataset"] = {k: v for k, v in preset.user_datasets[dataset].items() if k != "dataset"}
    digest = hashlib.sha256(json.dumps(_jsonable(settings), sort_keys=True).encode()).hexdigest()[:8]
    return re.sub(r"[^\w.-]", "_", f"frontier-{dataset}-T{temperature:g}") + f"-{digest}"


def base_run_config(preset: Preset) -> Any:
    """The ``RunConfig`` of the preset's base model (model, sampling and env settings of every agent)."""
    from etpo_agents.config import RunConfig

    run_fields = {f.name for f in dataclasses.fields(RunConfig)} - {"evaluation", "env_kwargs"}
    env_kwargs = dict(preset.env_kwargs)
    kwargs = {k: v for k, v in preset.agent_kwargs.items() if k in run_fields}
    kwargs.update({k: env_kwargs.pop(k) for k in list(env_kwargs) if k in run_fields})  # max_turns etc.
    return RunConfig(algo="base", progress_bar=False, env_kwargs=env_kwargs, **kwargs)


def run_frontier_point(dataset: str, temperature: float, preset: Preset, policy: Any, executor: Any) -> dict:
    """The base model (``policy``) evaluated at ``temperature`` on ``dataset`` with the preset's evaluation
    (same K and seeds as every cell); returns the JSON record of kind ``frontier``."""
    from etpo_agents import train
    from etpo_agents.evaluation import evaluate_policy

    start = time.perf_counter()
    record: dict[str, Any] = {"key": frontier_key(dataset, temperature, preset), "kind": "frontier",
                              "agent": "base", "dataset": dataset, "temperature": temperature,
                              "agent_kwargs": preset.agent_kwargs, "env_kwargs": preset.env_kwargs,
                              "evaluation": dataclasses.asdict(preset.evaluation), "commit": git_commit()}  # fmt: skip
    run = base_run_config(preset)
    env_kwargs = {**train.env_kwargs_of(run), **dataset_env_kwargs(dataset, preset), "executor": executor}
    name = env_kwargs.pop("dataset")
    try:
        config = dataclasses.replace(preset.evaluation, temperature=temperature)
        metrics = evaluate_policy(policy, [name], config, temperature=temperature, top_k=run.top_k,
                                  env_id=run.env_id, env_kwargs=env_kwargs)  # fmt: skip
        record.update(status="ok", metrics=_jsonable(metrics))
    except Exception as error:  # recorded like a failed cell
        record.update(status="failed", error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
    record["cell_wall_time_s"] = time.perf_counter() - start
    return record


def dataset_env_kwargs(dataset: str, preset: Preset) -> dict[str, Any]:
    """The ``gym.make`` arguments that load ``dataset``: its name, or a CSV's path and load options."""
    if dataset in preset.user_datasets:
        return {k: v for k, v in preset.user_datasets[dataset].items() if k != "fingerprint"}
    return {"dataset": dataset}


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
    """Everything the outputs report, from the records alone.

    Returns:
        ``table``: per (agent, dataset) and overall mean +- CI of :data:`METRICS` (:func:`cell_scores`; overall
        scores average a seed's cells over the datasets first, so the CI is over seeds); ``frontier``: per dataset
        the base's points; ``comparisons``: the paired tests (:func:`paired_comparisons`); ``verdict``: the ranking
        and its best-vs-runner-up test; ``wall_time_split``: seconds spent training, evaluating cells and on the
        frontier (:func:`wall_time_split`).
    """
    cells = [r for r in records if r.get("kind", "cell") == "cell"]
    scored = [(r, cell_scores(r["metrics"])) for r in cells if r["status"] == "ok"]
    table: dict[str, dict[str, dict[str, Any]]] = {}
    per_seed: dict[str, dict[str, dict[int, float]]] = {}
    for agent in preset.agents:
        table[agent], per_seed[agent] = {}, {}
        for dataset in (*preset.datasets, "overall"):
            agent_cells = [(r, s) for r, s in scored if r["agent"] == agent and dataset in ("overall", r["dataset"])]
            row = {}
            for metric in METRICS:
                if dataset == "overall":
                    by_seed: dict[int, list[float]] = {}
                    for r, scores in agent_cells:
                        if _finite(scores[metric]):
                            by_seed.setdefault(r["seed"], []).append(scores[metric])
                    per_seed[agent][metric] = {seed: float(np.mean(v)) for seed, v in by_seed.items()}
                    values = list(per_seed[agent][metric].values())
                else:
                    values = [scores[metric] for _, scores in agent_cells]
                mean, half, n = mean_ci(values)
                row[metric] = {"mean": mean, "ci95": half, "n": n}
            table[agent][dataset] = row
    frontier = frontier_points(records, preset)
    comparisons = paired_comparisons(scored, frontier, preset)
    verdict = ranking_verdict(table, per_seed, preset)
    family = [c["p_value"] for c in comparisons] + [verdict.get("p_value")]
    adjusted = holm_bonferroni(family)
    for comparison, p_holm in zip(comparisons, adjusted, strict=False):
        comparison.update(p_holm=p_holm, verdict=stats_verdict(_paired(comparison), p_holm))
    if verdict.get("p_value") is not None:
        verdict.update(p_holm=adjusted[-1], significant=bool(adjusted[-1] < ALPHA))
    return {"table": table, "frontier": frontier, "comparisons": comparisons, "verdict": verdict,
            "num_comparisons": sum(p is not None for p in family),
            "wall_time_split": wall_time_split(records)}  # fmt: skip


def frontier_points(records: list[dict], preset: Preset) -> dict[str, list[dict[str, float]]]:
    """Per dataset, the base's frontier points sorted by temperature: ``temperature``, ``kl``, ``reward``,
    ``success``, ``test_auc``, and ``reward_se``, the standard error of the mean reward over its K samples (the
    frontier's own sampling error, common to every paired unit of the dataset)."""
    points: dict[str, list[dict[str, float]]] = {}
    for r in records:
        if r.get("kind") != "frontier" or r["status"] != "ok" or r["dataset"] not in preset.datasets:
            continue
        if r["temperature"] not in preset.frontier_temperatures:
            continue
        m = r["metrics"]
        rewards = [s["reward"] for block in m["sampled"].values() for s in block["samples"]]
        se = float(np.std(rewards, ddof=1) / math.sqrt(len(rewards))) if len(rewards) > 1 else math.nan
        points.setdefault(r["dataset"], []).append(
            {"temperature": r["temperature"], "kl": m["kl_per_action"], "reward": m["sample_reward_mean"],
             "success": m["sample_success_rate"], "test_auc": m["sample_test_auc_mean"], "reward_se": se}
        )  # fmt: skip
    return {d: sorted(p, key=lambda point: point["temperature"]) for d, p in points.items()}


def paired_comparisons(scored: list[tuple[dict, dict]], frontier: dict[str, list[dict]], preset: Preset) -> list[dict]:
    """Each agent's paired differences per (dataset, seed) unit against the base and against the frontier.

    * ``base``: the ``base`` agent's cell of the same unit (the base model sampled at the training temperature
      with the same evaluation seeds); without a ``base`` agent, the frontier point at the training temperature.
    * ``frontier``: :func:`etpo_agents.stats.frontier_value` of the unit's dataset at the agent's KL per action
      (the same unit's cell), for the mean sampled reward; the success rate is compared the same way against the
      success frontier, as an effect size only (no p-value, not in the corrected family).

    Returns:
        One dict per (agent, reference, metric): ``agent``, ``reference``, ``metric``, the fields of
        :class:`~etpo_agents.stats.PairedResult` and ``units`` (the paired units' differences).
    """
    temperature = preset.agent_kwargs.get("temperature", 1.0)
    cells = {(r["agent"], r["dataset"], r["seed"]): s for r, s in scored}
    comparisons = []
    for agent in preset.agents:
        if agent == "base":
            continue
        units = [(d, seed, s) for (a, d, seed), s in cells.items() if a == agent and _finite(s["sample_reward_mean"])]
        if not units:
            continue  # an agent without the sampled evaluation (sb3-*, custom agents)
        base, versus, success = [], [], []
        for dataset, seed, scores in units:
            reference = _base_reward(cells, frontier, dataset, seed, temperature)
            if reference is not None:
                base.append((dataset, seed, scores["sample_reward_mean"] - reference))
            points = frontier.get(dataset)
            if points and _finite(scores["kl_per_action"]):
                kls = [p["kl"] for p in points]
                at = frontier_value(scores["kl_per_action"], kls, [p["reward"] for p in points])
                versus.append((dataset, seed, scores["sample_reward_mean"] - at))
                at = frontier_value(scores["kl_per_action"], kls, [p["success"] for p in points])
                success.append((dataset, seed, scores["sample_success_rate"] - at))
        for reference, metric, diffs, tested in (("base", "sample_reward_mean", base, True),
                                                 ("frontier", "sample_reward_mean", versus, True),
                                                 ("frontier", "sample_success_rate", success, False)):  # fmt: skip
            if not diffs:
                continue
            result = dataclasses.asdict(paired_test([d for _, _, d in diffs]))
            if not tested:
                result["p_value"] = None
            units = [{"dataset": d, "seed": s, "difference": x} for d, s, x in diffs]
            comparisons.append({"agent": agent, "reference": reference, "metric": metric, **result, "units": units})
    return comparisons


def _base_reward(cells: dict, frontier: dict, dataset: str, seed: int, temperature: float) -> float | None:
    base = cells.get(("base", dataset, seed))
    if base is not None and _finite(base["sample_reward_mean"]):
        return base["sample_reward_mean"]
    point = next((p for p in frontier.get(dataset, []) if p["temperature"] == temperature), None)
    return point["reward"] if point is not None else None


def _paired(comparison: dict) -> PairedResult:
    return PairedResult(**{f.name: comparison[f.name] for f in dataclasses.fields(PairedResult)})


def ranking_verdict(table: dict, per_seed: dict, preset: Preset) -> dict[str, Any]:
    """The ranking by :data:`RANKING_METRICS` (overall means) and a paired t-test of the best against the
    runner-up over seeds (their dataset-averaged scores), on the first ranking metric both agents have."""
    ranking = sorted(
        preset.agents, key=lambda a: tuple(-_nan_low(table[a]["overall"][m]["mean"]) for m in RANKING_METRICS)
    )
    verdict: dict[str, Any] = {"metric": METRICS[0], "ranking": ranking, "best": ranking[0]}
    if len(ranking) < 2:
        return verdict
    best, second = ranking[:2]
    metric = next((m for m in RANKING_METRICS if per_seed[best].get(m) and per_seed[second].get(m)), RANKING_METRICS[0])
    seeds = sorted(set(per_seed[best].get(metric, {})) & set(per_seed[second].get(metric, {})))
    result = paired_test([per_seed[best][metric][s] - per_seed[second][metric][s] for s in seeds])
    verdict.update(runner_up=second, test_metric=metric, p_value=result.p_value, significant=None,
                   mean_difference=result.mean, ci95=[result.ci_low, result.ci_high], mde=result.mde)  # fmt: skip
    if result.n < 2:
        verdict["note"] = "too few seeds for a significance test (needs >= 2 paired seeds)"
    elif result.p_value is None:
        verdict["note"] = result.note
    return verdict


def wall_time_split(records: list[dict]) -> dict[str, float]:
    """Seconds spent ``training`` (cells minus their evaluation), on the cells' ``evaluation`` and on the
    ``frontier``, summed over the records given (resumed ones included)."""
    split = {"training": 0.0, "evaluation": 0.0, "frontier": 0.0}
    for r in records:
        seconds = r.get("cell_wall_time_s", 0.0)
        if r.get("kind") == "frontier":
            split["frontier"] += seconds
            continue
        evaluation = (r.get("metrics") or {}).get("eval_wall_time_s") or 0.0
        split["evaluation"] += evaluation
        split["training"] += seconds - evaluation
    return split


def _nan_low(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def _fmt(cell: dict[str, Any], digits: int = 3) -> str:
    if not math.isfinite(cell["mean"]):
        return "n/a"
    if not math.isfinite(cell["ci95"]):
        return f"{cell['mean']:.{digits}f}"
    return f"{cell['mean']:.{digits}f} ± {cell['ci95']:.{digits}f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


TABLE_COLUMNS = (
    ("sample_reward_mean", "sampled reward"),
    ("sample_success_rate", "sampled success"),
    ("sample_test_auc_mean", "held-out AUC (successes)"),
    ("best_of_k_test_auc", "best-of-K held-out AUC"),
    ("episode_success_rate", "episode success"),
    ("kl_per_action", "KL/action (nats)"),
    ("greedy_test_auc", "held-out AUC (greedy)"),
    ("greedy_success_rate", "greedy success"),
    ("train_reward_mean", "train reward"),
)
"""The Markdown table's columns (all of :data:`METRICS` are in ``summary.csv``)."""


def write_outputs(summary: dict, records: list[dict], preset: Preset, output_dir: str, wall_time_s: float) -> str:
    """``summary.json``, ``summary.csv``, ``summary.md`` and the plots; returns the Markdown text.

    Args:
        wall_time_s: the summed wall time of the grid's cells and frontier points.
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
    lines = ["| agent | dataset | " + " | ".join(label for _, label in TABLE_COLUMNS) + " |",
             "|" + "---|" * (2 + len(TABLE_COLUMNS))]  # fmt: skip
    for agent, rows in table.items():
        for dataset, row in rows.items():
            if dataset == "overall" and len(preset.datasets) == 1:
                continue  # the same cells as the dataset's row
            name = f"**{dataset}**" if dataset == "overall" else dataset
            lines.append(f"| {agent} | {name} | " + " | ".join(_fmt(row[m]) for m, _ in TABLE_COLUMNS) + " |")
    rule = (
        f"Mean ± 95% CI over seeds. Sampled columns: {preset.evaluation.num_samples} first-turn samples and "
        f"{preset.evaluation.episode_samples} episodes per cell at the training temperature, the same evaluation "
        "seeds for every agent (a failed action scores -1). The greedy columns count a failed greedy action (its "
        f"code returned no working model) as AUC {FAILED_GREEDY_AUC} (chance level); greedy success is the share of "
        "greedy actions whose code worked."
    )
    split = summary["wall_time_split"]
    text = "\n".join(
        [*lines, "", rule, "", frontier_text(summary, preset), "", verdict_text(summary["verdict"], preset)]
    )
    with open(os.path.join(output_dir, "summary.md"), "w") as f:
        f.write(
            f"Preset: {len(preset.agents)} agents x {len(preset.datasets)} datasets x {len(preset.seeds)} seeds, "
            f"{preset.total_actions} env actions per cell; wall time {wall_time_s / 60:.1f} min (summed over this "
            f"grid's cells and frontier points: training {split['training'] / 60:.1f}, evaluation "
            f"{split['evaluation'] / 60:.1f}, frontier {split['frontier'] / 60:.1f} min).\n\n{text}\n"
        )
    plot_curves(records, preset, os.path.join(output_dir, "curves.png"))
    for column in CURVE_COLUMNS[1:]:  # diagnostics: how far each agent moved from π_ref, and how it explores
        plot_curves(records, preset, os.path.join(output_dir, f"curves_{column}.png"), column)
    if summary["frontier"]:
        plot_frontier(summary, records, preset, os.path.join(output_dir, "frontier.png"))
    return text


def frontier_text(summary: dict, preset: Preset) -> str:
    """The frontier's points, the paired comparisons and one verdict line per agent, in Markdown."""
    parts = []
    if summary["frontier"]:
        parts += ["Base model's temperature frontier (sharpening only):", "",
                  "| dataset | temperature | KL/action (nats) | sampled reward (± SE over K) | success | "
                  "held-out AUC (successes) |", "|---|---|---|---|---|---|"]  # fmt: skip
        for dataset, points in summary["frontier"].items():
            parts += [f"| {dataset} | {p['temperature']:g} | {_num(p['kl'])} | {_num(p['reward'])} ± "
                      f"{_num(p['reward_se'])} | {_num(p['success'])} | {_num(p['test_auc'])} |"
                      for p in points]  # fmt: skip
        parts += [
            "",
            "The frontier is evaluated once per dataset with the shared evaluation seeds: its own sampling "
            "error (± SE) is common to every paired unit of the dataset and not in the t-tests' variance.",
            "",
        ]
    if summary["comparisons"]:
        parts += ["Paired comparisons per (dataset, seed) unit: agent − reference; Holm–Bonferroni over the "
                  f"{summary['num_comparisons']} tests made; MDE = the difference a paired t-test with this n and "
                  "spread detects with 80% power at α = 0.05.", "",
                  "| agent | vs | metric | n | mean difference [95% CI] | MDE | p | p (Holm) | verdict |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for c in summary["comparisons"]:
            parts.append(
                f"| {c['agent']} | {c['reference']} | {c['metric']} | {c['n']} | {_num(c['mean'])} "
                f"[{_num(c['ci_low'])}, {_num(c['ci_high'])}] | {_num(c['mde'])} | {_num(c['p_value'], 4)} | "
                f"{_num(c.get('p_holm'), 4)} | {c['verdict'] if c['p_value'] is not None else '(effect only)'} |"
            )
        parts += ["", *frontier_verdicts(summary)]
    elif preset.frontier_temperatures:
        parts.append("No frontier verdict: no agent reported the sampled evaluation, or no frontier point finished.")
    return "\n".join(parts)


def frontier_verdicts(summary: dict) -> list[str]:
    """``- **agent**: above / on / below the base's frontier (...)`` per agent compared with the frontier."""
    lines = []
    for c in summary["comparisons"]:
        if c["reference"] != "frontier" or c["metric"] != "sample_reward_mean":
            continue
        if c["p_value"] is None:
            lines.append(f"- **{c['agent']}**: undetermined against the base's frontier ({c['note']}; "
                         f"n = {c['n']} paired units).")  # fmt: skip
            continue
        word = {"above": "above", "below": "below", "on": "on (not distinguishable from)"}[c["verdict"]]
        lines.append(
            f"- **{c['agent']}**: {word} the base's frontier: sampled reward {c['mean']:+.3f} "
            f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] vs the frontier at its KL, Holm-corrected p = "
            f"{c['p_holm']:.3g} (n = {c['n']} (dataset, seed) units; minimal detectable effect {c['mde']:.3f})."
        )
    return lines


def verdict_text(verdict: dict[str, Any], preset: Preset) -> str:
    """The ranking line and its best-vs-runner-up test."""
    text = f"Ranking by overall {verdict['metric']} (mean over datasets, then over seeds): " + " > ".join(
        verdict["ranking"]
    )
    if verdict.get("p_value") is not None:
        word = "significant" if verdict["significant"] else "not significant"
        text += (
            f". {verdict['best']} vs {verdict['runner_up']} on {verdict['test_metric']}: paired t-test over seeds "
            f"p = {verdict['p_value']:.3g}, Holm-corrected {verdict['p_holm']:.3g} ({word} at 0.05, "
            f"n = {len(preset.seeds)} seeds)."
        )
    elif verdict.get("note"):
        text += f". {verdict['best']} vs {verdict['runner_up']}: {verdict['note']}."
    else:
        text += "."
    return text


LINE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)))
"""Per-agent markers and dash styles of the curve plots (by the agent's position in the preset)."""


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
        for index, agent in enumerate(preset.agents):
            curves = [r["curve"] for r in records if r["status"] == "ok" and r["agent"] == agent
                      and r["dataset"] == dataset and r.get("curve", {}).get(column)]  # fmt: skip
            if not curves:
                continue
            plotted = True
            grid = np.unique(np.concatenate([c["env_actions"] for c in curves]))
            values = np.array([np.interp(grid, c["env_actions"], c[column]) for c in curves])
            mean = values.mean(axis=0)
            # Marker and dash style per agent (same in every panel): a line exactly under another stays visible.
            marker, dashes = LINE_MARKERS[index % len(LINE_MARKERS)], LINE_STYLES[index % len(LINE_STYLES)]
            (line,) = ax.plot(grid, mean, marker=marker, markersize=4, linestyle=dashes, markerfacecolor="none",
                              label=agent)  # fmt: skip
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


def plot_frontier(summary: dict, records: list[dict], preset: Preset, path: str) -> None:
    """Sampled reward (top) and success (bottom) vs KL per action, one column per dataset: the base's temperature
    frontier as a line (points labelled by temperature) and each agent as its mean over seeds with 95% CIs on
    both axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in preset.datasets if d in summary["frontier"]]
    fig, axes = plt.subplots(2, len(datasets), figsize=(4.8 * len(datasets), 6.4), squeeze=False)
    for column, dataset in enumerate(datasets):
        points = sorted(summary["frontier"][dataset], key=lambda point: point["kl"])
        panels = (("sample_reward_mean", "reward", "mean sampled reward"),
                  ("sample_success_rate", "success", "sampled success rate"))  # fmt: skip
        for row, (metric, key, label) in enumerate(panels):
            ax = axes[row][column]
            ax.plot([p["kl"] for p in points], [p[key] for p in points], color="black", marker="o", label="base, T")
            for p in points:
                ax.annotate(f"T={p['temperature']:g}", (p["kl"], p[key]), fontsize=7, xytext=(3, -9),
                            textcoords="offset points")  # fmt: skip
            for index, agent in enumerate(a for a in preset.agents if a != "base"):
                cells = [r["metrics"] for r in records if r.get("kind", "cell") == "cell" and r["status"] == "ok"
                         and r["agent"] == agent and r["dataset"] == dataset and _finite(r["metrics"].get(metric))
                         and _finite(r["metrics"].get("kl_per_action"))]  # fmt: skip
                if not cells:
                    continue
                (x, x_half, _), (y, y_half, _) = (mean_ci([c["kl_per_action"] for c in cells]),
                                                  mean_ci([c[metric] for c in cells]))  # fmt: skip
                x_err = [[min(_zero_nan(x_half), x)], [_zero_nan(x_half)]]  # KL >= 0: the CI is cut at 0
                ax.errorbar(x, y, xerr=x_err, yerr=_zero_nan(y_half), capsize=3, linestyle="none",
                            marker=LINE_MARKERS[index % len(LINE_MARKERS)], label=agent)  # fmt: skip
            ax.set_xscale("symlog", linthresh=0.1)
            ax.set_xlabel("KL(π_sample ‖ π_ref) per action (nats)")
            ax.set_ylabel(label)
            ax.set_title(dataset)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _zero_nan(value: float) -> float:
    return value if math.isfinite(value) else 0.0


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


def _preset_default(field: str) -> str:
    """``(default: <the default preset's field>; with --quick: <the quick preset's>)`` for a help text."""
    text = {name: getattr(preset, field) for name, preset in PRESETS.items()}
    text = {name: ",".join(map(str, v)) if isinstance(v, tuple) else str(v) for name, v in text.items()}
    return f"(default: {text['default']}; with --quick: {text['quick']})"


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (every option has help; defaults are shown)."""
    from etpo_agents import cli
    from etpo_agents.registry import list_agents

    parser = argparse.ArgumentParser(prog="python benchmarks/compare.py", description=__doc__,
                                     formatter_class=cli.HelpFormatter)  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true", help="the smoke preset (a development dataset, 2 seeds, 8 actions, K = 8)"
    )
    parser.add_argument("--output-dir", default=None, help="where results go (default: runs/compare-<preset>)")
    parser.add_argument(
        "--agents",
        type=_names,
        default=None,
        help=f"comma-separated agent names: {', '.join(list_agents())}, names registered by --import, "
        f"or module:function {_preset_default('agents')}",
    )
    parser.add_argument(
        "--datasets",
        type=_names,
        default=None,
        help="comma-separated dataset names (any case, e.g. kidney_stone or KidneyStone) or CSV files "
        f"as PATH:TARGET (or PATH with --target) {_preset_default('datasets')}",
    )
    cli.add_dataset_arguments(parser)
    parser.add_argument("--seeds", type=_seeds, default=None, help=f"comma-separated seeds {_preset_default('seeds')}")
    parser.add_argument(
        "--total-actions",
        type=int,
        default=None,
        help=f"env actions (code executions) per cell, the same for every agent {_preset_default('total_actions')}",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="policy for every agent: 'etpo-tiny-coder', a local folder or a cached hub id (default: etpo-tiny-coder)",
    )
    cli.add_import_argument(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[Preset, str]:
    """The command line as a preset and an output folder; bad input is a one-line usage error (exit status 2),
    raised before any output folder exists."""
    from etpo_agents import cli
    from etpo_agents.registry import get_agent, import_modules, list_agents

    parser = build_parser()
    args = parser.parse_args(argv)
    name = "quick" if args.quick else "default"
    preset = PRESETS[name]
    changes: dict[str, Any] = {}
    if args.agents:
        changes["agents"] = args.agents
    if args.datasets:
        changes["datasets"], changes["user_datasets"] = _datasets(parser, args)
    elif any(v is not None for v in cli.dataset_options(args).values()):
        parser.error("--target, --description, --dataset-name and --keep-index-columns need --datasets with a CSV")
    if args.seeds:
        changes["seeds"] = args.seeds
    if args.total_actions is not None:
        if args.total_actions < 1:
            parser.error(f"--total-actions must be >= 1 (env actions), got {args.total_actions}")
        changes["total_actions"] = args.total_actions
    if args.model:
        cli.check_model(parser, args.model, allow_download=False)
        changes["agent_kwargs"] = {**preset.agent_kwargs, "model": args.model}
    preset = dataclasses.replace(preset, **changes)
    import_modules(parser, args.imports)
    known_agents = list_agents()
    unknown = [a for a in preset.agents if a not in known_agents and ":" not in a]
    if unknown:
        parser.error(
            f"unknown agents {unknown}.{cli.did_you_mean(unknown[0], known_agents)} Known: {', '.join(known_agents)} "
            "(--import the module that registers yours, or name it as module:function)"
        )
    for agent in preset.agents:
        if ":" in agent:
            try:
                get_agent(agent)
            except (ImportError, AttributeError) as error:
                parser.error(f"agent {agent!r} not found: {error}")
    return preset, args.output_dir or os.path.join("runs", f"compare-{name}")


def _datasets(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[tuple[str, ...], dict]:
    """``--datasets`` as display names (named sets by their canonical name) and the CSV files' load settings.

    Every item is loaded once with the env's validation, so a bad file or name is a usage error here.
    """
    from etpo_agents import cli
    from etpo_gym.datasets import canonical_name

    options = cli.dataset_options(args)
    names: list[str] = []
    user: dict[str, dict[str, Any]] = {}
    for item in args.datasets:
        path, target = item, options.get("target")
        if not os.path.exists(item) and ":" in item and canonical_name(item) is None:
            path, target = item.rsplit(":", 1)  # PATH:TARGET
        if canonical_name(path) is not None:  # a named dataset (NAME:TARGET only with its own target)
            names.append(cli.check_dataset(parser, path, {"target": target} if ":" in item else {}).name)
            continue
        data = cli.check_dataset(parser, path, {**options, "target": target})
        settings = {"dataset": os.path.abspath(path), "target": target, "dataset_name": data.name,
                    **{k: options[k] for k in ("description", "keep_index_columns") if k in options},
                    "fingerprint": data.fingerprint}  # fmt: skip
        if data.name in user or data.name in names:
            parser.error(f"two datasets are named {data.name!r}; rename a file (--dataset-name names one CSV)")
        user[data.name] = settings
        names.append(data.name)
    if "dataset_name" in options and len(user) != 1:
        parser.error(f"--dataset-name names one CSV dataset; --datasets has {len(user)}")
    if len(set(names)) != len(names):
        parser.error(f"--datasets names a dataset twice: {names}")
    return tuple(names), user


def run_benchmark(preset: Preset, output_dir: str) -> tuple[dict[str, Any], int]:
    """Run (or resume) every cell of ``preset``, then the frontier points (when some agent ran the sampled
    evaluation), into ``output_dir``; returns the summary and the number of failed cells and frontier points."""
    from tqdm.auto import tqdm

    from etpo_gym.executor import CodeExecutor

    os.makedirs(output_dir, exist_ok=True)
    results_path = os.path.join(output_dir, "results.jsonl")
    finished = load_finished(results_path)
    cells = [(a, d, s) for d in preset.datasets for s in preset.seeds for a in preset.agents]
    points = [(d, t) for d in preset.datasets for t in preset.frontier_temperatures]

    def done(agent: str, dataset: str, seed: int) -> bool:
        record = finished.get(cell_key(agent, dataset, seed, preset))
        return record is not None and is_current(record, agent)

    num_done = sum(done(*cell) for cell in cells)
    num_stale = sum(cell_key(*cell, preset) in finished and not done(*cell) for cell in cells)
    num_points_done = sum(frontier_key(*point, preset) in finished for point in points)
    print(
        f"{len(preset.agents)} agents x {len(preset.datasets)} datasets x {len(preset.seeds)} seeds = "
        f"{len(cells)} cells, {preset.total_actions} env actions each, plus {len(points)} frontier points; "
        f"{num_done} cells and {num_points_done} points already in {results_path}"
        + (f"; {num_stale} cells trained under other agent defaults are re-run" if num_stale else "")
    )
    records, failed = [], 0

    def save(record: dict) -> None:
        nonlocal failed
        with open(results_path, "a") as f:
            f.write(json.dumps(_jsonable(record)) + "\n")
        if record["status"] != "ok":
            failed += 1
            tqdm.write(f"{record['key']} failed: {record['error']}")

    executor = CodeExecutor()  # one cache for every env of the run: repeated bodies are not executed again
    try:
        with tqdm(cells, unit="cell", desc="compare") as bar:
            for agent, dataset, seed in bar:
                bar.set_postfix(agent=agent, dataset=dataset, seed=seed)
                key = cell_key(agent, dataset, seed, preset)
                if not done(agent, dataset, seed):  # else not recomputed: its record has the metrics and the curves
                    finished[key] = run_cell(agent, dataset, seed, preset, output_dir, executor)
                    save(finished[key])
                records.append(finished[key])
        # The frontier is what sampled evaluations are compared with: skipped when no agent ran one.
        if not any("sampled" in (r.get("metrics") or {}) for r in records):
            points = []
        base_policy = None
        for dataset, temperature in tqdm(points, unit="point", desc="frontier"):
            key = frontier_key(dataset, temperature, preset)
            if key not in finished:
                if base_policy is None:
                    from etpo_agents.train import build_policy

                    base_policy = build_policy(base_run_config(preset), "base")
                finished[key] = run_frontier_point(dataset, temperature, preset, base_policy, executor)
                save(finished[key])
            records.append(finished[key])
    finally:
        executor.close()
    wall = sum(r["cell_wall_time_s"] for r in records)  # this grid's cells and points only, resumed ones included
    summary = summarize(records, preset)
    outputs_start = time.time()
    print(write_outputs(summary, records, preset, output_dir, wall))
    print(f"results in {output_dir}:")
    for name in written_files(output_dir, outputs_start):
        print(f"  {os.path.join(output_dir, name)}")
    return summary, failed


def written_files(output_dir: str, since: float) -> list[str]:
    """``results.jsonl`` and the files of ``output_dir`` (not its sub-folders) written at or after ``since`` (a
    ``time.time()``): what a run wrote, without the plots an earlier run left there."""
    names = []
    for name in sorted(os.listdir(output_dir)):
        path = os.path.join(output_dir, name)
        if os.path.isfile(path) and (name == "results.jsonl" or os.path.getmtime(path) >= since - 1e-3):
            names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    # "module:function" agents and --import modules are imported relative to the working directory, as with -m
    sys.path.insert(0, os.getcwd())
    preset, output_dir = parse_args(argv)
    import torch

    # One intra-op thread, as the tests do (tests/conftest.py): with sandboxed code on the other core, OpenMP threads
    # oversubscribe a 2-core machine (sampled evaluation under load: 66 s with 2 threads, 11.5 s with 1).
    torch.set_num_threads(1)
    _, failed = run_benchmark(preset, output_dir)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
