"""Room above the base's temperature frontier, per bundled dataset: how far the base model's near-greedy sampling
(T = 0.25) is from the best program it writes at T = 1 (best-of-K by reward). Base model only: no agent is trained
or tuned here. A dataset whose T = 0.25 reward is already near the best-of-K reward leaves no room for a learner to
be detectably above the frontier (benchmarks/results/power_check_dev/README.md).

    python benchmarks/results/frontier_room/measure.py > benchmarks/results/frontier_room/room.json
"""

import json
import sys

import torch

from etpo_agents.evaluation import EvalConfig, evaluate_policy
from etpo_agents.policy import Policy, load_policy

torch.set_num_threads(1)
model, tokenizer = load_policy("etpo-tiny-coder")
policy = Policy(model, tokenizer)
rows = {}
for dataset in (
    "pharyngitis",
    "kidney_stone",
    "health_insurance",
    "spaceship_titanic",
    "credit_g",
    "diabetes",
    "breast_w",
):
    row = {}
    for temperature, k in ((1.0, 32), (0.25, 8)):
        config = EvalConfig(num_samples=k, episode_samples=0, greedy=False)
        result = evaluate_policy(policy, [dataset], config, temperature=temperature)
        samples = result["sampled"][dataset]["samples"]
        rewards = [s["reward"] for s in samples]
        row[f"T{temperature:g}"] = {
            "reward_mean": sum(rewards) / len(rewards),
            "best_reward": max(rewards),
            "success": sum(s["success"] for s in samples) / len(samples),
            "kl_per_action": result["sampled"][dataset]["kl_per_action"],
            "k": k,
        }
    row["room"] = row["T1"]["best_reward"] - row["T0.25"]["reward_mean"]
    rows[dataset] = row
    print(dataset, json.dumps(row), file=sys.stderr, flush=True)
print(json.dumps(rows, indent=2))
