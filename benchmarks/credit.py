"""Token-level credit assignment benchmark on ``ETPO-TokenCredit-v0`` (issue 13).

How many episodes each agent needs before its mean reward reaches a threshold, as the action length L grows
(the key token at the action's end) and as the key token moves away from the action's end (L fixed). Every agent
runs the project's real code: the :class:`~etpo_agents.rollout.RolloutCollector` on the env and the registered
``update`` of :data:`etpo_agents.train.ALGORITHMS`, on a tiny random Llama (:func:`make_model_and_tokenizer`).

Matched compute: every agent gets the same model, the same episodes per rollout and per run, the same optimiser
and learning rates, and the same gradient steps per rollout (``num_epochs`` × ``num_minibatches`` = 2 × 2).

    python -m benchmarks.credit --seeds 0 1 2 --output-dir benchmarks/results/credit

Resumable: a run already in ``results.jsonl`` with the same cell and the same resolved agent config is not run
again (runs of an agent whose defaults changed since are dropped and re-run). Writes ``results.jsonl`` (one line
per run: cell, agent config, git commit, device, wall time, metrics),
``summary.json`` (mean and per-seed episodes-to-threshold per cell) and ``credit.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import etpo_gym  # noqa: F401  (registers the envs)
from benchmarks.compare import agent_defaults, git_commit
from etpo_agents.policy import Policy
from etpo_agents.rollout import RolloutCollector
from etpo_agents.train import ALGORITHMS, default_algo_config
from etpo_gym.token_credit import make_model_and_tokenizer

DEFAULT_ALGOS = ("etpo-one-step", "etpo", "ppo", "reinforce", "grpo")
LENGTHS = (4, 8, 16, 32)
"""L for the length sweep (key at distance 1, the last token)."""
DISTANCE_LENGTH = 8
"""L of the distance sweep."""
DISTANCES = (1, 4, 8)
"""Key distances of the distance sweep."""


@dataclasses.dataclass
class CellConfig:
    """One run: an agent on one env setting."""

    algo: str
    action_length: int
    key_distance: int
    seed: int
    vocab_size: int = 8
    reward_noise: float = 0.1
    max_episodes: int = 512
    episodes_per_rollout: int = 8
    threshold: float = 0.8
    """Mean noiseless reward of the last ``window`` episodes that counts as solved (π_ref scores 1/6)."""
    window: int = 16
    learning_rate: float = 3e-3
    head_learning_rate: float = 1e-2
    num_epochs: int = 2
    num_minibatches: int = 2
    """Passes × minibatches per rollout, the same for every agent (their registered defaults differ: matched
    compute means the same gradient steps)."""


def _matched_steps(cell: CellConfig | type[CellConfig] = CellConfig) -> dict[str, int]:
    """The gradient steps per rollout every agent gets (the cell's, or ``CellConfig``'s defaults)."""
    return {"num_epochs": cell.num_epochs, "num_minibatches": cell.num_minibatches}


def _optimizer(policy: Policy, cell: CellConfig | type[CellConfig] = CellConfig) -> torch.optim.Optimizer:
    """Adam with the cell's learning rates: one for π, one for the critic heads (when the agent has any)."""
    heads = policy.head_parameters()
    return torch.optim.Adam([{"params": policy.policy_parameters(), "lr": cell.learning_rate}]
                            + ([{"params": heads, "lr": cell.head_learning_rate}] if heads else []))  # fmt: skip


