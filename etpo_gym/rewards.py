"""The task's reward for whole completions, for any trainer: batch scoring, a TRL-style reward function, prompts.

The envs score one action at a time; trainers built around whole completions (TRL, verl, OpenRLHF, SkyRL) score a
batch. Both go through :func:`score_bodies`, the one code path from a ``build_model`` body to its reward:

    reward = mean_{i=0..4} ROC_AUC(split i)  if the body returns a working model,  -1 otherwise

run in the sandboxed :class:`~etpo_gym.executor.CodeExecutor` (its cache, its timeout, its held-out AUC). The text
env's ``step`` calls it with one body; :class:`BatchReward` submits a whole batch to the executor's workers at once,
so ``num_workers`` evaluations run in parallel. A completion is cut at the token env's stop strings first
(:func:`completion_to_body`), so the reward of a sampled completion is the reward the token env gives to the same
tokens.

:func:`build_prompt_dataset` makes the first-turn prompts a Hugging Face ``datasets.Dataset`` whose columns are
what TRL passes to a reward function: ``prompt`` (plain text: the task is a code-infill prompt for a standard causal
LM, not a chat) plus ``dataset``, ``target``, ``description`` and ``load_options``, which :class:`BatchReward` uses
to load the same data.

Nothing here imports a trainer; ``datasets`` is imported only by :func:`build_prompt_dataset`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from etpo_gym import task
from etpo_gym.datasets import TabularDataset, load_dataset, resolve_datasets

DEFAULT_STOP_STRINGS = ("\ndef ", "\nclass ", "\nif __name__", "\n```", "\nprint(")
"""Text that ends an action early: a model continuing past ``build_model``'s body starts one of these."""

PROMPT_COLUMNS = ("prompt", "dataset", "target", "description", "load_options", "prompt_style")
"""Columns of :func:`build_prompt_dataset`'s rows."""


def cut_at_stop_strings(text: str, stop_strings: Sequence[str] = DEFAULT_STOP_STRINGS) -> str:
    """``text`` up to the first occurrence of any stop string (all of it when none occurs)."""
    return text[: min((text.find(s) for s in stop_strings if s in text), default=len(text))]


def completion_to_body(
    completion: str | list[dict[str, str]], stop_strings: Sequence[str] = DEFAULT_STOP_STRINGS
) -> str:
    """The ``build_model`` body a sampled completion stands for: its text cut at the first stop string.

    Args:
        completion: generated text after the prompt (EOS and special tokens already stripped, as a tokenizer's
            ``decode(skip_special_tokens=True)`` gives it), or a conversational completion (a list of messages,
            whose last ``content`` is used).
        stop_strings: the token env's ``stop_strings``.
    """
    if isinstance(completion, list):
        completion = completion[-1]["content"] if completion else ""
    return cut_at_stop_strings(completion, stop_strings)


def result_details(dataset: TabularDataset, body: str, result: Any) -> dict[str, Any]:
    """The env's ``info`` keys of one executed action, from the executor's ``ExecutionResult``."""
    return {
        "dataset": dataset.name,
        "code": task.program_source(body),
        "status": result.status.value,
        "auc": result.auc,
        "split_aucs": list(result.split_aucs),
        "auc_std": result.auc_std,
        "test_auc": result.test_auc,
        "error_type": result.error_type,
        "error": result.message,
        "eval_time_s": result.duration_s,
        "cached": result.cached,
    }


