"""PPO's GAE and KL-penalised rewards, REINFORCE's returns and baselines, the shared exact KL to π_ref (REINFORCE,
RFT) and minibatch split, against hand-computed values."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from etpo_agents.ppo import gae, kl_penalized_rewards
from etpo_agents.reinforce import action_returns, baselines
from etpo_agents.rollout import exact_ref_kl, segment_minibatches


def test_gae_hand_computed_two_actions():
    # Action 1: rows 0,1 (last token row 1, reward 1, continues to row 2 with γ=0.5); action 2: rows 2,3 terminal.
    rewards = torch.tensor([0.0, 1.0, 0.0, 2.0])
    values = torch.tensor([0.1, 0.2, 0.3, 0.4])
    discounts = torch.tensor([1.0, 0.5, 1.0, 0.0])
    next_rows = torch.tensor([1, 2, 3, -1])
    lam = 0.9
    d3 = 2.0 - 0.4
    d2 = 0.0 + 0.4 - 0.3
    d1 = 1.0 + 0.5 * 0.3 - 0.2
    d0 = 0.0 + 0.2 - 0.1
    a3 = d3
    a2 = d2 + lam * a3
    a1 = d1 + 0.5 * lam * a2
    a0 = d0 + lam * a1
    advantages, returns = gae(rewards, values, discounts, next_rows, lam, torch.ones(4, dtype=torch.bool))
    assert advantages.tolist() == pytest.approx([a0, a1, a2, a3], abs=1e-6)
    assert returns.tolist() == pytest.approx([a0 + 0.1, a1 + 0.2, a2 + 0.3, a3 + 0.4], abs=1e-6)


def test_gae_bootstrap_row_lends_its_value_but_no_advantage():
    """A truncated episode: the action's last token (row 1) continues to a bootstrap row (row 2, the next state's
    prompt, never sampled). A_1 = δ_1 = r + γ·V(s') − V(x_1); the bootstrap row's own "advantage" −V(s') must not
    leak into it."""
    rewards = torch.tensor([0.0, 1.0, 0.0])
    values = torch.tensor([0.1, 0.2, 0.5])
    discounts = torch.tensor([1.0, 0.9, 0.0])
    sampled = torch.tensor([True, True, False])
    advantages, returns = gae(rewards, values, discounts, torch.tensor([1, 2, -1]), 0.95, sampled)
    a1 = 1.0 + 0.9 * 0.5 - 0.2
    a0 = 0.0 + 0.2 - 0.1 + 0.95 * a1
    assert advantages.tolist() == pytest.approx([a0, a1, 0.0], abs=1e-6)
    assert returns[:2].tolist() == pytest.approx([a0 + 0.1, a1 + 0.2], abs=1e-6)


def test_gae_lambda_one_gamma_one_is_return_minus_value():
    """λ = 1, d = 1: A_j = Σ_{k≥j} r_k − V_j (Monte Carlo), the classic identity."""
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(6, generator=g), torch.randn(6, generator=g)
    discounts = torch.tensor([1.0] * 5 + [0.0])
    advantages, _ = gae(
        rewards, values, discounts, torch.tensor([1, 2, 3, 4, 5, -1]), 1.0, torch.ones(6, dtype=torch.bool)
    )
    expected = rewards.flip(0).cumsum(0).flip(0) - values
    torch.testing.assert_close(advantages, expected)


def test_kl_penalized_rewards_only_on_sampled_tokens():
    out = kl_penalized_rewards(
        torch.tensor([0.0, 1.0, 0.0]), torch.tensor([-1.0, -2.0, -3.0]), torch.tensor([-1.5, -1.0, -3.0]),
        torch.tensor([True, True, False]), kl_coef=0.1,
    )  # fmt: skip
    assert out.tolist() == pytest.approx([-0.05, 1.1, 0.0])


def test_action_returns_follow_episode_chain():
    # Episode: action 0 (r=-1) -> action 2 (r=0.8, terminated); action 1 (r=-1) -> bootstrap segment 3 (r=0).
    returns = action_returns(
        torch.tensor([-1.0, -1.0, 0.8, 0.0]), torch.tensor([2, 3, -1, -1]),
        torch.tensor([False, False, True, False]), gamma=0.5,
    )  # fmt: skip
    assert returns.tolist() == pytest.approx([-1.0 + 0.5 * 0.8, -1.0, 0.8, 0.0])


def test_leave_one_out_baseline():
    returns = torch.tensor([1.0, 2.0, 6.0])
    assert baselines(returns, "loo").tolist() == pytest.approx([4.0, 3.5, 1.5])
    assert baselines(torch.tensor([3.0]), "loo").tolist() == [0.0]
    assert baselines(returns, "running", running_mean=0.7).tolist() == pytest.approx([0.7] * 3)
    assert baselines(returns, "none").tolist() == [0.0] * 3


def test_exact_ref_kl_tempers_the_reference_and_averages_masked_rows():
    logprobs = torch.tensor([[0.75, 0.25], [0.5, 0.5]]).log()  # π_T of two rows
    ref_logits = torch.tensor([[0.0, 2 * math.log(3)], [0.0, 0.0]])  # at T = 2: π_ref,T = (1/4, 3/4), (1/2, 1/2)
    # Row 0: 0.75·ln(0.75/0.25) + 0.25·ln(0.25/0.75) = 0.5·ln 3; row 1: 0.
    both = exact_ref_kl(logprobs, ref_logits, 2.0, torch.tensor([True, True]))
    assert float(both) == pytest.approx(0.25 * math.log(3), abs=1e-6)
    first = exact_ref_kl(logprobs, ref_logits, 2.0, torch.tensor([True, False]))
    assert float(first) == pytest.approx(0.5 * math.log(3), abs=1e-6)


def test_segment_minibatches_splits_given_ids_or_every_action():
    batch = SimpleNamespace(num_actions=5)
    ids = torch.tensor([1, 3, 4, 7])
    chunks = segment_minibatches(batch, 3, torch.Generator().manual_seed(0), ids)
    assert len(chunks) == 3 and all(len(c) for c in chunks)
    assert sorted(torch.cat(chunks).tolist()) == [1, 3, 4, 7]
    assert len(segment_minibatches(batch, 8, None, ids)) == 4  # never an empty minibatch
    every = segment_minibatches(batch, 2, torch.Generator().manual_seed(0))
    assert torch.cat(every).tolist() == torch.randperm(5, generator=torch.Generator().manual_seed(0)).tolist()
