"""Rejection-sampling fine-tuning (filtered behaviour cloning): the benchmark's positive control.

Fine-tune on the policy's own best actions of each rollout, as in RAFT (Dong et al. 2023, arXiv 2304.06767: keep
the best-rewarded samples, fine-tune on them), ReST (Gulcehre et al. 2023, arXiv 2308.08998: a reward threshold
filters the policy's samples) and expert iteration (Anthony et al. 2017; Zelikman et al. 2022, STaR: keep what
succeeded). Selection rule on the rollout's completed actions, with S the successful ones (the code ran and was
scored) and k = ⌈``keep_fraction``·|S|⌉:

    keep a ∈ S  iff  r_a ≥ the k-th largest reward in S          (ties at the cut are all kept)

so ``keep_fraction`` = 0.5 keeps the successes at or above their median, 1.0 every success. Failed actions are
never kept: reward −1 is the only failure signal, and imitating a failure is not a control. Loss on the kept set K:

    L = −mean_{a ∈ K, j} log π_T(w_a^j | s_a, w_a^{<j}) + kl_coef·mean_{a ∈ K, j} KL(π_T‖π_ref,T)(s_a, w_a^{<j})

a token-level cross-entropy at the sampling temperature T (π_T = softmax(logits / T): the distribution the
rollout sampled from), ``num_epochs`` × ``num_minibatches`` Adam steps per rollout.

DEVIATION: RAFT and ReST generate a large pool per prompt and fine-tune to convergence between rounds; here each
rollout is one small round, so the control learns at the same sample budget as the RL agents.

Symbols → names: K → ``kept``; keep fraction → ``keep_fraction``.
"""

from __future__ import annotations

import math

import torch

from etpo_agents.config import RFTConfig
from etpo_agents.policy import Policy, apply_gradients, require_single_process
from etpo_agents.reinforce import reinforce_loss
from etpo_agents.rollout import Batch, forward_rows, reference_hidden_states, segment_minibatches

__all__ = ["RFTConfig", "rft_loss", "select_best", "update"]


def select_best(rewards: torch.Tensor, success: torch.Tensor, keep_fraction: float) -> torch.Tensor:
    """Indices of the kept actions: the successes whose reward is at least the k-th best success reward.

    Args:
        rewards: (N,) float32 action rewards.
        success: (N,) bool, the action's code ran and was scored.
        keep_fraction: share of the successes to keep, in (0, 1]; k = ⌈keep_fraction·|S|⌉.

    Returns:
        (K,) int64 indices in increasing order (empty when nothing succeeded).
    """
    successes = torch.nonzero(success).squeeze(1)
    if len(successes) == 0:
        return successes
    k = math.ceil(keep_fraction * len(successes))
    threshold = torch.sort(rewards[successes], descending=True).values[k - 1]
    return successes[rewards[successes] >= threshold]


def rft_loss(
    logits: torch.Tensor,
    ref_logits: torch.Tensor | None,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
    kl_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """−mean log π_T(token) [+ kl_coef·mean KL(π_T‖π_ref,T)]; logits (R, V), tokens and mask (R,).

    The cross-entropy is REINFORCE's loss with every advantage 1, so :func:`~etpo_agents.reinforce.reinforce_loss`
    computes it (metrics ``policy_loss``, ``entropy`` and, with ``ref_logits``, ``kl_ref``).
    """
    ones = torch.ones(mask.shape, dtype=logits.dtype, device=logits.device)  # (R,)
    return reinforce_loss(logits, ref_logits, tokens, ones, mask, temperature, kl_coef)


def update(
    policy: Policy,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    config: RFTConfig,
    *,
    max_grad_norm: float = 1.0,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    state: dict | None = None,
) -> dict[str, float]:
    """Cross-entropy on the rollout's kept actions; no step (losses NaN) when no action succeeded."""
    require_single_process(policy, "RFT")  # ranks would take different numbers of steps (own kept actions)
    temperature = temperature if temperature > 0 else 1.0
    n = batch.num_actions
    kept = select_best(batch.rewards[:n], batch.success[:n], config.keep_fraction).cpu()
    summary = {
        "kept_fraction": len(kept) / n,
        "kept_reward_mean": float(batch.rewards[kept].mean()) if len(kept) else float("nan"),
    }
    if len(kept) == 0:
        nan = float("nan")
        skipped = {"policy_loss": nan, "entropy": nan, "grad_norm": nan}
        return {**skipped, **({"kl_ref": nan} if config.kl_coef > 0 else {}), **summary}
    ref_hidden = reference_hidden_states(policy, batch) if config.kl_coef > 0 else None  # (R, H), once per update
    history: list[dict[str, float]] = []
    for _ in range(config.num_epochs):
        for segment_ids in segment_minibatches(batch, config.num_minibatches, generator, kept):
            rows, hidden, _ = forward_rows(policy, batch, segment_ids, with_ref=False)
            ref_logits = policy.ref_logits_from_hidden(ref_hidden[rows]) if ref_hidden is not None else None
            loss, metrics = rft_loss(
                policy.logits(hidden), ref_logits, batch.row_tokens[rows], batch.row_mask[rows], temperature,
                config.kl_coef,
            )  # fmt: skip
            num_tokens = int(batch.row_mask[rows].sum())
            metrics["grad_norm"] = apply_gradients(loss, policy, optimizer, max_grad_norm, "RFT", num_tokens)
            history.append(metrics)
    return {**{k: sum(h[k] for h in history) / len(history) for k in history[0]}, **summary}
