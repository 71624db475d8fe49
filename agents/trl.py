"""TRL's ``GRPOTrainer`` on the ETPO data-science task, with the env's own reward and the project's evaluation.

    pip install "etpo-gym[trl]"
    python -c "from etpo_agents.trl import train_trl_grpo; print(train_trl_grpo({'dataset': 'kidney_stone'}, 32, 0))"

or, next to the other agents, ``python benchmarks/compare.py --agents grpo,trl-grpo --datasets kidney_stone``.

How the task reaches TRL (``docs/trl.md`` shows the same as a stand-alone script):

* **Prompts**: :func:`etpo_gym.rewards.build_prompt_dataset`, the env's first-turn prompts as a ``datasets.Dataset``
  with a plain-text ``prompt`` column (the task is a code-infill prompt for a causal LM, not a chat) and the
  ``dataset`` / ``target`` / ``description`` / ``load_options`` columns the reward needs.
* **Reward**: :class:`etpo_gym.rewards.BatchReward` passed as ``reward_funcs``: TRL calls it with the completions and
  the dataset columns; it cuts each completion at the token env's stop strings and scores the whole batch at once on
  the sandboxed executor's workers -- the text env's ``step`` code path, so the reward, the cache, the timeout and
  the -1 on failure are the env's. This is TRL's way of letting the environment own the reward.
* **Budget**: every scored completion is one env action. One TRL step generates ``completions_per_step``
  completions (``actions_per_rollout`` of the comparison) in groups of ``num_generations`` per prompt, scores them
  and takes one optimiser step, so ``total_actions / completions_per_step`` steps spend exactly ``total_actions``.
* **Evaluation**: the trained model is wrapped in :class:`etpo_agents.policy.Policy` (π_ref: the initial model)
  and evaluated on the token env by :mod:`etpo_agents.evaluation`, as ``etpo_agents.train`` evaluates every agent.

First turn only. TRL 1.x has two multi-turn hooks, and neither fits the reflection turns: ``environment_factory``
exposes an environment's methods as *tools* that a chat model calls during generation (it needs a tool-calling chat
template; our prompt is code infill), and ``rollout_func`` replaces generation but trains on one
``prompt_ids + completion_ids`` sequence per sample (feedback appended inside a completion can be masked), whereas
a reflection turn *replaces* the context with a new prompt that quotes the failed code and its error. The
project's own agents (``etpo``, ``ppo``, ``grpo``...) train on the reflection turns.

DEVIATION from the token env: TRL generates until EOS or ``max_completion_length`` and cannot stop at the env's
stop strings (transformers needs the tokenizer passed to ``generate`` for that, which TRL does not do). The reward
cuts the text where the env would have stopped, so rewards are the env's; the tokens after the cut are still in
the completion TRL trains on (they carry the same advantage).
"""

from __future__ import annotations

import csv
import dataclasses
import inspect
import json
import math
import os
import time
import warnings
from typing import Any

import torch
from transformers import PrinterCallback, TrainerCallback

from etpo_agents import evaluation as protocol
from etpo_agents.policy import EMBEDDED_MODEL, Policy, load_policy, resolve_device
from etpo_agents.registry import greedy_summary
from etpo_gym import BUNDLED_DATASETS
from etpo_gym.rewards import DEFAULT_STOP_STRINGS, BatchReward, build_prompt_dataset

EXECUTOR_SETTINGS = ("num_workers", "timeout_s", "memory_limit_mb", "max_parallel_splits")
"""``env_kwargs`` keys that configure the reward's own executor (as the env's)."""

ENV_ID = "ETPO-DataSci-v0"
"""The token-level env the evaluation acts in (as every agent's)."""

LOAD_OPTIONS = {"dataset_name": "name", "keep_index_columns": "keep_index_columns"}
"""``env_kwargs`` keys that change how a CSV is loaded, and the ``resolve_datasets`` argument each one is (the prompt
dataset carries them to the reward, so the reward loads the data the env would)."""

