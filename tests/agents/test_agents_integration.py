"""Rollout collection and short training runs on the REAL token-level env (sandboxed executor, no downloads)."""

from __future__ import annotations

import csv
import math
import os

import gymnasium as gym
import pytest
import torch

import etpo_gym  # noqa: F401
from etpo_agents.config import ETPOConfig, ReinforceConfig, RunConfig
from etpo_agents.policy import Policy, load_policy
from etpo_agents.rollout import RolloutCollector, row_discounts
from etpo_agents.train import build_policy, parse_args, train


def _run(model_dir: str, executor, output_dir, **overrides) -> RunConfig:
    settings = dict(model=model_dir, total_steps=2, actions_per_rollout=2, max_action_tokens=8, max_turns=2,
                    output_dir=str(output_dir), progress_bar=False, greedy_eval=False,
                    env_kwargs={"executor": executor})  # fmt: skip
    settings.update(overrides)
    return RunConfig(**settings)


def test_rollout_batch_layout_and_cached_logprobs(model_dir, executor):
    model, tokenizer = load_policy(model_dir)
    policy = Policy(model, tokenizer, q_head=True, device="cpu")
    envs = gym.make_vec("ETPO-DataSci-v0", num_envs=2, dataset="pharyngitis", tokenizer=tokenizer, max_turns=2,
                        max_action_tokens=6, executor=executor)  # fmt: skip
    collector = RolloutCollector(envs, policy, temperature=1.0, seed=0)
    batch = collector.collect(5)
    envs.close()
    n = batch.num_actions
    assert n >= 5 and collector.total_actions == n
    assert batch.action_lens[:n].min() >= 1 and (batch.action_lens[n:] == 0).all()
    assert len(batch.row_segments) == int(batch.action_lens.sum()) + (len(batch.prompt_lens) - n)
    # Nothing of size tokens x vocabulary is stored: no tensor has a vocabulary axis.
    vocab = model.get_output_embeddings().out_features
    tensors = [t for t in batch.__dict__.values() if isinstance(t, torch.Tensor)]
    assert all(t.ndim <= 2 and vocab not in t.shape for t in tensors)
    # KV-cached behaviour log-probabilities equal a full re-encode (T = 1, no top-k: μ = π).
    with torch.no_grad():
        for k in range(n):
            p, length = int(batch.prompt_lens[k]), int(batch.prompt_lens[k] + batch.action_lens[k])
            logits = model(input_ids=batch.input_ids[k : k + 1, :length]).logits[0].float()
            expected = torch.log_softmax(logits[p - 1 : length - 1], -1).gather(-1, batch.input_ids[k, p:length, None])
            rows = batch.row_segments == k
            torch.testing.assert_close(batch.row_logprobs[rows], expected.squeeze(-1), atol=1e-4, rtol=1e-4)
    # Row chain: inside an action r -> r + 1; last token -> first row of the next state, or -1 iff terminated.
    for r in torch.nonzero(batch.row_mask).squeeze(1).tolist():
        k = int(batch.row_segments[r])
        if not batch.row_is_last[r]:
            assert batch.row_next[r] == r + 1
        elif batch.terminated[k]:
            assert batch.row_next[r] == -1
        else:
            nxt = int(batch.next_segment[k])
            assert nxt > k and batch.row_segments[batch.row_next[r]] == nxt
            assert batch.row_positions[batch.row_next[r]] == batch.prompt_lens[nxt] - 1
    discounts = row_discounts(batch, 0.9)
    assert set(discounts[batch.row_mask & ~batch.row_is_last].tolist()) <= {1.0}
    assert all(d == 0.0 or d == pytest.approx(0.9) for d in discounts[batch.row_is_last].tolist())


def _trainable(path: str) -> dict[str, torch.Tensor]:
    return torch.load(os.path.join(path, "checkpoint.pt"), map_location="cpu", weights_only=False)["policy"]


@pytest.mark.parametrize("algo", ["etpo", "etpo-one-step", "ppo", "reinforce", "base"])
def test_short_training_run(algo, model_dir, model_changed, executor, tmp_path):
    final = train(_run(model_dir, executor, tmp_path, algo=algo))
    assert final["num_actions"] >= 2 and final["num_tokens"] >= 2
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    loss_keys = [k for k in rows[0] if k.endswith("loss")]
    assert (algo == "base") == (not loss_keys)
    assert all(math.isfinite(float(row[k])) for row in rows for k in loss_keys)
    assert ("conservative_loss" in loss_keys) == (algo == "etpo")  # the paper's etpo-one-step has none
    assert model_changed(str(tmp_path)) == (algo != "base")
    if algo.startswith("etpo"):
        trained = _trainable(str(tmp_path))
        assert trained["q_head.weight"].abs().sum() > 0
        assert not torch.equal(trained["q_head.weight"], trained["target_q_head.weight"])


def _adam_steps(path: str) -> float:
    state = torch.load(os.path.join(path, "checkpoint.pt"), map_location="cpu", weights_only=False)
    return max(float(s["step"]) for s in state["optimizer"]["state"].values())


