"""Train an agent on a token-level ETPO env: the CLI and the Python API used by ``benchmarks/compare.py``.

    python -m etpo_agents.train --algo etpo --env ETPO-DataSci-v0 --dataset pharyngitis \\
        --model etpo-tiny-coder --total-steps 64 --seed 0 --output-dir runs/etpo

``--total-steps`` counts env actions (code executions). Each iteration collects ``actions_per_rollout`` completed
actions (:mod:`etpo_agents.rollout`) and runs the algorithm's ``update``. Outputs in ``output_dir``: ``metrics.csv``
(one row per update), TensorBoard events, ``checkpoint.pt`` (``--resume`` continues from it: step count,
weights, optimiser, RNG state, logs) and ``final_metrics.json`` (including the greedy evaluation).
``--import MODULE`` imports a module of yours first, so that ``--algo`` can name the algorithms it registers with
``register_algorithm``.

Python API: ``train(RunConfig(...), algo_config) -> dict`` and ``evaluate(policy, run_config) -> dict``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import etpo_gym  # noqa: F401  (registers the envs)
from etpo_agents import distributed, etpo, ppo, reinforce
from etpo_agents.config import BaseConfig, ETPOConfig, PPOConfig, ReinforceConfig, RunConfig
from etpo_agents.policy import Policy, load_policy
from etpo_agents.registry import greedy_summary, import_modules
from etpo_agents.rollout import Batch, RolloutCollector


@dataclass(frozen=True)
class AgentSpec:
    """How to build and update one agent."""

    config_cls: type
    update: Callable[..., dict[str, float]] | None
    q_head: bool = False
    value_head: bool = False
    defaults: tuple[tuple[str, Any], ...] = ()


ALGORITHMS: dict[str, AgentSpec] = {
    "etpo": AgentSpec(ETPOConfig, etpo.update, q_head=True),
    "etpo-official-loss": AgentSpec(ETPOConfig, etpo.update, q_head=True, defaults=(("policy_loss", "official"),)),
    "etpo-td-lambda": AgentSpec(ETPOConfig, etpo.update, q_head=True, defaults=(("td_lambda", 0.95),)),
    "ppo": AgentSpec(PPOConfig, ppo.update, value_head=True),
    "reinforce": AgentSpec(ReinforceConfig, reinforce.update),
    "base": AgentSpec(BaseConfig, None),
}
"""Algorithms this module trains; ``register_algorithm`` adds more. ``etpo_agents.registry`` (compare.py's agent list)
reaches them through :func:`run_agent` / ``run_etpo`` etc."""


def register_algorithm(name: str, spec: AgentSpec) -> None:
    """Register an extra algorithm under ``name`` (``--algo name``)."""
    ALGORITHMS[name] = spec


def default_algo_config(algo: str) -> Any:
    """The algorithm's config with its registered defaults (e.g. ``etpo-official-loss``)."""
    spec = _spec(algo)
    return spec.config_cls(**dict(spec.defaults))


def _spec(algo: str) -> AgentSpec:
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algo {algo!r}; choose one of {sorted(ALGORITHMS)} or register_algorithm() it")
    return ALGORITHMS[algo]


def make_envs(
    run: RunConfig, tokenizer: Any, num_envs: int | None = None, dataset: Any = "__run__"
) -> gym.vector.VectorEnv:
    """The vector env of ``run`` (the policy's tokenizer, so token ids agree)."""
    num_envs = num_envs or run.num_envs
    return gym.make_vec(
        run.env_id,
        num_envs=num_envs,
        vectorization_mode=run.vectorization_mode if num_envs > 1 else "sync",
        dataset=run.dataset if dataset == "__run__" else dataset,
        tokenizer=tokenizer,
        max_turns=run.max_turns,
        max_action_tokens=run.max_action_tokens,
        max_obs_tokens=run.max_obs_tokens,
        prompt_style=run.prompt_style,
        **run.env_kwargs,
    )


def build_policy(run: RunConfig, algo: str) -> Policy:
    """Load ``run.model`` and wrap it with the heads ``algo`` needs."""
    spec = _spec(algo)
    model, tokenizer = load_policy(run.model, local_files_only=run.local_files_only)
    return Policy(
        model, tokenizer, q_head=spec.q_head, value_head=spec.value_head, use_lora=run.use_lora, lora_r=run.lora_r,
        lora_alpha=run.lora_alpha, lora_target_modules=run.lora_target_modules, q_rank=run.q_rank, device=run.device,
        gradient_checkpointing=run.gradient_checkpointing,
    )  # fmt: skip


def build_optimizer(policy: Policy, run: RunConfig) -> torch.optim.Optimizer | None:
    """Adam over the policy (``learning_rate``) and the heads (``head_learning_rate``)."""
    groups = [{"params": policy.policy_parameters(), "lr": run.learning_rate}]
    if policy.head_parameters():
        groups.append({"params": policy.head_parameters(), "lr": run.head_learning_rate or run.learning_rate})
    return torch.optim.Adam(groups)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batch_metrics(batch: Batch) -> dict[str, float]:
    """Rollout statistics over the batch's completed actions."""
    n = batch.num_actions
    success = batch.success[:n]
    aucs, test_aucs = batch.aucs[:n][success], batch.test_aucs[:n][success]
    return {
        "reward_mean": float(batch.rewards[:n].mean()),
        "success_rate": float(success.float().mean()),
        "auc_mean": float(aucs.mean()) if len(aucs) else float("nan"),
        "test_auc_mean": float(test_aucs.nanmean()) if len(test_aucs) else float("nan"),
        "action_tokens_mean": float(batch.action_lens[:n].float().mean()),
        "episodes_ended": int((batch.terminated[:n] | batch.truncated[:n]).sum()),
    }


class _Logger:
    """CSV + TensorBoard, appending on resume."""

    def __init__(self, output_dir: str, resume_step: int) -> None:
        self.path = os.path.join(output_dir, "metrics.csv")
        self.fields: list[str] | None = None
        if resume_step and os.path.exists(self.path):
            # Rows logged after the checkpoint (a crash between log and save) are redone: drop them.
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self.fields = reader.fieldnames
                kept = [row for row in reader if float(row["env_actions"]) <= resume_step]
            with open(self.path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.fields)
                writer.writeheader()
                writer.writerows(kept)
        elif os.path.exists(self.path):
            os.remove(self.path)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(output_dir, "tb"), purge_step=resume_step or None)
        except ImportError:
            self.writer = None

    def log(self, row: dict[str, float]) -> None:
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.fields])
        if self.writer is not None:
            for key, value in row.items():
                if key != "env_actions" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, int(row["env_actions"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _fields(config: Any) -> dict[str, Any]:
    """Shallow dict of a dataclass (``asdict`` would deep-copy a shared executor in ``env_kwargs``)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def _rng_state(collector: RolloutCollector, ranks: distributed.Ranks) -> dict[str, Any]:
    """Rank 0's python/numpy/torch RNG states and every rank's sampler state (``samplers[rank]``)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "samplers": ranks.gather_object(collector.generator.get_state())}  # fmt: skip


def _checkpoint_path(run: RunConfig) -> str:
    return os.path.join(run.output_dir, "checkpoint.pt")


def save_checkpoint(
    path: str, policy: Policy, optimizer, progress: dict, collector, algo_state: dict, ranks: distributed.Ranks
) -> None:
    """Every rank calls this (gathering a sharded policy is collective); rank 0 writes the checkpoint atomically
    (a crash mid-write leaves the previous one)."""
    weights, optimizer_state = policy.checkpoint_state(optimizer)
    state = {"policy": weights, "optimizer": optimizer_state, "progress": progress,
             "rng": _rng_state(collector, ranks), "algo_state": algo_state}  # fmt: skip
    if ranks.is_main:
        torch.save(state, path + ".tmp")
        os.replace(path + ".tmp", path)


def _load_checkpoint(path: str, policy: Policy, optimizer) -> dict[str, Any]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)  # copied to the device when loaded
    policy.load_checkpoint_state(checkpoint["policy"], optimizer, checkpoint["optimizer"])
    rng = checkpoint["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    return checkpoint


def train(run: RunConfig, algo_config: Any = None) -> dict[str, Any]:
    """Train ``run.algo`` for ``run.total_steps`` env actions; returns the final metrics (also in JSON).

    Under ``accelerate launch`` with several processes, every rank runs this function on its share of the budget
    (:mod:`etpo_agents.distributed`); the returned metrics are the job's, and only rank 0 writes files.

    Raises:
        FloatingPointError: a loss or gradient became NaN/inf (the message names the update and env action).
    """
    spec = _spec(run.algo)
    algo_config = algo_config if algo_config is not None else default_algo_config(run.algo)
    ranks = distributed.setup(run.device)
    if ranks.device is not None:
        run = dataclasses.replace(run, device=ranks.device)
    os.makedirs(run.output_dir, exist_ok=True)
    rank_seed = run.seed + ranks.seed_offset(run.num_envs)
    seed_everything(rank_seed)
    policy = build_policy(run, run.algo)
    if ranks.accelerator is not None:
        policy.distribute(ranks.accelerator, shard=run.fsdp)  # before the optimiser: sharding replaces parameters
    optimizer = build_optimizer(policy, run) if spec.update is not None else None
    checkpoint_path = _checkpoint_path(run)
    progress = {"env_actions": 0, "tokens": 0, "updates": 0, "wall_time_s": 0.0, "reward_sum": 0.0, "successes": 0}
    algo_state: dict[str, Any] = {}
    checkpoint = None
    if run.resume and os.path.exists(checkpoint_path):
        checkpoint = _load_checkpoint(checkpoint_path, policy, optimizer)
        progress, algo_state = checkpoint["progress"], checkpoint["algo_state"]
    # Envs restart their episodes on resume; a new env seed keeps them from replaying the first run's.
    envs = make_envs(run, policy.tokenizer)
    seed = rank_seed + 7919 * progress["updates"]
    collector = RolloutCollector(envs, policy, run.temperature, run.top_k, seed=seed, lookahead=run.lookahead_tokens)
    if checkpoint is not None and len(checkpoint["rng"]["samplers"]) == ranks.world_size:  # else: fresh seeds
        collector.generator.set_state(checkpoint["rng"]["samplers"][ranks.rank])
    logger = _Logger(run.output_dir, progress["env_actions"]) if ranks.is_main else None
    if ranks.is_main:
        with open(os.path.join(run.output_dir, "config.json"), "w") as f:
            json.dump({"run": _fields(run), "algo": _fields(algo_config)}, f, indent=2, default=repr)
    try:
        _loop(run, spec, algo_config, policy, optimizer, collector, logger, progress, algo_state, ranks)
    finally:
        envs.close()
        if logger is not None:
            logger.close()
    return _finish(run, policy, progress, ranks)


def _loop(run, spec, algo_config, policy, optimizer, collector, logger, progress, algo_state, ranks) -> None:
    """Collect → update → log → checkpoint until the env-action budget (summed over ranks) is spent."""
    from tqdm.auto import tqdm

    bar = tqdm(total=run.total_steps, initial=progress["env_actions"], unit="action",
               disable=not (run.progress_bar and ranks.is_main), desc=run.algo)  # fmt: skip
    min_actions = getattr(algo_config, "num_minibatches", 1)
    while progress["env_actions"] < run.total_steps:
        start = time.perf_counter()
        remaining = run.total_steps - progress["env_actions"]
        batch = collector.collect(ranks.actions_per_rank(run.actions_per_rollout, remaining, min_actions))
        batch = batch.to(policy.device_)
        metrics = batch_metrics(batch)
        if spec.update is not None:
            try:
                metrics.update(spec.update(policy, batch, optimizer, algo_config, max_grad_norm=run.max_grad_norm,
                                           generator=collector.generator, temperature=run.temperature,
                                           state=algo_state))  # fmt: skip
            except FloatingPointError as error:
                raise FloatingPointError(
                    f"non-finite value at update {progress['updates'] + 1} (after {progress['env_actions']} env "
                    f"actions) of {run.algo}: {error}"
                ) from error
            collector.refresh()
        actions = _record(progress, batch, metrics, ranks, time.perf_counter() - start)
        if ranks.is_main:
            logger.log({"env_actions": progress["env_actions"], "tokens": progress["tokens"],
                        "wall_time_s": progress["wall_time_s"], **metrics})  # fmt: skip
            bar.update(actions)
            bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}", success=f"{metrics['success_rate']:.2f}")
        done = progress["env_actions"] >= run.total_steps  # the same on every rank: counts are summed
        if done or (run.save_every and progress["updates"] % run.save_every == 0):
            save_checkpoint(_checkpoint_path(run), policy, optimizer, progress, collector, algo_state, ranks)
    bar.close()


