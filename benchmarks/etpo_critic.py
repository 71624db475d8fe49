"""ETPO critic diagnostics on the real token-level env (issue 13): early-EOS drift and credit by token distance.

Two measurements on one real batch collected by the embedded model (development datasets only):

* ``eos``: replay one batch for ``--steps`` ETPO gradient steps with each soft-Q parametrisation (the π-centred
  dueling head and the plain linear head) and report the premature-EOS probability of the batch's actions
  (:func:`premature_eos`) every ``--every`` steps, against the base model's.
* ``credit``: for each (λ, τ) setting, replay the batch and report the mean |target| and the spread of Q
  (max − min over the vocabulary) by distance from the action's end, and the share of KL(π‖π_ref) that lands on
  decision tokens (:func:`decision_mask`) rather than formatting tokens.

    python -m benchmarks.etpo_critic eos --dataset kidney_stone --num-actions 16 --steps 24 --td-lambda 0
    python -m benchmarks.etpo_critic credit --dataset kidney_stone --num-actions 8 --steps 16

Prints one JSON object per measurement (also appended to ``--output``).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import time

import gymnasium as gym
import torch

import etpo_gym  # noqa: F401  (registers the envs)
from etpo_agents import etpo
from etpo_agents.config import ETPOConfig
from etpo_agents.policy import Policy, load_policy
from etpo_agents.rollout import Batch, RolloutCollector, forward_rows

DISTANCE_BINS = ((1, 1), (2, 2), (3, 4), (5, 9), (10, 19), (20, 39), (40, 79), (80, 10_000))
"""Distance from the action's end (1 = the last token), grouped."""


def collect_batch(dataset: str, num_actions: int, seed: int, max_action_tokens: int = 256) -> Batch:
    """One batch of ``num_actions`` first-turn-or-later actions of the embedded model (T = 1, no top-k)."""
    model, tokenizer = load_policy()
    policy = Policy(model, tokenizer, device="cpu")
    envs = gym.make_vec("ETPO-DataSci-v0", num_envs=1, dataset=dataset, tokenizer=tokenizer,
                        max_action_tokens=max_action_tokens)  # fmt: skip
    try:
        return RolloutCollector(envs, policy, temperature=1.0, seed=seed).collect(num_actions)
    finally:
        envs.close()


@torch.no_grad()
def eos_probabilities(policy: Policy, batch: Batch) -> torch.Tensor:
    """π(EOS | x_r) at every row of the batch, (R,) float32."""
    eos = policy.tokenizer.eos_token_id
    probs = torch.zeros(len(batch.row_segments))
    for segment_ids in torch.arange(len(batch.prompt_lens)).split(8):
        rows, hidden, _ = forward_rows(policy, batch, segment_ids, with_ref=False)
        probs[rows] = torch.softmax(policy.logits(hidden), -1)[:, eos].cpu()
    return probs


def premature_eos(policy: Policy, batch: Batch) -> dict[str, float]:
    """Probability that π ends a batch action before the sampled action's length, along its sampled prefix.

    For action k with L_k tokens and intermediate states x_0..x_{L_k−2} (the states before each of its first
    L_k − 1 tokens), P_k = 1 − Π_j (1 − π(EOS | x_j)). Returns the mean of P_k over the batch's actions
    (``premature_eos``) and the mean of π(EOS | x_j) over all intermediate states (``eos_prob_intermediate``).
    """
    probs = eos_probabilities(policy, batch)
    intermediate = batch.row_mask & ~batch.row_is_last
    survive = torch.ones(batch.num_actions)
    for k in range(batch.num_actions):
        rows = intermediate & (batch.row_segments == k)
        survive[k] = torch.prod(1 - probs[rows])
    return {
        "premature_eos": float(1 - survive.mean()),
        "eos_prob_intermediate": float(probs[intermediate].mean()),
    }


