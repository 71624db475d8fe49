"""What the two command lines share (``python -m etpo_agents.train`` and ``benchmarks/compare.py``).

Both turn user mistakes into one-line usage errors (``parser.error``: the usage line, one message, exit status 2)
before any output folder exists: unknown names get "did you mean" suggestions, datasets are loaded once with the
env's own validation, and the model is found (not loaded) as :func:`etpo_agents.policy.load_policy` would find it.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Iterable
from typing import Any


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (unless the help states it); the description keeps its line
    breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        return text if "(default:" in text else super()._get_help_string(action)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``" Did you mean 'x'?"`` for the choices close to ``name`` (case-insensitive), else ``""``."""
    choices = list(choices)
    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(by_lower[c]) for c in close)}?" if close else ""


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """``--target``, ``--description``, ``--dataset-name`` and ``--keep-index-columns``, for your own CSV file."""
    parser.add_argument(
        "--target",
        default=None,
        help="target column of a CSV dataset (required for a CSV path; not for named datasets)",
    )
    parser.add_argument(
        "--description",
        default=None,
        help="task description of a CSV dataset, shown in the rich prompt style",
    )
    parser.add_argument(
        "--dataset-name",
        default=None,
        help="display name of a CSV dataset in prompts, logs and tables (default: the file stem)",
    )
    parser.add_argument("--keep-index-columns", action="store_true",
                        help="keep a CSV's row-index columns (an unnamed first column, a 0- or 1-based row counter) "
                             "as features; by default they are dropped with a warning")  # fmt: skip


def add_import_argument(parser: argparse.ArgumentParser) -> None:
    """``--import MODULE`` (repeatable) into ``args.imports``, for :func:`etpo_agents.registry.import_modules`."""
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, so that the agents it registers (register_agent / register_algorithm) can be "
        "named; repeatable",
    )


def dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``gym.make`` arguments of :func:`add_dataset_arguments`' options that were given."""
    options = {"target": args.target, "description": args.description, "dataset_name": args.dataset_name,
               "keep_index_columns": args.keep_index_columns or None}  # fmt: skip
    return {key: value for key, value in options.items() if value is not None}


def check_dataset(parser: argparse.ArgumentParser, item: str, options: dict[str, Any]) -> Any:
    """Load dataset ``item`` (a name in any spelling the env accepts, or a CSV path) with the env's ``options``.

    Returns:
        The loaded :class:`etpo_gym.datasets.TabularDataset` (its ``name`` is the canonical name of a named set).

    Exits:
        Through ``parser.error``: unknown name (with suggestions), unusable file or target, OpenML unreachable.
    """
    from etpo_gym.datasets import DatasetError, load_dataset

    load_options = {"target": options.get("target"), "description": options.get("description"),
                    "name": options.get("dataset_name"),
                    "keep_index_columns": bool(options.get("keep_index_columns"))}  # fmt: skip
    try:
        return load_dataset(item, **load_options)
    except DatasetError as error:
        parser.error(f"dataset {item!r}: {error}")


def check_model(parser: argparse.ArgumentParser, model: str, allow_download: bool) -> None:
    """Exit with a usage error unless :func:`etpo_agents.policy.load_policy` can find ``model``."""
    from etpo_agents.policy import check_model as find_model

    try:
        find_model(model, local_files_only=not allow_download)
    except FileNotFoundError as error:
        parser.error(f"--model: {error}")


def remove_if_empty(path: str) -> None:
    """Remove the folder ``path`` if it holds no file (empty sub-folders go too): a run that failed before it
    wrote anything leaves nothing behind."""
    if not os.path.isdir(path):
        return
    if any(files for _, _, files in os.walk(path)):
        return
    for root, _, _ in sorted(os.walk(path), key=lambda entry: -len(entry[0])):
        os.rmdir(root)
