"""TRL's GRPOTrainer on the task through etpo_agents.trl: real generation, real sandboxed rewards, real updates."""

import math

import gymnasium as gym
import pytest
import torch

import etpo_gym  # noqa: F401  (registers the envs)
from etpo_agents import trl as trl_agent
from etpo_agents.evaluation import EvalConfig
from etpo_agents.registry import REQUIRED_METRICS, get_agent

pytest.importorskip("trl")  # the optional extra: etpo_agents.trl imports it only when training


def env_reward(body: str) -> float:
    """The text env's reward of ``body`` on kidney_stone (a fresh env and executor: nothing cached)."""
    env = gym.make("ETPO-DataSciText-v0", dataset="kidney_stone")
    try:
        env.reset(seed=0)
        return env.step(body)[1]
    finally:
        env.close()


def test_grpo_trainer_updates_the_model_and_logs_the_env_rewards(tmp_path):
    trainer, reward, logger = trl_agent.build_trainer(
        {"dataset": "kidney_stone", "max_action_tokens": 48, "num_workers": 2},
        total_actions=16,
        seed=0,
        completions_per_step=8,
        num_generations=4,
        output_dir=str(tmp_path),
        device="cpu",
    )
    try:
        before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
        trainer.train()
        changed = [name for name, p in trainer.model.named_parameters() if not torch.equal(before[name], p)]
        assert len(changed) == len(before)  # full fine-tuning: every tensor moved
        assert trainer.state.global_step == 2 and len(reward.records) == 16  # budget: 16 scored completions
        assert [row["env_actions"] for row in logger.rows] == [8.0, 16.0]
        for row, step in zip(logger.rows, (reward.records[:8], reward.records[8:]), strict=True):
            # TRL's own logged mean reward of the step is the mean of the env rewards of its completions.
            assert row["trl_reward"] == pytest.approx(sum(r["reward"] for r in step) / 8, abs=1e-5)
        assert (tmp_path / "metrics.csv").read_text().startswith("env_actions,reward_mean,success_rate")
        ok = [r for r in reward.records if r["status"] == "ok"][:2]
        failed = [r for r in reward.records if r["status"] != "ok"][:1]
        assert ok, "the embedded model wrote no working body in 16 samples"
        for record in ok + failed:
            assert env_reward(record["body"]) == record["reward"]
    finally:
        reward.close()


def test_budget_and_group_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="multiple of completions_per_step"):
        trl_agent.grpo_config(str(tmp_path), 20, 0, completions_per_step=8, num_generations=4,
                              max_completion_length=16, device="cpu")  # fmt: skip
    with pytest.raises(ValueError, match="multiple of num_generations"):
        trl_agent.grpo_config(str(tmp_path), 16, 0, completions_per_step=8, num_generations=3,
                              max_completion_length=16, device="cpu")  # fmt: skip
    args = trl_agent.grpo_config(str(tmp_path), 32, 0, completions_per_step=8, num_generations=4,
                                 max_completion_length=16, device="cpu", beta=0.04)  # fmt: skip
    assert (args.max_steps, args.generation_batch_size, args.per_device_train_batch_size) == (4, 8, 8)
    assert args.beta == 0.04 and args.learning_rate == trl_agent.TRL_OVERRIDES["learning_rate"]


@pytest.mark.slow
def test_registered_agent_returns_the_required_metrics(tmp_path):
    assert get_agent("trl-grpo") is trl_agent.run_trl_grpo
    with pytest.warns(UserWarning, match="lookahead_tokens"):
        metrics = get_agent("trl-grpo")(
            {"dataset": "kidney_stone", "max_action_tokens": 48}, 8, 0, output_dir=str(tmp_path),
            actions_per_rollout=4, lookahead_tokens=8, device="cpu", beta=0.04,
            evaluation=EvalConfig(num_samples=4, episode_samples=1),
        )  # fmt: skip
    assert set(REQUIRED_METRICS) <= set(metrics)
    assert metrics["num_actions"] == 8 and metrics["updates"] == 2
    assert -1.0 <= metrics["greedy_auc"] <= 1.0 and 0 <= metrics["greedy_success_rate"] <= 1
    assert len(metrics["sampled"]["kidney_stone"]["samples"]) == 4 and metrics["kl_per_action"] > 0
    assert math.isnan(metrics["greedy_test_auc"]) or 0.0 < metrics["greedy_test_auc"] <= 1.0
    assert "kl_ref" in (tmp_path / "metrics.csv").read_text()  # beta > 0: TRL logs the KL to the reference