@pytest.mark.parametrize("algo", ["etpo", "ppo", "reinforce"])
def test_resume_continues_from_saved_step(algo, model_dir, executor, tmp_path, monkeypatch):
    import etpo_agents.reinforce

    algo_config = ReinforceConfig(baseline="running") if algo == "reinforce" else None
    first = train(_run(model_dir, executor, tmp_path, algo=algo, total_steps=2), algo_config)
    assert first["num_actions"] == 2
    steps_first = _adam_steps(str(tmp_path))
    saved = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=False)["algo_state"]
    running_means = []
    original = etpo_agents.reinforce.baselines
    monkeypatch.setattr(
        etpo_agents.reinforce, "baselines", lambda r, kind, m=None: running_means.append(m) or original(r, kind, m)
    )
    resumed = train(_run(model_dir, executor, tmp_path, algo=algo, total_steps=4, resume=True), algo_config)
    assert resumed["num_actions"] == 4 and resumed["updates"] == 2
    assert _adam_steps(str(tmp_path)) == 2 * steps_first  # Adam's moments and step count were restored
    if algo == "reinforce":  # the resumed update's baseline is the saved running mean
        assert saved["running_mean"] is not None and running_means == [saved["running_mean"]]
    with open(tmp_path / "metrics.csv") as f:
        assert [int(row["env_actions"]) for row in csv.DictReader(f)] == [2, 4]


def test_non_finite_loss_names_the_update(model_dir, executor, tmp_path, monkeypatch):
    import etpo_agents.etpo

    def nan_loss(q_taken, targets, mask, kind="mse"):
        return q_taken.sum() * float("nan"), {}

    monkeypatch.setattr(etpo_agents.etpo, "critic_loss", nan_loss)
    with pytest.raises(FloatingPointError, match=r"update 1 .*etpo"):
        train(_run(model_dir, executor, tmp_path))


def test_greedy_evaluation_reports_held_out_auc_keys(model_dir, executor, tmp_path):
    final = train(_run(model_dir, executor, tmp_path, algo="base", total_steps=1, greedy_eval=True))
    assert {"greedy_auc", "greedy_test_auc", "greedy_success_rate", "greedy"} <= set(final)
    assert -1.0 <= final["greedy_auc"] <= 1.0
    assert (tmp_path / "final_metrics.json").exists()


def test_cli_arguments(model_dir):
    run, algo_config = parse_args(
        ["--algo", "etpo-official-loss", "--dataset", "pharyngitis", "--total-actions", "3", "--seed", "2",
         "--output-dir", "x", "--algo-arg", "beta=0.2", "--temperature", "0.5", "--q-rank", "8", "--model", model_dir]
    )  # fmt: skip
    assert isinstance(algo_config, ETPOConfig) and algo_config.policy_loss == "official" and algo_config.beta == 0.2
    assert run.total_steps == 3 and run.seed == 2 and run.temperature == 0.5 and run.dataset == "pharyngitis"
    policy = build_policy(run, run.algo)
    q_head = policy.q_head  # hidden -> 8 -> vocabulary, zero output at initialisation
    assert [layer.out_features for layer in q_head] == [8, policy.model.get_output_embeddings().out_features]
    assert float(q_head(torch.randn(3, q_head[0].in_features, device=policy.device_)).abs().max()) == 0.0
    with pytest.raises(ValueError, match="q_rank must be"):
        RunConfig(q_rank=0)
    with pytest.raises(ValueError, match="only suits the base agent"):
        RunConfig(algo="ppo", temperature=0)
    assert RunConfig(algo="base", temperature=0).temperature == 0
    with pytest.raises(ValueError, match="beta must be > 0"):
        ETPOConfig(beta=0)


def test_lora_reference_is_the_adapter_disabled_base(model_dir, executor, tmp_path):
    from etpo_agents import etpo

    model, tokenizer = load_policy(model_dir)
    policy = Policy(model, tokenizer, q_head=True, use_lora=True, lora_r=4, lora_target_modules=["q_proj", "v_proj"])
    assert policy.ref_model is None  # no copy of the weights
    envs = gym.make_vec("ETPO-DataSci-v0", num_envs=1, dataset="pharyngitis", tokenizer=tokenizer,
                        max_action_tokens=6, executor=executor)  # fmt: skip
    batch = RolloutCollector(envs, policy, seed=0).collect(2).to(policy.device_)
    envs.close()
    segments = torch.arange(batch.num_actions)
    from etpo_agents.rollout import forward_rows

    def logits_and_ref():
        with torch.no_grad():
            _, hidden, ref_logits = forward_rows(policy, batch, segments)
            return policy.logits(hidden), ref_logits

    before, ref_before = logits_and_ref()
    torch.testing.assert_close(before, ref_before)  # LoRA's B starts at zero: π = π_ref
    optimizer = torch.optim.Adam(policy.policy_parameters() + policy.head_parameters(), lr=1e-2)
    config = ETPOConfig(num_epochs=2, num_minibatches=1)
    assert all(p.requires_grad == ("lora_" in n) for n, p in policy.model.named_parameters())
    etpo.update(policy, batch, optimizer, config)
    after, ref_after = logits_and_ref()
    torch.testing.assert_close(ref_after, ref_before)
    assert not torch.allclose(after, before)


def test_uncached_hub_id_fails_clearly_offline():
    with pytest.raises(FileNotFoundError, match="local Hugging Face cache"):
        load_policy("etpo-gym-tests/no-such-model")
