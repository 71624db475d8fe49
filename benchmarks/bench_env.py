"""Env step cost: median microseconds per intra-action token ``step`` (goal <= 10 us), and its share of a real
rollout's wall time (goal <= 2%).

    python benchmarks/bench_env.py [--num-steps 20000] [--rollout-actions 32]

Measures the raw env (``env.unwrapped``) and the env as ``gym.make`` returns it (with Gymnasium's order-enforcing
and checker wrappers). Intra-action steps only: the token that ends an action runs the code and is measured by
``bench_executor.py``. Then it collects ``--rollout-actions`` actions with the shared rollout collector
(:class:`etpo_agents.rollout.RolloutCollector`, one sync sub-env, the embedded model, temperature 1) and splits the
rollout's wall time into intra-action ``env.step`` calls, action-ending ``env.step`` calls (code execution in the
sandbox) and the rest (the model's forward passes and sampling).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np

import etpo_gym  # noqa: F401


def median_step_us(env, num_steps: int, seed: int = 0) -> float:
    """Median wall time of intra-action steps, in microseconds; the action never reaches EOS or its limit."""
    rng = np.random.default_rng(seed)
    base = env.unwrapped
    eos = base.eos_token_id
    tokens = [t for t in rng.integers(0, base.vocab_size, num_steps).tolist() if t != eos]
    env.reset(seed=seed)
    timings = []
    in_action = 0
    for token in tokens:
        if in_action == base.max_action_tokens - 1:  # would end the action: start a fresh episode instead
            env.reset()
            in_action = 0
        start = time.perf_counter_ns()
        env.step(token)
        timings.append(time.perf_counter_ns() - start)
        in_action += 1
    return float(np.median(timings)) / 1000.0


def rollout_shares(num_actions: int, model_size: str = "small", seed: int = 0) -> dict[str, Any]:
    """Collect ``num_actions`` actions (after one warm-up action) and split the rollout's wall time.

    ``env.step`` is timed at the vector env the collector calls (so the vector env's own overhead counts as env
    time), and each step is classified by its ``info["action_done"]``. Returns step counts, seconds and shares of
    the rollout spent in intra-action steps, action-ending steps and elsewhere.
    """
    from _bench_common import load_model

    from etpo_agents.policy import Policy
    from etpo_agents.rollout import RolloutCollector

    model, tokenizer, description = load_model(model_size, seed)
    policy = Policy(model, tokenizer, device="cpu")
    envs = gym.make_vec("ETPO-DataSci-v0", num_envs=1, vectorization_mode="sync", dataset="pharyngitis",
                        tokenizer=tokenizer)  # fmt: skip
    seconds = {"intra_action": 0.0, "action_end": 0.0}
    steps = {"intra_action": 0, "action_end": 0}
    vector_step = envs.step

    def timed_step(actions):
        start = time.perf_counter()
        result = vector_step(actions)
        kind = "action_end" if result[-1]["action_done"][0] else "intra_action"
        seconds[kind] += time.perf_counter() - start
        steps[kind] += 1
        return result

    envs.step = timed_step
    try:
        collector = RolloutCollector(envs, policy, temperature=1.0, seed=seed)
        collector.collect(1)  # warm-up: sandbox worker start, first forward passes
        seconds.update(dict.fromkeys(seconds, 0.0))
        steps.update(dict.fromkeys(steps, 0))
        start = time.perf_counter()
        collector.collect(num_actions)
        total = time.perf_counter() - start
    finally:
        envs.close()
    seconds["rest"] = total - seconds["intra_action"] - seconds["action_end"]
    return {"model": description, "rollout_s": total, "steps": steps, "seconds": seconds,
            "shares": {kind: value / total for kind, value in seconds.items()}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-steps", type=int, default=20000)
    parser.add_argument("--rollout-actions", type=int, default=32, help="0 skips the rollout measurement")
    args = parser.parse_args()
    # stop strings are checked on every token, so the default env (with them) is the one measured
    env = gym.make("ETPO-DataSci-v0", dataset="pharyngitis", max_action_tokens=256)
    raw = median_step_us(env.unwrapped, args.num_steps)
    wrapped = median_step_us(env, args.num_steps)
    env.close()
    print("| env | median us / intra-action step |")
    print("|---|---|")
    print(f"| DataSciTokenEnv (unwrapped) | {raw:.2f} |")
    print(f"| gym.make('ETPO-DataSci-v0') (with Gymnasium's wrappers) | {wrapped:.2f} |")
    if args.rollout_actions:
        result = rollout_shares(args.rollout_actions)
        print(f"\nRollout of {args.rollout_actions} actions ({result['model']}): {result['rollout_s']:.1f} s")
        print("| part of the rollout | steps | s | share |")
        print("|---|---:|---:|---:|")
        for kind, label in [("intra_action", "intra-action env.step"), ("action_end", "action-ending env.step "
                            "(code execution)"), ("rest", "model forward + sampling (the rest)")]:  # fmt: skip
            steps = result["steps"].get(kind, "")
            print(f"| {label} | {steps} | {result['seconds'][kind]:.2f} | {100 * result['shares'][kind]:.2f}% |")


if __name__ == "__main__":
    main()
