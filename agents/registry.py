"""Agents by name, for ``benchmarks/compare.py``: ``--agents etpo,ppo,sb3-ppo,my-agent --import my_agents``.

An agent is a callable ``fn(env_kwargs: dict, total_actions: int, seed: int, **kwargs) -> dict``: it trains on the
token-level env built from ``env_kwargs`` for ``total_actions`` env actions (code executions, the budget every
agent shares) and returns at least the keys of :data:`REQUIRED_METRICS`.

Register your own with the decorator (see ``docs/custom_agents.md``); the name exists once its module is imported,
which ``compare.py --import my_agents`` does::

    @register_agent("my-agent")  # in my_agents.py
    def run(env_kwargs, total_actions, seed, **kwargs):
        ...

Built-in agents are listed by import path and imported on first use, so importing this module (or listing the
agents) does not import torch or stable-baselines3. A ``"package.module:function"`` string also works as a name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

AgentFn = Callable[..., dict[str, Any]]
"""``fn(env_kwargs: dict, total_actions: int, seed: int, **kwargs) -> dict`` (metrics)."""

REQUIRED_METRICS = (
    "train_reward_mean",
    "success_rate",
    "greedy_auc",
    "greedy_test_auc",
    "num_actions",
    "num_tokens",
    "wall_time_s",
)
"""Keys every agent's metrics dict has: mean reward per training action, share of training actions that returned
a working model, mean greedy-action reward (AUC, -1 on failure) over the datasets, mean held-out test AUC of the
successful greedy actions, actions and tokens consumed, wall-clock seconds.

Optional, for the benchmark's headline and frontier verdict: an agent that accepts the keyword ``evaluation`` (an
``etpo_agents.evaluation.EvalConfig``, passed by ``compare.py``) and returns the result of
``etpo_agents.evaluation.evaluate_policy`` in its metrics (``SAMPLE_METRICS``, ``sampled``...). Without them its
sampled columns read n/a."""


def greedy_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The greedy metrics of :data:`REQUIRED_METRICS` from one greedy first-turn action per dataset.

    Args:
        results: one dict per dataset with at least ``dataset``, ``reward`` (the AUC, -1 on failure), ``success``
            (the code ran and returned a model) and ``test_auc`` (held-out AUC; NaN on failure).

    Returns:
        ``greedy_auc`` (mean reward over the datasets), ``greedy_test_auc`` (mean held-out AUC over the successful
        actions, NaN if none), ``greedy_success_rate`` and ``greedy`` (the results by dataset).
    """
    ok = [r for r in results if r["success"]]
    mean = lambda values: sum(values) / len(values) if values else float("nan")  # noqa: E731
    return {
        "greedy_auc": mean([float(r["reward"]) for r in results]),
        "greedy_test_auc": mean([float(r["test_auc"]) for r in ok]),
        "greedy_success_rate": len(ok) / len(results),
        "greedy": {r["dataset"]: r for r in results},
    }


_BUILTIN: dict[str, str] = {
    "etpo": "etpo_agents.train:run_etpo",
    "etpo-official-loss": "etpo_agents.train:run_etpo_official_loss",
    "etpo-one-step": "etpo_agents.train:run_etpo_one_step",
    "etpo-td-lambda": "etpo_agents.train:run_etpo_td_lambda",
    "etpo-conservative": "etpo_agents.train:run_etpo_conservative",
    "ppo": "etpo_agents.train:run_ppo",
    "reinforce": "etpo_agents.train:run_reinforce",
    "grpo": "etpo_agents.train:run_grpo",
    "dr-grpo": "etpo_agents.train:run_dr_grpo",
    "grpo-placebo": "etpo_agents.train:run_grpo_placebo",
    "rft": "etpo_agents.train:run_rft",
    "base": "etpo_agents.train:run_base",
    "sb3-ppo": "etpo_agents.sb3:run_sb3_ppo",
    "sb3-a2c": "etpo_agents.sb3:run_sb3_a2c",
    "trl-grpo": "etpo_agents.trl:run_trl_grpo",
}
_REGISTRY: dict[str, AgentFn] = {}


def import_modules(parser: Any, modules: list[str]) -> None:
    """Import the modules given to a CLI's ``--import`` (running their ``register_agent`` /
    ``register_algorithm`` calls); one that cannot be imported is a usage error of ``parser`` (an argparse parser)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            parser.error(f"--import {module}: {error}")


def register_agent(name: str, *, replace: bool = False) -> Callable[[AgentFn], AgentFn]:
    """Decorator registering ``fn`` under ``name``; returns ``fn`` unchanged.

    Args:
        name: the name ``compare.py --agents`` uses (after ``--import`` of the decorated function's module).
        replace: allow overriding an existing name (built-in or registered).

    Raises:
        ValueError: ``name`` is taken and ``replace`` is False.
    """

    def decorator(fn: AgentFn) -> AgentFn:
        if not replace and (name in _REGISTRY or name in _BUILTIN):
            raise ValueError(f"agent {name!r} is already registered; pick another name or pass replace=True")
        _REGISTRY[name] = fn
        return fn

    return decorator


def _import_path(path: str) -> AgentFn:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_agent(name: str) -> AgentFn:
    """The agent callable registered as ``name``, or found at the import path ``"package.module:function"``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN:
        return _import_path(_BUILTIN[name])
    if ":" in name:
        return _import_path(name)
    raise KeyError(f"unknown agent {name!r}; known: {', '.join(list_agents())} (or pass 'module:function')")


def list_agents() -> list[str]:
    """Names of the built-in and registered agents, sorted."""
    return sorted({*_BUILTIN, *_REGISTRY})
