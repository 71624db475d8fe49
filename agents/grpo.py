"""Group relative policy optimisation (GRPO, DeepSeekMath, arXiv 2402.03300) and its Dr. GRPO variant
(arXiv 2503.20783), token-level, on the actions of one rollout.

Group: the actions of the batch whose prompts are the same token ids. On a one-dataset run every reset shows the
same first-turn prompt, so a rollout of N actions holds one group of ~N first-turn samples (one per dataset on a
multi-dataset run); a reflection prompt quotes the failed code and its error, so it is almost always unique.
For action i of group g with score r_i (its reward; its return with ``gamma`` > 0):

    Â_i = (r_i − mean_g r) / (std_g r + eps)      (``scale_rewards``; Dr. GRPO: Â_i = r_i − mean_g r)

on every token of action i (std with Bessel's correction and eps = 1e-4, as TRL). A group of one action has
Â = 0: nothing to compare it with, so it is left out of the loss (it would only add its KL term).

Per-token loss, ρ_{i,j} = π_T,θ(w_{i,j}) / μ(w_{i,j}) against the behaviour log-probabilities μ stored by the
rollout, π_T = softmax(logits / T) at the sampling temperature:

    ℓ_{i,j} = −min(ρ_{i,j}·Â_i, clip(ρ_{i,j}, 1−ε, 1+ε)·Â_i) + β·k3_{i,j}
    k3_{i,j} = π_ref(w)/π_θ(w) − log(π_ref(w)/π_θ(w)) − 1       (DeepSeekMath eq. 4; ≥ 0, unbiased for KL(π‖π_ref))

aggregated over a minibatch of n actions with |o_i| tokens (``loss_type``):

    grpo:    (1/n)·Σ_i (1/|o_i|)·Σ_j ℓ_{i,j}          (the paper)
    dr_grpo: Σ_i Σ_j ℓ_{i,j} / (n·L)                  (a constant L = ``dr_grpo_length``: no length bias)
    dapo:    Σ_i Σ_j ℓ_{i,j} / Σ_i |o_i|              (token-level mean, DAPO; TRL's default)

Symbols → names: Â → ``advantages``; ε → ``clip_range``; β → ``kl_coef``; ρ → ``ratio``; L → ``dr_grpo_length``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from etpo_agents.config import GRPOConfig
from etpo_agents.policy import Policy, apply_gradients, require_single_process
from etpo_agents.reinforce import action_returns
from etpo_agents.rollout import Batch, forward_rows, reference_hidden_states, segment_minibatches

__all__ = ["GRPOConfig", "group_advantages", "grpo_loss", "k3_kl", "prompt_groups", "update"]

ADVANTAGE_EPS = 1e-4
"""eps of Â's denominator, TRL's value."""


def prompt_groups(batch: Batch) -> torch.Tensor:
    """Group id of each completed action: actions whose prompt token ids are identical share one.

    Returns:
        (num_actions,) int64, ids 0..G−1 in order of first appearance.
    """
    ids: dict[tuple[int, ...], int] = {}
    groups = []
    for k in range(batch.num_actions):
        prompt = tuple(batch.input_ids[k, : int(batch.prompt_lens[k])].tolist())
        groups.append(ids.setdefault(prompt, len(ids)))
    return torch.tensor(groups, dtype=torch.long, device=batch.rewards.device)


def group_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, scale_rewards: bool, eps: float = ADVANTAGE_EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Â_i = (r_i − mean_g) / (std_g + eps), or r_i − mean_g without ``scale_rewards``; 0 in groups of one.

    Args:
        rewards: (N,) float32 scores of the actions.
        group_ids: (N,) int64 group of each action.
        scale_rewards: divide by the group's standard deviation (Bessel-corrected, as ``torch.std``).
        eps: added to the standard deviation.

    Returns:
        ``(advantages, group_sizes)``: (N,) float32 and (N,) int64, the size of each action's group.
    """
    num_groups = int(group_ids.max()) + 1 if len(group_ids) else 0
    sizes = torch.zeros(num_groups, dtype=rewards.dtype, device=rewards.device).index_add_(
        0, group_ids, torch.ones_like(rewards)
    )  # (G,)
    sums = torch.zeros_like(sizes).index_add_(0, group_ids, rewards)
    mean = (sums / sizes)[group_ids]  # (N,)
    centred = rewards - mean
    squares = torch.zeros_like(sizes).index_add_(0, group_ids, centred.pow(2))
    std = (squares / (sizes - 1).clamp(min=1)).sqrt()[group_ids]  # (N,), Bessel-corrected
    advantages = centred / (std + eps) if scale_rewards else centred
    group_sizes = sizes.long()[group_ids]
    return torch.where(group_sizes > 1, advantages, torch.zeros_like(advantages)), group_sizes


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k3 = exp(log π_ref − log π) − (log π_ref − log π) − 1 per sampled token (≥ 0). Inputs and output (R,)."""
    log_ratio = ref_logprobs - logprobs
    return log_ratio.exp() - log_ratio - 1


def grpo_loss(
    logprobs: torch.Tensor,
    behaviour_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    advantages: torch.Tensor,
    row_actions: torch.Tensor,
    config: GRPOConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate (+ β·k3) per token, aggregated by ``config.loss_type`` (see the module docstring).

    Args:
        logprobs: (R,) log π_T,θ of the sampled tokens (with grad).
        behaviour_logprobs: (R,) log μ at sampling time.
        ref_logprobs: (R,) log π_ref,T, or None when ``kl_coef`` is 0.
        advantages: (R,) Â of each token's action.
        row_actions: (R,) int64 index 0..n−1 of each token's action within the minibatch (every row is a
            sampled token).
        config: ``clip_range``, ``kl_coef``, ``loss_type``, ``dr_grpo_length``.

    Returns:
        The scalar loss and metrics.
    """
    log_ratio = logprobs - behaviour_logprobs
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1 - config.clip_range, 1 + config.clip_range)
    per_token = -torch.min(ratio * advantages, clipped * advantages)  # (R,)
    metrics: dict[str, float] = {}
    if ref_logprobs is not None:
        kl = k3_kl(logprobs, ref_logprobs)
        per_token = per_token + config.kl_coef * kl
        metrics["kl_ref"] = float(kl.detach().mean())
    num_actions = int(row_actions.max()) + 1
    if config.loss_type == "grpo":
        lengths = torch.zeros(num_actions, device=logprobs.device).index_add_(0, row_actions, torch.ones_like(ratio))
        sums = torch.zeros(num_actions, device=logprobs.device, dtype=per_token.dtype).index_add_(
            0, row_actions, per_token
        )  # (n,)
        loss = (sums / lengths).mean()
    elif config.loss_type == "dr_grpo":
        loss = per_token.sum() / (num_actions * config.dr_grpo_length)
    else:  # dapo
        loss = per_token.mean()
    with torch.no_grad():
        metrics["policy_loss"] = float(loss)
        metrics["approx_kl"] = float(((ratio - 1) - log_ratio).mean())
        metrics["clip_frac"] = float(((ratio - 1).abs() > config.clip_range).float().mean())
    return loss, metrics


