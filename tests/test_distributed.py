"""Distributed updates through ``accelerate`` on CPU (``gloo``): 2 ranks on two halves of a batch make the same
update as one process on the combined batch, replicated (DDP) and sharded (FSDP2) (issue 7).

The batch is built here from fixed tensors (not env rollouts), so both sides see exactly the same tokens; the halves
have different token counts, which checks the global-token loss normalisation of ``etpo_agents.policy.apply_gradients``.
SGD, not Adam: Adam's first step is ≈ lr·sign(g), which turns float rounding on near-zero gradients into large
differences.
"""

from __future__ import annotations

import os

import pytest
import torch

from etpo_agents import distributed, etpo, ppo, reinforce
from etpo_agents.config import ETPOConfig, PPOConfig, ReinforceConfig
from etpo_agents.policy import Policy
from etpo_agents.rollout import Batch, _Segment, _to_batch

VOCAB = 48
WORLD_SIZE = 2
ALGOS = {
    "etpo": (etpo.update, ETPOConfig(num_epochs=1, num_minibatches=1), {"q_head": True}),
    # Advantage normalisation uses the batch's statistics, a per-rank quantity: off for an exact comparison.
    "ppo": (ppo.update, PPOConfig(num_epochs=1, num_minibatches=1, normalize_advantage=False), {"value_head": True}),
    # The leave-one-out baseline is a per-rank statistic: no baseline; the KL term exercises π_ref's pass.
    "reinforce": (reinforce.update, ReinforceConfig(baseline="none", kl_coef=0.1), {}),
}
MODES = ("ddp", "fsdp")


def _half(rank: int) -> list[_Segment]:
    """Rank ``rank``'s episodes: a terminated action, a 2-turn episode, a truncated action (+ bootstrap prompt)."""
    gen = torch.Generator().manual_seed(100 + rank)

    def segment(env_id: int, turn: int, num_tokens: int, reward: float, terminated: bool) -> _Segment:
        s = _Segment(env_id, env_id, turn, torch.randint(3, VOCAB, (4 + turn,), generator=gen).tolist())
        s.tokens = torch.randint(3, VOCAB, (num_tokens,), generator=gen).tolist()
        s.logprobs = list(-torch.rand(num_tokens, generator=gen) - 1.0)
        s.reward, s.terminated, s.success, s.auc = reward, terminated, reward > 0, max(reward, 0.0)
        return s

    first, second = segment(0, 0, 3 + rank, 0.8, True), segment(1, 0, 5 - rank, -1.0, False)
    second.next = segment(1, 1, 2 + 2 * rank, 0.7, True)
    truncated = segment(2, 0, 4, -1.0, False)
    truncated.truncated, truncated.next = True, _Segment(2, 2, 1, [5, 6, 7, 8, 9])
    return [first, second, second.next, truncated, truncated.next]


def _batch(halves: list[list[_Segment]]) -> Batch:
    """Completed actions first (in rank order), then the bootstrap prompts, as the collector packs them."""
    completed = [s for half in halves for s in half if s.tokens]
    bootstrap = [s for half in halves for s in half if not s.tokens]
    segments = completed + bootstrap
    return _to_batch(segments, {id(s): k for k, s in enumerate(segments)}, 0, len(completed))


def _policy(algo: str) -> Policy:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    policy = Policy(LlamaForCausalLM(config), None, device="cpu", **ALGOS[algo][2])
    with torch.no_grad():  # non-zero heads, so the critic / value gradients reach the backbone too
        for head in (policy.q_head, policy.value_head):
            if head is not None:
                head.weight.normal_(0, 0.1)
    return policy


def _update(algo: str, batch: Batch, policy: Policy) -> dict[str, torch.Tensor]:
    """One SGD update of ``algo``; returns the parameters after it and the reported gradient norm."""
    update, config, _ = ALGOS[algo]
    optimizer = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.5)
    metrics = update(policy, batch, optimizer, config, max_grad_norm=0.05, generator=torch.Generator().manual_seed(0))
    weights, _ = policy.checkpoint_state(None)  # full tensors, also when sharded
    return {**{k: v.detach().clone() for k, v in weights.items()}, "grad_norm": torch.tensor(metrics["grad_norm"])}


