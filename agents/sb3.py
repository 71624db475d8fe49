"""Stable-Baselines3 on the token-level env: a causal-LM actor-critic policy, a budget in actions, metrics.

In the spirit of RL4LMs (Ramamurthy et al., arXiv 2210.01241), the policy maps SB3's actor-critic onto a Hugging
Face causal LM:

* features   h = the LM backbone's last hidden state at the last real token of the observation   # (B, H)
* actor      π(a | s) = softmax(W_out h)[a], the LM's next-token distribution over the env's vocabulary
* critic     V(s) = w_v · h + b_v, a linear value head on the same hidden state

so ``stable_baselines3.PPO(LMActorCriticPolicy, env, policy_kwargs={"model_name_or_path": "etpo-tiny-coder"})``
and ``A2C`` train the LM with SB3's own losses, rollout buffer, ``save`` and ``load``.

How the pieces sit in SB3's ``ActorCriticPolicy`` (all of SB3's code paths -- ``forward``, ``evaluate_actions``,
``get_distribution``, ``predict_values``, ``_predict`` -- run unmodified):

* ``features_extractor`` = :class:`LMFeaturesExtractor`: the LM backbone. SB3's ``preprocess_obs`` casts the
  ``Box`` observations to float; the extractor casts ``input_ids`` back to long (exact: ids < 2**24) and keeps only
  the first ``max(attention_mask.sum(1))`` positions, since the env right-pads to ``max_obs_tokens``.
* ``mlp_extractor`` = identity (``net_arch=[]``); ``action_net`` = the LM's output embedding (:class:`VocabHead`);
  ``value_net`` = ``nn.Linear(H, 1)``. ``ortho_init`` is forced off: it would re-initialise every ``nn.Linear`` of
  the pretrained LM.

Cost: SB3 stores and re-encodes the whole observation at every token (no KV cache), so one action of ``T`` tokens
costs O(T²) token-forwards in collection, and every PPO epoch re-encodes every stored observation. The project's
own collector (``agents/rollout.py``) keeps a KV cache across the tokens of an action and scores a whole action in
one forward pass, hence is much faster. With SB3 keep actions short (``max_action_tokens``) and long reflection
prompts capped (``max_obs_tokens``): :func:`make_sb3_env`.

Budget: :func:`train_sb3` counts env *actions* (code executions, ``info["action_done"]``), the unit of the paper's
sample-efficiency curves, not SB3 timesteps (tokens); :class:`ActionBudgetCallback` stops training there.
"""

from __future__ import annotations

import csv
import inspect
import math
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

import etpo_gym  # noqa: F401  (registers the envs)
from etpo_agents.policy import load_policy
from etpo_agents.registry import greedy_summary

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C}
"""SB3 algorithms :func:`train_sb3` accepts (on-policy actor-critics, which is what the LM policy is)."""

SB3_ENV_DEFAULTS: dict[str, Any] = {"max_obs_tokens": 512, "max_action_tokens": 128}
"""Env settings :func:`make_sb3_env` uses unless given: SB3 re-encodes the whole observation per token, so short
actions and a short observation window keep standalone SB3 runs affordable (the paper's prompts are ~70-250 tokens
with the packaged tokenizer). :func:`train_sb3` does not use them: in a benchmark every agent sees the same env."""


SB3_ALGO_DEFAULTS: dict[str, Any] = {"gamma": 1.0}
"""Algorithm settings :func:`train_sb3` uses unless ``algo_kwargs`` overrides them.

DEVIATION from SB3's default ``gamma=0.99``: SB3 discounts per step, i.e. per *token* here, which would shrink an
action-end reward by 0.99**256 ≈ 0.08 at the action's first token. The project's agents discount only between
actions (``gamma`` of ``etpo_agents.config``); with at most ``max_turns`` actions per episode, returns stay bounded
undiscounted. SB3 bootstraps on truncation (the failed-turn cap) with ``predict_values`` and never on termination.
"""


