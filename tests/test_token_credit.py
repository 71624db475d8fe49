"""ETPO-TokenCredit-v0: checkers, rewards at the key positions, the closed-form soft optimum, the agents' collector."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest

import etpo_gym  # noqa: F401
from etpo_gym.token_credit import EOS_TOKEN_ID, TokenCreditEnv, soft_optimal_probs, soft_value


def _play(env: gym.Env, tokens: list[int]):
    env.reset(seed=0)
    for token in tokens:
        result = env.step(token)
        if result[2] or result[3]:
            return result
    raise AssertionError("the action did not end")


def test_env_checkers():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    check_env(gym.make("ETPO-TokenCredit-v0", action_length=6, key_distance=3, num_keys=2, reward_noise=0.1).unwrapped)
    sb3_check_env(TokenCreditEnv(vocab_size=5, action_length=4))


def test_docstring_tables_state_the_spaces():
    env = TokenCreditEnv(vocab_size=7, action_length=5)
    doc = TokenCreditEnv.__doc__
    assert env.action_space == gym.spaces.Discrete(7) and "Discrete(vocab_size)" in doc
    for key, space in env.observation_space.spaces.items():
        assert space.shape == (5 + 1,) and space.dtype == np.int64
        row = next(line for line in doc.splitlines() if f"`{key}`" in line)
        high = "vocab_size - 1" if key == "input_ids" else "1"
        assert re.search(rf"Box\(0, {re.escape(high)}, \(action_length \+ 1,\), int64\)", row)


@pytest.mark.parametrize(
    "tokens, expected",
    [
        ([3, 3, 2, 3], 1.0),  # key at distance 2 (index 2) holds the rewarded token 2
        ([2, 2, 3, 2], 0.0),  # fillers do not matter
        ([2, EOS_TOKEN_ID], 0.0),  # EOS before the key: the key was never chosen
        ([3, 3, 2, EOS_TOKEN_ID], 1.0),  # EOS after the key ends the action with the key's reward
    ],
)
def test_reward_depends_on_the_key_token_only(tokens, expected):
    env = TokenCreditEnv(vocab_size=6, action_length=4, key_distance=2)
    _, reward, terminated, truncated, info = _play(env, tokens)
    assert reward == expected and terminated and not truncated
    assert info["action_done"] and info["auc"] == expected


def test_two_keys_average_and_noise_is_seeded():
    env = TokenCreditEnv(vocab_size=6, action_length=5, key_distance=1, num_keys=2)
    assert env.key_positions == [3, 4]
    assert _play(env, [4, 4, 4, 2, 3])[1] == 1.0  # key 0 wants token 2, key 1 token 3
    assert _play(env, [4, 4, 4, 2, 2])[1] == 0.5
    noisy = [TokenCreditEnv(action_length=2, reward_noise=0.5) for _ in range(2)]
    rewards = [_play(e, [2, 2])[1] for e in noisy]
    assert rewards[0] == rewards[1] != 1.0  # same seed, same noise; noise present


def test_invalid_settings_name_the_fix():
    with pytest.raises(ValueError, match="key_distance"):
        TokenCreditEnv(action_length=4, key_distance=5)
    with pytest.raises(ValueError, match="num_keys"):
        TokenCreditEnv(num_keys=3)
    env = TokenCreditEnv(vocab_size=4)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(2)
    env.reset()
    with pytest.raises(gym.error.InvalidAction):
        env.step(9)


def test_closed_form_soft_optimum_hand_computed():
    ref = np.array([0.0, 0.1, 0.3, 0.6])
    rewards = np.array([0.0, 0.0, 1.0, 0.0])
    beta = 0.5
    expected = np.array([0.0, 0.1, 0.3 * np.e**2, 0.6]) / (0.7 + 0.3 * np.e**2)
    np.testing.assert_allclose(soft_optimal_probs(ref, rewards, beta), expected)
    assert soft_value(ref, rewards, beta) == pytest.approx(beta * np.log(0.7 + 0.3 * np.e**2))
    # E_π*[r] − β·KL(π*‖π_ref) equals the soft value (the variational identity).
    probs = soft_optimal_probs(ref, rewards, beta)
    nz = probs > 0
    objective = float(probs @ rewards - beta * np.sum(probs[nz] * np.log(probs[nz] / ref[nz])))
    assert objective == pytest.approx(soft_value(ref, rewards, beta))


def test_rollout_collector_runs_on_the_env_unchanged():
    torch = pytest.importorskip("torch")
    from etpo_agents.policy import Policy
    from etpo_agents.rollout import RolloutCollector
    from etpo_gym.token_credit import make_model_and_tokenizer

    model, tokenizer = make_model_and_tokenizer(vocab_size=6)
    policy = Policy(model, tokenizer, q_head=True, device="cpu")
    envs = gym.make_vec("ETPO-TokenCredit-v0", num_envs=2, vocab_size=6, action_length=5, key_distance=2)
    batch = RolloutCollector(envs, policy, seed=0).collect(6)
    envs.close()
    n = batch.num_actions
    assert n >= 6 and batch.terminated[:n].all() and (batch.prompt_lens[:n] == 1).all()
    assert int(batch.action_lens[:n].max()) <= 5
    full = batch.action_lens[:n] == 5
    keys = batch.input_ids[:n, 1 + 3]  # prompt <s>, then the key at token index 3 (distance 2)
    torch.testing.assert_close(batch.rewards[:n][full], (keys[full] == 2).float())
    # π_ref is near-uniform over the content tokens and rarely ends an action early.
    with torch.no_grad():
        hidden = policy.hidden_states(batch.input_ids[:1, :1], batch.attention_mask[:1, :1])[0]
        probs = torch.softmax(policy.logits(hidden), -1)
    assert float(probs[0, EOS_TOKEN_ID]) < 0.01 and float(probs[0, 2:].min()) > 0.15


def test_first_action_token_can_be_learned():
    """The prompt <s> is also the pad token; had the embedding a padding row (fixed at zero), the first action
    token's state would be constant and its logits the LM head's bias alone, and no agent could learn a key on
    the first token. One gradient step on log π(t2 | <s>) moves that state's logits beyond the bias."""
    torch = pytest.importorskip("torch")
    from etpo_gym.token_credit import make_model_and_tokenizer

    model, _ = make_model_and_tokenizer(vocab_size=6)
    prompt = torch.tensor([[0]])
    hidden = model.model(input_ids=prompt).last_hidden_state[0, -1]
    assert float(hidden.norm()) > 1.0  # not the zero vector of a padding embedding
    loss = -torch.log_softmax(model(input_ids=prompt).logits[0, -1], -1)[2]
    loss.backward()
    assert float(model.model.embed_tokens.weight.grad[0].abs().sum()) > 0  # <s> is trained like any token
