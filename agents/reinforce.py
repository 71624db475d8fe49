"""REINFORCE with a baseline (Williams 1992), the action's return credited to every token of the action.

For env action a_t = (w^1..w^L) with return G_t = r_t + γ·G_{t+1} (following the episode's later actions in the
rollout; no critic, so an episode cut by the rollout's end is not bootstrapped):

    L = −mean_j (G_t − b_t)·log π_T(w^j | s_t, w^{1:j-1}) + kl_coef·mean_j KL(π_T‖π_ref,T)(s_t, w^{1:j-1})

with π_T = softmax(logits / T) at the sampling temperature and the baseline b_t either the leave-one-out mean
of the other actions' returns in the rollout (``loo``), an exponential running mean (``running``) or 0.

Symbols → names: G → ``returns``; b → ``baselines``; γ → ``gamma``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from etpo_agents.config import ReinforceConfig
from etpo_agents.policy import Policy, apply_gradients
from etpo_agents.rollout import (
    Batch,
    exact_ref_kl,
    forward_rows,
    masked_mean,
    reference_hidden_states,
    segment_minibatches,
)

__all__ = ["ReinforceConfig", "action_returns", "baselines", "reinforce_loss", "update"]


def action_returns(
    rewards: torch.Tensor, next_segment: torch.Tensor, terminated: torch.Tensor, gamma: float
) -> torch.Tensor:
    """G_t = r_t + γ·(1 − terminated_t)·G_{next}, following ``next_segment`` (always a later index, or -1).

    Args:
        rewards: (N,) action rewards (0 for bootstrap segments, whose return is therefore 0).
        next_segment: (N,) int64.
        terminated: (N,) bool.

    Returns:
        (N,) float32.
    """
    r, nxt, term = rewards.tolist(), next_segment.tolist(), terminated.tolist()
    returns = [0.0] * len(r)
    for k in range(len(r) - 1, -1, -1):
        future = returns[nxt[k]] if nxt[k] >= 0 and not term[k] else 0.0
        returns[k] = r[k] + gamma * future
    return torch.tensor(returns, dtype=torch.float32, device=rewards.device)


def baselines(returns: torch.Tensor, kind: str, running_mean: float | None = None) -> torch.Tensor:
    """Baseline per action, (N,): leave-one-out mean (``loo``), a running mean (``running``) or zeros."""
    n = len(returns)
    if kind == "loo":
        if n < 2:
            return torch.zeros_like(returns)
        return (returns.sum() - returns) / (n - 1)
    if kind == "running" and running_mean is not None:
        return torch.full_like(returns, running_mean)
    return torch.zeros_like(returns)


def reinforce_loss(
    logits: torch.Tensor,
    ref_logits: torch.Tensor | None,
    tokens: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
    kl_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """−mean (G − b)·log π_T(token) [+ kl_coef·mean KL(π_T‖π_ref,T)]; logits (R, V), others (R,)."""
    logprobs = F.log_softmax(logits / temperature, -1)  # (R, V)
    taken = logprobs.gather(-1, tokens[:, None]).squeeze(-1)
    pg_loss = masked_mean(-advantages * taken, mask)
    loss, metrics = pg_loss, {"policy_loss": float(pg_loss.detach())}
    with torch.no_grad():
        metrics["entropy"] = float(masked_mean(-(logprobs.exp() * logprobs).sum(-1), mask))
    if ref_logits is not None:
        kl = exact_ref_kl(logprobs, ref_logits, temperature, mask)
        loss = loss + kl_coef * kl
        metrics["kl_ref"] = float(kl.detach())
    return loss, metrics


def update(
    policy: Policy,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    config: ReinforceConfig,
    *,
    max_grad_norm: float = 1.0,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    state: dict | None = None,
) -> dict[str, float]:
    """REINFORCE on one rollout. ``state["running_mean"]`` carries the running baseline across updates."""
    state = state if state is not None else {}
    temperature = temperature if temperature > 0 else 1.0
    returns = action_returns(batch.rewards, batch.next_segment, batch.terminated, config.gamma)
    actions = returns[: batch.num_actions]
    segment_advantages = torch.zeros_like(returns)
    segment_advantages[: batch.num_actions] = actions - baselines(actions, config.baseline, state.get("running_mean"))
    if config.baseline == "running":
        mean = float(actions.mean())
        previous = state.get("running_mean")
        decay = config.baseline_decay
        state["running_mean"] = mean if previous is None else decay * previous + (1 - decay) * mean
    advantages = segment_advantages[batch.row_segments]  # (R,): the action's advantage on each of its tokens
    ref_hidden = reference_hidden_states(policy, batch) if config.kl_coef > 0 else None  # (R, H), once per update
    history: list[dict[str, float]] = []
    for _ in range(config.num_epochs):
        for segment_ids in segment_minibatches(batch, config.num_minibatches, generator):
            rows, hidden, _ = forward_rows(policy, batch, segment_ids, with_ref=False)
            ref_logits = policy.ref_logits_from_hidden(ref_hidden[rows]) if ref_hidden is not None else None
            loss, metrics = reinforce_loss(
                policy.logits(hidden), ref_logits, batch.row_tokens[rows], advantages[rows], batch.row_mask[rows],
                temperature, config.kl_coef,
            )  # fmt: skip
            num_tokens = int(batch.row_mask[rows].sum())
            metrics["grad_norm"] = apply_gradients(loss, policy, optimizer, max_grad_norm, "REINFORCE", num_tokens)
            history.append(metrics)
    out = {k: sum(h[k] for h in history) / len(history) for k in history[0]}
    return {**out, "return_mean": float(actions.mean())}
