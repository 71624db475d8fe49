"""The sampled evaluation (``etpo_agents.evaluation``): common random numbers, the exact KL, the summaries."""

import json
import math

import gymnasium as gym
import pytest
import torch

import etpo_gym  # noqa: F401
from etpo_agents.evaluation import (
    SAMPLE_METRICS,
    EvalConfig,
    first_turn_samples,
    sample_kl,
    summarize_samples,
)
from etpo_agents.policy import Policy, load_policy
from etpo_agents.rollout import RolloutCollector
from etpo_gym.executor import CodeExecutor

DATASET = "kidney_stone"
ENV = "ETPO-DataSci-v0"


@pytest.fixture(scope="module")
def executor():
    with CodeExecutor() as shared:
        yield shared


def base_policy() -> Policy:
    model, tokenizer = load_policy("etpo-tiny-coder")
    return Policy(model, tokenizer, device="cpu")


def same(first: list[dict], second: list[dict]) -> bool:
    """Records equal field by field, NaN (a failed action's AUCs) equal to NaN."""
    return json.dumps(first) == json.dumps(second)


def env_kwargs(executor) -> dict:
    return {"max_action_tokens": 48, "executor": executor}


def test_identical_policies_and_seeds_give_identical_samples(executor):
    config = EvalConfig(num_samples=3, episode_samples=0)
    first = first_turn_samples(base_policy(), DATASET, config, 1.0, None, ENV, env_kwargs(executor))
    second = first_turn_samples(base_policy(), DATASET, config, 1.0, None, ENV, env_kwargs(executor))
    assert same(first, second)  # two Policy objects, same evaluation seed: the same lengths, rewards and KL
    other = first_turn_samples(base_policy(), DATASET, EvalConfig(num_samples=3, episode_samples=0, seed=7), 1.0,
                               None, ENV, env_kwargs(executor))  # fmt: skip
    assert not same(other, first)  # another evaluation seed: other samples


def test_training_rng_does_not_change_the_evaluation_samples(executor):
    config = EvalConfig(num_samples=2, episode_samples=0)
    torch.manual_seed(0)
    first = first_turn_samples(base_policy(), DATASET, config, 1.0, None, ENV, env_kwargs(executor))
    torch.manual_seed(123)  # the training's global RNG state differs from agent to agent
    assert same(first_turn_samples(base_policy(), DATASET, config, 1.0, None, ENV, env_kwargs(executor)), first)


def slow_kl(policy: Policy, prompt: list[int], tokens: list[int], temperature: float, top_k: int | None) -> float:
    """KL(μ_T ‖ π_ref) summed over an action's states, one full forward per state (no cache, no batching)."""
    total = 0.0
    for j in range(len(tokens)):
        ids = torch.tensor([prompt + tokens[:j]])
        with torch.no_grad():
            logits = policy.model(input_ids=ids).logits[0, -1] / temperature
            ref = policy.ref_model(input_ids=ids).logits[0, -1]
        if top_k is not None:
            logits = logits.masked_fill(logits < torch.topk(logits, top_k).values[-1], float("-inf"))
        p, logp, ref_logp = logits.softmax(-1), logits.log_softmax(-1), ref.log_softmax(-1)
        total += float(torch.where(p > 0, p * (logp - ref_logp), torch.zeros_like(p)).sum())
    return total