class LMFeaturesExtractor(BaseFeaturesExtractor):
    """The LM backbone as SB3 features extractor: observation -> last hidden state at the last real token.

    Args:
        observation_space: the env's ``Dict(input_ids, attention_mask)`` space.
        model: a ``transformers`` causal LM, or ``None`` to load ``model_name_or_path``.
        model_name_or_path: ``"etpo-tiny-coder"``, a local directory or a cached hub id, loaded in float32 with
            ``etpo_agents.policy.load_policy`` (never downloads); used when ``model`` is ``None``.
    """

    def __init__(
        self, observation_space: spaces.Dict, model: nn.Module | None = None, model_name_or_path: str | None = None
    ):
        if (model is None) == (model_name_or_path is None):
            raise ValueError("pass exactly one of policy_kwargs 'model' (an HF causal LM) or 'model_name_or_path'")
        lm = model if model is not None else load_policy(model_name_or_path, torch_dtype=torch.float32)[0]
        backbone = lm.base_model
        if backbone is lm:
            raise ValueError(f"{type(lm).__name__} has no separate backbone (base_model); need an HF *ForCausalLM")
        super().__init__(observation_space, features_dim=lm.get_output_embeddings().in_features)
        self.lm = lm
        self.backbone = backbone
        self.lm.eval()

    def train(self, mode: bool = True) -> LMFeaturesExtractor:
        """Keep the LM's dropout off even in SB3's training mode.

        DEVIATION from SB3 (as in RL4LMs/TRL): with dropout, the log-probabilities SB3 stored at collection differ
        from those recomputed in ``evaluate_actions`` for the same parameters, so PPO's ratio starts away from 1.
        """
        super().train(mode)
        self.lm.eval()
        return self

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hidden state at each observation's last real token.

        Args:
            observations: ``input_ids`` and ``attention_mask``, (B, max_obs_tokens), float after SB3's
                preprocessing (or long); right-padded.

        Returns:
            (B, H) float tensor.
        """
        attention_mask = observations["attention_mask"].long()  # (B, L)
        lengths = attention_mask.sum(dim=1).clamp(min=1)  # (B,)
        num_real = int(lengths.max())  # right-padded: nothing real lies beyond the longest row
        input_ids = observations["input_ids"][:, :num_real].long()  # (B, T)
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask[:, :num_real]).last_hidden_state
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])  # (B, 1, H)
        return hidden.gather(1, last).squeeze(1)  # (B, H)


class VocabHead(nn.Module):
    """The LM's output embedding restricted to the env's vocabulary (models may pad their embedding matrix).

    Args:
        output_embeddings: the LM's ``get_output_embeddings()`` (``nn.Linear(H, V_model)``).
        vocab_size: the env's ``action_space.n``, at most ``V_model``.
    """

    def __init__(self, output_embeddings: nn.Module, vocab_size: int):
        super().__init__()
        if output_embeddings.out_features < vocab_size:
            raise ValueError(
                f"the LM has {output_embeddings.out_features} output tokens but the env's vocabulary has "
                f"{vocab_size}: use the model's tokenizer in the env (tokenizer=...)"
            )
        self.output_embeddings = output_embeddings
        self.vocab_size = vocab_size

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, H) hidden states -> (B, vocab_size) next-token logits."""
        return self.output_embeddings(hidden)[:, : self.vocab_size]