def score_bodies(executor: Any, datasets: Sequence[TabularDataset], bodies: Sequence[str]) -> list[tuple[float, dict]]:
    """Score ``bodies[i]`` on ``datasets[i]``, all submitted at once to the executor's workers.

    The one code path from a body to its reward: the text env's ``step`` calls it with one body.

    Args:
        executor: a :class:`~etpo_gym.executor.CodeExecutor`; ``num_workers`` bodies run at the same time, repeated
            (dataset, body) pairs run once (its cache and in-flight sharing).
        datasets: one dataset per body.
        bodies: ``build_model`` bodies, any indentation.

    Returns:
        ``(reward, details)`` per body, in order: the reward is the mean split AUC or -1; ``details`` has the keys of
        :func:`result_details` (``test_auc`` is the held-out AUC, never part of the reward).
    """
    if len(datasets) != len(bodies):
        raise ValueError(f"need one dataset per body, got {len(datasets)} datasets for {len(bodies)} bodies")
    futures = [executor.submit(dataset, body) for dataset, body in zip(datasets, bodies, strict=True)]
    results = [future.result() for future in futures]
    return [
        (result.reward, result_details(dataset, body, result))
        for dataset, body, result in zip(datasets, bodies, results, strict=True)
    ]


class BatchReward:
    """The env's reward for batches of completions; also a reward function with TRL's signature.

    ``reward(prompts, completions, dataset=[...], target=[...], description=[...], load_options=[...], **kwargs)
    -> list[float]``: the keyword columns are those of :func:`build_prompt_dataset` (TRL passes every dataset
    column, one value per completion). Every scored completion is also appended to :attr:`records` when
    ``keep_records`` is set.

    Args:
        executor: a shared :class:`~etpo_gym.executor.CodeExecutor`; ``None`` creates one owned (closed by
            :meth:`close`) with ``executor_kwargs``.
        stop_strings: where a completion is cut (the token env's ``stop_strings``).
        keep_records: append ``details`` of every scored completion (plus ``reward`` and ``body``) to
            :attr:`records`.
        **executor_kwargs: ``num_workers``, ``timeout_s``, ``memory_limit_mb``, ``max_parallel_splits`` of the owned
            executor; ``None`` values keep its defaults.

    Raises:
        ValueError: executor settings together with a shared ``executor``.
    """

    def __init__(
        self,
        executor: Any = None,
        *,
        stop_strings: Sequence[str] = DEFAULT_STOP_STRINGS,
        keep_records: bool = False,
        **executor_kwargs: Any,
    ):
        settings = {key: value for key, value in executor_kwargs.items() if value is not None}
        if executor is not None and settings:
            raise ValueError(f"pass either executor= or executor settings {sorted(settings)}, not both")
        self._owns_executor = executor is None
        if executor is None:
            from etpo_gym.executor import CodeExecutor

            executor = CodeExecutor(**settings)
        self.executor = executor
        self.stop_strings = tuple(stop_strings)
        self.keep_records = keep_records
        self.records: list[dict[str, Any]] = []
        self._datasets: dict[tuple[str, str | None, str | None, str], TabularDataset] = {}
        self.__name__ = "etpo_reward"  # TRL logs a reward function under its __name__

    def dataset(
        self, name_or_path: str, target: str | None = None, description: str | None = None, load_options: str = ""
    ) -> TabularDataset:
        """The :class:`TabularDataset` a prompt row names (loaded once, then kept); ``load_options`` is the row's
        JSON object of further :func:`~etpo_gym.datasets.load_dataset` arguments."""
        key = (str(name_or_path), target or None, description or None, load_options or "{}")
        if key not in self._datasets:
            self._datasets[key] = load_dataset(key[0], target=key[1], description=key[2], **json.loads(key[3]))
        return self._datasets[key]

    def score(
        self,
        completions: Sequence[str | list[dict[str, str]]],
        dataset: Sequence[str],
        target: Sequence[str | None] | None = None,
        description: Sequence[str | None] | None = None,
        load_options: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Score completions in parallel; one dict per completion with ``reward``, ``body`` and the env's info keys.

        Args:
            completions: generated texts (or conversational completions), one per row.
            dataset: the ``dataset`` column: a dataset name or a CSV path per completion.
            target, description, load_options: the columns of the same name (user CSVs need ``target``); ``None``
                for all rows.
        """
        num = len(completions)
        columns = {"dataset": dataset, "target": target, "description": description, "load_options": load_options}
        for name, column in columns.items():
            if column is not None and len(column) != num:
                raise ValueError(f"{name} has {len(column)} rows for {num} completions; pass one per completion")
        rows = zip(*(column if column is not None else [None] * num for column in columns.values()), strict=True)
        tables = [self.dataset(*row) for row in rows]
        bodies = [completion_to_body(c, self.stop_strings) for c in completions]
        scored = [
            {"reward": reward, "body": body, **details}
            for body, (reward, details) in zip(bodies, score_bodies(self.executor, tables, bodies), strict=True)
        ]
        if self.keep_records:
            self.records.extend(scored)
        return scored

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[str | list[dict[str, str]]],
        dataset: Sequence[str],
        target: Sequence[str | None] | None = None,
        description: Sequence[str | None] | None = None,
        load_options: Sequence[str] | None = None,
        log_extra: Any = None,
        **kwargs: Any,
    ) -> list[float]:
        """TRL's reward-function signature: one reward per completion (``prompts`` are not needed: the task's
        prompt is a function of the dataset). ``log_extra`` (TRL's hook) logs status and held-out AUC columns."""
        scored = self.score(completions, dataset, target, description, load_options)
        if log_extra is not None:
            log_extra("status", [s["status"] for s in scored])
            log_extra("test_auc", [s["test_auc"] for s in scored])
        return [s["reward"] for s in scored]

    def close(self) -> None:
        """Close the executor if this object created it."""
        if self._owns_executor:
            self.executor.close()

    def __enter__(self) -> BatchReward:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def build_prompt_dataset(
    dataset: str | os.PathLike | Sequence[str] | None = None,
    *,
    target: str | None = None,
    description: str | None = None,
    prompt_style: str = "paper",
    num_repeats: int = 1,
    **load_options: Any,
) -> Any:
    """The task's first-turn prompts as a Hugging Face ``datasets.Dataset`` (one row per dataset, repeated).

    Args:
        dataset: as the env's ``dataset`` argument: a name (bundled, scikit-learn or OpenML), a CSV path, a list of
            names, or ``None`` for every bundled dataset. A DataFrame cannot travel in a column: save it as a CSV.
        target: target column of a CSV.
        description: task description of a CSV (shown by the rich prompt).
        prompt_style: ``"paper"`` or ``"rich"``, as the env's.
        num_repeats: copies of each row (to give samplers that draw several distinct rows per step enough rows).
        **load_options: further :func:`~etpo_gym.datasets.resolve_datasets` arguments of a CSV (``name``...).

    Returns:
        A ``datasets.Dataset`` with the columns of :data:`PROMPT_COLUMNS`: ``prompt`` (plain text ending where the
        body starts), ``dataset`` (the name, or the CSV path), ``target``, ``description``, ``load_options`` (the
        JSON of ``load_options``) and ``prompt_style``.

    Raises:
        ValueError: a DataFrame, a bad ``prompt_style`` or ``num_repeats`` < 1.
        DatasetError: what loading the data raises.
    """
    import datasets as hf_datasets
    import pandas as pd

    if isinstance(dataset, pd.DataFrame):
        raise ValueError("a DataFrame cannot be carried in a prompt dataset's column; save it with to_csv() and pass "
                         "the path with target=")  # fmt: skip
    if prompt_style not in task.PROMPT_STYLES:
        raise ValueError(f"prompt_style must be one of {task.PROMPT_STYLES}, got {prompt_style!r}")
    if num_repeats < 1:
        raise ValueError(f"num_repeats must be >= 1, got {num_repeats}")
    specs = [dataset] if isinstance(dataset, (str, os.PathLike)) else list(dataset) if dataset is not None else None
    tables = resolve_datasets(specs, target=target, description=description, **load_options)
    names = [os.fspath(s) for s in specs] if specs is not None else [t.name for t in tables]
    rows = [
        {"prompt": task.build_prompt(table, prompt_style), "dataset": name, "target": target or "",
         "description": description or "", "load_options": json.dumps(load_options, sort_keys=True),
         "prompt_style": prompt_style}
        for name, table in zip(names, tables, strict=True)
    ]  # fmt: skip
    return hf_datasets.Dataset.from_list(rows * num_repeats)