def run_cell(cell: CellConfig, algo_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``cell.algo`` on the env of ``cell``; returns the reward curve and the episodes to threshold.

    Returns:
        ``episodes_to_threshold`` (the episode count at the end of the first rollout after which the mean score
        of the last ``window`` episodes reached ``threshold``; ``None`` if never), ``final_score`` (mean of the
        last ``window``), ``scores`` (noiseless score per episode), ``num_tokens``, ``wall_time_s``.
    """
    start = time.perf_counter()
    spec = ALGORITHMS[cell.algo]
    config = dataclasses.replace(default_algo_config(cell.algo), **_matched_steps(cell), **(algo_overrides or {}))
    torch.manual_seed(cell.seed)
    model, tokenizer = make_model_and_tokenizer(cell.vocab_size, max_positions=cell.action_length + 8,
                                                seed=cell.seed)  # fmt: skip
    policy = Policy(model, tokenizer, q_head=spec.q_head, value_head=spec.value_head, device="cpu")
    optimizer = _optimizer(policy, cell)
    envs = gym.make_vec("ETPO-TokenCredit-v0", num_envs=1, vocab_size=cell.vocab_size,
                        action_length=cell.action_length, key_distance=cell.key_distance,
                        reward_noise=cell.reward_noise)  # fmt: skip
    collector = RolloutCollector(envs, policy, temperature=1.0, seed=cell.seed)
    scores: list[float] = []
    reached = None
    state: dict[str, Any] = {}
    try:
        while len(scores) < cell.max_episodes:
            batch = collector.collect(cell.episodes_per_rollout)
            n = batch.num_actions
            scores += batch.aucs[:n].tolist()
            spec.update(policy, batch, optimizer, config, max_grad_norm=1.0, generator=collector.generator,
                        temperature=1.0, state=state)  # fmt: skip
            collector.refresh()
            if reached is None and len(scores) >= cell.window and np.mean(scores[-cell.window :]) >= cell.threshold:
                reached = len(scores)
                break
    finally:
        envs.close()
    return {
        "episodes_to_threshold": reached,
        "final_score": float(np.mean(scores[-cell.window :])),
        "scores": scores,
        "num_episodes": len(scores),
        "num_tokens": collector.total_tokens,
        "wall_time_s": time.perf_counter() - start,
    }


def soft_optimum_distance(seed: int, conservative_coef: float | None = None, updates: int = 60,
                          average_last: int = 20) -> dict[str, Any]:  # fmt: skip
    """Train the default ETPO agent on a small ``ETPO-TokenCredit-v0`` (V = 5, L = 3, key 2 tokens from the end,
    β = 0.5, 8 episodes a rollout, the benchmark's 2 × 2 steps per rollout: :class:`CellConfig`) and measure how
    far π at the key position is from the closed-form π* = π_ref·exp(r/β)/Z, for every prefix.

    Args:
        conservative_coef: replaces ``ETPOConfig.conservative_coef`` (None: the default).
        average_last: π is averaged over the last ``average_last`` updates (constant step sizes keep single
            iterates scattered around the optimum).

    Returns:
        ``max_tv`` (largest total variation over prefixes, of the averaged π), ``last_tv`` (the same for the final
        iterate), ``ref_tv`` (π_ref's), ``rewarded_prob_min`` (π*'s smallest probability of the rewarded token),
        ``ref_rewarded_prob_max`` (π_ref's largest).
    """
    from etpo_agents import etpo
    from etpo_agents.config import ETPOConfig
    from etpo_gym.token_credit import TokenCreditEnv, soft_optimal_probs

    vocab, length, distance, beta = 5, 3, 2, 0.5
    torch.manual_seed(seed)
    model, tokenizer = make_model_and_tokenizer(vocab, hidden_size=16, max_positions=8)
    policy = Policy(model, tokenizer, q_head=True, device="cpu")
    envs = gym.make_vec("ETPO-TokenCredit-v0", num_envs=1, vocab_size=vocab, action_length=length,
                        key_distance=distance)  # fmt: skip
    collector = RolloutCollector(envs, policy, seed=seed)
    optimizer = _optimizer(policy)
    overrides = {} if conservative_coef is None else {"conservative_coef": conservative_coef}
    config = ETPOConfig(beta=beta, **_matched_steps(), **overrides)
    env = TokenCreditEnv(vocab_size=vocab, action_length=length, key_distance=distance)
    key = env.key_positions[0]
    prefixes = torch.tensor([[0, *p] for p in itertools.product(range(2, vocab), repeat=key)])  # every prefix
    ones = torch.ones_like(prefixes)
    with torch.no_grad():
        where = (torch.arange(len(prefixes)), torch.full((len(prefixes),), key))
        ref_probs = torch.softmax(policy.ref_logits(prefixes, ones, where), -1).numpy()
    iterates = []
    try:
        for step in range(updates):
            batch = collector.collect(8)
            etpo.update(policy, batch, optimizer, config, generator=collector.generator)
            collector.refresh()
            if step >= updates - average_last:
                with torch.no_grad():
                    hidden = policy.hidden_states(prefixes, ones)[:, -1]
                    iterates.append(torch.softmax(policy.logits(hidden), -1).numpy())
    finally:
        envs.close()
    optimal = np.stack([soft_optimal_probs(r, env.key_rewards(0), beta) for r in ref_probs])
    total_variation = lambda probs: float((0.5 * np.abs(probs - optimal).sum(-1)).max())  # noqa: E731
    return {"seed": seed, "conservative_coef": config.conservative_coef, "updates": updates,
            "average_last": average_last, "max_tv": total_variation(np.mean(iterates, 0)),
            "last_tv": total_variation(iterates[-1]), "ref_tv": total_variation(ref_probs),
            "rewarded_prob_min": float(optimal[:, 2].min()),
            "ref_rewarded_prob_max": float(ref_probs[:, 2].max())}  # fmt: skip


def _cells(algos: list[str], seeds: list[int], lengths, distances, **settings) -> list[CellConfig]:
    grid = {(length, 1) for length in lengths} | {(DISTANCE_LENGTH, d) for d in distances}
    return [CellConfig(algo, length, distance, seed, **settings)
            for length, distance in sorted(grid) for algo in algos for seed in seeds]  # fmt: skip


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (algo, L, distance): episodes to threshold per seed (a run that never reached it counts as its
    budget, flagged ``censored``), their mean, and the mean final score."""
    cells: dict[tuple, list[dict]] = {}
    for r in records:
        cells.setdefault((r["config"]["algo"], r["config"]["action_length"], r["config"]["key_distance"]), []).append(r)
    summary = []
    for (algo, length, distance), runs in sorted(cells.items()):
        episodes = [r["episodes_to_threshold"] or r["config"]["max_episodes"] for r in runs]
        summary.append({"algo": algo, "action_length": length, "key_distance": distance,
                        "episodes_to_threshold": episodes, "censored": sum(r["episodes_to_threshold"] is None
                                                                          for r in runs),
                        "mean_episodes": float(np.mean(episodes)), "budget": runs[0]["config"]["max_episodes"],
                        "mean_final_score": float(np.mean([r["final_score"] for r in runs]))})  # fmt: skip
    return {"cells": summary}


def plot(summary: dict[str, Any], path: str) -> None:
    """Two panels: mean episodes to threshold vs L (distance 1) and vs key distance (L = ``DISTANCE_LENGTH``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    algos = sorted({c["algo"] for c in summary["cells"]})
    for algo in algos:
        rows = [c for c in summary["cells"] if c["algo"] == algo]
        by_length = sorted((c["action_length"], c["mean_episodes"]) for c in rows if c["key_distance"] == 1)
        by_distance = sorted((c["key_distance"], c["mean_episodes"]) for c in rows
                             if c["action_length"] == DISTANCE_LENGTH)  # fmt: skip
        axes[0].plot(*zip(*by_length, strict=True), marker="o", label=algo)
        axes[1].plot(*zip(*by_distance, strict=True), marker="o", label=algo)
    for ax in axes:
        ax.axhline(max(c["budget"] for c in summary["cells"]), color="gray", linestyle=":", label="budget (never)")
    axes[0].set(xscale="log", xlabel="action length L (key at the end)", ylabel="episodes to threshold")
    axes[1].set(xlabel=f"key distance from the action's end (L = {DISTANCE_LENGTH})", ylabel="episodes to threshold")
    lengths = sorted({c["action_length"] for c in summary["cells"] if c["key_distance"] == 1})
    axes[0].set_xticks(lengths, [str(x) for x in lengths])
    axes[0].minorticks_off()
    axes[0].legend()
    fig.suptitle(f"ETPO-TokenCredit-v0: episodes until the mean score of {CellConfig.window} episodes reaches "
                 f"{CellConfig.threshold}\n(mean of seeds; a run that never does counts as the budget)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _cell_key(cell: CellConfig) -> str:
    """A run's identity: its cell and its agent's resolved config, so a changed agent default is re-run."""
    return json.dumps({"cell": dataclasses.asdict(cell), "agent_config": agent_defaults(cell.algo)}, sort_keys=True)


def load_records(path: str) -> dict[str, dict[str, Any]]:
    """Earlier runs in ``path`` by :func:`_cell_key`; runs of another agent config are dropped (with a note)."""
    if not os.path.exists(path):
        return {}
    records, stale = {}, 0
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            cell = CellConfig(**record["config"])
            if record.get("agent_config") != agent_defaults(cell.algo):  # stricter than compare: no legacy reuse
                stale += 1
                continue
            records[_cell_key(cell)] = record
    if stale:
        print(f"dropping {stale} earlier runs whose agent config differs from today's defaults", flush=True)
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", nargs="+", default=[a for a in DEFAULT_ALGOS if a in ALGORITHMS])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--lengths", nargs="+", type=int, default=list(LENGTHS))
    parser.add_argument("--distances", nargs="+", type=int, default=list(DISTANCES))
    parser.add_argument("--max-episodes", type=int, default=CellConfig.max_episodes)
    parser.add_argument("--output-dir", default="benchmarks/results/credit")
    parser.add_argument("--soft-optimum", type=float, nargs="+", metavar="CONSERVATIVE_COEF",
                        help="instead of the grid: the default ETPO agent's distance to the closed-form soft-optimal "
                        "policy (soft_optimum_distance) for each seed and each of these conservative_coef")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.soft_optimum:
        commit = git_commit()
        for coef in args.soft_optimum:
            for seed in args.seeds:
                print(json.dumps({**soft_optimum_distance(seed, coef), "commit": commit}), flush=True)
        return
    os.makedirs(args.output_dir, exist_ok=True)
    cells = _cells(args.algos, args.seeds, args.lengths, args.distances, max_episodes=args.max_episodes)
    path = os.path.join(args.output_dir, "results.jsonl")
    done = load_records(path)
    keyed = [(cell, _cell_key(cell)) for cell in cells]
    todo = [(cell, key) for cell, key in keyed if key not in done]
    print(f"{len(cells)} runs ({len(cells) - len(todo)} already in {path}): algos {args.algos} x seeds {args.seeds} "
          f"x (L, distance) {sorted({(c.action_length, c.key_distance) for c in cells})}", flush=True)  # fmt: skip
    with open(path, "w") as f:  # rewritten without stale runs, then appended to run by run (resumable)
        f.writelines(json.dumps(record) + "\n" for record in done.values())
    failed = 0
    commit = git_commit()
    for index, (cell, key) in enumerate(todo, 1):
        try:
            result = run_cell(cell)
        except Exception as error:  # noqa: BLE001  (reported, counted, and the exit code says so)
            print(f"FAILED {cell}: {error!r}", flush=True)
            failed += 1
            continue
        record = {"config": dataclasses.asdict(cell), "agent_config": agent_defaults(cell.algo), "commit": commit,
                  "device": "cpu", **result}  # fmt: skip
        done[key] = record
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"[{index}/{len(todo)}] {cell.algo:>14} L={cell.action_length:<4} d={cell.key_distance:<3} "
              f"seed={cell.seed} episodes={result['episodes_to_threshold']} final={result['final_score']:.2f} "
              f"({result['wall_time_s']:.0f}s)", flush=True)  # fmt: skip
    records = [done[key] for _, key in keyed if key in done]
    summary = summarise(records)
    summary.update(command="python -m benchmarks.credit " + " ".join(sys.argv[1:] if argv is None else argv),
                   commits=sorted({r["commit"] for r in records}))  # fmt: skip
    with open(os.path.join(args.output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    plot(summary, os.path.join(args.output_dir, "credit.png"))
    for cell in summary["cells"]:
        print(json.dumps(cell))
    if failed:
        raise SystemExit(f"{failed} runs failed")


if __name__ == "__main__":
    main()