TRL_OVERRIDES: dict[str, Any] = {
    "learning_rate": 1e-4,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
    "disable_tqdm": True,
}
"""``GRPOConfig`` values set here unless ``grpo_kwargs`` overrides them; every other GRPO setting keeps TRL's default
(``beta=0``: no KL term, ``loss_type="dapo"``, ``scale_rewards="group"``, ``epsilon=0.2``, ``num_iterations=1``,
``temperature=1``, ``top_k=0``: full vocabulary).

DEVIATION from TRL's defaults: ``learning_rate`` 1e-4 is ``RunConfig.learning_rate``, the rate every agent of the
comparison trains with (TRL's 1e-6 is meant for billion-parameter models; on the 3.7M-parameter embedded model it
barely moves the weights in a short run). Log every step (the curve of ``metrics.csv``), no checkpoints (the
comparison keeps only metrics), no tracker, no progress bar. Batch layout (one optimiser step per generation batch),
``max_completion_length`` (the env's ``max_action_tokens``), precision and device are set by :func:`grpo_config`."""


def grpo_config(
    output_dir: str,
    total_actions: int,
    seed: int,
    completions_per_step: int,
    num_generations: int,
    max_completion_length: int,
    device: str = "auto",
    **overrides: Any,
) -> Any:
    """TRL's ``GRPOConfig`` spending exactly ``total_actions`` completions, one optimiser step per generation batch.

    Args:
        output_dir: TRL's output folder.
        total_actions: budget in env actions (completions scored).
        seed: TRL's ``seed`` and ``data_seed``.
        completions_per_step: completions generated, scored and trained on per step (``generation_batch_size`` =
            ``per_device_train_batch_size``: one optimiser step per batch, as the project's agents update once per
            rollout).
        num_generations: completions per prompt (GRPO's group size G).
        max_completion_length: tokens per completion (the env's ``max_action_tokens``).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``; bf16 on CUDA only.
        **overrides: any other ``GRPOConfig`` field, over :data:`TRL_OVERRIDES`.

    Raises:
        ValueError: the budget is not a whole number of steps, or a step not a whole number of groups.
    """
    from trl import GRPOConfig

    if num_generations < 2 or completions_per_step % num_generations:
        raise ValueError(f"completions_per_step ({completions_per_step}) must be a multiple of num_generations "
                         f"({num_generations}, >= 2): GRPO compares whole groups; change actions_per_rollout or "
                         "num_generations")  # fmt: skip
    if total_actions % completions_per_step:
        raise ValueError(f"total_actions ({total_actions}) must be a multiple of completions_per_step "
                         f"({completions_per_step}) so that trl-grpo spends exactly the budget")  # fmt: skip
    on_cuda = resolve_device(device).type == "cuda"
    settings = {
        **TRL_OVERRIDES,
        "output_dir": output_dir,
        "seed": seed,
        "data_seed": seed,
        "max_steps": total_actions // completions_per_step,
        "num_generations": num_generations,
        "per_device_train_batch_size": completions_per_step,
        "gradient_accumulation_steps": 1,
        "max_completion_length": max_completion_length,
        "use_cpu": not on_cuda,
        "bf16": on_cuda and torch.cuda.is_bf16_supported(),
        **overrides,
    }
    return GRPOConfig(**settings)


