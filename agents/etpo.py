"""ETPO: Entropy-Regularized Token-level Policy Optimization (Wen et al., arXiv 2402.06700).

Objective (eq. 1): maximise E[Σ_t γ^t (r_t − β·KL(π‖π_ref)(s_t))]. An env action a_t = (w^1..w^L) is a sequence of
token decisions; a token-level soft Q over the whole vocabulary, Q(s_t, w^{1:j-1}, ·), is learned with the
per-token soft Bellman backup (the paper's eq. 6-7):

    intermediate token (j < L):  y = Σ_w π(w | s_t, w^{1:j}) · Q̄(s_t, w^{1:j}, w) − β·KL(π‖π_ref)(s_t, w^{1:j})
    last token (j = L):          y = r_t + γ·(1 − terminated)·[Σ_w π(w | s_{t+1}) · Q̄(s_{t+1}, w)
                                                                 − β·KL(π‖π_ref)(s_{t+1})]

No reward and no discount inside an action: its tokens share the env time step t. Truncation (turn budget)
bootstraps; termination never does. Q̄ is a Polyak-averaged target critic. The critic regresses Q of the
token actually taken: L_Q = mean_j (Q(s_t, w^{1:j-1}, w^j) − y_j)².

Policy improvement toward π* ∝ π_ref·exp(Q/β) (eq. 8), exactly over the vocabulary at every token position:

    L_π = mean_j Σ_w π_θ(w)·[β·log π_θ(w) − β·log π_ref(w) − Q(w)]        (= β·KL(π_θ ‖ π*) + const)

with Q held fixed in this loss (its value weights the π_θ(w), so the gradient pulls π toward high-Q tokens).
Exploring every token of the vocabulary at each of the L positions costs |V|·L, not |V|^L.

EXTENSION, on by default (``ETPOConfig.td_lambda = 0.95``; ``etpo-one-step`` is the paper's λ = 0): soft TD(λ)
targets inside an action (:func:`soft_lambda_targets`), which carry the reward to an action's first tokens in one
target pass. DEVIATION: the one-step backup moves the reward back one token per target pass; replaying a real
batch for 16 steps its mean |target| was 0.78 on an action's last token, 0.11 on the one before and ~0.01 from 3
tokens back, while the classifier is chosen 40-80 tokens back (0.12 there with λ = 0.95; issue 13,
``benchmarks/results/etpo_critic.md``).

Symbols → names: β → ``beta``; Q → ``q`` (online head), Q̄ → ``q_target``; π → softmax(``logits``);
π_ref → softmax(``ref_logits``); y → ``targets``; γ → ``gamma``; τ (Polyak) → ``tau``.

The soft Q is a π-centred dueling head on the policy's backbone (``agents/policy.py``):

    Q(x, w) = V(x) + A(x, w) − Σ_w' π(w'|x)·A(x, w'),     V and A zero-initialised, A without bias

(π held fixed; the critic's gradient reaches only the row of the token it regresses, scaled by 1 − π(w|x))

so Σ_w π(w|x)·Q̄(x, w) = V̄(x) and the target's soft value is V̄(x) − β·KL(π‖π_ref)(x). The targets above and the
policy improvement are unchanged (π* depends on Q only through A, the V(x) term cancels in the softmax).
DEVIATION (issue 13): a plain zero-initialised linear head Q = W·h + b keeps Q = 0 on never-sampled tokens while
the sampled rows move to the reward scale, and its bias is one value per token shared by every position. Centred
on π, an untried token's Q follows V(x) and nothing per token is shared across positions. Replaying one batch,
the drift toward premature EOS that issue 13 reported comes mostly from the one-step targets, not the head (every
head drifted; the TD(λ) targets above cut it 3-4×, not to zero): ``benchmarks/results/etpo_critic.md``.

EXTENSION, on by default (``ETPOConfig.conservative_coef = 0.3``; ``etpo-one-step``, the paper, has none): a
conservative soft-Q regulariser (:func:`conservative_loss`, CQL with π_ref as prior) added to the critic loss.
Inside an action EOS is never sampled, so Q(x, EOS) there is the head's extrapolation from actions' ends, where EOS
earns the reward; the regulariser lowers Q wherever π* puts mass that the sampled tokens never took. Replaying one
batch for 24 steps it kept the premature-EOS probability within 0.05 of the base's (0.21 without it with
λ = 0.95, 0.69 with λ = 0; ``benchmarks/results/etpo_critic.md``), and it did not lower the sampled reward on the
development datasets (``benchmarks/results/etpo_conservative_dev/``).

Differences from the official code (``DEVIATION:`` below): the official policy loss is
``mean_vocab(β·log π − Q.detach())``, whose gradient does not depend on Q at all (no π weighting), so the
policy ignores the critic; here the exact loss above (the official one is kept as ``policy_loss="official"``
for the ablation). The official intermediate-token KL is read from the next env step; here it is the KL at the
next token position of the same action, as in the equation. The critic is the dueling head above on the policy's
backbone instead of a separate full model copy (initialised from the LM's logits in the official code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from etpo_agents.config import ETPOConfig
from etpo_agents.policy import Policy, apply_gradients
from etpo_agents.rollout import (
    Batch,
    forward_rows,
    masked_mean,
    reference_hidden_states,
    row_discounts,
    segment_minibatches,
)

__all__ = [
    "ETPOConfig",
    "soft_values",
    "soft_bellman_targets",
    "soft_lambda_targets",
    "critic_loss",
    "conservative_loss",
    "policy_loss",
    "update",
]


def soft_values(logits: torch.Tensor, ref_logits: torch.Tensor, q: torch.Tensor, beta: float) -> torch.Tensor:
    """Soft state value V(x) = Σ_w π(w|x)·Q(x, w) − β·KL(π‖π_ref)(x), exactly over the vocabulary.

    Args:
        logits: (R, V) untempered policy logits at states x.
        ref_logits: (R, V) π_ref logits.
        q: (R, V) soft Q values (the target critic Q̄ when used for targets).
        beta: β.

    Returns:
        (R,) float32.
    """
    logprobs, ref_logprobs = F.log_softmax(logits, -1), F.log_softmax(ref_logits, -1)
    probs = logprobs.exp()
    return (probs * q).sum(-1) - beta * (probs * (logprobs - ref_logprobs)).sum(-1)


def soft_bellman_targets(
    state_values: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor, next_rows: torch.Tensor
) -> torch.Tensor:
    """Per-token soft Bellman targets y_r = reward_r + discount_r · V(next state of r).

    Inside an action ``next_rows[r] = r + 1`` with reward 0 and discount 1 (the intermediate-token equation);
    on an action's last token the next row is the first token of s_{t+1} with the env reward and discount
    γ·(1 − terminated) (the last-token equation). ``next_rows == -1`` (termination) contributes no value.

    Args:
        state_values: (R,) soft values V of each row's state (from :func:`soft_values` with Q̄).
        rewards: (R,) r_t on an action's last token, else 0.
        discounts: (R,) see :func:`etpo_agents.rollout.row_discounts`.
        next_rows: (R,) int64 row of the next state, or -1.

    Returns:
        (R,) float32 targets (no gradient is expected to flow through them).
    """
    next_values = torch.where(next_rows >= 0, state_values[next_rows.clamp(min=0)], torch.zeros_like(state_values))
    return rewards + discounts * next_values


def soft_lambda_targets(
    state_values: torch.Tensor,
    taken_kl: torch.Tensor,
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    next_rows: torch.Tensor,
    is_last: torch.Tensor,
    td_lambda: float,
) -> torch.Tensor:
    """Soft TD(λ) targets inside each action; one-step backups across actions (an EXTENSION, not in the paper).

    With π sampling the action, V(x_{j+1}) = E_w[Q(x_{j+1}, w) − β·log(π/π_ref)(w|x_{j+1})] has the sampled estimate
    y_{j+1} − β·log(π/π_ref)(w^{j+2}|x_{j+1}), so inside an action (reward 0, discount 1)

        y_j = (1 − λ)·V(x_{j+1}) + λ·(y_{j+1} − taken_kl_{j+1})

    and on an action's last token y = r_t + γ(1 − done)·V(s_{t+1}) (:func:`soft_bellman_targets`). λ = 0 is the
    paper's one-step per-token backup; λ → 1 carries the action's reward to its first tokens in one pass instead
    of one token per pass, at the price of sampling variance and, when the behaviour policy is not π (temperature
    ≠ 1, top-k), a bias (no importance correction).

    Args:
        state_values: (R,) soft values V (from :func:`soft_values` with Q̄).
        taken_kl: (R,) β·(log π − log π_ref) of the token sampled at each row (0 on bootstrap rows).
        rewards, discounts, next_rows: as in :func:`soft_bellman_targets`.
        is_last: (R,) bool, the row's token ended its action.
        td_lambda: λ in [0, 1].

    Returns:
        (R,) float32 targets.
    """
    targets = soft_bellman_targets(state_values, rewards, discounts, next_rows)
    if td_lambda == 0:
        return targets
    inside = ((next_rows >= 0) & ~is_last).tolist()
    values, kl, y = state_values.tolist(), taken_kl.tolist(), targets.tolist()
    for r in reversed(range(len(y))):  # the next row of an intermediate token is r + 1: computed already
        if inside[r]:
            y[r] = (1 - td_lambda) * values[r + 1] + td_lambda * (y[r + 1] - kl[r + 1])
    return torch.tensor(y, dtype=targets.dtype, device=targets.device)


def critic_loss(
    q_taken: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, kind: str = "mse"
) -> tuple[torch.Tensor, dict[str, float]]:
    """Soft-Q regression of the taken tokens: mean_r (Q(x_r, w_r) − y_r)² (or Huber, δ = 1).

    Args:
        q_taken: (R,) Q of the sampled token at each row.
        targets: (R,) y, detached.
        mask: (R,) bool, rows with a sampled token.
        kind: ``mse`` or ``huber``.
    """
    errors = q_taken - targets.detach()
    per_row = errors.pow(2) if kind == "mse" else F.huber_loss(q_taken, targets.detach(), reduction="none", delta=1.0)
    loss = masked_mean(per_row, mask)
    return loss, {"critic_loss": float(loss.detach()), "td_error": float(masked_mean(errors.detach().abs(), mask))}


def conservative_loss(
    q: torch.Tensor, ref_logits: torch.Tensor, tokens: torch.Tensor, beta: float, mask: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Conservative soft-Q regulariser (CQL, Kumar et al. 2020, arXiv 2006.04779, with π_ref as the prior):

        L_C = mean_r [β·log Σ_w π_ref(w|x_r)·exp(Q(x_r, w)/β) − Q(x_r, w_r)]

    Its gradient on Q(x_r, ·) is π*(·|x_r) − onehot(w_r), with π* ∝ π_ref·exp(Q/β) the policy-improvement target:
    it lowers the Q of tokens that π* favours but were not sampled at x_r, and raises the sampled token's. In
    expectation over tokens sampled from π* it is zero, so it does not move the soft-optimal fixed point of
    on-policy training; it acts where Q is inflated on tokens the data never tried there.

    Args:
        q: (R, V) soft Q with grad (the online critic).
        ref_logits: (R, V) π_ref logits.
        tokens: (R,) sampled token at each row.
        beta: β.
        mask: (R,) bool rows with a sampled token.
    """
    soft_max = beta * torch.logsumexp(F.log_softmax(ref_logits, -1) + q / beta, -1)  # (R,)
    per_row = soft_max - q.gather(-1, tokens[:, None]).squeeze(-1)
    loss = masked_mean(per_row, mask)
    return loss, {"conservative_loss": float(loss.detach())}


