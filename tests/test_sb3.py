"""stable-baselines3 on the real token-level env: the LM actor-critic policy, budgets in actions, the agent registry,
cells of benchmarks/compare.py, and the custom-agent example of docs/custom_agents.md.

Small settings throughout (iris, 384-token observations, 16-token actions, a 2-layer random Llama) so the file runs
in well under two minutes on a loaded CPU.
"""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO

import etpo_gym  # noqa: F401  (registers the envs)
from etpo_agents import registry
from etpo_agents.sb3 import LMActorCriticPolicy, make_sb3_env, run_sb3_a2c, run_sb3_ppo, train_sb3
from etpo_gym.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.compare import Preset, run_benchmark  # noqa: E402

ENV_KWARGS = {"dataset": "iris", "max_obs_tokens": 384, "max_action_tokens": 16}


@pytest.fixture
def vec_env(executor):
    env = make_sb3_env({**ENV_KWARGS, "executor": executor}, seed=0)
    yield env
    env.close()


def tiny_lm(vocab_size: int, seed: int = 0, tie_word_embeddings: bool = False):
    """A 2-layer random Llama over the env's vocabulary (no download)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=int(vocab_size), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        tie_word_embeddings=tie_word_embeddings,
    )  # fmt: skip
    return LlamaForCausalLM(config)


@pytest.fixture
def lm_dir(vec_env, tmp_path) -> str:
    """A tiny LM saved like a checkpoint, with the env's tokenizer, so it loads by path (tied embeddings, as in
    etpo-tiny-coder)."""
    tokenizer = vec_env.envs[0].unwrapped.tokenizer
    path = tmp_path / "tiny-lm"
    tiny_lm(len(tokenizer), tie_word_embeddings=True).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def assert_same_policy(agent, loaded, vec_env) -> None:
    obs = vec_env.reset()
    for _ in range(3):  # a few observations, including ones with action tokens
        tensors = agent.policy.obs_to_tensor(obs)[0]
        with torch.no_grad():
            logits = agent.policy.get_distribution(tensors).distribution.logits
            loaded_logits = loaded.policy.get_distribution(tensors).distribution.logits
            torch.testing.assert_close(loaded_logits, logits, rtol=0, atol=0)
            torch.testing.assert_close(loaded.policy.predict_values(tensors), agent.policy.predict_values(tensors))
        action = agent.predict(obs, deterministic=True)[0]
        np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], action)
        obs, *_ = vec_env.step(action)


def test_policy_is_the_lm_next_token_distribution_at_the_last_real_token(vec_env):
    tokenizer = vec_env.envs[0].unwrapped.tokenizer
    agent = A2C(LMActorCriticPolicy, vec_env, policy_kwargs={"model": tiny_lm(len(tokenizer))}, seed=0)
    prompt_obs = vec_env.reset()
    obs = prompt_obs
    for token in tokenizer.encode("model = Ran", add_special_tokens=False):
        obs, *_ = vec_env.step(np.array([token]))
    batch = {key: np.concatenate([prompt_obs[key], obs[key]]) for key in obs}  # two lengths, right-padded
    lengths = batch["attention_mask"].sum(axis=1)
    assert lengths[0] < lengths[1] < ENV_KWARGS["max_obs_tokens"]
    with torch.no_grad():
        tensors = agent.policy.obs_to_tensor(batch)[0]
        logits = agent.policy.get_distribution(tensors).distribution.logits  # (2, V), normalised
        lm = agent.policy.features_extractor.lm
        for row, length in enumerate(lengths):  # each row alone: only its real tokens, no padding, no mask
            expected = lm(
                input_ids=torch.as_tensor(batch["input_ids"][row : row + 1, :length], device=lm.device)
            ).logits[0, -1]
            torch.testing.assert_close(logits[row], torch.log_softmax(expected, dim=-1), atol=1e-5, rtol=1e-5)
        assert agent.policy.predict_values(tensors).shape == (2, 1)


def test_ppo_with_lm_policy_trains_and_round_trips_through_sb3_save_load(vec_env, lm_dir, tmp_path):
    agent = PPO(
        LMActorCriticPolicy, vec_env, policy_kwargs={"model_name_or_path": lm_dir},
        n_steps=64, batch_size=32, n_epochs=1, seed=0,
    )  # fmt: skip
    before = agent.policy.parameters_to_vector().copy()
    agent.learn(total_timesteps=320)
    assert agent.num_timesteps == 320  # 5 rollouts of n_steps = 64
    after = agent.policy.parameters_to_vector()
    assert np.isfinite(after).all() and not np.array_equal(before, after)
    agent.save(tmp_path / "ppo")
    loaded = PPO.load(tmp_path / "ppo", env=vec_env)
    assert isinstance(loaded.policy, LMActorCriticPolicy)
    assert_same_policy(agent, loaded, vec_env)


def test_a2c_with_lm_object_trains_and_round_trips_through_sb3_save_load(vec_env, tmp_path):
    lm = tiny_lm(vec_env.action_space.n)
    agent = A2C(LMActorCriticPolicy, vec_env, policy_kwargs={"model": lm}, n_steps=40, seed=0)
    before = agent.policy.parameters_to_vector().copy()
    agent.learn(total_timesteps=320)
    after = agent.policy.parameters_to_vector()
    assert np.isfinite(after).all() and not np.array_equal(before, after)
    agent.save(tmp_path / "a2c")
    loaded = A2C.load(tmp_path / "a2c", env=vec_env)  # the LM object was pickled with policy_kwargs
    assert_same_policy(agent, loaded, vec_env)
    agent.policy.save(tmp_path / "policy.pt")  # SB3's policy-only save/load
    policy = LMActorCriticPolicy.load(tmp_path / "policy.pt")
    obs = agent.policy.obs_to_tensor(vec_env.reset())[0]
    with torch.no_grad():
        torch.testing.assert_close(policy.predict_values(obs), agent.policy.predict_values(obs))


def test_lm_dropout_stays_off_in_training_mode(vec_env):
    agent = A2C(LMActorCriticPolicy, vec_env, policy_kwargs={"model": tiny_lm(vec_env.action_space.n)}, seed=0)
    agent.policy.set_training_mode(True)
    assert agent.policy.training and not agent.policy.features_extractor.lm.training


def test_vocabulary_mismatch_is_a_clear_error(vec_env):
    with pytest.raises(ValueError, match="tokenizer"):
        A2C(LMActorCriticPolicy, vec_env, policy_kwargs={"model": tiny_lm(100)})
    with pytest.raises(ValueError, match="exactly one"):
        A2C(LMActorCriticPolicy, vec_env)


def test_plain_multi_input_policy_runs(vec_env):
    agent = PPO("MultiInputPolicy", vec_env, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    agent.learn(total_timesteps=64)
    assert agent.num_timesteps == 64


def test_train_sb3_stops_at_the_action_budget_and_reports_metrics(executor, tmp_path):
    # Through the registry entry, with settings as compare.py passes them to every agent.
    with pytest.warns(UserWarning, match="actions_per_rollout"):
        metrics = run_sb3_a2c(
            {**ENV_KWARGS, "executor": executor}, 3, 0, model=tiny_lm(len(load_tokenizer())), n_steps=16,
            output_dir=str(tmp_path), actions_per_rollout=4,
        )  # fmt: skip
    assert set(registry.REQUIRED_METRICS) <= set(metrics)
    assert metrics["num_actions"] == 3
    assert 3 <= metrics["num_tokens"] <= 3 * ENV_KWARGS["max_action_tokens"]
    assert -1.0 <= metrics["train_reward_mean"] <= 1.0 and 0.0 <= metrics["success_rate"] <= 1.0
    assert list(metrics["greedy"]) == ["iris"]
    greedy = metrics["greedy"]["iris"]
    assert metrics["greedy_auc"] == (greedy["auc"] if greedy["status"] == "ok" else -1.0)
    assert math.isnan(metrics["greedy_test_auc"]) == (greedy["status"] != "ok")
    with open(metrics["metrics_csv"]) as f:
        rows = list(csv.DictReader(f))
    assert int(rows[-1]["env_actions"]) == 3 and all(math.isfinite(float(r["reward_mean"])) for r in rows)
    assert A2C.load(tmp_path / "model.zip").num_timesteps == metrics["num_tokens"]


def test_train_sb3_multi_input_policy_with_two_envs(executor):
    metrics = train_sb3(
        "ppo", {**ENV_KWARGS, "executor": executor}, total_actions=2, seed=1, model=None, n_envs=2,
        algo_kwargs={"n_steps": 16, "batch_size": 32, "n_epochs": 1},
    )  # fmt: skip
    assert 2 <= metrics["num_actions"] <= 3 and metrics["num_tokens"] % 2 == 0  # both sub-envs may finish at once


def test_registry_lists_builtins_and_registers_custom_agents():
    assert {"etpo", "ppo", "reinforce", "base", "sb3-ppo", "sb3-a2c"} <= set(registry.list_agents())
    assert all(callable(registry.get_agent(name)) for name in registry.list_agents())
    assert registry.get_agent("sb3-ppo") is run_sb3_ppo and registry.get_agent("sb3-a2c") is run_sb3_a2c
    assert registry.get_agent("etpo_agents.sb3:run_sb3_ppo") is run_sb3_ppo

    @registry.register_agent("test-constant")
    def constant(env_kwargs, total_actions, seed, **kwargs):
        return dict.fromkeys(registry.REQUIRED_METRICS, 0.0)

    assert registry.get_agent("test-constant") is constant and "test-constant" in registry.list_agents()
    with pytest.raises(ValueError, match="already registered"):
        registry.register_agent("test-constant")(constant)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_agent("sb3-ppo")(constant)
    assert registry.register_agent("test-constant", replace=True)(len) is len
    with pytest.raises(KeyError, match="sb3-ppo"):
        registry.get_agent("no-such-agent")


def test_custom_agent_example_runs_as_documented():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "examples/custom_agent.py", "--dataset", "iris", "--total-actions", "6"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert set(registry.REQUIRED_METRICS) <= set(metrics)
    assert metrics["num_actions"] == 6 and metrics["success_rate"] > 0
    assert metrics["best_body"]["iris"] != "broken" and metrics["greedy_auc"] > 0.9


def test_custom_agent_resolves_through_the_registry_by_import_path(executor, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # compare.py runs from the repository root, where examples/ lives
    run = registry.get_agent("examples.custom_agent:run")
    assert registry.get_agent("template-bandit") is run  # importing the module registered its name
    metrics = run({"dataset": "iris", "executor": executor}, total_actions=2, seed=0)
    assert metrics["num_actions"] == 2


def test_sb3_cell_through_compare_has_the_budget_accounting_of_a_builtin_agent(tiny_model_dir, tmp_path):
    env_kwargs = {key: ENV_KWARGS[key] for key in ("max_obs_tokens", "max_action_tokens")}
    preset = Preset(("sb3-a2c", "base"), ("iris",), (0,), 2, {"model": tiny_model_dir}, env_kwargs)
    _, failed = run_benchmark(preset, str(tmp_path))
    assert failed == 0
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["agent"] for r in records] == ["sb3-a2c", "base"] and all(r["status"] == "ok" for r in records)
    for record in records:  # the same accounting: actions = the budget, tokens within it, wall time inside the cell's
        metrics = record["metrics"]
        assert metrics["num_actions"] == 2 and record["curve"]["env_actions"][-1] == 2
        assert 2 <= metrics["num_tokens"] <= 2 * ENV_KWARGS["max_action_tokens"]
        assert 0 < metrics["wall_time_s"] <= record["cell_wall_time_s"]
        assert 0.0 <= metrics["greedy_success_rate"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_train_sb3_with_the_embedded_model(algo, executor):
    from etpo_agents.policy import load_policy

    try:
        load_policy("etpo-tiny-coder")
    except FileNotFoundError:
        pytest.skip("the embedded model etpo-tiny-coder is not installed")
    metrics = train_sb3(
        algo, {"dataset": "iris", "executor": executor, "max_action_tokens": 64}, total_actions=8, seed=0,
        model="etpo-tiny-coder", algo_kwargs={"n_steps": 64, "batch_size": 32} if algo == "ppo" else {"n_steps": 16},
    )  # fmt: skip
    assert metrics["num_actions"] == 8 and metrics["num_updates"] >= 1
    assert math.isfinite(metrics["train_reward_mean"]) and math.isfinite(metrics["greedy_auc"])
