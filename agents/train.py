"""Train an agent on a token-level ETPO env: the CLI and the Python API used by ``benchmarks/compare.py``.

    python -m etpo_agents.train --algo etpo --dataset pharyngitis --total-actions 64 --output-dir runs/etpo
    python -m etpo_agents.train --algo ppo --dataset my_data.csv --target label --total-actions 32

``--total-actions`` counts env actions (code executions); ``--total-steps`` is its deprecated alias. Each
iteration collects ``actions_per_rollout`` completed actions (:mod:`etpo_agents.rollout`) and runs the algorithm's
``update``. Outputs in ``output_dir``: ``metrics.csv`` (one row per update), TensorBoard events, ``checkpoint.pt``
(``--resume`` continues from it; see :func:`save_checkpoint`) and ``final_metrics.json`` (including the greedy
evaluation). A CSV of your own: ``--dataset FILE.csv --target COLUMN`` (``--description``, ``--dataset-name``).
``--import MODULE`` imports a module of yours first, so that ``--algo`` can name the algorithms it registers with
``register_algorithm``. ``--algo sb3-ppo`` / ``sb3-a2c`` train with Stable-Baselines3 (``etpo_agents.sb3``).

Python API: ``train(RunConfig(...), algo_config) -> dict`` and ``evaluate(policy, run_config) -> dict``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import inspect
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import etpo_gym  # noqa: F401  (registers the envs)
from etpo_agents import cli, distributed, etpo, evaluation, grpo, ppo, reinforce, rft
from etpo_agents.config import BaseConfig, ETPOConfig, GRPOConfig, PPOConfig, ReinforceConfig, RFTConfig, RunConfig
from etpo_agents.placebo import placebo_batch
from etpo_agents.policy import Policy, load_policy
from etpo_agents.registry import greedy_summary, import_modules
from etpo_agents.rollout import Batch, RolloutCollector
from etpo_gym.datasets import canonical_name
from etpo_gym.task import PROMPT_STYLES


@dataclass(frozen=True)
class AgentSpec:
    """How to build and update one agent."""

    config_cls: type
    update: Callable[..., dict[str, float]] | None
    q_head: bool = False
    value_head: bool = False
    defaults: tuple[tuple[str, Any], ...] = ()
    placebo: bool = False
    """Update on :func:`etpo_agents.placebo.placebo_batch` (outcomes dealt to actions at random); the true
    rewards are still logged and evaluated."""


ALGORITHMS: dict[str, AgentSpec] = {
    "etpo": AgentSpec(ETPOConfig, etpo.update, q_head=True),
    "etpo-official-loss": AgentSpec(ETPOConfig, etpo.update, q_head=True, defaults=(("policy_loss", "official"),)),
    "etpo-one-step": AgentSpec(
        ETPOConfig, etpo.update, q_head=True, defaults=(("td_lambda", 0.0), ("conservative_coef", 0.0))
    ),
    "etpo-td-lambda": AgentSpec(ETPOConfig, etpo.update, q_head=True, defaults=(("td_lambda", 0.95),)),
    "etpo-conservative": AgentSpec(ETPOConfig, etpo.update, q_head=True),
    "ppo": AgentSpec(PPOConfig, ppo.update, value_head=True),
    "reinforce": AgentSpec(ReinforceConfig, reinforce.update),
    "grpo": AgentSpec(GRPOConfig, grpo.update),
    "dr-grpo": AgentSpec(GRPOConfig, grpo.update, defaults=(("loss_type", "dr_grpo"), ("scale_rewards", False))),
    "grpo-placebo": AgentSpec(GRPOConfig, grpo.update, placebo=True),
    "rft": AgentSpec(RFTConfig, rft.update),
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


DEPRECATED_ALGORITHMS = {
    "etpo-td-lambda": ("etpo", "whose default is now soft TD(λ = 0.95)"),
    "etpo-conservative": ("etpo", "whose default is now conservative_coef = 0.3"),
}
"""Old names still accepted until etpo-gym 0.3, with a FutureWarning naming the new one (same settings) and why."""


def _spec(algo: str) -> AgentSpec:
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algo {algo!r}; choose one of {sorted(ALGORITHMS)} or register_algorithm() it")
    if algo in DEPRECATED_ALGORITHMS:
        new, why = DEPRECATED_ALGORITHMS[algo]
        warnings.warn(
            f"agent {algo!r} is deprecated and will be removed in etpo-gym 0.3: use {new!r}, {why}",
            FutureWarning,
            stacklevel=3,
        )
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
        **env_kwargs_of(run),
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
    (a crash mid-write leaves the previous one).

    The checkpoint holds what ``--resume`` needs and nothing else: ``policy``, the trainable weights (the LM or its
    LoRA adapters, the critic/value heads and ETPO's Polyak target Q̄, which is state, not recomputable); never
    π_ref, which is rebuilt from the model at start-up; ``optimizer``, Adam's two moments per trainable parameter;
    ``progress`` (counts), ``rng`` (python/numpy/torch and every rank's sampler states) and ``algo_state``. Adam's
    moments make it about 3x the trainable weights: 52.7 MB for the 14.8 MB ``etpo-tiny-coder`` under ETPO (14.8
    MB LM + 2 x 2.1 MB Q head and target + 33.7 MB Adam moments), measured with ``python -m etpo_agents.train
    --algo etpo --dataset pharyngitis --total-actions 16``."""
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
            update_batch = placebo_batch(batch, collector.generator) if spec.placebo else batch
            try:
                metrics.update(spec.update(policy, update_batch, optimizer, algo_config,
                                           max_grad_norm=run.max_grad_norm, generator=collector.generator,
                                           temperature=run.temperature, state=algo_state))  # fmt: skip
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
    with policy.full_parameters():  # sharded: every rank gathers (π_ref too: the KL), rank 0 evaluates locally
        if ranks.is_main:
            if run.greedy_eval and run.evaluation is None:
                final.update(evaluate(policy, run))
            if run.evaluation is not None:  # its greedy action is part of it (EvalConfig.greedy)
                final.update(evaluation.evaluate_policy(
                    policy, _datasets(run), run.evaluation, temperature=run.temperature, top_k=run.top_k,
                    env_id=run.env_id, env_kwargs=env_kwargs_of(run)))  # fmt: skip
            with open(os.path.join(run.output_dir, "final_metrics.json"), "w") as f:
                json.dump(final, f, indent=2)
    ranks.barrier()  # ranks leave together: the job ends when rank 0 has written its results
    return final


