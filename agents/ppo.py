"""Token-level PPO with a per-token KL penalty (RLHF-style; the ETPO paper's baseline).

Each sampled token is a PPO action. Per-token reward (Ouyang et al. 2022; Ziegler et al. 2019):

    r̃_j = r_t·[j is the action's last token] − kl_coef·(log π_T(w^j) − log π_ref,T(w^j))

with π_T = softmax(logits / T) at the sampling temperature T (the policy the rollout used). Advantages by
GAE over the chain of tokens, continuing across the actions of an episode:

    δ_j = r̃_j + d_j·V(x_{j+1}) − V(x_j),    A_j = δ_j + d_j·λ·A_{j+1},    returns R_j = A_j + V(x_j)

where the discount d_j is 1 inside an action (its tokens share one env step, as in ETPO), γ after an action's
last token and 0 after termination. Truncation (turn budget) bootstraps from V(s_{t+1}).

Clipped objective: L = −mean_j min(ρ_j·Â_j, clip(ρ_j, 1−ε, 1+ε)·Â_j) + vf_coef·mean_j (V(x_j) − R_j)² − ent_coef·H,
ρ_j = π_T,θ(w^j) / μ(w^j) with μ the behaviour log-probabilities stored by the rollout.

Symbols → names: λ → ``gae_lambda``; ε → ``clip_range``; γ → ``gamma``; ρ → ``ratio``; Â → ``advantages``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from etpo_agents.config import PPOConfig
from etpo_agents.policy import Policy, apply_gradients
from etpo_agents.rollout import Batch, forward_rows, masked_mean, row_discounts, segment_minibatches

__all__ = ["PPOConfig", "gae", "kl_penalized_rewards", "ppo_loss", "update"]


def kl_penalized_rewards(
    rewards: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """r̃ = r − kl_coef·(log π(w) − log π_ref(w)) on sampled tokens (mask), r elsewhere. All (R,)."""
    return rewards - kl_coef * (logprobs - ref_logprobs) * mask.float()


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    discounts: torch.Tensor,
    next_rows: torch.Tensor,
    gae_lambda: float,
    sampled: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a chain of rows given by ``next_rows`` (next > current, or -1).

    Args:
        rewards: (R,) per-token rewards r̃.
        values: (R,) V(x_r).
        discounts: (R,) d_r (0 where ``next_rows`` is -1).
        next_rows: (R,) int64.
        gae_lambda: λ.
        sampled: (R,) bool, the rows of sampled tokens. Any other row is a bootstrap row (the prompt of a state
            after a truncated episode or the rollout's end): it only lends V(s_{t+1}) to its predecessor's δ and
            its advantage is 0, so the predecessor's A is its δ alone.

    Returns:
        ``(advantages, returns)``, both (R,) float32.
    """
    r, v, d, nxt, real = rewards.tolist(), values.tolist(), discounts.tolist(), next_rows.tolist(), sampled.tolist()
    advantages = [0.0] * len(r)
    for k in range(len(r) - 1, -1, -1):  # next rows always come later, so one backward sweep suffices
        if not real[k]:
            continue
        n = nxt[k]
        next_value, next_advantage = (v[n], advantages[n]) if n >= 0 else (0.0, 0.0)
        delta = r[k] + d[k] * next_value - v[k]
        advantages[k] = delta + d[k] * gae_lambda * next_advantage
    adv = torch.tensor(advantages, dtype=torch.float32, device=values.device)
    return adv, adv + values


