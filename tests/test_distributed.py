"""Data-parallel updates through ``accelerate`` on CPU (``gloo``): 2 ranks on two halves of a batch make the same
update as one process on the combined batch (issue 7).

The batch is built here from fixed tensors (not env rollouts), so both sides see exactly the same tokens; the halves
have different token counts, which checks the global-token loss normalisation of ``agents.policy.apply_gradients``.
SGD, not Adam: Adam's first step is ≈ lr·sign(g), which turns float rounding on near-zero gradients into large
differences.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from agents import etpo, ppo
from agents.config import ETPOConfig, PPOConfig
from agents.policy import Policy
from agents.rollout import Batch, _Segment, _to_batch

VOCAB = 48
WORLD_SIZE = 2
ALGOS = {
    "etpo": (etpo.update, ETPOConfig(num_epochs=1, num_minibatches=1), {"q_head": True}),
    # Advantage normalisation uses the batch's statistics, a per-rank quantity: off for an exact comparison.
    "ppo": (ppo.update, PPOConfig(num_epochs=1, num_minibatches=1, normalize_advantage=False), {"value_head": True}),
}


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
    state = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    return {**state, "grad_norm": torch.tensor(metrics["grad_norm"])}


def _rank_main(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    from agents import distributed

    ranks = distributed.setup("cpu")
    assert (ranks.rank, ranks.world_size) == (rank, WORLD_SIZE)
    results = {}
    for algo in ALGOS:
        policy = _policy(algo)
        policy.distribute(ranks.accelerator)
        results[algo] = _update(algo, _batch([_half(rank)]), policy)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    ranks.barrier()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory) -> list[dict]:
    out_dir = str(tmp_path_factory.mktemp("ddp"))
    mp.spawn(_rank_main, args=(_free_port(), out_dir), nprocs=WORLD_SIZE, join=True)
    return [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(WORLD_SIZE)]


@pytest.mark.parametrize("algo", list(ALGOS))
def test_two_rank_update_equals_one_process_on_combined_batch(rank_results, algo):
    combined = _batch([_half(r) for r in range(WORLD_SIZE)])
    single_before = _policy(algo).state_dict()
    single = _update(algo, combined, _policy(algo))
    assert _half(0)[0].tokens != _half(1)[0].tokens  # the ranks really saw different data
    changed = [k for k in single if k != "grad_norm" and not torch.equal(single[k], single_before[k])]
    assert len(changed) > 5  # the update moved the backbone and the heads
    for rank, results in enumerate(rank_results):
        for name, expected in single.items():
            torch.testing.assert_close(results[algo][name], expected, rtol=1e-5, atol=1e-6, msg=f"rank {rank} {name}")


def test_budget_split_across_ranks():
    from agents.distributed import Ranks

    assert Ranks().actions_per_rank(8, 5, min_actions=2) == 5  # one process: exactly as before
    two = Ranks(rank=1, world_size=2)
    assert two.actions_per_rank(8, 100, min_actions=2) == 4
    assert two.actions_per_rank(8, 1, min_actions=2) == 2  # every rank takes num_minibatches steps
    assert two.seed_offset(num_envs=3) == 3