class LMActorCriticPolicy(ActorCriticPolicy):
    """SB3 actor-critic whose actor is a Hugging Face causal LM's next-token distribution.

    Use with ``PPO``/``A2C`` on ``ETPO-DataSci-v0`` (or any env with the same ``Dict(input_ids, attention_mask)``
    observation and ``Discrete(vocab)`` action):
    ``PPO(LMActorCriticPolicy, env, policy_kwargs={"model_name_or_path": "etpo-tiny-coder"})``.

    Args:
        observation_space: ``Dict(input_ids, attention_mask)``, right-padded token ids.
        action_space: ``Discrete(vocab_size)``.
        lr_schedule: SB3's learning-rate schedule.
        model_name_or_path: the LM to load (``etpo_agents.policy.load_policy``); saved in ``policy_kwargs``, so SB3's
            ``load`` rebuilds it and then restores the trained weights.
        model: an LM object instead (e.g. a small random one); SB3's ``save`` pickles it with ``policy_kwargs``.
        **kwargs: other ``ActorCriticPolicy`` arguments (``optimizer_class``, ``optimizer_kwargs``, ...);
            ``net_arch``, ``ortho_init`` and the features extractor are fixed by this class.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        lr_schedule,
        model_name_or_path: str | None = None,
        model: nn.Module | None = None,
        **kwargs: Any,
    ):
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[],
            ortho_init=False,
            features_extractor_class=LMFeaturesExtractor,
            features_extractor_kwargs={"model": model, "model_name_or_path": model_name_or_path},
            share_features_extractor=True,
            **kwargs,
        )

    def _build(self, lr_schedule) -> None:
        """Identity MLP, LM head as ``action_net``, linear ``value_net``, then the optimizer over all of them."""
        self._build_mlp_extractor()  # net_arch=[]: identity, latent dims = H
        self.action_net = VocabHead(self.features_extractor.lm.get_output_embeddings(), int(self.action_space.n))
        self.value_net = nn.Linear(self.features_dim, 1)
        nn.init.zeros_(self.value_net.weight)  # V = 0 at start: the first advantages are the returns
        nn.init.zeros_(self.value_net.bias)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        """What SB3's policy-level ``save`` stores to rebuild the policy: the LM spec instead of the fixed parts."""
        data = super()._get_constructor_parameters()
        for fixed in ("net_arch", "ortho_init", "features_extractor_class", "features_extractor_kwargs"):
            del data[fixed]
        return {**data, **self.features_extractor_kwargs}


class ActionBudgetCallback(BaseCallback):
    """Stops SB3 training after ``total_actions`` env actions and records each action's outcome.

    An action ends on the step whose ``info["action_done"]`` is True; its reward is the AUC or -1. ``curve`` gets
    one ``(env_actions, reward_mean)`` point per SB3 rollout (the actions completed during it), like the
    ``metrics.csv`` rows of ``etpo_agents.train``.

    Args:
        total_actions: the budget, in code executions summed over all sub-envs.
    """

    def __init__(self, total_actions: int):
        super().__init__()
        self.total_actions = total_actions
        self.action_rewards: list[float] = []
        self.action_successes: list[bool] = []
        self.curve: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        for reward, info in zip(self.locals["rewards"], self.locals["infos"], strict=True):
            if info.get("action_done"):
                self.action_rewards.append(float(reward))
                self.action_successes.append(info.get("status") == "ok")
        return len(self.action_rewards) < self.total_actions

    def _on_rollout_end(self) -> None:
        self.add_curve_point()

    def add_curve_point(self) -> None:
        """Close the current curve point (also called once after training: SB3 skips it for the last rollout)."""
        done = self.curve[-1][0] if self.curve else 0
        if len(self.action_rewards) > done:
            self.curve.append((len(self.action_rewards), float(np.mean(self.action_rewards[done:]))))


def make_sb3_env(
    env_kwargs: dict[str, Any] | None = None,
    n_envs: int = 1,
    seed: int = 0,
    env_id: str = "ETPO-DataSci-v0",
    defaults: dict[str, Any] = SB3_ENV_DEFAULTS,
) -> VecEnv:
    """An SB3 ``DummyVecEnv`` of the token-level env, by default with SB3-friendly sizes (:data:`SB3_ENV_DEFAULTS`).

    Args:
        env_kwargs: ``gym.make`` arguments; override ``defaults``. Pass ``executor=`` to share one sandbox pool
            across the sub-envs (they run in this process).
        n_envs: number of sub-envs.
        seed: seed of sub-env 0 (sub-env ``i`` gets ``seed + i``).
        env_id: a token-level env id.
        defaults: env settings under ``env_kwargs``; ``{}`` keeps the env's own defaults.

    Returns:
        The vector env (each sub-env wrapped in SB3's ``Monitor``).
    """
    # render_mode=None: make_vec_env otherwise asks for "rgb_array", which the env rejects (it renders "ansi").
    env_kwargs = {"render_mode": None, **defaults, **(env_kwargs or {})}
    return make_vec_env(env_id, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs)