class MetricsLogger(TrainerCallback):
    """Writes ``metrics.csv`` (one row per TRL step, the comparison's curve columns) from TRL's logs and the rewards.

    Columns: ``env_actions``, ``reward_mean`` and ``success_rate`` (over the step's scored completions, from
    ``reward.records``), ``trl_reward`` (TRL's own logged mean reward of the step: equal to ``reward_mean``),
    ``kl_ref`` (TRL's ``kl``, logged when ``beta`` > 0), ``entropy``, ``completion_length`` (mean tokens) and
    ``loss``.
    """

    def __init__(self, reward: BatchReward, path: str):
        self.reward = reward
        self.path = path
        self.rows: list[dict[str, float]] = []
        self._seen = 0

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if not logs or "reward" not in logs:  # the end-of-training summary has no reward
            return
        step = self.reward.records[self._seen :]
        self._seen = len(self.reward.records)
        row = {
            "env_actions": float(self._seen),
            "reward_mean": sum(r["reward"] for r in step) / max(len(step), 1),
            "success_rate": sum(r["status"] == "ok" for r in step) / max(len(step), 1),
            "trl_reward": float(logs["reward"]),
            "completion_length": float(logs.get("completions/mean_length", math.nan)),
            "entropy": float(logs.get("entropy", math.nan)),
            "loss": float(logs.get("loss", math.nan)),
        }
        if "kl" in logs:
            row["kl_ref"] = float(logs["kl"])
        self.rows.append(row)
        fields = list(self.rows[0])
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)


def build_trainer(
    env_kwargs: dict[str, Any],
    total_actions: int,
    seed: int,
    model: str = EMBEDDED_MODEL,
    *,
    completions_per_step: int = 8,
    num_generations: int = 8,
    output_dir: str = "runs/trl-grpo",
    device: str = "auto",
    local_files_only: bool = True,
    grpo_kwargs: dict[str, Any] | None = None,
) -> tuple[Any, BatchReward, MetricsLogger]:
    """A ready ``GRPOTrainer`` on the task of ``env_kwargs``, its reward and its metrics logger.

    Args:
        env_kwargs: the env's ``gym.make`` arguments: ``dataset`` (name, CSV path or list; default every bundled
            dataset), ``target``, ``description``, the CSV options of :data:`LOAD_OPTIONS`, ``prompt_style``,
            ``max_action_tokens`` (completion length, default 256), ``stop_strings``, and ``executor`` or its
            settings (``num_workers``, ``timeout_s``...).
            ``max_turns`` is ignored (first turn only), as are the token env's observation settings and
            ``tokenizer`` (the model's is used).
        total_actions: budget in env actions (completions scored).
        seed: run seed (TRL's ``seed``; torch is seeded by TRL).
        model: ``etpo-tiny-coder``, a local directory or a cached hub id (``etpo_agents.policy.load_policy``).
        completions_per_step: completions per TRL step (the comparison's ``actions_per_rollout``).
        num_generations: completions per prompt (G).
        output_dir: TRL's output folder; ``metrics.csv`` goes there.
        device: ``auto``, ``cpu`` or ``cuda``.
        local_files_only: never download a hub model.
        grpo_kwargs: other ``GRPOConfig`` fields (``beta``, ``loss_type``, ``temperature``...).

    Returns:
        ``(trainer, reward, logger)``; ``reward.records`` holds every scored completion (body, reward, status, AUCs).
    """
    from trl import GRPOTrainer

    env_kwargs = dict(env_kwargs)
    lm, tokenizer = load_policy(model, local_files_only=local_files_only, torch_dtype=torch.float32)
    tokenizer.padding_side = "left"  # TRL left-pads prompts for generation
    executor = env_kwargs.get("executor")
    settings = {key: env_kwargs.get(key) for key in EXECUTOR_SETTINGS}
    reward = BatchReward(executor, stop_strings=env_kwargs.get("stop_strings", DEFAULT_STOP_STRINGS),
                         keep_records=True, **({} if executor is not None else settings))  # fmt: skip
    groups_per_step = completions_per_step // max(num_generations, 1)
    load_options = {option: env_kwargs[key] for key, option in LOAD_OPTIONS.items() if env_kwargs.get(key) is not None}
    prompts = build_prompt_dataset(env_kwargs.get("dataset"), target=env_kwargs.get("target"),
                                   description=env_kwargs.get("description"),
                                   prompt_style=env_kwargs.get("prompt_style", "paper"),
                                   num_repeats=max(1, groups_per_step), **load_options)  # fmt: skip
    os.makedirs(output_dir, exist_ok=True)
    args = grpo_config(output_dir, total_actions, seed, completions_per_step, num_generations,
                       env_kwargs.get("max_action_tokens", 256), device, **(grpo_kwargs or {}))  # fmt: skip
    logger = MetricsLogger(reward, os.path.join(output_dir, "metrics.csv"))
    trainer = GRPOTrainer(model=lm, reward_funcs=reward, args=args, train_dataset=prompts,
                          processing_class=tokenizer, callbacks=[logger])  # fmt: skip
    trainer.remove_callback(PrinterCallback)  # with disable_tqdm, it prints every log dict; metrics.csv has them
    return trainer, reward, logger


