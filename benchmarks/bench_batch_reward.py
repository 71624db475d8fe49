"""Batch reward (etpo_gym.rewards.BatchReward) of N bodies on W workers vs scoring them one at a time (issue 15).

Three ways to score the same N distinct bodies (a trailing comment gives each repeat its own cache key, so every
evaluation really runs):

* ``one-at-a-time, 1 worker``: an executor with one worker (its splits run in parallel on the cores) scoring one
  body after another, as a single env's ``step`` does;
* ``one-at-a-time, W workers``: the W-worker executor, still one body after another (W - 1 workers idle);
* ``batch, W workers``: ``BatchReward.score`` submits all N at once to the same W-worker executor.

The speed-up is the first time (and the second) over the batch time. Rewards must be identical across the three.

    python benchmarks/bench_batch_reward.py [--num-bodies 16] [--num-workers 2] [--repeats 3]

Prints a Markdown table (medians over repeats) and exits non-zero if the rewards differ or a body fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

from etpo_gym.datasets import load_dataset
from etpo_gym.executor import CodeExecutor
from etpo_gym.rewards import BatchReward, score_bodies

BODIES = (
    "from sklearn.ensemble import RandomForestClassifier\n"
    "model = RandomForestClassifier(n_estimators=50, random_state=0)\nmodel.fit(x_train, y_train)",
    "from sklearn.linear_model import LogisticRegression\n"
    "model = LogisticRegression(max_iter=1000)\nmodel.fit(x_train, y_train)",
    "from sklearn.ensemble import GradientBoostingClassifier\n"
    "model = GradientBoostingClassifier(random_state=0)\nmodel.fit(x_train, y_train)",
    "from sklearn.neighbors import KNeighborsClassifier\nmodel = KNeighborsClassifier()\nmodel.fit(x_train, y_train)",
)
DATASETS = ("kidney_stone", "pharyngitis")


def workload(num_bodies: int, repeat: int) -> tuple[list[str], list[str]]:
    """``num_bodies`` (dataset name, body) pairs cycling over :data:`BODIES` x :data:`DATASETS`, unique per repeat."""
    names = [DATASETS[i % len(DATASETS)] for i in range(num_bodies)]
    bodies = [f"{BODIES[i % len(BODIES)]}\n# repeat {repeat} body {i}" for i in range(num_bodies)]
    return names, bodies


def one_at_a_time(executor: CodeExecutor, names: list[str], bodies: list[str]) -> tuple[float, list[float]]:
    """Seconds and rewards scoring each body alone, as the env's ``step`` does."""
    start = time.perf_counter()
    scored = [score_bodies(executor, [load_dataset(n)], [b])[0] for n, b in zip(names, bodies, strict=True)]
    return time.perf_counter() - start, [reward for reward, _ in scored]


def batch(reward: BatchReward, names: list[str], bodies: list[str]) -> tuple[float, list[float]]:
    """Seconds and rewards of one ``BatchReward.score`` call over every body."""
    start = time.perf_counter()
    scored = reward.score(bodies, names)
    return time.perf_counter() - start, [s["reward"] for s in scored]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-bodies", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    print(f"# {platform.processor() or platform.machine()}, {cores} cores, load {load:.1f}, "
          f"N={args.num_bodies} bodies, W={args.num_workers} workers")  # fmt: skip
    times: dict[str, list[float]] = {"one-at-a-time, 1 worker": [], f"one-at-a-time, {args.num_workers} workers": [],
                                     f"batch, {args.num_workers} workers": []}  # fmt: skip
    failed = False
    with (
        CodeExecutor(num_workers=1, timeout_s=120) as single,
        CodeExecutor(num_workers=args.num_workers, timeout_s=120) as multi,
    ):
        reward = BatchReward(multi)
        warm_names, warm_bodies = workload(args.num_workers, -1)  # start every worker and send it the datasets
        reward.score(warm_bodies * len(DATASETS), [n for n in DATASETS for _ in warm_bodies])
        score_bodies(single, [load_dataset(n) for n in DATASETS], warm_bodies[: len(DATASETS)])
        for repeat in range(args.repeats):
            runs = []
            for label, run in zip(times, (
                lambda n, b: one_at_a_time(single, n, b),
                lambda n, b: one_at_a_time(multi, n, b),
                lambda n, b: batch(reward, n, b),
            ), strict=True):  # fmt: skip
                names, bodies = workload(args.num_bodies, 3 * repeat + len(runs))
                seconds, rewards = run(names, bodies)
                times[label].append(seconds)
                runs.append(rewards)
            if any(r != runs[0] for r in runs) or min(runs[0]) < 0:
                print(f"repeat {repeat}: rewards differ or a body failed: {runs}", file=sys.stderr)
                failed = True
    batch_s = statistics.median(times[f"batch, {args.num_workers} workers"])
    print("| scoring | seconds (median) | bodies/s | speed-up of the batch |")
    print("|---|---:|---:|---:|")
    for label, values in times.items():
        seconds = statistics.median(values)
        print(f"| {label} | {seconds:.2f} | {args.num_bodies / seconds:.1f} | {seconds / batch_s:.2f}x |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
