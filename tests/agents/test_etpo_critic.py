"""ETPO's soft-Q head and the whole agent: no drift to early EOS on a replayed real batch, untried tokens follow
V(x), and convergence to the closed-form soft-optimal policy on ETPO-TokenCredit-v0 (issue 13)."""

from __future__ import annotations

import copy
import itertools
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

import etpo_gym  # noqa: F401
from etpo_agents import etpo
from etpo_agents.config import ETPOConfig
from etpo_agents.policy import Policy, load_policy
from etpo_agents.rollout import RolloutCollector
from etpo_gym.token_credit import TokenCreditEnv, make_model_and_tokenizer, soft_optimal_probs

EMBEDDED = os.path.join(os.path.dirname(__file__), "..", "..", "agents", "assets", "etpo-tiny-coder", "config.json")


def _tiny_policy(vocab: int = 12, seed: int = 0) -> Policy:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    return Policy(LlamaForCausalLM(config), None, q_head=True, device="cpu")


def test_dueling_head_is_centred_on_pi_and_starts_at_zero():
    policy = _tiny_policy()
    hidden = torch.randn(5, 16)
    logits = torch.randn(5, 12)
    assert float(policy.q_values(hidden, logits).abs().max()) == 0.0
    with torch.no_grad():
        for head in (policy.q_head, policy.q_value_head):
            head.weight.normal_(0, 1.0)
    q = policy.q_values(hidden, logits)
    probs = torch.softmax(logits, -1)
    torch.testing.assert_close((probs * q).sum(-1), policy.q_value_head(hidden).squeeze(-1))  # Σ π·Q = V(x)
    assert policy.q_head.bias is None  # no per-token value shared by every position


def test_untried_tokens_follow_v():
    """Critic steps on two tokens only: the other tokens' Q move with V(x) (the linear head leaves them at 0)."""
    hidden = torch.randn(32, 16)  # 32 states
    logits = torch.randn(32, 12)
    taken = torch.randint(0, 2, (32,))  # only tokens 0 and 1 are ever sampled
    targets = 1.0 + 0.3 * torch.randn(32)
    shifts = {}
    for kind in ("dueling", "linear"):
        policy = _tiny_policy()
        if kind == "linear":
            policy = Policy(policy.model, None, q_head=True, q_parametrisation="linear", device="cpu")
        optimizer = torch.optim.Adam(policy.head_parameters(), lr=1e-2)
        for _ in range(200):
            q = policy.q_values(hidden, logits)
            loss, _ = etpo.critic_loss(q.gather(-1, taken[:, None]).squeeze(-1), targets, torch.ones(32, dtype=bool))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            q = policy.q_values(hidden, logits)
        value = (torch.softmax(logits, -1) * q).sum(-1)  # V(x) = Σ π·Q
        shifts[kind] = (q[:, 2:] - value[:, None]).abs().mean(), q[:, 2:].mean()
    untried_gap, untried_mean = shifts["dueling"]
    assert float(untried_gap) < 0.1 and float(untried_mean) > 0.5  # they moved with V(x) toward the targets
    assert float(shifts["linear"][1]) == pytest.approx(0.0, abs=1e-6)  # the old head: untried rows stay 0


@pytest.fixture(scope="module")
def real_batch():
    """One real 8-action batch of the embedded model on kidney_stone (a development dataset)."""
    if not os.path.exists(EMBEDDED):
        pytest.skip("the embedded model is not installed")
    from etpo_gym.executor import CodeExecutor

    model, tokenizer = load_policy()
    policy = Policy(model, tokenizer, device="cpu")
    with CodeExecutor(timeout_s=10) as executor:
        envs = gym.make_vec("ETPO-DataSci-v0", num_envs=1, dataset="kidney_stone", tokenizer=tokenizer,
                            max_action_tokens=128, executor=executor)  # fmt: skip
        batch = RolloutCollector(envs, policy, temperature=1.0, seed=0).collect(8)
        envs.close()
    return model, tokenizer, batch


def _replay_eos(real_batch, **settings) -> list[dict[str, float]]:
    """Premature-EOS probability (``benchmarks.etpo_critic.premature_eos``) of the batch's actions under the base
    and after 24 ETPO gradient steps replaying that batch (default head; ``settings`` replace ETPOConfig fields)."""
    from benchmarks.etpo_critic import premature_eos, replay

    model, tokenizer, batch = real_batch
    torch.manual_seed(0)
    policy = Policy(copy.deepcopy(model), tokenizer, q_head=True, device="cpu")
    config = ETPOConfig(num_epochs=1, num_minibatches=1, **settings)
    return replay(policy, batch, config, 24, 24, lambda p: premature_eos(p, batch))


