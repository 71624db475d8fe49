"""Linearity: ETPO update time vs action length (32/64/128/256 tokens), the paper's "linear in action exploration".

    python benchmarks/bench_linearity.py [--model-size small|large|tiny] [--lengths 32 64 128 256]
                                         [--num-actions 4] [--repeats 5] [--threads 1] [--with-ppo]

ETPO explores the whole vocabulary at each of an action's L token positions, so its update should cost a + b*L
(|V|*L work), not grow like |V|^L. For each L one rollout :class:`etpo_agents.rollout.Batch` of ``--num-actions``
actions of exactly L tokens is built (the env's real prompt, packed by the collector's own code) and
``etpo_agents.etpo.update`` (default ETPOConfig: 2 epochs x 2 minibatches) is timed on it; lengths are interleaved
round-robin after one warm-up round. Time = median process CPU seconds per update (robust to other processes on a
shared machine). A least-squares fit time = a + b*L gives the intercept a (the prompt and fixed costs), the slope b
(seconds per unit of L for the whole batch; b / num_actions per sampled token) and R^2.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence

import numpy as np
import torch
from _bench_common import add_model_size_argument, env_prompt, load_model, make_batch, markdown_table
from bench_update import build_policies, time_alternating, update_fns


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares ``y = a + b*x``; returns ``(a, b, R^2)``."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    b, a = np.polyfit(x, y, 1)
    residual = float(((y - (a + b * x)) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    return float(a), float(b), 1.0 - residual / total if total > 0 else 1.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_size_argument(parser)
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256], help="action lengths L")
    parser.add_argument("--num-actions", type=int, default=4, help="env actions per batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed updates per length")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--with-ppo", action="store_true", help="also time PPO (same epochs x minibatches)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> str:
    """Run the benchmark, print and return the Markdown report."""
    from etpo_agents.config import ETPOConfig, PPOConfig

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tokenizer, description = load_model(args.model_size)
    prompt = env_prompt()
    etpo_config = ETPOConfig()
    ppo_config = PPOConfig(num_epochs=etpo_config.num_epochs, num_minibatches=etpo_config.num_minibatches)
    policies = build_policies(model, tokenizer, use_lora=False)
    algos = ["etpo", "ppo"] if args.with_ppo else ["etpo"]
    fns = {}
    for length in args.lengths:
        batch = make_batch(prompt, args.num_actions, length, model.config.vocab_size, tokenizer.pad_token_id)
        per_algo = update_fns(policies, batch, etpo_config, ppo_config)
        fns.update({(algo, length): per_algo[algo] for algo in algos})
    times = time_alternating(fns, args.repeats)
    lines = [
        f"Model: {description}; full fine-tuning; {args.threads} torch threads. Batch: {args.num_actions} actions "
        f"of L tokens each after a {len(prompt)}-token prompt; ETPOConfig defaults ({etpo_config.num_epochs} epochs "
        f"x {etpo_config.num_minibatches} minibatches); median CPU seconds of {args.repeats} updates per length.",
        "",
    ]
    for algo in algos:
        seconds = [statistics.median(times[(algo, length)]["cpu"]) for length in args.lengths]
        a, b, r2 = linear_fit(args.lengths, seconds)
        rows = [[str(length), f"{length * args.num_actions}", f"{s:.3f}",
                 f"{1e6 * s / (length * args.num_actions):.0f}", f"{a + b * length:.3f}"]
                for length, s in zip(args.lengths, seconds, strict=True)]  # fmt: skip
        lines += [
            f"{algo.upper()}: fit time = a + b*L: **a = {a:.3f} s, b = {1e3 * b:.2f} ms per unit of L "
            f"({1e6 * b / args.num_actions:.0f} us per sampled token), R^2 = {r2:.4f}**",
            "",
            markdown_table(
                ["L (tokens / action)", "sampled tokens", "CPU s / update", "CPU us / token", "fit s"], rows
            ),
            "",
        ]
    report = "\n".join(lines).rstrip()
    print(report)
    return report


if __name__ == "__main__":
    main()
