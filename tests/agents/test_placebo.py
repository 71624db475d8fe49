"""The placebo receives no reward information: its update does not depend on which action earned which reward."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from etpo_agents import grpo
from etpo_agents.config import GRPOConfig, RunConfig
from etpo_agents.placebo import placebo_batch, placebo_order
from etpo_agents.rollout import Batch, RolloutCollector
from etpo_agents.train import build_optimizer, build_policy, make_envs, train

OUTCOMES = ("rewards", "success", "aucs", "test_aucs")


def _reassign(batch: Batch, permutation: list[int]) -> Batch:
    """The batch with action k's outcomes moved to action permutation[k] (tokens untouched)."""
    n, index = batch.num_actions, torch.tensor(permutation)
    fields = {}
    for name in OUTCOMES:
        values = getattr(batch, name).clone()
        values[index] = getattr(batch, name)[:n]
        fields[name] = values
    row_rewards = torch.where(
        batch.row_is_last, fields["rewards"][batch.row_segments], torch.zeros_like(batch.row_rewards)
    )
    return dataclasses.replace(batch, row_rewards=row_rewards, **fields)


def _toy_batch(rewards: list[float]) -> Batch:
    """Three one-token actions with the given rewards (AUC = reward on success, NaN on failure)."""
    r = torch.tensor(rewards)
    success = r > -1
    aucs = torch.where(success, r, torch.full_like(r, float("nan")))
    long = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
    return Batch(
        input_ids=long([[1, 2], [1, 3], [1, 4]]), attention_mask=torch.ones(3, 2, dtype=torch.long),
        prompt_lens=long([1, 1, 1]), action_lens=long([1, 1, 1]), rewards=r, terminated=success,
        truncated=~success, next_segment=long([-1, -1, -1]), aucs=aucs, test_aucs=aucs - 0.1, success=success,
        env_ids=long([0, 0, 0]), episode_ids=long([0, 1, 2]), turns=long([0, 0, 0]), datasets=["d"] * 3,
        row_segments=long([0, 1, 2]), row_positions=long([0, 0, 0]), row_tokens=long([2, 3, 4]),
        row_mask=torch.ones(3, dtype=torch.bool), row_logprobs=torch.zeros(3), row_is_last=torch.ones(3, dtype=torch.bool),
        row_rewards=r.clone(), row_terminated=success, row_next=long([-1, -1, -1]), num_actions=3, num_tokens=3,
    )  # fmt: skip


def test_placebo_batch_ignores_the_assignment_and_keeps_the_multiset():
    batch = _toy_batch([0.8, -1.0, 0.6])
    swapped = _reassign(batch, [2, 0, 1])  # the same outcomes on other actions
    assert not torch.equal(batch.rewards, swapped.rewards)
    first = placebo_batch(batch, torch.Generator().manual_seed(3))
    second = placebo_batch(swapped, torch.Generator().manual_seed(3))
    for name in (*OUTCOMES, "row_rewards"):
        torch.testing.assert_close(getattr(first, name), getattr(second, name), equal_nan=True)
    assert sorted(first.rewards.tolist()) == pytest.approx([-1.0, 0.6, 0.8])
    # Outcomes move together: the action given reward 0.8 also gets its AUC 0.8 and success.
    k = int(first.rewards.argmax())
    assert bool(first.success[k]) and float(first.aucs[k]) == pytest.approx(0.8)
    torch.testing.assert_close(first.row_rewards, first.rewards)  # one-token actions: the row is the last token
    assert torch.equal(first.input_ids, batch.input_ids) and batch.rewards.tolist() == pytest.approx([0.8, -1.0, 0.6])


def test_placebo_assignment_is_uniform():
    batch = _toy_batch([0.8, -1.0, 0.6])
    generator = torch.Generator().manual_seed(0)
    positions = [int(placebo_batch(batch, generator).rewards.argmax()) for _ in range(600)]
    counts = torch.bincount(torch.tensor(positions), minlength=3)
    assert counts.min() > 150  # each action gets the best reward about 1/3 of the time


def test_placebo_order_sorts_by_reward_then_aucs():
    rewards = torch.tensor([0.5, -1.0, 0.5])
    aucs = torch.tensor([0.5, float("nan"), 0.5])
    test_aucs = torch.tensor([0.9, float("nan"), 0.7])
    assert placebo_order(rewards, aucs, test_aucs).tolist() == [1, 2, 0]


def _update(policy, batch: Batch) -> dict[str, torch.Tensor]:
    policy = copy.deepcopy(policy)
    run = RunConfig(algo="grpo", learning_rate=1e-3)
    generator = torch.Generator().manual_seed(1)
    grpo.update(policy, batch, build_optimizer(policy, run), GRPOConfig(), generator=generator)
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}


def test_placebo_update_has_no_reward_information(model_dir, executor):
    """Two rollouts with the same tokens and outcomes, the outcomes assigned to different actions: the real GRPO
    updates differ, the placebo updates (same generator state) are identical."""
    run = RunConfig(algo="grpo", model=model_dir, dataset="kidney_stone", max_turns=1, progress_bar=False,
                    env_kwargs={"executor": executor})  # fmt: skip
    policy = build_policy(run, "grpo")
    envs = make_envs(run, policy.tokenizer)
    try:
        batch = RolloutCollector(envs, policy, seed=0).collect(4)
    finally:
        envs.close()
    n = batch.num_actions
    assert len(set(batch.rewards[:n].tolist())) > 1, "the test needs distinct rewards in the rollout"
    swapped = _reassign(batch, list(range(n))[::-1])
    real, real_swapped = _update(policy, batch), _update(policy, swapped)
    assert any(not torch.equal(real[k], real_swapped[k]) for k in real)  # the learner does use the assignment
    placebo = _update(policy, placebo_batch(batch, torch.Generator().manual_seed(5)))
    placebo_swapped = _update(policy, placebo_batch(swapped, torch.Generator().manual_seed(5)))
    assert all(torch.equal(placebo[k], placebo_swapped[k]) for k in placebo)


def test_placebo_agent_updates_on_the_placebo_batch(model_dir, executor, tmp_path, monkeypatch):
    import etpo_agents.train as train_module

    made, updated = [], []

    def recording_placebo(batch, generator):
        made.append((batch, placebo_batch(batch, generator)))
        return made[-1][1]

    def recording_update(policy, batch, *args, **kwargs):
        updated.append(batch)
        return grpo.update(policy, batch, *args, **kwargs)

    monkeypatch.setattr(train_module, "placebo_batch", recording_placebo)
    spec = dataclasses.replace(train_module.ALGORITHMS["grpo-placebo"], update=recording_update)
    monkeypatch.setitem(train_module.ALGORITHMS, "grpo-placebo", spec)
    run = RunConfig(algo="grpo-placebo", model=model_dir, dataset="kidney_stone", total_steps=4,
                    actions_per_rollout=4, max_turns=1, output_dir=str(tmp_path), progress_bar=False,
                    greedy_eval=False, env_kwargs={"executor": executor})  # fmt: skip
    final = train(run)
    ((true_batch, shuffled),) = made
    assert updated == [shuffled]  # the learner saw only the placebo batch
    n = true_batch.num_actions
    assert sorted(shuffled.rewards[:n].tolist()) == sorted(true_batch.rewards[:n].tolist())
    assert final["train_reward_mean"] == pytest.approx(float(true_batch.rewards[:n].mean()))  # logged: true rewards