@pytest.fixture(scope="module")
def replayed_eos(real_batch) -> list[dict[str, float]]:
    """:func:`_replay_eos` with the defaults."""
    return _replay_eos(real_batch)


@pytest.mark.slow
def test_conservative_critic_keeps_premature_eos_near_the_base(real_batch):
    """Issue 13's criterion with the conservative soft-Q regulariser (``conservative_coef`` = 0.3): within 0.1 of
    the base after 24 replayed steps (0.078 -> 0.119 on this batch, 0.21 without it:
    ``benchmarks/results/etpo_critic.md``)."""
    curve = _replay_eos(real_batch, conservative_coef=0.3)
    base, after = curve[0]["premature_eos"], curve[-1]["premature_eos"]
    assert after <= base + 0.1, curve


@pytest.mark.slow
def test_replayed_batch_does_not_collapse_to_early_eos(replayed_eos):
    """Before issue 13 (linear head, one-step targets) 24 replayed steps drove the premature-EOS probability from
    0.08 to 0.86-0.97; with the defaults it was 0.21 on this batch (``benchmarks/results/etpo_critic.md``)."""
    base, after = replayed_eos[0]["premature_eos"], replayed_eos[-1]["premature_eos"]
    assert after <= base + 0.2, replayed_eos


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="default ETPO (no conservative term): the drift is cut 3-4x, not to the base")
def test_replayed_batch_keeps_premature_eos_near_the_base(replayed_eos):
    """Issue 13's criterion with the defaults: within 0.1 of the base after 24 replayed steps (0.08 -> 0.21)."""
    base, after = replayed_eos[0]["premature_eos"], replayed_eos[-1]["premature_eos"]
    assert after <= base + 0.1, replayed_eos


def test_etpo_agent_converges_to_the_closed_form_soft_optimum():
    """The whole agent (collector + ETPO update, default head and targets) on L = 3 tokens with the key 2 tokens
    from the end: π at the key position reaches π* = π_ref·exp(r/β)/Z within total variation 0.1 for every
    prefix."""
    vocab, length, distance, beta = 5, 3, 2, 0.5
    torch.manual_seed(0)
    model, tokenizer = make_model_and_tokenizer(vocab, hidden_size=16, max_positions=8)
    policy = Policy(model, tokenizer, q_head=True, device="cpu")
    envs = gym.make_vec("ETPO-TokenCredit-v0", num_envs=1, vocab_size=vocab, action_length=length,
                        key_distance=distance)  # fmt: skip
    collector = RolloutCollector(envs, policy, seed=0)
    optimizer = torch.optim.Adam([{"params": policy.policy_parameters(), "lr": 3e-3},
                                  {"params": policy.head_parameters(), "lr": 1e-2}])  # fmt: skip
    config = ETPOConfig(beta=beta)
    for _ in range(40):
        batch = collector.collect(8)
        etpo.update(policy, batch, optimizer, config, generator=collector.generator)
        collector.refresh()
    envs.close()
    env = TokenCreditEnv(vocab_size=vocab, action_length=length, key_distance=distance)
    key = env.key_positions[0]
    prefixes = torch.tensor([[0, *p] for p in itertools.product(range(2, vocab), repeat=key)])  # every prefix
    ones = torch.ones_like(prefixes)
    with torch.no_grad():
        probs = torch.softmax(policy.logits(policy.hidden_states(prefixes, ones)[:, -1]), -1).numpy()
        where = (torch.arange(len(prefixes)), torch.full((len(prefixes),), key))
        ref_probs = torch.softmax(policy.ref_logits(prefixes, ones, where), -1).numpy()
    optimal = np.stack([soft_optimal_probs(r, env.key_rewards(0), beta) for r in ref_probs])
    total_variation = 0.5 * np.abs(probs - optimal).sum(-1)
    assert total_variation.max() < 0.1, (probs.round(3), optimal.round(3))
    assert optimal[:, 2].min() > 0.7 and ref_probs[:, 2].max() < 0.4  # a real move away from π_ref