def policy_loss(
    logits: torch.Tensor,
    ref_logits: torch.Tensor,
    q: torch.Tensor,
    beta: float,
    mask: torch.Tensor,
    kind: str = "exact",
) -> tuple[torch.Tensor, dict[str, float]]:
    """ETPO policy improvement: mean_r Σ_w π_θ(w)·[β log π_θ(w) − β log π_ref(w) − Q(w)].

    Its minimiser at each row is π* = π_ref·exp(Q/β)/Z. ``kind="official"`` is the official code's
    mean_r mean_w [β log π_θ(w) − Q(w)], kept for the ablation.

    Args:
        logits: (R, V) untempered policy logits (with grad).
        ref_logits: (R, V) π_ref logits.
        q: (R, V) soft Q; detached here (the critic is trained by :func:`critic_loss` only).
        beta: β.
        mask: (R,) bool rows to average over.
        kind: ``exact`` or ``official``.
    """
    q = q.detach()
    logprobs, ref_logprobs = F.log_softmax(logits, -1), F.log_softmax(ref_logits, -1)
    probs = logprobs.exp()
    if kind == "exact":
        per_row = (probs * (beta * logprobs - beta * ref_logprobs - q)).sum(-1)  # (R,)
    else:
        # DEVIATION (ablation only): the official loss; its gradient β·mean_w ∇log π(w) does not involve Q.
        per_row = (beta * logprobs - q).mean(-1)  # (R,)
    loss = masked_mean(per_row, mask)
    with torch.no_grad():
        kl = (probs * (logprobs - ref_logprobs)).sum(-1)
        entropy = -(probs * logprobs).sum(-1)
    metrics = {
        "policy_loss": float(loss.detach()),
        "kl_ref": float(masked_mean(kl, mask)),
        "entropy": float(masked_mean(entropy, mask)),
    }
    return loss, metrics


