"""Sandboxed evaluation vs the official in-process procedure, and cache-hit latency (issue 2's executor goals).

Goals: sandboxed evaluation no slower than ``exec`` + 5 sequential splits in the caller (ratio <= 1), and a cache
hit >= 100x faster than a real evaluation. Both sides use the same bodies, data and warm imports; every sandboxed
repeat gets a distinct cache key (a trailing comment) so that it really runs.

    python benchmarks/bench_executor.py [--repeats 3] [--datasets pharyngitis kidney_stone ...]

Prints a Markdown table (medians over repeats) and exits non-zero if any evaluation fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings

from etpo_gym import task
from etpo_gym.datasets import load_dataset
from etpo_gym.executor import CodeExecutor

BODIES = {
    "RandomForest": "from sklearn.ensemble import RandomForestClassifier\n"
    "model = RandomForestClassifier(random_state=0)\nmodel.fit(x_train, y_train)",
    "LogisticRegression": "from sklearn.linear_model import LogisticRegression\n"
    "model = LogisticRegression(max_iter=1000)\nmodel.fit(x_train, y_train)",
}
DATASETS = ("pharyngitis", "kidney_stone", "health_insurance", "spaceship_titanic")


def in_process(dataset, body: str) -> tuple[float, float]:
    """The official procedure: exec the module in the caller, then 5 sequential splits. Returns (seconds, auc)."""
    start = time.perf_counter()
    namespace: dict = {}
    exec(task.program_source(body), namespace)
    scores = task.score_build_model(
        namespace["build_model"], dataset.x, dataset.y, dataset.x_test, dataset.y_test, dataset.num_classes
    )
    return time.perf_counter() - start, scores["auc"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-repeats", type=int, default=50)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # convergence warnings of the in-process runs
    cores = len(os.sched_getaffinity(0))
    print(f"# {platform.processor() or platform.machine()}, {cores} cores, Python {platform.python_version()}")
    print("| dataset | body | in-process s | sandboxed s | ratio | cache hit µs | speed-up | AUC equal |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    failed = False
    with CodeExecutor(timeout_s=300) as executor:
        executor.evaluate(load_dataset("iris"), BODIES["LogisticRegression"])  # worker start-up, not measured
        for name in args.datasets:
            dataset = load_dataset(name)
            for label, body in BODIES.items():
                local = [in_process(dataset, body) for _ in range(args.repeats)]
                results = [executor.evaluate(dataset, body + f"\n# repeat {i}") for i in range(args.repeats)]
                failed |= not all(r.ok for r in results)
                hits = [executor.evaluate(dataset, body + "\n# repeat 0").duration_s for _ in range(args.cache_repeats)]
                local_s = statistics.median(t for t, _ in local)
                sandbox_s = statistics.median(r.duration_s for r in results)
                hit_s = statistics.median(hits)
                same_auc = all(abs(r.auc - local[0][1]) < 1e-12 for r in results if r.ok)
                print(
                    f"| {name} | {label} | {local_s:.3f} | {sandbox_s:.3f} | {sandbox_s / local_s:.2f} | "
                    f"{hit_s * 1e6:.0f} | {sandbox_s / hit_s:,.0f}x | {same_auc} |",
                    flush=True,
                )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
