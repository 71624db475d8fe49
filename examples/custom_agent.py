"""A complete custom agent for ``ETPO-DataSci-v0``: an epsilon-greedy bandit over a few known ``build_model`` bodies.

Each env action is one body, written token by token (``env.step(token_id)``) and ended with EOS; the env runs it
in its sandbox and rewards the mean ROC AUC (or -1). The bandit keeps a mean reward per (dataset, body) and picks
the best body with probability ``1 - epsilon``. It needs no torch: the point is the env protocol and the agent
contract of ``etpo_agents.registry``.

Run it (a few actions on iris)::

    python examples/custom_agent.py --dataset iris --total-actions 6

or benchmark it next to the built-in agents (``compare.py`` resolves names through ``etpo_agents.registry``)::

    python benchmarks/compare.py --agents sb3-ppo,examples.custom_agent:run
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from typing import Any

import gymnasium as gym
import numpy as np

import etpo_gym  # noqa: F401  (registers the envs)
from etpo_agents.registry import register_agent

BODIES = {
    "random_forest": (
        "from sklearn.ensemble import RandomForestClassifier\n"
        "    model = RandomForestClassifier(n_estimators=50, random_state=0)\n"
        "    model.fit(x_train, y_train)\n"
        "    return model"
    ),
    "logistic_regression": (
        "from sklearn.linear_model import LogisticRegression\n"
        "    model = LogisticRegression(max_iter=1000)\n"
        "    model.fit(x_train, y_train)\n"
        "    return model"
    ),
    "naive_bayes": (
        "from sklearn.naive_bayes import GaussianNB\n    model = GaussianNB()\n    model.fit(x_train, y_train)\n"
        "    return model"
    ),
    "broken": "model = NoSuchClassifier()\n    return model",  # fails with -1: the bandit must learn to avoid it
}
"""The arms: bodies of ``build_model(x_train, y_train)`` (the prompt already ends with the first indentation)."""


def write_action(env: gym.Env, token_ids: list[int]) -> tuple[float, bool, dict[str, Any], int]:
    """Step ``token_ids`` into the env one token at a time until the action ends.

    Returns:
        ``(reward, episode_over, info, num_tokens)`` of the step that ended the action.
    """
    for num_tokens, token in enumerate(token_ids, start=1):
        _, reward, terminated, truncated, info = env.step(token)
        if info["action_done"]:  # EOS, a stop string or max_action_tokens ended the action: the code ran
            return float(reward), terminated or truncated, info, num_tokens
    raise ValueError("the action did not end: token_ids must end with the tokenizer's EOS id")


@register_agent("template-bandit")
def run(
    env_kwargs: dict[str, Any], total_actions: int, seed: int, epsilon: float = 0.2, **kwargs: Any
) -> dict[str, Any]:
    """Train the bandit for ``total_actions`` code executions, then write each dataset's best body once.

    Args:
        env_kwargs: ``gym.make("ETPO-DataSci-v0", **env_kwargs)`` arguments (``dataset``, ``max_action_tokens``...).
        total_actions: budget in env actions (code executions).
        seed: seeds the env and the bandit.
        epsilon: probability of a uniformly random arm.
        **kwargs: other runner options (ignored by this agent).

    Returns:
        The metrics of ``etpo_agents.registry.REQUIRED_METRICS`` plus ``best_body`` per dataset.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    env = gym.make("ETPO-DataSci-v0", **env_kwargs)
    tokenizer = env.unwrapped.tokenizer
    names = list(BODIES)
    arms = [tokenizer.encode(BODIES[name], add_special_tokens=False) + [tokenizer.eos_token_id] for name in names]
    sums: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(arms)))
    counts: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(arms)))

    def best_arm(dataset: str) -> int:
        means = np.where(counts[dataset] > 0, sums[dataset] / np.maximum(counts[dataset], 1), np.inf)  # try all
        return int(np.argmax(means))

    rewards, successes, num_tokens = [], [], 0
    _, info = env.reset(seed=seed)
    dataset = info["dataset"]
    while len(rewards) < total_actions:
        arm = int(rng.integers(len(arms))) if rng.random() < epsilon else best_arm(dataset)
        reward, episode_over, info, used = write_action(env, arms[arm])
        sums[dataset][arm] += reward
        counts[dataset][arm] += 1
        rewards.append(reward)
        successes.append(info["status"] == "ok")
        num_tokens += used
        if episode_over:
            _, info = env.reset()
            dataset = info["dataset"]

    greedy = {}
    for name in [d.name for d in env.unwrapped.task.datasets]:
        env.reset(seed=seed, options={"dataset": name})
        reward, _, info, _ = write_action(env, arms[best_arm(name)])
        greedy[name] = {"body": names[best_arm(name)], "reward": reward, "test_auc": info["test_auc"]}
    env.close()
    test_aucs = [g["test_auc"] for g in greedy.values() if g["test_auc"] is not None]
    return {
        "train_reward_mean": float(np.mean(rewards)),
        "success_rate": float(np.mean(successes)),
        "greedy_auc": float(np.mean([g["reward"] for g in greedy.values()])),
        "greedy_test_auc": float(np.mean(test_aucs)) if test_aucs else float("nan"),
        "num_actions": len(rewards),
        "num_tokens": num_tokens,
        "wall_time_s": time.perf_counter() - start,
        "best_body": {name: g["body"] for name, g in greedy.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="iris")
    parser.add_argument("--total-actions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    metrics = run({"dataset": args.dataset}, total_actions=args.total_actions, seed=args.seed)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
