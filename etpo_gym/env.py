"""The data-science code-generation environments of the ETPO paper (arXiv 2402.06700, Sec. 5.1).

:class:`DataSciTokenEnv` (``ETPO-DataSci-v0``) is token-level: one ``step`` is one token of the agent's code.
:class:`DataSciTextEnv` (``ETPO-DataSciText-v0``) is the same task with one ``step`` per whole code string.
Both share :class:`DataSciTask`, which owns the datasets, the turn logic, and the sandboxed executor.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from etpo_gym import task
from etpo_gym.datasets import TabularDataset, resolve_datasets
from etpo_gym.rewards import DEFAULT_STOP_STRINGS, cut_at_stop_strings, score_bodies
from etpo_gym.tokenizer import load_tokenizer, token_texts


class DataSciTask:
    """Turn logic shared by both envs: dataset choice, prompts, execution, reward, episode end.

    Args:
        datasets: the datasets a reset draws from (uniformly, with the env's ``np_random``).
        prompt_style: ``"paper"`` (default, the paper's prompt) or ``"rich"`` (adds description, columns, balance).
        max_turns: actions per episode before truncation (the paper's 5).
        executor: a shared ``CodeExecutor``; ``None`` creates one owned (and closed) by this task.
        executor_kwargs: settings of the owned executor (``num_workers``, ``timeout_s``, ``memory_limit_mb``,
            ``max_parallel_splits``); ``None`` values keep the executor's defaults. Settings together with a shared
            executor are an error.
    """

    def __init__(
        self,
        datasets: list[TabularDataset],
        prompt_style: str,
        max_turns: int,
        executor=None,
        executor_kwargs: dict[str, Any] | None = None,
    ):
        if prompt_style not in task.PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {task.PROMPT_STYLES}, got {prompt_style!r}")
        _check_int("max_turns", max_turns, 1)
        self.datasets = datasets
        self.prompt_style = prompt_style
        self.max_turns = max_turns
        settings = {key: value for key, value in (executor_kwargs or {}).items() if value is not None}
        if executor is not None and settings:
            raise ValueError(f"pass either executor= or executor settings {sorted(settings)}, not both")
        if executor is None:
            from etpo_gym.executor import CodeExecutor

            executor = CodeExecutor(**settings)
            self._owns_executor = True
        else:
            self._owns_executor = False
        self.executor = executor
        self.dataset: TabularDataset = datasets[0]
        self.prompt = ""
        self.turn = 0

    def start(self, np_random: np.random.Generator, dataset_name: str | None = None) -> str:
        """Begin an episode; returns the first prompt."""
        if dataset_name is not None:
            matches = [d for d in self.datasets if d.name == dataset_name]
            if not matches:
                raise ValueError(f"options['dataset']={dataset_name!r} is not among {[d.name for d in self.datasets]}")
            self.dataset = matches[0]
        else:
            self.dataset = self.datasets[int(np_random.integers(len(self.datasets)))]
        self.turn = 0
        self.prompt = task.build_prompt(self.dataset, self.prompt_style)
        return self.prompt

    def act(self, body: str) -> tuple[float, bool, bool, dict[str, Any]]:
        """Execute one action (a ``build_model`` body): ``(reward, terminated, truncated, info)``.

        Success terminates. A failure yields the reflection prompt as the next prompt, and truncates once
        ``max_turns`` actions have failed: the turn budget is a time limit, not a state of the task, so value
        targets should bootstrap there (Gymnasium's convention), whereas success is a true terminal state.
        The reward and the execution keys of ``info`` come from :func:`etpo_gym.rewards.score_bodies`, the code path
        trainers' batch rewards share (issue 15).
        """
        ((reward, details),) = score_bodies(self.executor, [self.dataset], [body])
        self.turn += 1
        terminated = details["status"] == "ok"
        truncated = not terminated and self.turn >= self.max_turns
        if not terminated:
            self.prompt = task.build_reflection_prompt(self.dataset, body, details["error"], self.prompt_style)
        info = {**details, "turn": self.turn, "prompt": self.prompt}
        return reward, terminated, truncated, info

    def close(self) -> None:
        if self._owns_executor:
            self.executor.close()


class _DataSciEnv(gym.Env):
    """What both envs share: arguments that build the task, the reset/step order, ``ansi`` rendering, close."""

    def _build_task(self, render_mode, tokenizer, dataset, target, description, prompt_style, max_turns, executor,
                    dataset_options, unknown, **executor_settings) -> None:  # fmt: skip
        """Validate ``render_mode``, load the tokenizer and build the :class:`DataSciTask` (``self.task``).

        ``unknown``: keyword arguments the env does not take. They are a ``ValueError`` here rather than Python's
        ``TypeError``, which ``gym.make`` re-raises with every argument's repr (a whole DataFrame's).
        """
        if unknown:
            raise _unknown_arguments_error(type(self), unknown)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.tokenizer = load_tokenizer(tokenizer)
        self.task = DataSciTask(
            resolve_datasets(dataset, target=target, description=description, **dataset_options),
            prompt_style=prompt_style,
            max_turns=max_turns,
            executor=executor,
            executor_kwargs=executor_settings,
        )
        self._needs_reset = True

    def _start_episode(self, seed: int | None, options: dict[str, Any] | None) -> str:
        """Base reset (seeds ``np_random``), then the task's first prompt."""
        super().reset(seed=seed)
        self._needs_reset = False
        return self.task.start(self.np_random, (options or {}).get("dataset"))

    def _check_running(self) -> None:
        if self._needs_reset:
            raise gym.error.ResetNeeded("the episode has ended (or never started): call reset() before step()")

    def _render_header(self) -> str:
        return f"[turn {self.task.turn}/{self.task.max_turns}, {self.task.dataset.name}]\n{self.task.prompt}"

    def close(self) -> None:
        self.task.close()
        super().close()


class DataSciTokenEnv(_DataSciEnv):
    """Write the body of ``build_model(x_train, y_train)`` for a tabular classification dataset, token by token.

    ## Description
    The ETPO paper's data-science task. The observation is a code-infill prompt naming the dataset and the shape
    of ``x_train``; the agent writes the body of ``build_model`` one token per ``step``. When the action ends
    (EOS, a stop string, or ``max_action_tokens``) the body runs in a sandboxed worker process and is scored by
    the mean ROC AUC over 5 random 50/50 splits (seeds 0-4) of the dataset's reward pool.

    ## Action Space
    ``Discrete(len(tokenizer))``: the id of the next token of the code.

    ## Observation Space
    | key              | space                                    | meaning                                        |
    |------------------|------------------------------------------|------------------------------------------------|
    | `input_ids`      | `Box(0, vocab_size - 1, (max_obs_tokens,), int64)` | prompt tokens then the action's tokens so far, right-padded with the pad id |
    | `attention_mask` | `Box(0, 1, (max_obs_tokens,), int64)`    | 1 on real tokens, 0 on padding                 |

    ## Rewards
    0 on every token that does not end an action. On the token that ends it: the mean ROC AUC (in [0, 1]) if
    the code returns a fitted model with ``predict_proba``, else -1 (syntax error, exception, timeout, memory,
    crash, wrong return, bad probabilities).

    ## Starting State
    A dataset drawn uniformly from ``dataset`` with ``np_random`` (or ``options={"dataset": name}``) and its
    first-turn prompt.

    ## Episode End
    - Termination: the first successful action.
    - Truncation: ``max_turns`` failed actions (a turn budget; bootstrap value targets there). After a failure
      that does not truncate, the next observation is the reflection prompt (error + failed code).

    ## Info keys
    | key              | when            | meaning                                                        |
    |------------------|-----------------|----------------------------------------------------------------|
    | `prompt`         | reset, action end | the current prompt text                                       |
    | `prompt_changed` | every step      | True when the observation starts a new prompt (reset, reflection) |
    | `action_done`    | every step      | True on the token that ended an action (code was executed)     |
    | `turn`           | every step      | actions executed so far in this episode                        |
    | `action_tokens`  | every step      | tokens of the current action so far                            |
    | `dataset`        | reset, action end | dataset name                                                  |
    | `code`, `status`, `auc`, `split_aucs`, `auc_std`, `test_auc`, `error_type`, `error`, `eval_time_s`, `cached` | action end | execution result; `test_auc` is the held-out AUC, never part of the reward |
    | `stop_reason`    | action end      | `"eos"`, `"stop_string"` or `"max_action_tokens"`              |

    ## Arguments
    | argument            | default            | meaning                                                  |
    |---------------------|--------------------|----------------------------------------------------------|
    | `dataset`           | all bundled        | name, list of names, DataFrame or CSV path               |
    | `target`            | None               | target column of user data                               |
    | `description`       | None               | task description of user data (rich prompt)              |
    | `dataset_name`      | None               | name of user data in prompts and `info` (default: the file stem, or `"custom"`) |
    | `keep_index_columns` | False             | keep user data's row-index columns (an unnamed leading column, a 0- or 1-based row counter), which are otherwise dropped with a warning |
    | `tokenizer`         | packaged BPE       | HF tokenizer object, path or hub id                      |
    | `prompt_style`      | `"paper"`          | `"paper"` or `"rich"`                                    |
    | `max_turns`         | 5                  | actions per episode                                      |
    | `max_action_tokens` | 256                | tokens per action (the paper's generation limit)         |
    | `max_obs_tokens`    | 1024               | observation length; longer prompts keep their last tokens |
    | `stop_strings`      | `DEFAULT_STOP_STRINGS` | text (a str or a sequence of str) that ends an action; the code is cut before it |
    | `executor`          | None               | a shared `CodeExecutor` (else one is created and owned)  |
    | `num_workers`, `timeout_s`, `memory_limit_mb`, `max_parallel_splits` | executor defaults | settings of the owned executor (size `max_parallel_splits` to cores / envs when several envs run) |
    | `render_mode`       | None               | `"ansi"` returns the prompt and the action so far        |

    ## Version History
    - v0: initial release.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        dataset: str | Sequence[str] | Any = None,
        *,
        target: str | None = None,
        description: str | None = None,
        dataset_name: str | None = None,
        keep_index_columns: bool = False,
        tokenizer: Any = None,
        prompt_style: str = "paper",
        max_turns: int = 5,
        max_action_tokens: int = 256,
        max_obs_tokens: int = 1024,
        stop_strings: str | Sequence[str] = DEFAULT_STOP_STRINGS,
        executor: Any = None,
        num_workers: int | None = None,
        timeout_s: float | None = None,
        memory_limit_mb: int | None = None,
        max_parallel_splits: int | None = None,
        render_mode: str | None = None,
        **unknown: Any,
    ):
        _check_int("max_action_tokens", max_action_tokens, 1)
        _check_int("max_obs_tokens", max_obs_tokens, 2)
        if max_action_tokens >= max_obs_tokens:
            raise ValueError(f"need max_action_tokens ({max_action_tokens}) < max_obs_tokens ({max_obs_tokens})")
        if isinstance(stop_strings, str):  # one stop string, as transformers' generate(stop_strings=...) accepts
            stop_strings = (stop_strings,)
        if not all(isinstance(s, str) and s for s in stop_strings):
            raise TypeError(f"stop_strings must be non-empty strings, got {stop_strings!r}")
        self._build_task(render_mode, tokenizer, dataset, target, description, prompt_style, max_turns, executor,
                         {"name": dataset_name, "keep_index_columns": keep_index_columns}, unknown,
                         num_workers=num_workers, timeout_s=timeout_s, memory_limit_mb=memory_limit_mb,
                         max_parallel_splits=max_parallel_splits)  # fmt: skip
        self.max_action_tokens = max_action_tokens
        self.max_obs_tokens = max_obs_tokens
        self.stop_strings = tuple(stop_strings)
        self.vocab_size = len(self.tokenizer)
        self.eos_token_id = int(self.tokenizer.eos_token_id)
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else self.eos_token_id)
        self._token_texts = token_texts(self.tokenizer) if self.stop_strings else []
        self._tail_chars = max((len(s) for s in self.stop_strings), default=0)
        self._prompt_ids_cache: dict[str, np.ndarray] = {}

        self.action_space = spaces.Discrete(self.vocab_size)
        self.observation_space = spaces.Dict(
            {
                "input_ids": spaces.Box(0, self.vocab_size - 1, (max_obs_tokens,), np.int64),
                "attention_mask": spaces.Box(0, 1, (max_obs_tokens,), np.int64),
            }
        )
        self._input_ids = np.full(max_obs_tokens, self.pad_token_id, dtype=np.int64)
        self._attention_mask = np.zeros(max_obs_tokens, dtype=np.int64)
        self._length = 0  # real tokens in the observation
        self._prompt_length = 0
        self._action_ids: list[int] = []
        self._tail = ""  # last characters of the action, for stop strings

    # -- helpers ---------------------------------------------------------------------------------------------
    def _load_prompt(self, prompt: str) -> bool:
        """Tokenize the prompt into the observation buffer; returns whether it had to be left-truncated."""
        ids = self._prompt_ids_cache.get(prompt)
        if ids is None:
            ids = np.asarray(self.tokenizer(prompt)["input_ids"], dtype=np.int64)
            if len(self._prompt_ids_cache) < 256:
                self._prompt_ids_cache[prompt] = ids
        room = self.max_obs_tokens - self.max_action_tokens
        truncated = len(ids) > room
        if truncated:
            ids = ids[-room:]
        self._input_ids.fill(self.pad_token_id)
        self._attention_mask.fill(0)
        self._input_ids[: len(ids)] = ids
        self._attention_mask[: len(ids)] = 1
        self._length = self._prompt_length = len(ids)
        self._action_ids = []
        self._tail = ""
        return truncated

    def _observation(self) -> dict[str, np.ndarray]:
        return {"input_ids": self._input_ids.copy(), "attention_mask": self._attention_mask.copy()}

    def _stop_reason(self, token: int) -> str | None:
        if token == self.eos_token_id:
            return "eos"
        if self._tail_chars:
            self._tail = (self._tail + self._token_texts[token])[-2 * self._tail_chars :]
            if any(stop in self._tail for stop in self.stop_strings):
                return "stop_string"
        if len(self._action_ids) >= self.max_action_tokens:
            return "max_action_tokens"
        return None

    def _action_text(self, stop_reason: str) -> str:
        ids = self._action_ids[:-1] if stop_reason == "eos" else self._action_ids
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return cut_at_stop_strings(text, self.stop_strings) if stop_reason == "stop_string" else text

    # -- Gymnasium API ---------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        prompt = self._start_episode(seed, options)
        truncated_prompt = self._load_prompt(prompt)
        info = {
            "prompt": prompt,
            "prompt_changed": True,
            "action_done": False,
            "turn": 0,
            "action_tokens": 0,
            "dataset": self.task.dataset.name,
            "prompt_truncated": truncated_prompt,
        }
        return self._observation(), info

    def step(self, action):
        self._check_running()
        if isinstance(action, np.ndarray) and action.shape in ((), (1,)):
            action = action.reshape(()).item() if np.issubdtype(action.dtype, np.integer) else action
        if not isinstance(action, (int, np.integer)) or isinstance(action, bool) or not 0 <= action < self.vocab_size:
            raise gym.error.InvalidAction(
                f"action must be an integer token id in [0, {self.vocab_size}), got {action!r}"
            )
        token = int(action)
        self._input_ids[self._length] = token
        self._attention_mask[self._length] = 1
        self._length += 1
        self._action_ids.append(token)
        stop_reason = self._stop_reason(token)
        if stop_reason is None:
            info = {"prompt_changed": False, "action_done": False, "turn": self.task.turn,
                    "action_tokens": len(self._action_ids)}  # fmt: skip
            return self._observation(), 0.0, False, False, info

        num_action_tokens = len(self._action_ids)
        reward, terminated, truncated, info = self.task.act(self._action_text(stop_reason))
        info.update(stop_reason=stop_reason, action_done=True, action_tokens=num_action_tokens)
        if terminated or truncated:
            self._needs_reset = True
            info["prompt_changed"] = False
        else:
            info["prompt_truncated"] = self._load_prompt(self.task.prompt)
            info["prompt_changed"] = True
        return self._observation(), float(reward), terminated, truncated, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return self._render_header() + self.tokenizer.decode(self._action_ids, skip_special_tokens=True)


_TEXT_CHARSET = frozenset(string.printable)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _unknown_arguments_error(env_class: type, unknown: dict[str, Any]) -> ValueError:
    """The error for keyword arguments ``env_class`` does not take, with close names suggested."""
    import difflib
    import inspect

    accepted = [name for name in inspect.signature(env_class.__init__).parameters if name not in ("self", "unknown")]
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, accepted, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ValueError(f"{env_class.__name__} got unknown argument(s) {', '.join(hints)}; it accepts {accepted}")


def _printable(text: str) -> str:
    return "".join(c if c in _TEXT_CHARSET else "?" for c in text)


class DataSciTextEnv(_DataSciEnv):
    """The data-science task with one ``step`` per whole code string (same prompts and reward as the token env).

    ## Description
    See :class:`DataSciTokenEnv`; here the action is the full body of ``build_model`` as text.

    ## Action Space
    ``Text(max_action_chars, charset=string.printable)``: the body, with or without the function's indentation
    and with or without a trailing ``return model``.

    ## Observation Space
    | space                                           | meaning                                               |
    |-------------------------------------------------|-------------------------------------------------------|
    | `Text(max_obs_chars, charset=string.printable)` | the prompt; characters outside the charset become `?` |

    ## Rewards
    The mean ROC AUC over 5 random 50/50 splits on success, -1 on any failure.

    ## Starting State
    As :class:`DataSciTokenEnv`.

    ## Episode End
    - Termination: the first successful action.
    - Truncation: ``max_turns`` failed actions.

    ## Info keys
    | key | meaning |
    |-----|---------|
    | `prompt`, `dataset`, `turn` | as in the token env |
    | `code`, `status`, `auc`, `split_aucs`, `auc_std`, `test_auc`, `error_type`, `error`, `eval_time_s`, `cached` | after each step |

    ## Arguments
    | argument | default | meaning |
    |----------|---------|---------|
    | `dataset`, `target`, `description`, `dataset_name`, `keep_index_columns`, `prompt_style`, `max_turns`, `executor`, executor settings | as the token env | |
    | `tokenizer` | packaged BPE | exposed as `env.unwrapped.tokenizer` for agents that tokenize themselves |
    | `max_obs_chars` | 20000 | observation length limit (a longer prompt keeps its end) |
    | `max_action_chars` | 8000 | action length limit (a longer action raises `InvalidAction`) |
    | `render_mode` | None | `"ansi"` |

    ## Version History
    - v0: initial release.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        dataset: str | Sequence[str] | Any = None,
        *,
        target: str | None = None,
        description: str | None = None,
        dataset_name: str | None = None,
        keep_index_columns: bool = False,
        tokenizer: Any = None,
        prompt_style: str = "paper",
        max_turns: int = 5,
        max_obs_chars: int = 20000,
        max_action_chars: int = 8000,
        executor: Any = None,
        num_workers: int | None = None,
        timeout_s: float | None = None,
        memory_limit_mb: int | None = None,
        max_parallel_splits: int | None = None,
        render_mode: str | None = None,
        **unknown: Any,
    ):
        _check_int("max_obs_chars", max_obs_chars, 1)
        _check_int("max_action_chars", max_action_chars, 1)
        self._build_task(render_mode, tokenizer, dataset, target, description, prompt_style, max_turns, executor,
                         {"name": dataset_name, "keep_index_columns": keep_index_columns}, unknown,
                         num_workers=num_workers, timeout_s=timeout_s, memory_limit_mb=memory_limit_mb,
                         max_parallel_splits=max_parallel_splits)  # fmt: skip
        self.observation_space = spaces.Text(max_obs_chars, min_length=0, charset=_TEXT_CHARSET)
        self.action_space = spaces.Text(max_action_chars, min_length=0, charset=_TEXT_CHARSET)

    def _observation(self) -> str:
        return _printable(self.task.prompt)[-self.observation_space.max_length :]  # keeps the end, like the token env

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        prompt = self._start_episode(seed, options)
        return self._observation(), {"prompt": prompt, "dataset": self.task.dataset.name, "turn": 0}

    def step(self, action: str):
        self._check_running()
        if not isinstance(action, str):
            raise gym.error.InvalidAction(
                f"action must be a str (the body of build_model), got {type(action).__name__}"
            )
        if len(action) > self.action_space.max_length:
            raise gym.error.InvalidAction(
                f"action has {len(action)} characters, more than max_action_chars={self.action_space.max_length}"
            )
        reward, terminated, truncated, info = self.task.act(action)
        self._needs_reset = terminated or truncated
        return self._observation(), float(reward), terminated, truncated, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return self._render_header()