@torch.no_grad()
def compute_targets(
    policy: Policy, batch: Batch, config: ETPOConfig, ref_hidden: torch.Tensor, chunk_size: int = 16
) -> torch.Tensor:
    """Targets y for every row of the batch, with the current π, π_ref and the target critic Q̄.

    Args:
        ref_hidden: (R, H) from :func:`reference_hidden_states`.

    Returns:
        (R,) float32.
    """
    state_values = torch.zeros(len(batch.row_segments), device=batch.row_rewards.device)
    taken_kl = torch.zeros_like(state_values)  # β·log(π/π_ref) of the sampled token (for td_lambda > 0)
    with policy.full_parameters():
        for segment_ids in torch.arange(len(batch.prompt_lens)).split(chunk_size):
            rows, hidden, _ = forward_rows(policy, batch, segment_ids, with_ref=False)
            logits, ref_logits = policy.logits(hidden), policy.ref_logits_from_hidden(ref_hidden[rows])
            q_target = policy.q_values(hidden, logits, target=True)  # (R_chunk, V)
            state_values[rows] = soft_values(logits, ref_logits, q_target, config.beta)
            if config.td_lambda > 0:  # the one-step backup does not read it: skip two vocabulary-wide softmaxes
                taken = batch.row_tokens[rows, None]
                log_ratio = (F.log_softmax(logits, -1) - F.log_softmax(ref_logits, -1)).gather(-1, taken).squeeze(-1)
                taken_kl[rows] = config.beta * log_ratio * batch.row_mask[rows]
    # Intermediate tokens: the KL and ΣπQ̄ of the NEXT TOKEN POSITION of the same action (row r + 1).
    # DEVIATION: the official code reads the intermediate-token KL from the next env step instead.
    discounts = row_discounts(batch, config.gamma)
    return soft_lambda_targets(state_values, taken_kl, batch.row_rewards, discounts, batch.row_next,
                               batch.row_is_last, config.td_lambda)  # fmt: skip