@pytest.mark.parametrize(("temperature", "top_k"), [(0.5, None), (0.7, 20)])
def test_kl_matches_a_slow_loop_and_is_zero_for_the_base_at_temperature_one(executor, temperature, top_k):
    policy = base_policy()
    with torch.no_grad():  # a trained policy: π differs from π_ref
        for parameter in policy.model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    envs = gym.make_vec(ENV, num_envs=1, dataset=DATASET, tokenizer=policy.tokenizer, max_turns=1,
                        **env_kwargs(executor))  # fmt: skip
    try:
        batch = RolloutCollector(envs, policy, temperature, top_k, seed=0).collect(2)
    finally:
        envs.close()
    kl = sample_kl(policy, batch, temperature, top_k, chunk_size=1)
    for k in range(2):
        prompt_len, length = int(batch.prompt_lens[k]), int(batch.action_lens[k])
        ids = batch.input_ids[k, : prompt_len + length].tolist()
        expected = slow_kl(policy, ids[:prompt_len], ids[prompt_len:], temperature, top_k)
        assert float(kl[k]) == pytest.approx(expected, rel=1e-3, abs=1e-4)
    assert float(kl.min()) > 0
    base = base_policy()
    samples = first_turn_samples(base, DATASET, EvalConfig(num_samples=2, episode_samples=0), 1.0, None, ENV,
                                 env_kwargs(executor))  # fmt: skip
    assert all(s["kl"] == pytest.approx(0.0, abs=1e-9) for s in samples)  # π_sample = π_ref at T = 1


def test_summary_of_hand_made_samples():
    nan = math.nan
    samples = [
        {"reward": -1.0, "success": False, "auc": nan, "test_auc": nan, "kl": 0.5},
        {"reward": 0.7, "success": True, "auc": 0.7, "test_auc": 0.6, "kl": 1.0},
        {"reward": 0.8, "success": True, "auc": 0.8, "test_auc": 0.75, "kl": 1.5},
        {"reward": 0.6, "success": True, "auc": 0.6, "test_auc": 0.9, "kl": 1.0},
    ]
    episodes = [{"success": True}, {"success": False}, {"success": True}, {"success": True}]
    summary = summarize_samples(samples, episodes)
    assert set(summary) == set(SAMPLE_METRICS)
    assert summary["sample_reward_mean"] == pytest.approx((-1.0 + 0.7 + 0.8 + 0.6) / 4)
    assert summary["sample_success_rate"] == 0.75
    assert summary["sample_auc_mean"] == pytest.approx(0.7)
    assert summary["sample_test_auc_mean"] == pytest.approx(0.75)
    assert summary["best_of_k_test_auc"] == 0.75  # the highest-reward sample's held-out AUC, not the highest AUC
    assert summary["episode_success_rate"] == 0.75
    assert summary["kl_per_action"] == pytest.approx(1.0)
    failed = summarize_samples(samples[:1], [])
    assert failed["sample_reward_mean"] == -1.0 and math.isnan(failed["best_of_k_test_auc"])
    assert math.isnan(failed["episode_success_rate"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"num_samples": 0}, "num_samples"), ({"episode_samples": -1}, "episode_samples"),
     ({"temperature": 0.0}, "greedy"), ({"seed": -1}, "seed")],
)  # fmt: skip
def test_eval_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EvalConfig(**kwargs)


@pytest.mark.slow
def test_trained_cell_and_base_share_evaluation_samples(tmp_path, executor):
    """An agent's final metrics carry the sampled evaluation; the base agent's samples equal a fresh base policy's."""
    from etpo_agents.config import RunConfig
    from etpo_agents.evaluation import evaluate_policy
    from etpo_agents.train import env_kwargs_of, run_agent

    config = EvalConfig(num_samples=3, episode_samples=1)
    env = {"dataset": DATASET, "max_action_tokens": 48, "executor": executor}
    metrics = run_agent("base", env, 2, 0, output_dir=str(tmp_path), evaluation=config)
    assert set(SAMPLE_METRICS) <= set(metrics) and metrics["greedy_success_rate"] in (0.0, 1.0)
    run = RunConfig(dataset=DATASET, max_action_tokens=48, env_kwargs={"executor": executor})
    fresh = evaluate_policy(base_policy(), [DATASET], config, temperature=1.0, env_kwargs=env_kwargs_of(run))
    assert same(metrics["sampled"][DATASET]["samples"], fresh["sampled"][DATASET]["samples"])
    assert same(metrics["sampled"][DATASET]["episodes"], fresh["sampled"][DATASET]["episodes"])
