"""Env step cost: median microseconds per intra-action token ``step`` (goal <= 10 us).

    python benchmarks/bench_env.py [--num-steps 20000]

Measures the raw env (``env.unwrapped``) and the env as ``gym.make`` returns it (with Gymnasium's order-enforcing
and checker wrappers). Intra-action steps only: the token that ends an action runs the code and is measured by
``bench_executor.py``. With ``--rollout`` it also runs the shared rollout collector with the embedded model and
reports the share of the rollout's wall time spent inside ``env.step`` (goal <= 2%).
"""

from __future__ import annotations

import argparse
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-steps", type=int, default=20000)
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


if __name__ == "__main__":
    main()