def update(
    policy: Policy,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    config: ETPOConfig,
    *,
    max_grad_norm: float = 1.0,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    state: dict | None = None,
) -> dict[str, float]:
    """ETPO update on one rollout: per epoch, recompute targets with Q̄, then minibatch steps on critic + policy.

    Q̄ is Polyak-averaged after every gradient step. ``temperature`` is ignored: targets and the policy loss use
    the untempered π (the behaviour policy may be tempered; soft Q-learning is off-policy). ``state`` is unused.
    Returns metrics averaged over the steps.
    """
    history: list[dict[str, float]] = []
    ref_hidden = reference_hidden_states(policy, batch)  # (R, H), once per update
    for _ in range(config.num_epochs):
        targets = compute_targets(policy, batch, config, ref_hidden)
        for segment_ids in segment_minibatches(batch, config.num_minibatches, generator):
            rows, hidden, _ = forward_rows(policy, batch, segment_ids, with_ref=False)
            ref_logits = policy.ref_logits_from_hidden(ref_hidden[rows])  # (R_mb, V)
            critic_input = hidden if config.critic_backbone_grad else hidden.detach()
            logits = policy.logits(hidden)  # (R_mb, V)
            q = policy.q_values(critic_input, logits)  # (R_mb, V)
            mask = batch.row_mask[rows]
            q_taken = q.gather(-1, batch.row_tokens[rows, None]).squeeze(-1)  # (R_mb,)
            c_loss, c_metrics = critic_loss(q_taken, targets[rows], mask, config.critic_loss)
            p_loss, p_metrics = policy_loss(logits, ref_logits, q, config.beta, mask, config.policy_loss)
            loss = p_loss + config.critic_coef * c_loss
            if config.conservative_coef > 0:
                tokens = batch.row_tokens[rows]
                cons_loss, cons_metrics = conservative_loss(q, ref_logits, tokens, config.beta, mask)
                loss = loss + config.conservative_coef * cons_loss
                c_metrics.update(cons_metrics)
            grad_norm = apply_gradients(loss, policy, optimizer, max_grad_norm, "ETPO", int(mask.sum()))
            policy.polyak_update(config.tau)
            history.append(
                {
                    **c_metrics,
                    **p_metrics,
                    "grad_norm": grad_norm,
                    "q_mean": float(masked_mean(q_taken.detach(), mask)),
                    "target_mean": float(masked_mean(targets[rows], mask)),
                }  # fmt: skip
            )
    return {k: sum(h[k] for h in history) / len(history) for k in history[0]}
