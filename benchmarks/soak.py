"""Soak run: many code executions (good, failing, hanging, crashing) through a vector env; checks for leaks.

    python benchmarks/soak.py --num-actions 1000 --num-envs 2

Every action is a distinct body (no cache hits). Resident memory (this process plus all its descendants), open
file descriptors, child processes and sandbox temp dirs are sampled after warm-up and at the end; after
``close()`` no process or temp dir may remain. Prints one JSON object with the figures; exits non-zero if a status
of :data:`EXPECTED_STATUSES` never occurred (a body meant to crash that stopped earlier, at the import allow-list).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

import gymnasium as gym
import psutil

import etpo_gym  # noqa: F401

BODIES = {
    "good": "from sklearn.naive_bayes import GaussianNB\nmodel = GaussianNB(var_smoothing={v})\n"
    "model.fit(x_train, y_train)",
    "good_lr": "from sklearn.linear_model import LogisticRegression\nmodel = LogisticRegression(C={v}, max_iter=200)\n"
    "model.fit(x_train, y_train)",
    "failing": "model = NotAClassifier({v})",
    "hanging": "x = {v}\nwhile True:\n    x += 1",
    # Past the import allow-list (the real __import__ is reachable through sklearn's builtins, os through sklearn):
    # a segfault and an exit without a result in the jailed child, both reported as "crash".
    "crashing": "import sklearn\nx = {v}\nsklearn.base.__builtins__['__import__']('faulthandler')._sigsegv()",
    "exiting": "import sklearn\nsklearn.os._exit({v} % 7)",
    "memory": "blob = bytearray(8 * 1024 ** 3 + {v})",
}
MIX = ("good", "good_lr", "good", "failing", "hanging", "crashing", "exiting", "memory", "failing", "good")
EXPECTED_STATUSES = frozenset({"ok", "error", "timeout", "memory", "crash"})
"""Statuses that the mix produces; a soak missing one of them did not exercise what it claims to."""


def sandbox_dirs(root: str) -> set[str]:
    return set(glob.glob(os.path.join(root, "etpo-*")))


def footprint(ignore: frozenset[int] = frozenset()) -> dict[str, float]:
    """RSS of this process and its descendants (MiB), descendants, and this process's open fds.

    Args:
        ignore: pids of descendants that existed before the soak (not its to account for).
    """
    me = psutil.Process()
    children = [child for child in me.children(recursive=True) if child.pid not in ignore]
    rss = me.memory_info().rss
    for child in children:
        try:
            rss += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return {"rss_mib": rss / 2**20, "processes": len(children), "fds": me.num_fds()}


def soak(num_actions: int = 1000, num_envs: int = 2, timeout_s: float = 1.0, warmup: int = 100) -> dict:
    """Run ``num_actions`` executions through ``gym.make_vec("ETPO-DataSciText-v0", ...)``; returns the figures."""
    # a private temp root, so that sandboxes of other processes on the machine do not count as leaks
    root = tempfile.mkdtemp(prefix="soak-")
    os.environ["TMPDIR"] = root
    tempfile.tempdir = None
    before = frozenset(child.pid for child in psutil.Process().children(recursive=True))
    # SAME_STEP autoreset: every step executes code (NEXT_STEP would spend a step on each reset).
    envs = gym.make_vec("ETPO-DataSciText-v0", num_envs=num_envs, vectorization_mode="async", dataset="iris",
                        timeout_s=timeout_s, memory_limit_mb=1024,
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})  # fmt: skip
    envs.reset(seed=0)
    statuses: dict[str, int] = {}
    answered = 0
    warm = None
    samples = []
    start = time.perf_counter()
    for step in range(num_actions // num_envs):
        actions = []
        for env_index in range(num_envs):
            index = step * num_envs + env_index
            kind = MIX[index % len(MIX)]
            actions.append(BODIES[kind].format(v=index + 1))
        _, rewards, _, _, infos = envs.step(tuple(actions))
        for env_index in range(num_envs):
            # an episode that ended in this step reports its step info under final_info (SAME_STEP autoreset)
            ended = "_final_info" in infos and infos["_final_info"][env_index]
            source = infos["final_info"] if ended else infos
            if source.get("_status", [False] * num_envs)[env_index]:
                status = str(source["status"][env_index])
                statuses[status] = statuses.get(status, 0) + 1
                answered += 1
        if (step + 1) * num_envs >= warmup and warm is None:
            warm = footprint(before)
        if (step + 1) % max(1, 100 // num_envs) == 0:
            samples.append(footprint(before)["rss_mib"])
    end = footprint(before)
    elapsed = time.perf_counter() - start
    envs.close()
    time.sleep(0.5)
    after_close = footprint(before)
    leaked_dirs = sorted(sandbox_dirs(root))
    warm = warm or end
    return {
        "num_actions": answered,
        "num_envs": num_envs,
        "statuses": statuses,
        "wall_time_s": round(elapsed, 1),
        "actions_per_min": round(60 * answered / elapsed, 1),
        "rss_warm_mib": round(warm["rss_mib"], 1),
        "rss_end_mib": round(end["rss_mib"], 1),
        "rss_growth": round(end["rss_mib"] / warm["rss_mib"] - 1, 4),
        "rss_samples_mib": [round(s, 1) for s in samples],
        "fds_warm": warm["fds"],
        "fds_end": end["fds"],
        "processes_during": end["processes"],
        "processes_after_close": after_close["processes"],
        "leaked_temp_dirs": leaked_dirs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-actions", type=int, default=1000)
    parser.add_argument("--num-envs", type=int, default=2)
    parser.add_argument("--timeout-s", type=float, default=1.0)
    args = parser.parse_args()
    figures = soak(args.num_actions, args.num_envs, args.timeout_s)
    print(json.dumps(figures, indent=2))
    missing = EXPECTED_STATUSES - set(figures["statuses"])
    if missing:
        sys.exit(f"statuses that never occurred: {sorted(missing)}")


if __name__ == "__main__":
    main()
