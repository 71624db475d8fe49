"""Replicated (DDP) vs sharded (FSDP2) training on several CPU processes: memory held per rank and update time.

Every rank builds the same Policy, wraps it (``Policy.distribute(..., shard=...)``), and runs ETPO updates with
Adam on its own synthetic rollout batch (``make_batch``: the env's real prompt, fixed-length actions). Reported
per mode, on rank 0, measured from the tensors each rank actually holds between updates:

* training state per rank: parameters (π, the π_ref copy, heads, Q̄) + gradients + Adam moments, in MB (a
  DTensor counts its local shard), and the parameters held while sampling (a sharded rank gathers π's full
  parameters for its rollouts, not the frozen π_ref copy's decoder layers, and keeps its shards);
* the median wall time of one update (which includes the gathered no-grad passes and the sharded minibatch
  steps) and update tokens/s over all ranks.

    python benchmarks/bench_distributed.py --model-size small --world-size 2

CPU ``gloo`` collectives on one machine say little about NCCL speed on GPUs; the memory column is the point (FSDP
should hold about 1/world_size of DDP's training state). Requires nothing beyond the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch
from _bench_common import add_model_size_argument, env_prompt, load_model, make_batch, markdown_table

MODES = ("ddp", "fsdp")


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes this process holds for ``tensor`` (a DTensor's local shard)."""
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def training_state_mb(policy: Any, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """MB of parameters, gradients and optimiser state this rank holds between updates, and of parameters while
    sampling (inside ``Policy.full_parameters``: a sharded rank then also holds the gathered copies)."""
    params = sum(tensor_bytes(p) for p in policy.parameters())
    grads = sum(tensor_bytes(p.grad) for p in policy.parameters() if p.grad is not None)
    moments = sum(tensor_bytes(v) for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v))
    with policy.full_parameters(reference=False):  # as the rollout collector gathers
        gathered = sum(tensor_bytes(p) for p in policy.parameters()) if policy.sharded else 0
    return {"params_mb": params / 2**20, "grads_mb": grads / 2**20, "optimizer_mb": moments / 2**20,
            "sampling_params_mb": (params + gathered) / 2**20}  # fmt: skip


def _rank_main(rank: int, world_size: int, args: argparse.Namespace, out_path: str) -> None:
    from etpo_agents import distributed, etpo
    from etpo_agents.config import ETPOConfig
    from etpo_agents.policy import Policy

    ranks = distributed.setup("cpu")
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))  # after setup: accelerate sets its own
    config = ETPOConfig(num_epochs=1, num_minibatches=args.num_minibatches)
    results: dict[str, Any] = {"world_size": world_size}
    for mode in MODES:
        model, tokenizer, results["model"] = load_model(args.model_size)  # the same seeded weights for each mode
        batch = make_batch(env_prompt(), args.num_actions, args.action_len, model.config.vocab_size,
                           tokenizer.pad_token_id or 0, seed=rank)  # fmt: skip
        results["tokens_per_rank"] = batch.num_tokens
        policy = Policy(model, tokenizer, q_head=True, device="cpu")
        policy.distribute(ranks.accelerator, shard=mode == "fsdp")
        optimizer = torch.optim.Adam(policy.parameters(), lr=1e-5)
        seconds = []
        for _ in range(args.repeats + 1):  # the first update is a warm-up (Adam states, FSDP lazy init)
            ranks.barrier()
            start = time.perf_counter()
            etpo.update(policy, batch, optimizer, config, generator=torch.Generator().manual_seed(0))
            seconds.append(time.perf_counter() - start)
        state = training_state_mb(policy, optimizer)
        median = statistics.median(seconds[1:])
        total = state["params_mb"] + state["grads_mb"] + state["optimizer_mb"]
        results[mode] = {**state, "total_mb": total, "update_s": median,
                         "tokens_per_s": world_size * batch.num_tokens / median}  # fmt: skip
    if ranks.is_main:
        with open(out_path, "w") as f:
            json.dump(results, f)
    ranks.barrier()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_size_argument(parser)
    parser.add_argument("--world-size", type=int, default=2, help="CPU processes (gloo)")
    parser.add_argument("--num-actions", type=int, default=4, help="actions per rank per update")
    parser.add_argument("--action-len", type=int, default=64, help="tokens per action")
    parser.add_argument("--num-minibatches", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed updates per mode (after one warm-up)")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the ranks; rank 0's figures: ``{"ddp": {...}, "fsdp": {...}, "model": ..., ...}``."""
    from etpo_agents import distributed

    with tempfile.TemporaryDirectory() as tmp:
        out_path = os.path.join(tmp, "result.json")
        distributed.launch_local(_rank_main, (args.world_size, args, out_path), args.world_size)
        with open(out_path) as f:
            return json.load(f)


def main(argv: Sequence[str] | None = None) -> str:
    results = measure(parse_args(argv))
    columns = ("params_mb", "grads_mb", "optimizer_mb", "total_mb", "sampling_params_mb")
    rows = [[mode, *(f"{results[mode][k]:.1f}" for k in columns), f"{results[mode]['update_s']:.2f}",
             f"{results[mode]['tokens_per_s']:.0f}"] for mode in MODES]  # fmt: skip
    ratio = results["fsdp"]["total_mb"] / results["ddp"]["total_mb"]
    report = "\n".join([
        f"Model: {results['model']}; {results['world_size']} CPU ranks (gloo), ETPO + Adam, "
        f"{results['tokens_per_rank']} action tokens per rank per update.",
        "",
        markdown_table(["mode", "params MB/rank", "grads MB/rank", "Adam MB/rank", "training state MB/rank",
                        "params MB/rank while sampling", "update s", "tokens/s (all ranks)"], rows),  # fmt: skip
        "",
        f"FSDP / DDP training state per rank: {ratio:.2f}x; update time: "
        f"{results['fsdp']['update_s'] / results['ddp']['update_s']:.2f}x",
    ])  # fmt: skip
    print(report)
    return report


if __name__ == "__main__":
    main()