def evaluate_model(
    lm: Any,
    tokenizer: Any,
    model: str,
    env_kwargs: dict[str, Any],
    device: str,
    *,
    temperature: float,
    top_k: int | None,
    evaluation: Any = None,
    greedy_eval: bool = True,
    local_files_only: bool = True,
) -> dict[str, Any]:
    """Evaluate a trained LM exactly as ``etpo_agents.train`` evaluates the project's agents.

    With ``evaluation`` (an :class:`~etpo_agents.evaluation.EvalConfig`, as ``RunConfig.evaluation``):
    :func:`etpo_agents.evaluation.evaluate_policy` (sampled first-turn actions and episodes at the training
    temperature, exact KL to π_ref, and the greedy action). Without it, only the greedy action per dataset
    (``greedy_eval``).

    Args:
        lm, tokenizer: the trained causal LM and its tokenizer.
        model: the name or path ``lm`` was loaded from: π_ref of the KL, as for every agent.
        env_kwargs: the env's ``gym.make`` arguments (``dataset`` gives the evaluated datasets).
        device: ``auto``, ``cpu`` or ``cuda``.
        temperature, top_k: the sampling settings training used.
        evaluation: the sampled evaluation's settings, or ``None``.
        greedy_eval: without ``evaluation``, take the greedy actions (else return nothing).
        local_files_only: never download ``model``.
    """
    env_kwargs = {k: v for k, v in env_kwargs.items() if k != "tokenizer"}
    if env_kwargs.get("executor") is not None:
        env_kwargs = {k: v for k, v in env_kwargs.items() if k not in EXECUTOR_SETTINGS}
    dataset = env_kwargs.pop("dataset", None)
    datasets = [os.fspath(dataset)] if isinstance(dataset, (str, os.PathLike)) else list(dataset or BUNDLED_DATASETS)
    initial, _ = load_policy(model, local_files_only=local_files_only, torch_dtype=torch.float32)
    policy = Policy(initial, tokenizer, device=device)  # π_ref: a frozen copy of the initial weights
    policy.model.load_state_dict(lm.state_dict())
    if evaluation is not None:
        return protocol.evaluate_policy(policy, datasets, evaluation, temperature=temperature, top_k=top_k,
                                        env_id=ENV_ID, env_kwargs=env_kwargs)  # fmt: skip
    if not greedy_eval:
        return {}
    return greedy_summary([protocol.greedy_action(policy, name, ENV_ID, env_kwargs) for name in datasets])