def _record(progress: dict[str, Any], batch: Batch, metrics: dict, ranks: distributed.Ranks, seconds: float) -> int:
    """Add one update's counts, summed over ranks, to ``progress``; returns the job's actions of the update.

    Several ranks: ``reward_mean``/``success_rate`` in ``metrics`` become the job's; update metrics stay rank 0's.
    """
    n = batch.num_actions
    actions, tokens, reward_sum, successes = ranks.sum(
        [n, batch.num_tokens, float(batch.rewards[:n].sum()), int(batch.success[:n].sum())]
    )
    if ranks.world_size > 1:
        metrics.update(reward_mean=reward_sum / actions, success_rate=successes / actions)
    progress["env_actions"] += int(actions)
    progress["tokens"] += int(tokens)
    progress["updates"] += 1
    progress["wall_time_s"] += seconds
    progress["reward_sum"] += reward_sum
    progress["successes"] += int(successes)
    return int(actions)


def _finish(run: RunConfig, policy: Policy, progress: dict[str, Any], ranks: distributed.Ranks) -> dict[str, Any]:
    """Final metrics (the keys of ``etpo_agents.registry.REQUIRED_METRICS`` and more), also written as JSON.

    Several ranks: rank 0 evaluates and writes the JSON; the others return the training metrics only.
    """
    final = {
        "algo": run.algo,
        "seed": run.seed,
        "device": str(policy.device_),
        "num_actions": progress["env_actions"],
        "num_tokens": progress["tokens"],
        "updates": progress["updates"],
        "wall_time_s": progress["wall_time_s"],
        "train_reward_mean": progress["reward_sum"] / max(progress["env_actions"], 1),
        "success_rate": progress["successes"] / max(progress["env_actions"], 1),
        "metrics_csv": os.path.join(run.output_dir, "metrics.csv"),
    }
    if ranks.world_size > 1:
        final["world_size"] = ranks.world_size
    with policy.full_parameters(reference=False):  # sharded: every rank gathers, rank 0 evaluates locally
        if ranks.is_main:
            if run.greedy_eval:
                final.update(evaluate(policy, run))
            with open(os.path.join(run.output_dir, "final_metrics.json"), "w") as f:
                json.dump(final, f, indent=2)
    ranks.barrier()  # ranks leave together: the job ends when rank 0 has written its results
    return final