def ppo_loss(
    logprobs: torch.Tensor,
    behaviour_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    config: PPOConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate + value regression − entropy bonus, averaged over masked rows. All inputs (R,)."""
    log_ratio = logprobs - behaviour_logprobs
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1 - config.clip_range, 1 + config.clip_range)
    pg_loss = masked_mean(-torch.min(ratio * advantages, clipped * advantages), mask)
    v_loss = masked_mean((values - returns).pow(2), mask)
    ent = masked_mean(entropy, mask)
    loss = pg_loss + config.vf_coef * v_loss - config.ent_coef * ent
    with torch.no_grad():
        metrics = {
            "policy_loss": float(pg_loss),
            "value_loss": float(v_loss),
            "entropy": float(ent),
            "approx_kl": float(masked_mean((ratio - 1) - log_ratio, mask)),
            "clip_frac": float(masked_mean(((ratio - 1).abs() > config.clip_range).float(), mask)),
        }
    return loss, metrics


def _token_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """log π_T(token) (R,) and the entropy of π_T (R,) from (R, V) logits."""
    logprobs = F.log_softmax(logits / temperature, -1)  # (R, V)
    entropy = -(logprobs.exp() * logprobs).sum(-1)
    return logprobs.gather(-1, tokens[:, None]).squeeze(-1), entropy


@torch.no_grad()
def compute_advantages(
    policy: Policy, batch: Batch, config: PPOConfig, temperature: float, chunk_size: int = 16
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Values, KL-penalised rewards and GAE for every row with the current policy. Returns (adv, returns, metrics)."""
    num_rows = len(batch.row_segments)
    values, logprobs, ref_logprobs = (torch.zeros(num_rows, device=batch.row_rewards.device) for _ in range(3))
    with policy.full_parameters():
        for segment_ids in torch.arange(len(batch.prompt_lens)).split(chunk_size):
            rows, hidden, ref_logits = forward_rows(policy, batch, segment_ids)
            tokens = batch.row_tokens[rows]
            values[rows] = policy.values(hidden)
            logprobs[rows] = _token_logprobs(policy.logits(hidden), tokens, temperature)[0]
            ref_logprobs[rows] = _token_logprobs(ref_logits, tokens, temperature)[0]
    rewards = kl_penalized_rewards(batch.row_rewards, logprobs, ref_logprobs, batch.row_mask, config.kl_coef)
    discounts = row_discounts(batch, config.gamma)
    advantages, returns = gae(rewards, values, discounts, batch.row_next, config.gae_lambda, batch.row_mask)
    if config.normalize_advantage:
        mask = batch.row_mask
        mean = masked_mean(advantages, mask)
        std = masked_mean((advantages - mean).pow(2), mask).sqrt()
        advantages = (advantages - mean) / (std + 1e-8)
    metrics = {"kl_ref": float(masked_mean(logprobs - ref_logprobs, batch.row_mask)),
               "value_mean": float(masked_mean(values, batch.row_mask))}  # fmt: skip
    return advantages, returns, metrics


def update(
    policy: Policy,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    config: PPOConfig,
    *,
    max_grad_norm: float = 1.0,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    state: dict | None = None,
) -> dict[str, float]:
    """PPO on one rollout: advantages once, then ``num_epochs`` × ``num_minibatches`` clipped steps."""
    temperature = temperature if temperature > 0 else 1.0
    advantages, returns, adv_metrics = compute_advantages(policy, batch, config, temperature)
    history: list[dict[str, float]] = []
    for _ in range(config.num_epochs):
        for segment_ids in segment_minibatches(batch, config.num_minibatches, generator):
            rows, hidden, _ = forward_rows(policy, batch, segment_ids, with_ref=False)
            logprobs, entropy = _token_logprobs(policy.logits(hidden), batch.row_tokens[rows], temperature)
            loss, metrics = ppo_loss(
                logprobs, batch.row_logprobs[rows], advantages[rows],
                policy.values(hidden if config.critic_backbone_grad else hidden.detach()), returns[rows],
                entropy, batch.row_mask[rows], config,
            )  # fmt: skip
            num_tokens = int(batch.row_mask[rows].sum())
            metrics["grad_norm"] = apply_gradients(loss, policy, optimizer, max_grad_norm, "PPO", num_tokens)
            history.append(metrics)
    return {**{k: sum(h[k] for h in history) / len(history) for k in history[0]}, **adv_metrics}