def greedy_action(model: BaseAlgorithm, env: gym.Env, dataset: str, seed: int = 0) -> dict[str, Any]:
    """Write one action for ``dataset`` with the policy's argmax tokens; returns the action-end ``info``.

    Args:
        model: a trained SB3 algorithm.
        env: a token-level env (not vectorised) whose dataset list contains ``dataset``.
        dataset: dataset name, passed as ``options={"dataset": ...}`` to ``reset``.
        seed: reset seed.
    """
    obs, _ = env.reset(seed=seed, options={"dataset": dataset})
    while True:
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, _, _, info = env.step(action)
        if info["action_done"]:
            return {**info, "reward": reward}


def _write_curve(path: str, curve: list[tuple[int, float]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["env_actions", "reward_mean"])
        writer.writerows(curve)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def train_sb3(
    algo: str,
    env_kwargs: dict[str, Any] | None = None,
    total_actions: int = 64,
    seed: int = 0,
    model: str | nn.Module | None = "etpo-tiny-coder",
    *,
    env_id: str = "ETPO-DataSci-v0",
    n_envs: int = 1,
    algo_kwargs: dict[str, Any] | None = None,
    output_dir: str | os.PathLike | None = None,
    device: str = "auto",
    verbose: int = 0,
) -> dict[str, Any]:
    """Train an SB3 algorithm on the token-level env for ``total_actions`` code executions, then evaluate greedily.

    Args:
        algo: ``"ppo"`` or ``"a2c"`` (:data:`ALGORITHMS`).
        env_kwargs: ``gym.make`` arguments (``dataset``, ``tokenizer``, ``max_action_tokens``...); the env's own
            defaults otherwise (as for every agent of a benchmark; SB3's cost grows with the square of
            ``max_action_tokens``). The tokenizer must be the model's (the env's default is ``etpo-tiny-coder``'s).
        total_actions: budget in env actions over all sub-envs. Training stops at the token that completes the
            last action; that last partial rollout is not trained on (SB3 stops collection without an update).
            With ``n_envs > 1`` sub-envs finishing on the same step can overshoot by up to ``n_envs - 1``.
        seed: seeds SB3 (torch, numpy, envs) and the greedy evaluation resets.
        model: an LM name/path (``etpo_agents.policy.load_policy``), an LM object, or ``None`` for SB3's
            ``"MultiInputPolicy"`` (an MLP over the raw token ids; a baseline that learns little).
        env_id: a token-level env id.
        n_envs: sub-envs (share one executor, created here unless ``env_kwargs["executor"]`` is given).
        algo_kwargs: arguments of the SB3 algorithm (``n_steps``, ``batch_size``, ``learning_rate``, ...) over
            :data:`SB3_ALGO_DEFAULTS` (``gamma=1``: no discount between the tokens of an action).
        output_dir: if set, writes the trained SB3 model (``model.zip``, reload with ``PPO.load``/``A2C.load``)
            and the training curve (``metrics.csv``: ``env_actions``, ``reward_mean`` per rollout) there.
        device: torch device for SB3 (``"auto"``: CUDA when available).
        verbose: SB3 verbosity.

    Returns:
        ``train_reward_mean`` (mean reward per training action), ``success_rate`` (share of training actions that
        ran and returned a model), ``greedy_auc`` (mean over datasets of the greedy action's reward: the AUC, or
        -1 if it failed), ``greedy_test_auc`` (mean held-out ``info["test_auc"]`` over the datasets where the greedy
        action succeeded; NaN if none did), ``greedy_success_rate``, ``greedy`` (per dataset: status, auc,
        test_auc, code), ``num_actions``, ``num_tokens`` (env steps), ``num_updates``, ``wall_time_s``,
        ``device``, and ``metrics_csv`` (its path, or None without ``output_dir``).
    """
    from etpo_gym.executor import CodeExecutor

    if algo not in ALGORITHMS:
        raise ValueError(f"algo must be one of {sorted(ALGORITHMS)}, got {algo!r}")
    if total_actions < 1:
        raise ValueError(f"total_actions must be >= 1, got {total_actions}")
    start = time.perf_counter()
    env_kwargs = dict(env_kwargs or {})
    own_executor = "executor" not in env_kwargs
    executor = env_kwargs.pop("executor", None) or CodeExecutor()
    env_kwargs["executor"] = executor
    vec_env = make_sb3_env(env_kwargs, n_envs=n_envs, seed=seed, env_id=env_id, defaults={})
    eval_env = gym.make(env_id, **env_kwargs)
    try:
        if model is None:
            policy, policy_kwargs = "MultiInputPolicy", None
        elif isinstance(model, nn.Module):
            policy, policy_kwargs = LMActorCriticPolicy, {"model": model}
        else:
            policy, policy_kwargs = LMActorCriticPolicy, {"model_name_or_path": model}
        algo_kwargs = {**SB3_ALGO_DEFAULTS, **(algo_kwargs or {})}
        agent = ALGORITHMS[algo](
            policy, vec_env, policy_kwargs=policy_kwargs, seed=seed, device=device, verbose=verbose, **algo_kwargs
        )
        budget = ActionBudgetCallback(total_actions)
        # Every action is at most max_action_tokens tokens, so this many timesteps never ends training first.
        max_tokens = (total_actions + n_envs) * eval_env.unwrapped.max_action_tokens
        agent.learn(total_timesteps=max_tokens, callback=budget)
        budget.add_curve_point()
        if output_dir is not None:
            os.makedirs(output_dir, exist_ok=True)
            agent.save(os.path.join(output_dir, "model.zip"))
            _write_curve(os.path.join(output_dir, "metrics.csv"), budget.curve)
        datasets = [d.name for d in eval_env.unwrapped.task.datasets]
        greedy = [greedy_action(agent, eval_env, name, seed=seed) for name in datasets]
    finally:
        vec_env.close()
        eval_env.close()
        if own_executor:
            executor.close()
    keys = ("dataset", "reward", "status", "auc", "test_auc", "error", "code")
    return {
        "train_reward_mean": _mean(budget.action_rewards),
        "success_rate": _mean(budget.action_successes),
        **greedy_summary([{**{k: g[k] for k in keys}, "success": g["status"] == "ok"} for g in greedy]),
        "num_actions": len(budget.action_rewards),
        "num_tokens": int(agent.num_timesteps),
        "num_updates": int(agent._n_updates),
        "wall_time_s": time.perf_counter() - start,
        "device": str(agent.device),
        "metrics_csv": None if output_dir is None else os.path.join(output_dir, "metrics.csv"),
    }


def _run_registered(algo: str, env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict:
    """The registry entries' body: sorts the runner's settings between :func:`train_sb3` and the SB3 algorithm.

    ``kwargs`` that are parameters of :func:`train_sb3` go there; those of the SB3 algorithm's constructor
    (``n_steps``, ``learning_rate``, ``ent_coef``...) go to ``algo_kwargs``; the rest are ignored with a warning,
    since ``compare.py`` passes the same settings to every agent (e.g. ``actions_per_rollout``, meaningless here).
    """
    own = set(inspect.signature(train_sb3).parameters) - {"algo", "env_kwargs", "total_actions", "seed"}
    kept = {k: kwargs.pop(k) for k in list(kwargs) if k in own}
    fixed = {"self", "policy", "env", "policy_kwargs", "seed", "device", "verbose", "_init_setup_model"}
    sb3 = set(inspect.signature(ALGORITHMS[algo].__init__).parameters) - fixed
    algo_kwargs = {**(kept.pop("algo_kwargs", None) or {}), **{k: kwargs.pop(k) for k in list(kwargs) if k in sb3}}
    if kwargs:
        warnings.warn(f"sb3-{algo} ignores settings it has no equivalent for: {sorted(kwargs)}", stacklevel=3)
    return train_sb3(algo, env_kwargs, total_actions, seed, algo_kwargs=algo_kwargs, **kept)


def run_sb3_ppo(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """Registry entry ``sb3-ppo``: :func:`train_sb3` with ``algo="ppo"`` (``kwargs`` as :func:`_run_registered`)."""
    return _run_registered("ppo", env_kwargs, total_actions, seed, **kwargs)


def run_sb3_a2c(env_kwargs: dict[str, Any], total_actions: int, seed: int, **kwargs: Any) -> dict[str, Any]:
    """Registry entry ``sb3-a2c``: :func:`train_sb3` with ``algo="a2c"`` (``kwargs`` as :func:`_run_registered`)."""
    return _run_registered("a2c", env_kwargs, total_actions, seed, **kwargs)