def _rank_main(rank: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    ranks = distributed.setup("cpu")
    assert (ranks.rank, ranks.world_size) == (rank, WORLD_SIZE)
    results = {}
    for mode in MODES:
        for algo in ALGOS:
            policy = _policy(algo)
            policy.distribute(ranks.accelerator, shard=mode == "fsdp")
            assert policy.sharded == (mode == "fsdp")
            results[mode, algo] = _update(algo, _batch([_half(rank)]), policy)
    results["fsdp_roundtrip"] = _sharded_checkpoint_roundtrip(ranks, policy, os.path.join(out_dir, "ckpt.pt"))
    results["fsdp_gather_scope"] = _sampling_gathers_the_policy_only(policy)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    ranks.barrier()


def _sharded_checkpoint_roundtrip(ranks, policy: Policy, path: str) -> bool:
    """Rank 0 saves a trained sharded policy + Adam state; every rank loads the file into a fresh sharded policy;
    the state gathered again equals the saved one (rank 0's view; True on the other ranks)."""
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    _update("reinforce", _batch([_half(ranks.rank)]), policy)  # non-zero weights
    policy(*(torch.ones((1, 2), dtype=torch.long),) * 2)[..., 0].sum().backward()
    optimizer.step()  # Adam moments to save
    saved = policy.checkpoint_state(optimizer)
    if ranks.is_main:
        torch.save(saved, path)
    ranks.barrier()
    fresh = _policy("reinforce")
    fresh.distribute(ranks.accelerator, shard=True)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    weights, optimizer_state = torch.load(path, weights_only=False)
    fresh.load_checkpoint_state(weights, fresh_optimizer, optimizer_state)
    reloaded = fresh.checkpoint_state(fresh_optimizer)
    if not ranks.is_main:
        return True
    torch.testing.assert_close(reloaded[0], saved[0], rtol=0, atol=0)
    torch.testing.assert_close(reloaded[1]["state"], saved[1]["state"], rtol=0, atol=0)
    return True


def _sampling_gathers_the_policy_only(policy: Policy) -> bool:
    """Sampling gathers π (plain tensors) but leaves the frozen π_ref copy's layers sharded; a reference pass may
    not be nested in it."""
    is_shard = lambda p: hasattr(p, "full_tensor")  # noqa: E731
    layer_weight = lambda model: model.model.layers[0].mlp.up_proj.weight  # noqa: E731
    assert is_shard(layer_weight(policy.model)) and is_shard(layer_weight(policy.ref_model))
    with policy.full_parameters(reference=False):
        assert not is_shard(layer_weight(policy.model)) and is_shard(layer_weight(policy.ref_model))
        with pytest.raises(RuntimeError, match="inside a full_parameters"):
            with policy.full_parameters():
                pass
    with policy.full_parameters():
        assert not is_shard(layer_weight(policy.ref_model))
    return is_shard(layer_weight(policy.model)) and is_shard(layer_weight(policy.ref_model))


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory) -> list[dict]:
    out_dir = str(tmp_path_factory.mktemp("ddp"))
    distributed.launch_local(_rank_main, (out_dir,), WORLD_SIZE)
    return [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(WORLD_SIZE)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("algo", list(ALGOS))
def test_two_rank_update_equals_one_process_on_combined_batch(rank_results, algo, mode):
    combined = _batch([_half(r) for r in range(WORLD_SIZE)])
    single_before = _policy(algo).state_dict()
    single = _update(algo, combined, _policy(algo))
    assert _half(0)[0].tokens != _half(1)[0].tokens  # the ranks really saw different data
    changed = [k for k in single if k != "grad_norm" and not torch.equal(single[k], single_before[k])]
    assert len(changed) > 5  # the update moved the backbone and the heads
    for rank, results in enumerate(rank_results):
        result = results[mode, algo]
        torch.testing.assert_close(result["grad_norm"], single["grad_norm"], rtol=1e-5, atol=1e-6)
        if mode == "fsdp" and rank > 0:
            assert set(result) == {"grad_norm"}  # a sharded policy's full state is gathered on rank 0 only
            continue
        for name, expected in single.items():
            actual = result[name]
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6, msg=f"{mode} rank {rank} {name}")