def greedy_action(policy: Policy, run: RunConfig, dataset: str) -> dict[str, Any]:
    """One greedy (argmax-token) first-turn action on ``dataset``: reward, status, AUCs and the code."""
    envs = make_envs(run, policy.tokenizer, num_envs=1, dataset=dataset)
    try:
        collector = RolloutCollector(envs, policy, temperature=0.0, seed=run.seed)
        batch = collector.collect(1)
    finally:
        envs.close()
    return {"dataset": dataset, "reward": float(batch.rewards[0]), "success": bool(batch.success[0]),
            "auc": float(batch.aucs[0]), "test_auc": float(batch.test_aucs[0]),
            "num_tokens": int(batch.action_lens[0])}  # fmt: skip


def evaluate(policy: Policy, run: RunConfig, datasets: list[str] | None = None) -> dict[str, Any]:
    """Greedy evaluation: one deterministic first-turn action per dataset (as ``etpo_agents.sb3.greedy_action``).

    Returns:
        ``greedy_auc``: mean over datasets of the greedy action's reward (the mean AUC of the reward's 5 splits,
        -1 when the code failed); ``greedy_test_auc``: mean held-out ``info["test_auc"]`` over the datasets where
        it succeeded (NaN if none did); ``greedy_success_rate``; ``greedy``: the per-dataset results.
    """
    if datasets is None:
        datasets = [run.dataset] if isinstance(run.dataset, str) else list(run.dataset or etpo_gym.BUNDLED_DATASETS)
    return greedy_summary([greedy_action(policy, run, name) for name in datasets])


