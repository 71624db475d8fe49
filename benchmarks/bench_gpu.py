"""GPU memory and speed of one update: peak GPU memory and update tokens/s for ETPO vs PPO (issue 7).

Models (no downloads): the embedded ``etpo-tiny-coder`` when installed, and a randomly initialised ~0.5B
Llama-shaped config (hidden 1024, 24 layers, intermediate 4096, CodeLlama's 32,016-token vocabulary: 0.47B
parameters). Batches are fixed synthetic rollouts with the collector's layout (``etpo_agents.rollout._to_batch``):
``--actions`` actions of ``--action-tokens`` sampled tokens after a ``--prompt-tokens`` prompt. Each cell runs one
warm-up update, resets the peak-memory counter, then times ``--repeats`` updates. Goal: ETPO's peak ≤ 1.3× PPO's.

    python benchmarks/bench_gpu.py --models embedded 0.5b --algos etpo ppo --use-lora --out runs/gpu.jsonl

Exits with a message (status 0) where CUDA is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import torch

from etpo_agents import etpo, ppo
from etpo_agents.config import ETPOConfig, PPOConfig
from etpo_agents.policy import Policy, load_policy
from etpo_agents.rollout import Batch, _Segment, _to_batch

EMBEDDED_CONFIG = os.path.join(os.path.dirname(__file__), "..", "agents", "assets", "etpo-tiny-coder", "config.json")
ALGOS = {"etpo": (etpo.update, ETPOConfig, {"q_head": True}), "ppo": (ppo.update, PPOConfig, {"value_head": True})}
RANDOM_SHAPES = {
    "0.5b": {"hidden_size": 1024, "num_hidden_layers": 24, "intermediate_size": 4096, "num_attention_heads": 16,
             "num_key_value_heads": 16, "vocab_size": 32016},
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "num_attention_heads": 2,
             "num_key_value_heads": 2, "vocab_size": 512},
}  # fmt: skip
"""Random Llama shapes: ``0.5b`` for the measurements, ``tiny`` for ``tests/test_gpu.py``."""


def build_model(name: str) -> tuple[Any, Any]:
    """``embedded`` (needs the installed model) or a key of :data:`RANDOM_SHAPES`; returns (model, tokenizer)."""
    if name == "embedded":
        return load_policy(os.path.dirname(EMBEDDED_CONFIG))
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(max_position_embeddings=4096, **RANDOM_SHAPES[name])), None


def synthetic_batch(num_actions: int, prompt_tokens: int, action_tokens: int, vocab: int) -> Batch:
    """Single-action terminated episodes of random tokens, packed like a rollout."""
    gen = torch.Generator().manual_seed(0)
    segments = []
    for k in range(num_actions):
        s = _Segment(k, k, 0, torch.randint(3, vocab, (prompt_tokens,), generator=gen).tolist())
        s.tokens = torch.randint(3, vocab, (action_tokens,), generator=gen).tolist()
        s.logprobs = list(-torch.rand(action_tokens, generator=gen) - 1.0)
        s.reward, s.terminated = (0.8 if k % 2 else -1.0), True
        segments.append(s)
    return _to_batch(segments, {id(s): k for k, s in enumerate(segments)}, 0, num_actions)


def measure(model_name: str, algo: str, args: argparse.Namespace) -> dict[str, Any]:
    """Peak memory (GiB) and update tokens/s of ``algo`` on ``model_name`` (bf16 autocast on CUDA)."""
    update, config_cls, heads = ALGOS[algo]
    model, tokenizer = build_model(model_name)
    num_params = sum(p.numel() for p in model.parameters())
    policy = Policy(model, tokenizer, use_lora=args.use_lora, gradient_checkpointing=args.gradient_checkpointing,
                    device="cuda", **heads)  # fmt: skip
    vocab = model.get_output_embeddings().out_features
    batch = synthetic_batch(args.actions, args.prompt_tokens, args.action_tokens, vocab).to(policy.device_)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-5)
    config = config_cls(num_epochs=1, num_minibatches=args.minibatches)
    metrics = update(policy, batch, optimizer, config, generator=torch.Generator().manual_seed(0))  # warm-up
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.repeats):
        metrics = update(policy, batch, optimizer, config, generator=torch.Generator().manual_seed(0))
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {"model": model_name, "algo": algo, "params_m": num_params / 1e6, "use_lora": args.use_lora,
              "gradient_checkpointing": args.gradient_checkpointing,
              "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
              "tokens_per_s": args.repeats * batch.num_tokens / seconds, "policy_loss": metrics["policy_loss"],
              "device": torch.cuda.get_device_name()}  # fmt: skip
    del policy, optimizer, model, batch
    torch.cuda.empty_cache()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["embedded", "0.5b"], help="embedded, 0.5b or tiny")
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=list(ALGOS))
    parser.add_argument("--actions", type=int, default=16)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--action-tokens", type=int, default=256)
    parser.add_argument("--minibatches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--use-lora", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--out", default=None, help="append one JSON line per cell")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device; nothing measured")
        return
    models = [m for m in args.models if m != "embedded" or os.path.exists(EMBEDDED_CONFIG)]
    print("| model | params (M) | algo | peak GiB | update tokens/s | ETPO/PPO peak |")
    print("|---|---:|---|---:|---:|---:|")
    for model_name in models:
        rows = {algo: measure(model_name, algo, args) for algo in args.algos}
        for algo, row in rows.items():
            ratio = rows["etpo"]["peak_gib"] / rows["ppo"]["peak_gib"] if algo == "etpo" and "ppo" in rows else None
            print(f"| {model_name} | {row['params_m']:.0f} | {algo} | {row['peak_gib']:.2f} | "
                  f"{row['tokens_per_s']:.0f} | {'' if ratio is None else f'{ratio:.2f}'} |", flush=True)  # fmt: skip
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