def update(
    policy: Policy,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    config: GRPOConfig,
    *,
    max_grad_norm: float = 1.0,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    state: dict | None = None,
) -> dict[str, float]:
    """GRPO on one rollout: group advantages once, then ``num_epochs`` × ``num_minibatches`` clipped steps over the
    actions that have a group (size ≥ 2). No step when no prompt was sampled twice (losses are then NaN)."""
    require_single_process(policy, "GRPO")  # ranks would take different numbers of steps (own groups)
    temperature = temperature if temperature > 0 else 1.0
    n = batch.num_actions
    scores = action_returns(batch.rewards, batch.next_segment, batch.terminated, config.gamma)[:n]
    advantages, group_sizes = group_advantages(scores, prompt_groups(batch), config.scale_rewards)
    row_advantages = torch.zeros_like(batch.row_rewards)
    actions = batch.row_segments < n
    row_advantages[actions] = advantages[batch.row_segments[actions]]  # (R,): Â_i on every token of action i
    grouped = torch.nonzero(group_sizes > 1).squeeze(1).cpu()
    summary = {"grouped_fraction": len(grouped) / n, "advantage_abs_mean": float(advantages.abs().mean())}
    if len(grouped) == 0:
        nan = float("nan")
        skipped = {"policy_loss": nan, "approx_kl": nan, "clip_frac": nan, "grad_norm": nan}
        return {**skipped, **({"kl_ref": nan} if config.kl_coef > 0 else {}), **summary}
    ref_hidden = reference_hidden_states(policy, batch) if config.kl_coef > 0 else None  # (R, H), once per update
    history: list[dict[str, float]] = []
    for _ in range(config.num_epochs):
        for segment_ids in segment_minibatches(batch, config.num_minibatches, generator, grouped):
            rows, hidden, _ = forward_rows(policy, batch, segment_ids, with_ref=False)
            tokens = batch.row_tokens[rows, None]
            logprobs = F.log_softmax(policy.logits(hidden) / temperature, -1).gather(-1, tokens).squeeze(-1)
            ref_logprobs = None
            if ref_hidden is not None:
                ref_logits = policy.ref_logits_from_hidden(ref_hidden[rows]) / temperature  # (R_mb, V)
                ref_logprobs = F.log_softmax(ref_logits, -1).gather(-1, tokens).squeeze(-1)
            row_actions = torch.unique(batch.row_segments[rows], return_inverse=True)[1]
            loss, metrics = grpo_loss(
                logprobs, batch.row_logprobs[rows], ref_logprobs, row_advantages[rows], row_actions, config
            )
            # Token-mean losses are rescaled across ranks by their token counts; per-action means are not.
            num_tokens = len(rows) if config.loss_type == "dapo" else None
            metrics["grad_norm"] = apply_gradients(loss, policy, optimizer, max_grad_norm, "GRPO", num_tokens)
            history.append(metrics)
    out = {k: sum(h[k] for h in history) / len(history) for k in history[0]}
    return {**out, **summary}
