"""Evaluation of a trained policy on sampled actions: the one evaluation path of training, compare.py and adapters.

The greedy program alone cannot show what an agent learned (issue 12): its AUC barely moves, and what moves is the
distribution of programs the policy writes. So the headline evaluation samples, as the policy acts:

* **First-turn samples**: ``num_samples`` (K) first-turn actions per dataset from μ_T = softmax(logits / T)
  (restricted to the top-k tokens when training used top-k), T the training temperature. Reported: mean reward,
  success rate (the code ran and returned a model), mean reward-split AUC and held-out AUC among the successes, and
  the best-of-K held-out AUC (the held-out AUC of the sample with the highest reward: the program the official code
  would keep).
* **Exact KL to π_ref per action**, the x-axis of the temperature frontier (``benchmarks/compare.py``)::

      KL(action) = sum_j sum_{v in vocabulary} μ_T(v | s_j) [log μ_T(v | s_j) - log π_ref(v | s_j)]

  over the states s_j the action visited (prompt + its first j tokens); π_ref = softmax(ref logits) is the
  untempered base model. The base model sampled at T < 1 therefore has KL > 0: sharpening has a price.
* **Episodes**: ``episode_samples`` whole episodes with the env's ``max_turns`` (the reflection turns after a
  failure, the multi-step part of the paper); the episode success rate is the share that succeeded within them.
* **Greedy** (secondary): one argmax first-turn action per dataset, as before (:func:`greedy_action`).

Common random numbers: the sampler's ``torch.Generator`` and the env reset are seeded from ``EvalConfig.seed``
alone, never from the training RNG or the run seed. Every agent, every run seed and the base model draw the same
random numbers, so identical policies give identical samples and similar policies give correlated ones, and the
base's temperature frontier is evaluated once per dataset for all of them. The price: the base's own sampling
error (K samples) is common to every paired unit of a dataset; ``benchmarks/compare.py`` reports it.

Code execution is the main cost. One :class:`~etpo_gym.executor.CodeExecutor` serves every env of an evaluation
(pass ``executor`` in ``env_kwargs`` to share one across evaluations): repeated bodies are cache hits.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import etpo_gym  # noqa: F401  (registers the envs)
from etpo_agents.policy import Policy
from etpo_agents.registry import greedy_summary
from etpo_agents.rollout import Batch, RolloutCollector, forward_rows
from etpo_gym.executor import CodeExecutor


@dataclass(frozen=True)
class EvalConfig:
    """Settings of the sampled evaluation (:func:`evaluate_policy`)."""

    num_samples: int = 64
    """K, first-turn actions sampled per dataset. The success rate's standard error is sqrt(p(1-p)/K) (0.05 at
    p = 0.8, K = 64), small next to the seed-to-seed spread of trained agents."""
    episode_samples: int = 16
    """Whole episodes (up to the env's ``max_turns``, with reflection turns) per dataset for the episode success
    rate; 0 skips them. Fewer than ``num_samples``: an episode costs up to ``max_turns`` executions."""
    temperature: float | None = None
    """Sampling temperature T of μ_T = softmax(logits / T); ``None`` uses the agent's training temperature (the
    policy as it acts). The frontier (``benchmarks/compare.py``) sets it per point."""
    seed: int = 1_000_000
    """Seed of the sampler's generator and the env resets (``seed`` for the first-turn samples, ``seed + 1`` for
    the episodes), the same for every agent and run seed; far from run seeds, so evaluation never replays a
    training rollout."""
    greedy: bool = True
    """Also take one greedy (argmax) first-turn action per dataset (the secondary ``greedy_*`` columns)."""
    kl_chunk_size: int = 16
    """Actions per forward pass when computing the KL (memory: chunk × tokens × vocabulary floats)."""

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1 (first-turn samples per dataset), got {self.num_samples}")
        if self.episode_samples < 0:
            raise ValueError(f"episode_samples must be >= 0 (0 skips the episodes), got {self.episode_samples}")
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0 or None (the training temperature), got {self.temperature}; the greedy "
                "action is reported separately (greedy=True)"
            )
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.kl_chunk_size < 1:
            raise ValueError(f"kl_chunk_size must be >= 1, got {self.kl_chunk_size}")


SAMPLE_METRICS = (
    "sample_reward_mean",
    "sample_success_rate",
    "sample_auc_mean",
    "sample_test_auc_mean",
    "best_of_k_test_auc",
    "episode_success_rate",
    "kl_per_action",
)
"""Flat metrics of :func:`evaluate_policy`: per dataset in ``sampled[dataset]`` and as the mean over datasets."""


def sample_kl(policy: Policy, batch: Batch, temperature: float, top_k: int | None, chunk_size: int) -> torch.Tensor:
    """Exact KL(μ_T ‖ π_ref) of each completed action, summed over its tokens, from the batch's visited states.

    μ_T(v|s) = softmax(logits(s) / T) restricted to the top-k logits as the sampler does (``sample_token``);
    π_ref(v|s) = softmax(ref logits(s)). Tokens outside the top-k have μ_T = 0 and contribute nothing.

    Args:
        policy: the policy that sampled ``batch`` (with its π_ref).
        batch: a rollout :class:`Batch` on the policy's device.
        temperature: T > 0.
        top_k: the sampler's top-k, or ``None``.
        chunk_size: actions per forward pass.

    Returns:
        (num_actions,) float64 KL per action, in nats, on the CPU.
    """
    kl = torch.zeros(batch.num_actions, dtype=torch.float64)
    with torch.no_grad(), policy.full_parameters():
        for segment_ids in torch.arange(batch.num_actions).split(chunk_size):
            rows, hidden, ref_logits = forward_rows(policy, batch, segment_ids.to(policy.device_))
            scaled = policy.logits(hidden) / temperature  # (R_chunk, V)
            if top_k is not None and top_k < scaled.shape[-1]:
                kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]  # (R_chunk, 1)
                scaled = scaled.masked_fill(scaled < kth, float("-inf"))
            logprobs = torch.log_softmax(scaled, dim=-1)  # (R_chunk, V)
            ref_logprobs = torch.log_softmax(ref_logits, dim=-1)  # (R_chunk, V)
            probs = logprobs.exp()
            terms = torch.where(probs > 0, probs * (logprobs - ref_logprobs), torch.zeros_like(probs))
            row_kl = terms.sum(-1) * batch.row_mask[rows].float()  # (R_chunk,): bootstrap rows count 0
            kl.index_add_(0, batch.row_segments[rows].cpu(), row_kl.double().cpu())
    return kl


def _make_env(policy: Policy, dataset: str, env_id: str, env_kwargs: dict[str, Any]) -> gym.vector.VectorEnv:
    return gym.make_vec(env_id, num_envs=1, vectorization_mode="sync", dataset=dataset, tokenizer=policy.tokenizer,
                        **env_kwargs)  # fmt: skip


def first_turn_samples(
    policy: Policy,
    dataset: str,
    config: EvalConfig,
    temperature: float,
    top_k: int | None,
    env_id: str,
    env_kwargs: dict[str, Any],
) -> list[dict[str, Any]]:
    """K first-turn actions (an env with ``max_turns=1``: every episode is one first attempt) and their KL.

    Returns:
        One record per sample, in sampling order: ``index``, ``reward``, ``success``, ``auc``, ``test_auc`` (NaN
        when the code failed), ``kl`` (nats, summed over the action's tokens) and ``num_tokens``.
    """
    envs = _make_env(policy, dataset, env_id, {**env_kwargs, "max_turns": 1})
    try:
        collector = RolloutCollector(envs, policy, temperature, top_k, seed=config.seed)
        batch = collector.collect(config.num_samples).to(policy.device_)
    finally:
        envs.close()
    kl = sample_kl(policy, batch, temperature, top_k, config.kl_chunk_size)
    return [
        {
            "index": k,
            "reward": float(batch.rewards[k]),
            "success": bool(batch.success[k]),
            "auc": float(batch.aucs[k]),
            "test_auc": float(batch.test_aucs[k]),
            "kl": float(kl[k]),
            "num_tokens": int(batch.action_lens[k]),
        }  # fmt: skip
        for k in range(config.num_samples)  # num_envs = 1: exactly K actions completed
    ]


def episodes(
    policy: Policy,
    dataset: str,
    config: EvalConfig,
    temperature: float,
    top_k: int | None,
    env_id: str,
    env_kwargs: dict[str, Any],
) -> list[dict[str, Any]]:
    """``config.episode_samples`` whole episodes (first attempt, then reflections up to the env's ``max_turns``).

    Returns:
        One record per episode: ``index``, ``success`` (an action succeeded: that ends the episode),
        ``num_actions`` and ``test_auc`` of the successful action (NaN if none).
    """
    records: list[dict[str, Any]] = []
    if config.episode_samples == 0:
        return records
    envs = _make_env(policy, dataset, env_id, env_kwargs)
    try:
        collector = RolloutCollector(envs, policy, temperature, top_k, seed=config.seed + 1)
        num_actions = 0
        while len(records) < config.episode_samples:
            batch = collector.collect(1)  # one sub-env: exactly one action
            num_actions += 1
            if bool(batch.terminated[0] | batch.truncated[0]):
                success = bool(batch.success[0])
                records.append({"index": len(records), "success": success, "num_actions": num_actions,
                                "test_auc": float(batch.test_aucs[0]) if success else math.nan})  # fmt: skip
                num_actions = 0
    finally:
        envs.close()
    return records


def greedy_action(policy: Policy, dataset: str, env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """One greedy (argmax-token) first-turn action on ``dataset``: reward, success, AUCs and its length."""
    envs = _make_env(policy, dataset, env_id, env_kwargs)
    try:
        batch = RolloutCollector(envs, policy, temperature=0.0).collect(1)
    finally:
        envs.close()
    return {"dataset": dataset, "reward": float(batch.rewards[0]), "success": bool(batch.success[0]),
            "auc": float(batch.aucs[0]), "test_auc": float(batch.test_aucs[0]),
            "num_tokens": int(batch.action_lens[0])}  # fmt: skip


def summarize_samples(samples: list[dict[str, Any]], episode_records: list[dict[str, Any]]) -> dict[str, float]:
    """The :data:`SAMPLE_METRICS` of one dataset from its sample and episode records (pure).

    ``best_of_k_test_auc`` is the held-out AUC of the highest-reward sample (the first one on ties; NaN when no
    sample succeeded); the AUC means are over the successful samples (NaN if none); ``episode_success_rate`` is
    NaN without episodes.
    """
    ok = [s for s in samples if s["success"]]
    best = max(ok, key=lambda s: s["reward"]) if ok else None
    return {
        "sample_reward_mean": _mean([s["reward"] for s in samples]),
        "sample_success_rate": _mean([float(s["success"]) for s in samples]),
        "sample_auc_mean": _mean([s["auc"] for s in ok]),
        "sample_test_auc_mean": _mean([s["test_auc"] for s in ok]),
        "best_of_k_test_auc": best["test_auc"] if best is not None else math.nan,
        "episode_success_rate": _mean([float(e["success"]) for e in episode_records]),
        "kl_per_action": _mean([s["kl"] for s in samples]),
    }


def _mean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def evaluate_policy(
    policy: Policy,
    datasets: list[str],
    config: EvalConfig,
    *,
    temperature: float,
    top_k: int | None = None,
    env_id: str = "ETPO-DataSci-v0",
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Sampled (and greedy) evaluation of ``policy`` on each dataset; see the module docstring.

    Args:
        policy: the policy to evaluate (any causal LM wrapped in :class:`~etpo_agents.policy.Policy`; its π_ref is
            the KL's reference).
        datasets: dataset names, one env per dataset.
        config: the evaluation settings.
        temperature: the training temperature, used when ``config.temperature`` is None.
        top_k: the training top-k (the sampler and the KL use the same restriction).
        env_id: the token-level env.
        env_kwargs: ``gym.make`` arguments besides ``dataset`` and ``tokenizer`` (``max_turns``,
            ``max_action_tokens``, ``prompt_style``, ``executor``...). Without ``executor`` one is created for the
            evaluation and closed at its end.

    Returns:
        The :data:`SAMPLE_METRICS` as means over the datasets; ``sampled``: per dataset, those metrics with the
        ``samples`` and ``episodes`` records (for paired statistics); the greedy metrics of
        :func:`~etpo_agents.registry.greedy_summary` when ``config.greedy``; ``eval_config`` (with the temperature
        used) and ``eval_wall_time_s``.
    """
    start = time.perf_counter()
    temperature = config.temperature if config.temperature is not None else temperature
    env_kwargs = dict(env_kwargs or {})
    own_executor = env_kwargs.get("executor") is None
    if own_executor:
        env_kwargs["executor"] = CodeExecutor()
    args = (temperature, top_k, env_id, env_kwargs)
    try:
        sampled, greedy = {}, []
        for dataset in datasets:
            samples = first_turn_samples(policy, dataset, config, *args)
            episode_records = episodes(policy, dataset, config, *args)
            sampled[dataset] = {**summarize_samples(samples, episode_records), "samples": samples,
                                "episodes": episode_records}  # fmt: skip
            if config.greedy:
                greedy.append(greedy_action(policy, dataset, env_id, env_kwargs))
    finally:
        if own_executor:
            env_kwargs["executor"].close()
    result: dict[str, Any] = {metric: _mean([sampled[d][metric] for d in datasets]) for metric in SAMPLE_METRICS}
    result["sampled"] = sampled
    if greedy:
        result.update(greedy_summary(greedy))
    result["eval_config"] = {**dataclasses.asdict(config), "temperature": temperature, "top_k": top_k}
    result["eval_wall_time_s"] = time.perf_counter() - start
    return result