def _datasets(run: RunConfig) -> list[str]:
    return [run.dataset] if isinstance(run.dataset, str) else list(run.dataset or etpo_gym.BUNDLED_DATASETS)


def env_kwargs_of(run: RunConfig) -> dict[str, Any]:
    """``gym.make`` arguments of the run's env besides ``dataset`` and ``tokenizer``."""
    return {"max_turns": run.max_turns, "max_action_tokens": run.max_action_tokens,
            "max_obs_tokens": run.max_obs_tokens, "prompt_style": run.prompt_style, **run.env_kwargs}  # fmt: skip


def evaluate(policy: Policy, run: RunConfig, datasets: list[str] | None = None) -> dict[str, Any]:
    """Greedy evaluation: one deterministic first-turn action per dataset (``etpo_agents.evaluation.greedy_action``;
    the sampled evaluation is ``etpo_agents.evaluation.evaluate_policy``).

    Returns:
        ``greedy_auc``: mean over datasets of the greedy action's reward (the mean AUC of the reward's 5 splits,
        -1 when the code failed); ``greedy_test_auc``: mean held-out ``info["test_auc"]`` over the datasets where
        it succeeded (NaN if none did); ``greedy_success_rate``; ``greedy``: the per-dataset results.
    """
    env_kwargs = env_kwargs_of(run)
    return greedy_summary([evaluation.greedy_action(policy, name, run.env_id, env_kwargs)
                           for name in datasets or _datasets(run)])  # fmt: skip


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


