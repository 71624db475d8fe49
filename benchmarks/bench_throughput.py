"""Rollout throughput: env actions per minute of :class:`etpo_agents.rollout.RolloutCollector` (issue 7).

Matrix: number of sub-envs (async vector env, one sandbox executor per sub-env with ``max_parallel_splits`` =
cores // envs) × look-ahead (``1``: only the next token overlaps the env step; ``64``: the collector samples up to
64 tokens ahead for the other sub-envs while one sub-env's code executes). Each cell collects ``--warmup`` actions
(worker start-up, first compilation of the sandbox) and then times ``--actions`` actions.

Model: the embedded ``etpo-tiny-coder`` when ``agents/assets/etpo-tiny-coder/config.json`` exists, else a random
Llama of the same class (hidden 256, 4 layers, the env's 2048-token vocabulary). The script prints which. A random
model writes garbage code that fails fast, so its numbers weigh generation more than execution.

    python benchmarks/bench_throughput.py --envs 1 2 4 --lookahead 1 64 --actions 24 --out runs/throughput.jsonl
    python benchmarks/bench_throughput.py --device cuda --envs 1 4 8 --lookahead 1 64   # sampling on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from typing import Any

import gymnasium as gym
import torch
from _bench_common import EMBEDDED_CONFIG, load_model

import etpo_gym  # noqa: F401  (registers the envs)
from etpo_agents.policy import Policy, load_policy
from etpo_agents.rollout import RolloutCollector


def model_path(tmp_dir: str) -> tuple[str, str]:
    """The embedded model's directory, else a random Llama of its class saved under ``tmp_dir``; (path, description)."""
    if os.path.exists(EMBEDDED_CONFIG):
        return os.path.dirname(EMBEDDED_CONFIG), "embedded etpo-tiny-coder"
    model, tokenizer, description = load_model("small")
    model.save_pretrained(tmp_dir)
    tokenizer.save_pretrained(tmp_dir)
    return tmp_dir, description


def measure(policy: Policy, num_envs: int, lookahead: int, args: argparse.Namespace) -> dict[str, Any]:
    """Time ``args.actions`` actions of one cell after ``args.warmup`` warm-up actions."""
    splits = max(1, (os.cpu_count() or 1) // num_envs)
    envs = gym.make_vec(
        "ETPO-DataSci-v0", num_envs=num_envs, vectorization_mode="async" if num_envs > 1 else "sync",
        dataset=args.dataset, tokenizer=policy.tokenizer, max_action_tokens=args.max_action_tokens, max_turns=5,
        num_workers=1, max_parallel_splits=splits,
    )  # fmt: skip
    try:
        collector = RolloutCollector(envs, policy, temperature=1.0, seed=args.seed, lookahead=lookahead)
        collector.collect(args.warmup)
        tokens_before, start = collector.total_tokens, time.perf_counter()
        batch = collector.collect(args.actions)
        seconds = time.perf_counter() - start
    finally:
        envs.close()
    return {"num_envs": num_envs, "lookahead": lookahead, "max_parallel_splits": splits,
            "actions": batch.num_actions, "seconds": seconds,
            "actions_per_min": 60 * batch.num_actions / seconds,
            "tokens_per_s": (collector.total_tokens - tokens_before) / seconds,
            "success_rate": float(batch.success[: batch.num_actions].float().mean())}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--lookahead", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--actions", type=int, default=24, help="timed actions per cell")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--max-action-tokens", type=int, default=64)
    parser.add_argument("--dataset", default="pharyngitis")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="where the policy samples: cpu, cuda or auto")
    parser.add_argument("--out", default=None, help="append one JSON line per cell")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_dir:
        path, description = model_path(tmp_dir)
        model, tokenizer = load_policy(path)
        policy = Policy(model, tokenizer, device=args.device)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    threads = torch.get_num_threads()
    print(f"model: {description} on {policy.device_}; {os.cpu_count()} CPU cores; torch threads {threads}")
    print("| envs | look-ahead | splits/env | actions | s | actions/min | tokens/s | success |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for num_envs in args.envs:
        for lookahead in args.lookahead:
            row = measure(policy, num_envs, lookahead, args)
            print(f"| {num_envs} | {lookahead} | {row['max_parallel_splits']} | {row['actions']} | "
                  f"{row['seconds']:.1f} | {row['actions_per_min']:.1f} | {row['tokens_per_s']:.0f} | "
                  f"{row['success_rate']:.2f} |", flush=True)  # fmt: skip
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps({**row, "model": description, "commit": commit, "device": str(policy.device_),
                                        "max_action_tokens": args.max_action_tokens}) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