def distance_from_end(batch: Batch) -> torch.Tensor:
    """(R,) int64: 1 for an action's last token, 2 for the one before, ...; 0 on bootstrap rows."""
    positions = batch.row_positions - batch.prompt_lens[batch.row_segments] + 1  # j, 0-based token index
    lengths = batch.action_lens[batch.row_segments]
    return torch.where(batch.row_mask, lengths - positions, torch.zeros_like(lengths))


_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:Classifier|Regression|Regressor|SVC|NB|Neighbors\w*|Forest\w*|"
                   r"Boost\w*|Tree\w*)\s*\()")  # fmt: skip


def decision_mask(tokenizer, batch: Batch) -> torch.Tensor:
    """(R,) bool: the row's sampled token lies in a decision span of its action's decoded text.

    Decision spans: the class name of a scikit-learn estimator call (``RandomForestClassifier(``,
    ``LogisticRegression(`` ...) and the keyword arguments inside its parentheses up to the matching ``)``
    (hyper-parameters). Everything else (imports, ``model = ``, ``.fit(...)``, ``return``, whitespace) is
    formatting. A token is a decision token when any character it decodes to falls in a span.
    """
    mask = torch.zeros(len(batch.row_segments), dtype=torch.bool)
    for k in range(batch.num_actions):
        rows = torch.nonzero((batch.row_segments == k) & batch.row_mask).squeeze(1)
        pieces = [tokenizer.decode([int(batch.row_tokens[r])]) for r in rows]
        starts, text = [], ""
        for piece in pieces:
            starts.append(len(text))
            text += piece
        inside = [False] * (len(text) + 1)
        for match in _CALL.finditer(text):
            depth, end = 1, match.end()
            while end < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            for c in range(match.start(), end):
                inside[c] = True
        for r, start, piece in zip(rows.tolist(), starts, pieces, strict=True):
            mask[r] = any(inside[start : start + max(len(piece), 1)])
    return mask


def replay(policy: Policy, batch: Batch, config: ETPOConfig, steps: int, every: int, probe, seed: int = 0) -> list:
    """``steps`` ETPO gradient steps on the same batch (targets recomputed each step); ``probe(policy)`` every
    ``every`` steps, starting at step 0."""
    optimizer = torch.optim.Adam([{"params": policy.policy_parameters(), "lr": 1e-4},
                                  {"params": policy.head_parameters(), "lr": 1e-3}])  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    results = [{"step": 0, **probe(policy)}]
    for step in range(1, steps + 1):
        etpo.update(policy, batch, optimizer, config, generator=generator)
        if step % every == 0:
            results.append({"step": step, **probe(policy)})
    return results