_ENV_FIELDS = ("dataset", "max_turns", "max_action_tokens", "max_obs_tokens", "prompt_style")


def run_agent(algo: str, env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """``etpo_agents.registry`` entry point: train ``algo`` on the env of ``env_kwargs`` for ``total_actions`` actions.

    Args:
        algo: a name in :data:`ALGORITHMS`.
        env_kwargs: ``gym.make`` arguments (``dataset``, ``max_turns``, ``executor``, ...). ``tokenizer`` is
            ignored: the env always uses the policy's tokenizer.
        total_actions: budget in env actions.
        seed: run seed.
        **kwargs: :class:`RunConfig` fields (``model``, ``output_dir``, ``temperature``...) and fields of the
            algorithm's config (``beta``, ``kl_coef``...).

    Returns:
        The final metrics of :func:`train`.
    """
    env_kwargs = dict(env_kwargs)
    env_kwargs.pop("tokenizer", None)
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    algo_config = default_algo_config(algo)
    algo_fields = {f.name for f in dataclasses.fields(algo_config)}
    unknown = set(kwargs) - run_fields - algo_fields
    if unknown:
        raise ValueError(
            f"unknown settings {sorted(unknown)} for {algo}; see RunConfig and {type(algo_config).__name__}"
        )
    algo_config = dataclasses.replace(algo_config, **{k: v for k, v in kwargs.items() if k in algo_fields})
    run_kwargs = {k: v for k, v in kwargs.items() if k in run_fields}
    run_kwargs.update({k: env_kwargs.pop(k) for k in _ENV_FIELDS if k in env_kwargs})
    run_kwargs.setdefault("output_dir", os.path.join("runs", f"{algo}-seed{seed}"))
    run_kwargs.setdefault("progress_bar", False)
    run = RunConfig(algo=algo, total_steps=total_actions, seed=seed, env_kwargs={**env_kwargs, **run_kwargs.pop(
        "env_kwargs", {})}, **run_kwargs)  # fmt: skip
    return train(run, algo_config)


def run_etpo(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """ETPO for ``etpo_agents.registry``; see :func:`run_agent`."""
    return run_agent("etpo", env_kwargs, total_actions, seed, **kwargs)


def run_etpo_official_loss(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """ETPO with the official code's policy loss (ablation); see :func:`run_agent`."""
    return run_agent("etpo-official-loss", env_kwargs, total_actions, seed, **kwargs)


def run_etpo_td_lambda(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """ETPO with soft TD(λ = 0.95) critic targets inside an action (extension); see :func:`run_agent`."""
    return run_agent("etpo-td-lambda", env_kwargs, total_actions, seed, **kwargs)


def run_ppo(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """Token-level PPO for ``etpo_agents.registry``; see :func:`run_agent`."""
    return run_agent("ppo", env_kwargs, total_actions, seed, **kwargs)


def run_reinforce(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """REINFORCE for ``etpo_agents.registry``; see :func:`run_agent`."""
    return run_agent("reinforce", env_kwargs, total_actions, seed, **kwargs)


def run_base(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """The sampling-only floor agent for ``etpo_agents.registry``; see :func:`run_agent`."""
    return run_agent("base", env_kwargs, total_actions, seed, **kwargs)


def parse_args(argv: list[str] | None = None) -> tuple[RunConfig, Any]:
    """CLI → (RunConfig, algorithm config). Algorithm fields are set with ``--algo-arg name=value``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", default="etpo", help=f"one of {sorted(ALGORITHMS)}, or registered by --import")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (its register_algorithm calls); repeatable")  # fmt: skip
    parser.add_argument("--env", dest="env_id", default=RunConfig.env_id)
    parser.add_argument("--dataset", nargs="+", default=["pharyngitis"], help="one or more dataset names")
    parser.add_argument("--model", default=RunConfig.model)
    parser.add_argument("--allow-download", action="store_true", help="let hub ids download (default: cache only)")
    parser.add_argument("--total-steps", type=int, default=RunConfig.total_steps, help="budget in env actions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default=None)
    parser.add_argument("--resume", action="store_true")
    simple = {"num_envs": int, "actions_per_rollout": int, "temperature": float, "top_k": int, "max_turns": int,
              "max_action_tokens": int, "learning_rate": float, "device": str, "save_every": int,
              "vectorization_mode": str, "prompt_style": str, "lookahead_tokens": int, "q_rank": int}  # fmt: skip
    for name, kind in simple.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    parser.add_argument("--use-lora", action="store_true")
    parser.add_argument("--fsdp", action="store_true", help="several processes: shard with FSDP2 instead of DDP")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-eval", action="store_true", help="skip the final greedy evaluation")
    parser.add_argument("--algo-arg", action="append", default=[], metavar="NAME=VALUE",
                        help="algorithm config field, e.g. --algo-arg beta=0.1")  # fmt: skip
    args = parser.parse_args(argv)
    import_modules(parser, args.imports)
    if args.algo not in ALGORITHMS:
        parser.error(f"unknown --algo {args.algo!r}; choose one of {sorted(ALGORITHMS)} or --import a module that "
                     "calls register_algorithm()")  # fmt: skip
    overrides = {k: getattr(args, k) for k in simple if getattr(args, k) is not None}
    run = RunConfig(
        algo=args.algo, env_id=args.env_id, dataset=args.dataset[0] if len(args.dataset) == 1 else args.dataset,
        model=args.model, local_files_only=not args.allow_download, total_steps=args.total_steps, seed=args.seed,
        output_dir=args.output_dir or f"runs/{args.algo}-seed{args.seed}", resume=args.resume,
        use_lora=args.use_lora, fsdp=args.fsdp, gradient_checkpointing=args.gradient_checkpointing,
        progress_bar=not args.no_progress, greedy_eval=not args.no_eval, **overrides,
    )  # fmt: skip
    algo_config = default_algo_config(args.algo)
    for item in args.algo_arg:
        name, _, value = item.partition("=")
        if name not in {f.name for f in dataclasses.fields(algo_config)}:
            raise SystemExit(f"--algo-arg {name!r} is not a field of {type(algo_config).__name__}")
        current = getattr(algo_config, name)
        setattr(algo_config, name, type(current)(value) if not isinstance(current, bool) else value == "true")
    algo_config.__post_init__()
    return run, algo_config


def main(argv: list[str] | None = None) -> None:
    run, algo_config = parse_args(argv)
    final = train(run, algo_config)
    if os.environ.get("RANK", "0") == "0":  # several ranks: rank 0 has the evaluated results
        print(json.dumps(final, indent=2))


if __name__ == "__main__":
    main()