def test_sharded_checkpoint_roundtrip(rank_results):
    assert all(results["fsdp_roundtrip"] for results in rank_results)


def test_sampling_gathers_the_policy_but_not_the_reference_copy(rank_results):
    assert all(results["fsdp_gather_scope"] for results in rank_results)


def test_budget_split_across_ranks():
    from etpo_agents.distributed import Ranks

    assert Ranks().actions_per_rank(8, 5, min_actions=2) == 5  # one process: exactly as before
    two = Ranks(rank=1, world_size=2)
    assert two.actions_per_rank(8, 100, min_actions=2) == 4
    assert two.actions_per_rank(8, 1, min_actions=2) == 2  # every rank takes num_minibatches steps
    assert two.seed_offset(num_envs=3) == 3


def _train_rank(rank: int, run_kwargs: dict) -> None:
    torch.set_num_threads(1)
    from etpo_agents.config import RunConfig
    from etpo_agents.train import train

    train(RunConfig(**run_kwargs))


def _train_two_ranks(**run_kwargs) -> None:
    distributed.launch_local(_train_rank, (run_kwargs,), WORLD_SIZE)


@pytest.mark.parametrize("algo, use_lora", [("etpo", False), ("ppo", True)])
def test_fsdp_training_on_real_envs_checkpoints_and_resumes(tiny_model_dir, tmp_path, algo, use_lora):
    """Two sharded ranks sample different numbers of tokens from their own envs (gathered sampling), update in lock
    step, evaluate on rank 0, write a full checkpoint, and resume from it."""
    import csv
    import json

    run = dict(algo=algo, dataset="iris", model=tiny_model_dir, device="cpu", fsdp=True, use_lora=use_lora,
               actions_per_rollout=2, max_action_tokens=8, max_turns=2, save_every=1, progress_bar=False,
               output_dir=str(tmp_path / "run"), env_kwargs={"num_workers": 1})  # fmt: skip
    _train_two_ranks(total_steps=4, **run)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert checkpoint["progress"]["env_actions"] >= 4 and len(checkpoint["rng"]["samplers"]) == WORLD_SIZE
    weights = checkpoint["policy"]
    assert weights and all(not hasattr(v, "full_tensor") for v in weights.values())  # full, plain tensors
    head = "q_head.weight" if algo == "etpo" else "value_head.weight"
    assert float(weights[head].abs().sum()) > 0  # the zero-initialised head was trained
    assert "greedy_auc" in json.loads((tmp_path / "run" / "final_metrics.json").read_text())

    def logged_steps() -> list[int]:
        with open(tmp_path / "run" / "metrics.csv", newline="") as f:
            return [int(float(row["env_actions"])) for row in csv.DictReader(f)]

    before = logged_steps()
    _train_two_ranks(total_steps=8, resume=True, **run)
    steps = logged_steps()
    assert steps[: len(before)] == before and len(steps) > len(before)  # continued, nothing redone
    assert steps == sorted(set(steps)) and before[-1] < 8 <= steps[-1]
    resumed = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert resumed["progress"]["updates"] == len(steps)

    from etpo_agents.config import RunConfig
    from etpo_agents.train import train

    final = train(RunConfig(total_steps=10, resume=True, **{**run, "greedy_eval": False}))  # one process resumes it
    assert final["updates"] == len(steps) + 1 and final["num_actions"] >= 10
