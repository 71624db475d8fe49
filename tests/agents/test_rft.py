"""Rejection-sampling fine-tuning: the selection rule on hand-made rewards, the loss, a short run."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from etpo_agents.config import RFTConfig, RunConfig
from etpo_agents.rft import rft_loss, select_best
from etpo_agents.train import train

REWARDS = torch.tensor([0.70, -1.0, 0.90, 0.60, -1.0, 0.80, 0.75])
SUCCESS = torch.tensor([True, False, True, True, False, True, True])


@pytest.mark.parametrize(
    ("keep_fraction", "expected"),
    [
        (0.5, [2, 5, 6]),  # successes 0.9, 0.8, 0.75, 0.7, 0.6: k = ceil(2.5) = 3, threshold 0.75
        (0.2, [2]),  # k = 1: the best only
        (1.0, [0, 2, 3, 5, 6]),  # every success (expert iteration)
    ],
)
def test_select_best_hand_made(keep_fraction, expected):
    assert select_best(REWARDS, SUCCESS, keep_fraction).tolist() == expected


def test_select_best_keeps_ties_at_the_cut_and_never_failures():
    rewards = torch.tensor([0.5, 0.7, 0.7, -1.0, 0.7])
    success = torch.tensor([True, True, True, False, True])
    assert select_best(rewards, success, 0.25).tolist() == [1, 2, 4]  # k = 1, but three tie at 0.7
    assert select_best(torch.tensor([-1.0, -1.0]), torch.tensor([False, False]), 1.0).tolist() == []


def test_rft_loss_is_token_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]])
    tokens = torch.tensor([0, 1, 2])
    mask = torch.tensor([True, True, False])  # the third row is not a kept token
    loss, metrics = rft_loss(logits, None, tokens, mask, temperature=1.0, kl_coef=0.0)
    expected = -(torch.log_softmax(logits[0], -1)[0] + torch.log_softmax(logits[1], -1)[1]) / 2
    assert float(loss) == pytest.approx(float(expected))
    tempered, _ = rft_loss(logits, logits, tokens, mask, temperature=2.0, kl_coef=1.0)  # KL to itself is 0
    expected_t = -(torch.log_softmax(logits[0] / 2, -1)[0] + torch.log_softmax(logits[1] / 2, -1)[1]) / 2
    assert float(tempered) == pytest.approx(float(expected_t), abs=1e-6)


def test_config_validates_keep_fraction():
    with pytest.raises(ValueError, match="keep_fraction"):
        RFTConfig(keep_fraction=0.0)


def test_short_rft_run_fine_tunes_on_kept_actions(model_dir, model_changed, executor, tmp_path):
    run = RunConfig(algo="rft", model=model_dir, dataset="kidney_stone", total_steps=4, actions_per_rollout=4,
                    max_turns=2, output_dir=str(tmp_path), progress_bar=False, greedy_eval=False,
                    env_kwargs={"executor": executor})  # fmt: skip
    train(run)
    with open(tmp_path / "metrics.csv") as f:
        row = next(csv.DictReader(f))
    assert 0 < float(row["kept_fraction"]) <= float(row["success_rate"])
    assert math.isfinite(float(row["policy_loss"])) and float(row["policy_loss"]) > 0
    assert model_changed(str(tmp_path))


def test_several_processes_are_refused():
    from types import SimpleNamespace

    from etpo_agents.rft import update

    policy = SimpleNamespace(accelerator=SimpleNamespace(num_processes=2))
    with pytest.raises(ValueError, match="one process"):
        update(policy, None, None, RFTConfig())
