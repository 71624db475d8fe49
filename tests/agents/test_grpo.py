"""GRPO: group advantages (GRPO and Dr. GRPO) on hand-computed groups, the loss against a slow loop, a short run."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from etpo_agents.config import GRPOConfig, RunConfig
from etpo_agents.grpo import group_advantages, grpo_loss, k3_kl, prompt_groups
from etpo_agents.train import train


def test_group_advantages_hand_computed():
    # Group 0: rewards 1, 0, -1 -> mean 0, Bessel std 1. Group 1: 0.5, 0.7 -> mean 0.6, std sqrt(0.02).
    # Group 2: one action -> advantage 0.
    rewards = torch.tensor([1.0, 0.5, 0.0, 0.3, -1.0, 0.7])
    groups = torch.tensor([0, 1, 0, 2, 0, 1])
    advantages, sizes = group_advantages(rewards, groups, scale_rewards=True, eps=0.0)
    std1 = math.sqrt(0.02)
    expected = torch.tensor([1.0, -0.1 / std1, 0.0, 0.0, -1.0, 0.1 / std1])
    torch.testing.assert_close(advantages, expected)
    assert sizes.tolist() == [3, 2, 3, 1, 3, 2]
    with_eps, _ = group_advantages(rewards, groups, scale_rewards=True)
    assert with_eps[0] == pytest.approx(1.0 / (1.0 + 1e-4))


def test_dr_grpo_advantages_are_centred_not_scaled():
    rewards = torch.tensor([1.0, 0.5, 0.0, 0.3, -1.0, 0.7])
    groups = torch.tensor([0, 1, 0, 2, 0, 1])
    advantages, _ = group_advantages(rewards, groups, scale_rewards=False)
    torch.testing.assert_close(advantages, torch.tensor([1.0, -0.1, 0.0, 0.0, -1.0, 0.1]))


def test_identical_rewards_give_zero_advantage():
    advantages, _ = group_advantages(torch.tensor([0.8, 0.8, 0.8]), torch.tensor([0, 0, 0]), scale_rewards=True)
    assert torch.equal(advantages, torch.zeros(3))


def test_k3_hand_computed():
    logprobs, ref_logprobs = torch.tensor([math.log(0.5), math.log(0.2)]), torch.tensor([math.log(0.25), math.log(0.2)])
    # ratio π_ref/π = 0.5: 0.5 - log 0.5 - 1; equal probabilities: 0.
    torch.testing.assert_close(k3_kl(logprobs, ref_logprobs), torch.tensor([0.5 + math.log(2) - 1, 0.0]))


def _slow_loss(logprobs, behaviour, ref, advantages, actions, config):
    per_action: dict[int, list[float]] = {}
    for lp, mu, rf, adv, a in zip(logprobs.tolist(), behaviour.tolist(), ref.tolist(), advantages.tolist(),
                                  actions.tolist(), strict=True):  # fmt: skip
        ratio = math.exp(lp - mu)
        clipped = min(max(ratio, 1 - config.clip_range), 1 + config.clip_range)
        kl = math.exp(rf - lp) - (rf - lp) - 1
        per_action.setdefault(a, []).append(-min(ratio * adv, clipped * adv) + config.kl_coef * kl)
    tokens = [x for v in per_action.values() for x in v]
    if config.loss_type == "grpo":
        return sum(sum(v) / len(v) for v in per_action.values()) / len(per_action)
    if config.loss_type == "dr_grpo":
        return sum(tokens) / (len(per_action) * config.dr_grpo_length)
    return sum(tokens) / len(tokens)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_grpo_loss_matches_slow_loop(loss_type):
    generator = torch.Generator().manual_seed(0)
    num_rows = 11
    logprobs = -torch.rand(num_rows, generator=generator) * 3
    behaviour = logprobs + (torch.rand(num_rows, generator=generator) - 0.5)  # ratios outside [0.8, 1.2] too
    ref = logprobs + (torch.rand(num_rows, generator=generator) - 0.5)
    actions = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 1])  # unequal lengths: 3, 3, 5
    advantages = torch.tensor([1.0, -0.5, 2.0])[actions]
    config = GRPOConfig(loss_type=loss_type, kl_coef=0.1, dr_grpo_length=7)
    loss, metrics = grpo_loss(logprobs, behaviour, ref, advantages, actions, config)
    assert float(loss) == pytest.approx(_slow_loss(logprobs, behaviour, ref, advantages, actions, config), rel=1e-5)
    assert 0 < metrics["clip_frac"] < 1 and metrics["kl_ref"] > 0


def test_grpo_loss_gradient_on_policy_is_advantage_weighted_score():
    # ρ = 1 (on-policy, no KL): d loss / d logprob_j = -Â_j / (n·|o_i|) under "grpo".
    logprobs = torch.tensor([-1.0, -2.0, -0.5], requires_grad=True)
    actions = torch.tensor([0, 0, 1])
    advantages = torch.tensor([1.0, 1.0, -2.0])
    loss, _ = grpo_loss(logprobs, logprobs.detach(), None, advantages, actions, GRPOConfig())
    loss.backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([-1.0 / 4, -1.0 / 4, 2.0 / 2]))


def test_config_rejects_unknown_loss_type():
    with pytest.raises(ValueError, match="loss_type"):
        GRPOConfig(loss_type="mean")


def test_short_grpo_run_groups_first_turns_and_changes_parameters(model_dir, model_changed, executor, tmp_path):
    # Whole actions (no token cap) so that some code runs: a group whose rewards all tie has no gradient.
    run = RunConfig(algo="grpo", model=model_dir, dataset="kidney_stone", total_steps=4, actions_per_rollout=4,
                    max_turns=2, output_dir=str(tmp_path), progress_bar=False, greedy_eval=False,
                    env_kwargs={"executor": executor})  # fmt: skip
    final = train(run)
    assert final["num_actions"] >= 4
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    # One sub-env: every reset shows the same first-turn prompt, so the first turns of a rollout form a group.
    assert float(rows[0]["grouped_fraction"]) > 0
    assert all(math.isfinite(float(row["policy_loss"])) for row in rows)
    assert model_changed(str(tmp_path))


def test_prompt_groups_follow_prompt_tokens():
    from types import SimpleNamespace

    input_ids = torch.tensor([[5, 6, 7, 1], [5, 6, 9, 2], [5, 6, 7, 3], [4, 4, 4, 4]])
    batch = SimpleNamespace(input_ids=input_ids, prompt_lens=torch.tensor([3, 3, 3, 2]), num_actions=3,
                            rewards=torch.zeros(4))  # fmt: skip
    assert prompt_groups(batch).tolist() == [0, 1, 0]


def test_several_processes_are_refused():
    from types import SimpleNamespace

    from etpo_agents.grpo import update

    policy = SimpleNamespace(accelerator=SimpleNamespace(num_processes=2))
    with pytest.raises(ValueError, match="one process"):
        update(policy, None, None, GRPOConfig())