@torch.no_grad()
def credit_probe(policy: Policy, batch: Batch, config: ETPOConfig, decision: torch.Tensor) -> dict:
    """Mean |target| and Q spread by distance bin; KL(π‖π_ref) on decision vs formatting tokens."""
    from etpo_agents.rollout import reference_hidden_states

    ref_hidden = reference_hidden_states(policy, batch)
    targets = etpo.compute_targets(policy, batch, config, ref_hidden)
    spread = torch.zeros(len(batch.row_segments))
    kl = torch.zeros(len(batch.row_segments))
    for segment_ids in torch.arange(len(batch.prompt_lens)).split(8):
        rows, hidden, _ = forward_rows(policy, batch, segment_ids, with_ref=False)
        logits = policy.logits(hidden)
        q = policy.q_values(hidden, logits)
        spread[rows] = (q.max(-1).values - q.min(-1).values).cpu()
        logprobs = torch.log_softmax(logits, -1)
        ref_logprobs = torch.log_softmax(policy.ref_logits_from_hidden(ref_hidden[rows]), -1)
        kl[rows] = (logprobs.exp() * (logprobs - ref_logprobs)).sum(-1).cpu()
    distance = distance_from_end(batch)
    by_distance = {}
    for low, high in DISTANCE_BINS:
        rows = batch.row_mask & (distance >= low) & (distance <= high)
        if rows.any():
            by_distance[f"{low}-{high}"] = {
                "abs_target": float(targets[rows].abs().mean()),
                "q_spread": float(spread[rows].mean()),
                "rows": int(rows.sum()),
            }
    mask = batch.row_mask
    total = float(kl[mask].sum())
    return {
        "by_distance": by_distance,
        "kl_total": total,
        "kl_share_decision": float(kl[mask & decision].sum()) / total if total > 0 else float("nan"),
        "kl_per_decision_token": float(kl[mask & decision].mean()),
        "kl_per_format_token": float(kl[mask & ~decision].mean()),
        "decision_token_share": float((mask & decision).sum()) / float(mask.sum()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["eos", "credit"])
    parser.add_argument("--dataset", default="kidney_stone", choices=["kidney_stone", "pharyngitis"])
    parser.add_argument("--num-actions", type=int, default=16)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-action-tokens", type=int, default=256)
    parser.add_argument("--td-lambda", type=float, default=ETPOConfig.td_lambda, help="eos: λ of the targets")
    parser.add_argument("--conservative-coef", type=float, default=ETPOConfig.conservative_coef,
                        help="weight of the conservative soft-Q regulariser")  # fmt: skip
    parser.add_argument("--heads", default="dueling,linear", help="eos: Q parametrisations to replay")
    parser.add_argument("--settings", default="0:0.05,0.9:0.05,0.95:0.05,0:0.2,0.95:0.2",
                        help="credit: comma-separated td_lambda:tau pairs")  # fmt: skip
    parser.add_argument("--output", default=None, help="append the JSON lines here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    batch = collect_batch(args.dataset, args.num_actions, args.seed, args.max_action_tokens)
    model, tokenizer = load_policy()
    common = {"dataset": args.dataset, "num_actions": batch.num_actions, "num_tokens": batch.num_tokens,
              "seed": args.seed, "reward_mean": float(batch.rewards[: batch.num_actions].mean())}  # fmt: skip
    records = []
    if args.what == "eos":
        for kind in args.heads.split(","):
            torch.manual_seed(args.seed)
            policy = Policy(copy.deepcopy(model), tokenizer, q_head=True, q_parametrisation=kind, device="cpu")
            config = ETPOConfig(num_epochs=1, num_minibatches=1, td_lambda=args.td_lambda,
                                conservative_coef=args.conservative_coef)  # fmt: skip
            curve = replay(policy, batch, config, args.steps, args.every, lambda p: premature_eos(p, batch), args.seed)
            records.append({**common, "measure": "eos", "q_parametrisation": kind, "td_lambda": args.td_lambda,
                            "conservative_coef": args.conservative_coef, "curve": curve})  # fmt: skip
    else:
        decision = decision_mask(tokenizer, batch)
        for setting in args.settings.split(","):
            td_lambda, tau = (float(x) for x in setting.split(":"))
            torch.manual_seed(args.seed)
            policy = Policy(copy.deepcopy(model), tokenizer, q_head=True, device="cpu")
            config = ETPOConfig(num_epochs=1, num_minibatches=1, td_lambda=td_lambda, tau=tau,
                                conservative_coef=args.conservative_coef)  # fmt: skip
            curve = replay(policy, batch, config, args.steps, args.steps,
                           lambda p, c=config: credit_probe(p, batch, c, decision), args.seed)  # fmt: skip
            records.append({**common, "measure": "credit", "td_lambda": td_lambda, "tau": tau,
                            "conservative_coef": args.conservative_coef,
                            "final": curve[-1], "premature_eos": premature_eos(policy, batch)})  # fmt: skip
    for record in records:
        record["wall_time_s"] = time.perf_counter() - start
        print(json.dumps(record))
        if args.output:
            with open(args.output, "a") as f:
                f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