def run_etpo_one_step(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """ETPO with the paper's one-step per-token soft Bellman backup (λ = 0); see :func:`run_agent`."""
    return run_agent("etpo-one-step", env_kwargs, total_actions, seed, **kwargs)


def run_etpo_conservative(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """Deprecated alias of :func:`run_etpo` (its default is now ``conservative_coef`` = 0.3); see :func:`run_agent`."""
    return run_agent("etpo-conservative", env_kwargs, total_actions, seed, **kwargs)


def run_etpo_td_lambda(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """ETPO with soft TD(λ = 0.95) critic targets: the same settings as ``etpo`` since λ = 0.95 became its default
    (issue 13), kept as an alias for earlier results; see :func:`run_agent`."""
    return run_agent("etpo-td-lambda", env_kwargs, total_actions, seed, **kwargs)


def run_ppo(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """Token-level PPO for ``etpo_agents.registry``; see :func:`run_agent`."""
    return run_agent("ppo", env_kwargs, total_actions, seed, **kwargs)


def run_reinforce(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """REINFORCE for ``etpo_agents.registry``; see :func:`run_agent`."""
    return run_agent("reinforce", env_kwargs, total_actions, seed, **kwargs)


def run_grpo(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """GRPO for ``etpo_agents.registry``; see :func:`run_agent`."""
    return run_agent("grpo", env_kwargs, total_actions, seed, **kwargs)


def run_dr_grpo(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """Dr. GRPO (no std scaling, constant normaliser) for ``etpo_agents.registry``; see :func:`run_agent`."""
    return run_agent("dr-grpo", env_kwargs, total_actions, seed, **kwargs)


def run_grpo_placebo(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """GRPO updated on placebo rewards (``etpo_agents.placebo``), the no-learning control; see :func:`run_agent`."""
    return run_agent("grpo-placebo", env_kwargs, total_actions, seed, **kwargs)


def run_rft(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """Rejection-sampling fine-tuning, the positive control, for ``etpo_agents.registry``; see :func:`run_agent`."""
    return run_agent("rft", env_kwargs, total_actions, seed, **kwargs)


def run_base(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """The sampling-only floor agent for ``etpo_agents.registry``; see :func:`run_agent`."""
    return run_agent("base", env_kwargs, total_actions, seed, **kwargs)


SB3_ALGORITHMS = {"sb3-ppo": "ppo", "sb3-a2c": "a2c"}
"""``--algo`` names trained by Stable-Baselines3 (:func:`etpo_agents.sb3.train_sb3`) instead of :func:`train`."""

_SB3_OPTIONS = ("seed", "num_envs", "device", "max_turns", "max_action_tokens", "prompt_style")
"""The :data:`_RUN_OPTIONS` an SB3 run uses; the others have no SB3 equivalent (its settings go in ``--algo-arg``)."""

_RUN_OPTIONS: dict[str, tuple[type, str]] = {
    "num_envs": (int, "sub-envs of the vector env (tokens are sampled for each in turn)"),
    "vectorization_mode": (str, "'sync' or 'async' (subprocess workers, so code execution overlaps)"),
    "actions_per_rollout": (int, "completed env actions per update"),
    "temperature": (float, "sampling temperature of the behaviour policy (0 = greedy, base agent only)"),
    "top_k": (int, "sample from the k most likely tokens only (default None: the whole vocabulary)"),
    "max_turns": (int, "env actions per episode before truncation (first attempt plus reflections)"),
    "max_action_tokens": (int, "tokens per action before the env ends it"),
    "prompt_style": (str, "'paper' (the official prompt) or 'rich' (adds description, columns, class balance)"),
    "learning_rate": (float, "Adam learning rate of the policy"),
    "head_learning_rate": (float, "Adam learning rate of the critic / value head"),
    "device": (str, "'auto' (CUDA when present, else CPU) or a torch device such as 'cpu', 'cuda:1'"),
    "save_every": (int, "write checkpoint.pt every this many updates (and at the end); 0: only at the end"),
    "lookahead_tokens": (int, "tokens sampled ahead per sub-env while another sub-env's code executes"),
    "q_rank": (int, "ETPO's soft-Q head: default None is a full hidden x vocabulary map, r factorises it"),
}
"""``RunConfig`` fields set by ``--name-with-dashes VALUE``: type and help (the default is ``RunConfig``'s)."""


def _algo_fields_help() -> str:
    """The ``--algo-arg`` fields of each algorithm, grouped by config class."""
    groups: dict[type, list[str]] = {}
    for name, spec in ALGORITHMS.items():
        groups.setdefault(spec.config_cls, []).append(name)
    lines = []
    for config_cls, names in groups.items():
        fields = [f.name for f in dataclasses.fields(config_cls)]
        lines.append(f"{'/'.join(names)}: {', '.join(fields) if fields else '(none)'}")
    lines.append("sb3-ppo/sb3-a2c: arguments of stable_baselines3.PPO/A2C (n_steps, batch_size, learning_rate, ...)")
    return "; ".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m etpo_agents.train`` parser (every option has help; defaults are shown)."""
    parser = argparse.ArgumentParser(prog="python -m etpo_agents.train", description=__doc__.split("\n\nPython API")[0],
                                     formatter_class=cli.HelpFormatter)  # fmt: skip
    parser.add_argument(
        "--algo",
        default=RunConfig.algo,
        help=f"agent: one of {sorted([*ALGORITHMS, *SB3_ALGORITHMS])}, or one registered by --import",
    )
    cli.add_import_argument(parser)
    parser.add_argument("--env", dest="env_id", default=RunConfig.env_id, help="Gymnasium id of a token-level env")
    parser.add_argument(
        "--dataset",
        nargs="+",
        default=[RunConfig.dataset],
        help="dataset name(s) (any case, e.g. kidney_stone or KidneyStone) or a CSV path (with "
        "--target); several are sampled per episode",
    )
    cli.add_dataset_arguments(parser)
    parser.add_argument(
        "--model",
        default=RunConfig.model,
        help="policy: the packaged 'etpo-tiny-coder', a local model folder, or a Hugging Face hub id",
    )
    parser.add_argument(
        "--allow-download",
        action="store_true",
        help="let a hub id download (else it must be in the local Hugging Face cache)",
    )
    parser.add_argument(
        "--total-actions",
        type=int,
        default=None,
        help=f"budget in env actions (code executions) (default: {RunConfig.total_steps})",
    )
    parser.add_argument(
        "--total-steps", type=int, default=None, help="deprecated alias of --total-actions, removed in etpo-gym 0.3"
    )
    parser.add_argument("--seed", type=int, default=RunConfig.seed, help="seeds python, numpy, torch and the envs")
    parser.add_argument(
        "--output-dir",
        default=None,
        help="folder for metrics.csv, TensorBoard events, checkpoint.pt and final_metrics.json "
        "(default: runs/<algo>-seed<seed>)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoint.pt")
    choices = {"vectorization_mode": ("sync", "async"), "prompt_style": PROMPT_STYLES}
    for name, (kind, text) in _RUN_OPTIONS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(RunConfig, name), help=text,
                            choices=choices.get(name))  # fmt: skip
    parser.add_argument(
        "--use-lora",
        action="store_true",
        help="train LoRA adapters (π_ref = the adapter-disabled base, no copy); for large models",
    )
    parser.add_argument("--fsdp", action="store_true", help="several processes: shard with FSDP2 instead of DDP")
    parser.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute activations in backward: less memory, ~30%% more update compute",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--no-eval", action="store_true", help="skip the final greedy evaluation")
    parser.add_argument("--algo-arg", action="append", default=[], metavar="NAME=VALUE",
                        help="an algorithm config field, e.g. --algo-arg beta=0.1 (repeatable). Fields: "
                             + _algo_fields_help().replace("%", "%%"))  # fmt: skip
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[RunConfig, Any]:
    """CLI → (RunConfig, algorithm config: a config dataclass, or for SB3 a dict of the algorithm's arguments).

    Every user mistake is a one-line usage error (exit status 2) raised here, before any output folder exists.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    import_modules(parser, args.imports)
    if args.algo not in ALGORITHMS and args.algo not in SB3_ALGORITHMS:
        parser.error(f"unknown --algo {args.algo!r}.{cli.did_you_mean(args.algo, [*ALGORITHMS, *SB3_ALGORITHMS])} "
                     f"Choose one of {sorted([*ALGORITHMS, *SB3_ALGORITHMS])}, or --import a module that calls "
                     "register_algorithm()")  # fmt: skip
    total_actions = _total_actions(parser, args)
    env_ids = sorted(name for name in gym.registry if name.startswith("ETPO-"))
    if args.env_id not in gym.registry:
        parser.error(f"unknown --env {args.env_id!r}.{cli.did_you_mean(args.env_id, env_ids)} ETPO envs: {env_ids}")
    if str(gym.spec(args.env_id).entry_point).endswith(":DataSciTextEnv"):
        parser.error(f"--env {args.env_id} takes whole code strings; the agents train on a token-level env such as "
                     f"{RunConfig.env_id}")  # fmt: skip
    options = cli.dataset_options(args)
    datasets = [cli.check_dataset(parser, item, options) for item in args.dataset]
    # Named datasets go by their canonical name (KidneyStone -> kidney_stone); CSV paths stay paths.
    names = [data.name if canonical_name(item) else item for item, data in zip(args.dataset, datasets, strict=True)]
    cli.check_model(parser, args.model, args.allow_download)
    if args.algo in SB3_ALGORITHMS:
        unused = [n for n in _RUN_OPTIONS if n not in _SB3_OPTIONS and getattr(args, n) != getattr(RunConfig, n)]
        unused += [flag for flag in ("resume", "use_lora", "fsdp", "gradient_checkpointing") if getattr(args, flag)]
        if unused:
            flag = "--" + unused[0].replace("_", "-")
            parser.error(f"{flag} does not apply to {args.algo} (Stable-Baselines3 has its own settings: pass them "
                         "as --algo-arg, e.g. --algo-arg learning_rate=3e-4)")  # fmt: skip
    overrides = {name: getattr(args, name) for name in _RUN_OPTIONS}
    try:
        run = RunConfig(
            algo=args.algo, env_id=args.env_id, dataset=names[0] if len(names) == 1 else names, model=args.model,
            local_files_only=not args.allow_download, total_steps=total_actions, seed=args.seed,
            output_dir=args.output_dir or f"runs/{args.algo}-seed{args.seed}", resume=args.resume,
            use_lora=args.use_lora, fsdp=args.fsdp, gradient_checkpointing=args.gradient_checkpointing,
            progress_bar=not args.no_progress, greedy_eval=not args.no_eval, env_kwargs=options, **overrides,
        )  # fmt: skip
    except ValueError as error:
        parser.error(str(error))
    if run.max_action_tokens >= run.max_obs_tokens:
        parser.error(f"--max-action-tokens must be < the env's observation length {run.max_obs_tokens}, "
                     f"got {run.max_action_tokens}")  # fmt: skip
    if args.algo in SB3_ALGORITHMS:
        return run, _sb3_algo_kwargs(parser, args.algo, args.algo_arg)
    return run, _algo_config(parser, args.algo, args.algo_arg)


def _total_actions(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--total-actions``, or the deprecated ``--total-steps`` with a FutureWarning."""
    if args.total_steps is not None:
        warnings.warn("--total-steps is deprecated and will be removed in etpo-gym 0.3: use --total-actions (the "
                      "same budget in env actions, the name compare.py uses)", FutureWarning, stacklevel=3)  # fmt: skip
        if args.total_actions is not None and args.total_actions != args.total_steps:
            parser.error("--total-steps (deprecated) and --total-actions disagree; give --total-actions only")
    total = next((n for n in (args.total_actions, args.total_steps) if n is not None), RunConfig.total_steps)
    if total < 1:
        parser.error(f"--total-actions must be >= 1 (env actions), got {total}")
    return total


def _algo_config(parser: argparse.ArgumentParser, algo: str, items: list[str]) -> Any:
    """The algorithm's config with the ``--algo-arg NAME=VALUE`` items applied and validated."""
    algo_config = default_algo_config(algo)
    fields = {f.name: f for f in dataclasses.fields(algo_config)}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals:
            parser.error(f"--algo-arg {item!r}: expected NAME=VALUE, e.g. beta=0.1")
        if name not in fields:
            parser.error(f"--algo-arg {name!r} is not a field of {type(algo_config).__name__}."
                         f"{cli.did_you_mean(name, fields)} Fields: {sorted(fields) or 'none'}")  # fmt: skip
        current = getattr(algo_config, name)
        try:
            if isinstance(current, bool):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError("expected true or false")
                converted: Any = value.lower() in ("true", "1")
            else:
                converted = type(current)(value) if current is not None else ast.literal_eval(value)
        except (ValueError, SyntaxError) as error:
            parser.error(f"--algo-arg {name}={value!r}: {error}")
        setattr(algo_config, name, converted)
    try:
        algo_config.__post_init__()
    except ValueError as error:
        parser.error(f"--algo-arg: {error}")
    return algo_config


def _sb3_algo_kwargs(parser: argparse.ArgumentParser, algo: str, items: list[str]) -> dict[str, Any]:
    """``--algo-arg NAME=VALUE`` items as keyword arguments of the SB3 algorithm (values read as Python literals)."""
    try:
        from etpo_agents import sb3
    except ImportError as error:
        parser.error(f"--algo {algo} needs stable-baselines3: pip install stable-baselines3 (in a checkout: "
                     f'pip install -e ".[sb3]"); {error}')  # fmt: skip
    fixed = {"self", "policy", "env", "policy_kwargs", "seed", "device", "verbose", "_init_setup_model"}
    accepted = set(inspect.signature(sb3.ALGORITHMS[SB3_ALGORITHMS[algo]].__init__).parameters) - fixed
    kwargs: dict[str, Any] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or name not in accepted:
            parser.error(f"--algo-arg {item!r}: expected NAME=VALUE with NAME an argument of {algo}."
                         f"{cli.did_you_mean(name, accepted)} Accepted: {sorted(accepted)}")  # fmt: skip
        try:
            kwargs[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[name] = value  # a bare word such as a schedule name
    return kwargs


def train_sb3_run(run: RunConfig, algo_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Train ``run.algo`` (``sb3-ppo`` / ``sb3-a2c``) with :func:`etpo_agents.sb3.train_sb3`; writes
    ``final_metrics.json`` (and SB3's ``model.zip`` and ``metrics.csv``) in ``run.output_dir``."""
    from etpo_agents.policy import EMBEDDED_MODEL
    from etpo_agents.sb3 import train_sb3

    env_kwargs = {"dataset": run.dataset, **env_kwargs_of(run)}
    if run.model != EMBEDDED_MODEL:  # the env must tokenize as the model does (its default is the packaged model's)
        env_kwargs["tokenizer"] = run.model
    final = train_sb3(SB3_ALGORITHMS[run.algo], env_kwargs, run.total_steps, run.seed, model=run.model,
                      n_envs=run.num_envs, algo_kwargs=algo_kwargs, output_dir=run.output_dir,
                      device=run.device)  # fmt: skip
    final = {"algo": run.algo, "seed": run.seed, **final}
    with open(os.path.join(run.output_dir, "final_metrics.json"), "w") as f:
        json.dump(final, f, indent=2, default=repr)
    return final


def main(argv: list[str] | None = None) -> None:
    """``python -m etpo_agents.train``: parse, train, print the final metrics. A run that fails before writing
    anything removes the output folder it created."""
    run, algo_config = parse_args(argv)
    created = not os.path.exists(run.output_dir)
    try:
        final = train_sb3_run(run, algo_config) if run.algo in SB3_ALGORITHMS else train(run, algo_config)
    except BaseException:
        if created:
            cli.remove_if_empty(run.output_dir)
        raise
    if os.environ.get("RANK", "0") == "0":  # several ranks: rank 0 has the evaluated results
        print(json.dumps(final, indent=2, default=repr))


if __name__ == "__main__":
    main()
