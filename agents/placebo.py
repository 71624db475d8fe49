"""Placebo rewards: the same learner, fed rewards that carry no information about which action earned them.

A placebo agent (``AgentSpec(placebo=True)`` in ``etpo_agents.train``) collects and logs exactly like its learner;
only the batch handed to its ``update`` is replaced by :func:`placebo_batch`. Whatever the placebo's policy then
does (drift, sharpening, collapse) is what the optimisation does without learning from reward, the control that
tells learning from the side effects of taking gradient steps.

Mechanism: the outcomes of the batch's completed actions (reward, success, AUC, held-out AUC, moved together so
they stay consistent) are sorted, then dealt to the actions in an order drawn from the run's generator. The update
therefore sees the rollout's multiset of outcomes (the same scale and success rate as the real batch) assigned
uniformly at random, and its input does not depend on which action earned which outcome: two batches with the
same tokens and the same multiset of outcomes, assigned differently, give the same placebo batch for the same
generator state. Per-row rewards (``row_rewards``, the reward on an action's last token) are rebuilt from the new
action rewards. What is kept: the tokens, the behaviour log-probabilities and the episode structure
(``terminated``, ``truncated``, ``next_segment``), which a learner with γ > 0 could still correlate with the
outcomes; GRPO's default γ = 0 uses none of it.
"""

from __future__ import annotations

import dataclasses

import torch

from etpo_agents.rollout import Batch

__all__ = ["placebo_batch", "placebo_order"]


def placebo_order(rewards: torch.Tensor, aucs: torch.Tensor, test_aucs: torch.Tensor) -> torch.Tensor:
    """A canonical order of the outcomes: by reward, then AUC, then held-out AUC (NaN first).

    Returns:
        (N,) int64 permutation ``order`` such that ``rewards[order]`` (and the AUCs) depend only on the multiset of
        (reward, auc, test_auc) triples, not on their positions.
    """
    order = torch.arange(len(rewards))
    for key in (test_aucs, aucs, rewards):  # stable sorts, least significant key first
        values = torch.nan_to_num(key[order].double().cpu(), nan=-float("inf"))
        order = order[torch.sort(values, stable=True).indices]
    return order


def placebo_batch(batch: Batch, generator: torch.Generator | None) -> Batch:
    """The batch with its completed actions' outcomes sorted and dealt in a random order (see the module docstring).

    Args:
        batch: a rollout batch; only its first ``num_actions`` segments (the completed actions) have outcomes.
        generator: the run's generator; its state picks the assignment.

    Returns:
        A new :class:`Batch` sharing the token tensors; ``rewards``, ``success``, ``aucs``, ``test_aucs`` and
        ``row_rewards`` replaced.
    """
    n = batch.num_actions
    device = generator.device if generator is not None else None
    canonical = placebo_order(batch.rewards[:n], batch.aucs[:n], batch.test_aucs[:n]).to(batch.rewards.device)
    slots = torch.randperm(n, generator=generator, device=device).to(batch.rewards.device)
    fields = {}
    for name in ("rewards", "success", "aucs", "test_aucs"):
        values = getattr(batch, name).clone()
        values[slots] = getattr(batch, name)[:n][canonical]  # action slots[i] gets the i-th smallest outcome
        fields[name] = values
    row_rewards = torch.where(
        batch.row_is_last, fields["rewards"][batch.row_segments], torch.zeros_like(batch.row_rewards)
    )
    return dataclasses.replace(batch, row_rewards=row_rewards, **fields)