def train_trl_grpo(
    env_kwargs: dict[str, Any],
    total_actions: int = 32,
    seed: int = 0,
    model: str = EMBEDDED_MODEL,
    *,
    completions_per_step: int = 8,
    num_generations: int = 8,
    output_dir: str = "runs/trl-grpo",
    device: str = "auto",
    local_files_only: bool = True,
    greedy_eval: bool = True,
    evaluation: Any = None,
    grpo_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train with TRL's GRPO for ``total_actions`` scored completions, then evaluate like every agent.

    Arguments as :func:`build_trainer`; ``evaluation`` (an :class:`~etpo_agents.evaluation.EvalConfig`) and
    ``greedy_eval`` choose the evaluation as ``RunConfig``'s fields of the same names do (:func:`evaluate_model`).

    Returns:
        The keys of ``etpo_agents.registry.REQUIRED_METRICS`` (``train_reward_mean`` and ``success_rate`` over the
        scored completions; ``num_tokens`` the completion tokens generated), plus ``updates``, ``device``,
        ``metrics_csv`` and the greedy evaluation's per-dataset results; also written to ``final_metrics.json``.
    """
    start = time.perf_counter()
    trainer, reward, logger = build_trainer(env_kwargs, total_actions, seed, model,
                                            completions_per_step=completions_per_step,
                                            num_generations=num_generations, output_dir=output_dir, device=device,
                                            local_files_only=local_files_only, grpo_kwargs=grpo_kwargs)  # fmt: skip
    try:
        trainer.train()
        records = reward.records
        final: dict[str, Any] = {
            "algo": "trl-grpo",
            "seed": seed,
            "device": str(trainer.args.device),
            "num_actions": len(records),
            "num_tokens": int(sum(row["completion_length"] * completions_per_step for row in logger.rows)),
            "updates": int(trainer.state.global_step),
            "train_reward_mean": sum(r["reward"] for r in records) / max(len(records), 1),
            "success_rate": sum(r["status"] == "ok" for r in records) / max(len(records), 1),
            "metrics_csv": logger.path,
        }
        top_k = trainer.args.top_k or None  # TRL's 0 is the whole vocabulary, the evaluation's None
        final.update(evaluate_model(trainer.model, trainer.processing_class, model, {**env_kwargs, "executor":
                                    reward.executor}, device, temperature=trainer.args.temperature,
                                    top_k=top_k, evaluation=evaluation, greedy_eval=greedy_eval,
                                    local_files_only=local_files_only))  # fmt: skip
    finally:
        reward.close()
    final["wall_time_s"] = time.perf_counter() - start
    with open(os.path.join(output_dir, "final_metrics.json"), "w") as f:
        json.dump(final, f, indent=2, default=str)
    return final


def run_trl_grpo(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """Registry entry ``trl-grpo`` (``benchmarks/compare.py --agents trl-grpo``): :func:`train_trl_grpo`.

    ``kwargs`` that are parameters of :func:`train_trl_grpo` go there; ``actions_per_rollout`` (the comparison's
    rollout length) is ``completions_per_step``; ``GRPOConfig`` fields (``learning_rate``, ``temperature``,
    ``top_k``, ``beta``, ``loss_type``...) go to ``grpo_kwargs``; the rest are ignored with a warning
    (``compare.py`` passes the same settings to every agent). ``env_kwargs["max_action_tokens"]`` is the completion
    length. Without ``num_generations``, G = min(8, completions per step): TRL's default, or one group per step.
    """
    from trl import GRPOConfig

    own = set(inspect.signature(train_trl_grpo).parameters) - {"env_kwargs", "total_actions", "seed"}
    kept = {k: kwargs.pop(k) for k in list(kwargs) if k in own}
    if "actions_per_rollout" in kwargs:
        kept.setdefault("completions_per_step", kwargs.pop("actions_per_rollout"))
    if "top_k" in kwargs and kwargs["top_k"] is None:
        kwargs["top_k"] = 0  # RunConfig's None (the whole vocabulary) is TRL's 0
    grpo_fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    grpo_kwargs = dict(kept.pop("grpo_kwargs", None) or {})
    grpo_kwargs.update({k: kwargs.pop(k) for k in list(kwargs) if k in grpo_fields})
    if kwargs:
        warnings.warn(f"trl-grpo ignores settings it has no equivalent for: {sorted(kwargs)}", stacklevel=2)
    kept.setdefault("num_generations", min(8, kept.get("completions_per_step", 8)))
    kept.setdefault("output_dir", os.path.join("runs", f"trl-grpo-seed{seed}"))
    return train_trl_grpo(env_kwargs, total_actions, seed, grpo_kwargs=grpo_kwargs, **kept)
