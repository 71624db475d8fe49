"""Update cost: ETPO vs PPO seconds per sampled token, on the same model and the same rollout batch (goal <= 1.3x).

    python benchmarks/bench_update.py [--model-size small|large|tiny] [--num-actions 8] [--action-len 128]
                                      [--repeats 5] [--threads 1] [--lora]

One realistic :class:`etpo_agents.rollout.Batch` (the env's real prompt, ``--num-actions`` actions of ``--action-len``
tokens, packed by the collector's own code) is built once; ETPO (``etpo_agents.etpo.update``) and PPO
(``etpo_agents.ppo.update``) each get a :class:`etpo_agents.policy.Policy` over an identical copy of the model
(ETPO: soft-Q head + Polyak target head; PPO: value head) and the same Adam set-up as ``etpo_agents.train``.
Their updates are run alternately (ETPO, PPO, ETPO, ...) so machine-load drift hits both alike, after one warm-up
update each. Two settings are timed:

* ``matched``: the same ``--epochs`` x ``--minibatches`` for both (default 2 x 2);
* ``defaults``: each algorithm's config defaults (ETPO 2 x 2, PPO 4 x 2).

Also timed, to show where the difference comes from: the no-grad pass over the whole batch that each update
starts with (ETPO's ``compute_targets``, done once per EPOCH; PPO's ``compute_advantages``, once per update), and
the bare backbone forward over the batch with and without pi_ref (ETPO's gradient steps also run pi_ref).

Reported: medians of process CPU seconds per update, CPU and wall microseconds per sampled token (update time /
``batch.num_tokens``), and the ETPO / PPO ratios of the medians. CPU time is the figure to trust on a shared
machine (other processes inflate wall time); with ``--threads 1`` the two agree on an idle machine.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from _bench_common import add_model_size_argument, env_prompt, load_model, make_batch, markdown_table


def build_policies(model: Any, tokenizer: Any, use_lora: bool) -> dict[str, Any]:
    """``{"etpo": Policy with Q heads, "ppo": Policy with a value head}`` over identical copies of ``model``."""
    from etpo_agents.policy import Policy

    return {
        "etpo": Policy(copy.deepcopy(model), tokenizer, q_head=True, use_lora=use_lora, device="cpu"),
        "ppo": Policy(copy.deepcopy(model), tokenizer, value_head=True, use_lora=use_lora, device="cpu"),
    }


def build_optimizer(policy: Any) -> torch.optim.Optimizer:
    """Adam as ``etpo_agents.train.build_optimizer`` with the RunConfig defaults (policy 1e-4, heads 1e-3)."""
    groups = [{"params": policy.policy_parameters(), "lr": 1e-4}]
    if policy.head_parameters():
        groups.append({"params": policy.head_parameters(), "lr": 1e-3})
    return torch.optim.Adam(groups)


def update_fns(policies: dict[str, Any], batch: Any, etpo_config: Any, ppo_config: Any) -> dict[str, Callable[[], Any]]:
    """One zero-argument callable per algorithm running one full update on ``batch``."""
    from etpo_agents import etpo, ppo

    optimizers = {name: build_optimizer(policy) for name, policy in policies.items()}
    generator = torch.Generator().manual_seed(0)
    return {
        "etpo": lambda: etpo.update(policies["etpo"], batch, optimizers["etpo"], etpo_config, generator=generator),
        "ppo": lambda: ppo.update(policies["ppo"], batch, optimizers["ppo"], ppo_config, generator=generator),
    }


def time_alternating(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, dict[str, list[float]]]:
    """CPU and wall seconds of ``repeats`` calls of each function, interleaved round-robin, after ``warmup`` rounds.

    Returns:
        ``{name: {"cpu": [...], "wall": [...]}}``. CPU time (``time.process_time``, this process only) is the
        figure to compare on a shared machine: other processes' load inflates wall time, not CPU time.
    """
    times: dict[str, dict[str, list[float]]] = {name: {"cpu": [], "wall": []} for name in fns}
    for round_index in range(warmup + repeats):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if round_index >= warmup:
                times[name]["cpu"].append(cpu)
                times[name]["wall"].append(wall)
    return times


def _no_grad_passes(
    policies: dict[str, Any], batch: Any, etpo_config: Any, ppo_config: Any, repeats: int
) -> dict[str, float]:
    """Median CPU seconds of no-grad passes over the whole batch: ETPO's ``compute_targets`` (run once per epoch)
    and PPO's ``compute_advantages`` (once per update), and the bare backbone forwards with and without pi_ref
    (ETPO runs pi_ref's forward once per update and keeps its hidden states; PPO once per update too)."""
    from etpo_agents import etpo, ppo
    from etpo_agents.rollout import forward_rows, reference_hidden_states

    def backbone(with_ref: bool) -> None:
        with torch.no_grad():
            for segment_ids in torch.arange(len(batch.prompt_lens)).split(16):
                forward_rows(policies["etpo"], batch, segment_ids, with_ref=with_ref)

    ref_hidden = reference_hidden_states(policies["etpo"], batch)
    times = time_alternating({
        "ETPO reference_hidden_states (once per update)": lambda: reference_hidden_states(policies["etpo"], batch),
        "ETPO compute_targets": lambda: etpo.compute_targets(policies["etpo"], batch, etpo_config, ref_hidden),
        "PPO compute_advantages": lambda: ppo.compute_advantages(policies["ppo"], batch, ppo_config, 1.0),
        "forward_rows, policy only": lambda: backbone(False),
        "forward_rows, policy + pi_ref": lambda: backbone(True),
    }, repeats)  # fmt: skip
    return {name: statistics.median(t["cpu"]) for name, t in times.items()}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_size_argument(parser)
    parser.add_argument("--num-actions", type=int, default=8, help="env actions in the batch")
    parser.add_argument("--action-len", type=int, default=128, help="tokens per action")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the matched setting")
    parser.add_argument("--minibatches", type=int, default=2, help="minibatches of the matched setting")
    parser.add_argument("--repeats", type=int, default=5, help="timed updates per algorithm and setting")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1: a shared, oversubscribed CPU makes OpenMP threads spin)",
    )
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters (pi_ref = adapters disabled)")
    parser.add_argument("--skip-defaults", action="store_true", help="time only the matched setting")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> str:
    """Run the benchmark, print and return the Markdown report."""
    from etpo_agents.config import ETPOConfig, PPOConfig

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tokenizer, description = load_model(args.model_size)
    batch = make_batch(env_prompt(), args.num_actions, args.action_len, model.config.vocab_size,
                       tokenizer.pad_token_id)  # fmt: skip
    settings = {"matched": (ETPOConfig(num_epochs=args.epochs, num_minibatches=args.minibatches),
                            PPOConfig(num_epochs=args.epochs, num_minibatches=args.minibatches))}  # fmt: skip
    if not args.skip_defaults:
        settings["defaults"] = (ETPOConfig(), PPOConfig())
    rows = []
    for setting, (etpo_config, ppo_config) in settings.items():
        policies = build_policies(model, tokenizer, args.lora)
        times = time_alternating(update_fns(policies, batch, etpo_config, ppo_config), args.repeats)
        cpu = {name: statistics.median(t["cpu"]) for name, t in times.items()}
        wall = {name: statistics.median(t["wall"]) for name, t in times.items()}
        for name, config in (("etpo", etpo_config), ("ppo", ppo_config)):
            rows.append([setting, name.upper(), f"{config.num_epochs} x {config.num_minibatches}",
                         f"{cpu[name]:.3f}", f"{1e6 * cpu[name] / batch.num_tokens:.0f}",
                         f"{1e6 * wall[name] / batch.num_tokens:.0f}", "", ""])  # fmt: skip
        rows[-2][-2] = f"**{cpu['etpo'] / cpu['ppo']:.2f}x**"
        rows[-2][-1] = f"{wall['etpo'] / wall['ppo']:.2f}x"
        if setting == "matched":
            passes = _no_grad_passes(policies, batch, etpo_config, ppo_config, args.repeats)
    rows += [["(part)", f"{name} (no-grad, whole batch)", "-", f"{seconds:.3f}",
              f"{1e6 * seconds / batch.num_tokens:.0f}", "", "", ""] for name, seconds in passes.items()]  # fmt: skip
    report = "\n".join([
        f"Model: {description}; {'LoRA' if args.lora else 'full fine-tuning'}; {args.threads} torch threads.",
        f"Batch: {batch.num_actions} actions x {args.action_len} tokens = {batch.num_tokens} sampled tokens, "
        f"prompt {int(batch.prompt_lens[0])} tokens, {len(batch.prompt_lens)} segments; median of {args.repeats} "
        "updates per cell (after 1 warm-up), ETPO and PPO interleaved.",
        "",
        markdown_table(["setting", "algorithm", "epochs x minibatches", "CPU s / update", "CPU us / token",
                        "wall us / token", "ETPO / PPO (CPU)", "ETPO / PPO (wall)"], rows),  # fmt: skip
    ])  # fmt: skip
    print(report)
    sys.stdout.flush()
    return report


if __name__ == "__main__":
    main()
