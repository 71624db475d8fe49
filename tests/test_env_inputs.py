"""Constructor and action validation of both envs, and user files the loader must reject or clean quickly."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import etpo_gym  # noqa: F401  (registers the envs)
from etpo_gym.datasets import DatasetError, load_dataset


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"dataset": 123}, DatasetError, "got int"),
        ({"max_turns": "5"}, TypeError, "max_turns must be an int"),
        ({"max_turns": 0}, ValueError, "max_turns must be >= 1"),
        ({"max_action_tokens": 2.5}, TypeError, "max_action_tokens must be an int"),
        ({"max_action_tokens": 64, "max_obs_tokens": 64}, ValueError, "max_action_tokens .* < max_obs_tokens"),
        ({"stop_strings": ["\ndef ", ""]}, TypeError, "non-empty strings"),
    ],
)
def test_token_env_rejects_bad_kwargs(kwargs, error, match, executor):
    with pytest.raises(error, match=match):
        gym.make("ETPO-DataSci-v0", **{"dataset": "iris", "executor": executor, **kwargs})


def test_dataset_directory_is_named_as_such(tmp_path):
    with pytest.raises(DatasetError, match="is a directory"):
        load_dataset(str(tmp_path), target="y")


def test_one_stop_string_as_str_is_one_stop_string(executor):
    """A plain str is one stop string (as in transformers), not a set of one-character stops."""
    env = gym.make("ETPO-DataSci-v0", dataset="iris", executor=executor, stop_strings="\ndef ")
    assert env.unwrapped.stop_strings == ("\ndef ",)
    tokenizer = env.unwrapped.tokenizer
    env.reset(seed=0)
    for token in tokenizer.encode("    model = 1", add_special_tokens=False):  # 'd', 'e', ' ' and 'f'-free tokens
        _, _, _, _, info = env.step(token)
    assert not info["action_done"]
    env.close()


def test_text_env_limits_actions_and_keeps_the_prompt_end(executor):
    env = gym.make("ETPO-DataSciText-v0", dataset="iris", executor=executor, max_obs_chars=100, max_action_chars=50)
    observation, info = env.reset(seed=0)
    assert len(observation) == 100 and info["prompt"].endswith(observation)
    with pytest.raises(gym.error.InvalidAction, match="max_action_chars=50"):
        env.step("x" * 51)
    observation, reward, *_ = env.step("model = undefined_name")  # the env still works; the reflection prompt's
    assert reward == -1.0 and observation.rstrip().endswith(env.unwrapped.task.prompt.rstrip()[-20:])  # end is kept
    env.close()


def test_infinite_values_are_dropped_like_nan():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "y": [0, 1] * 30})
    frame.loc[[3, 7], "a"] = [np.inf, -np.inf]
    data = load_dataset(frame, target="y")
    assert np.isfinite(data.x).all() and len(data.x) + len(data.x_test) == 58


def test_mixed_type_column_is_categorical(tmp_path):
    path = tmp_path / "mixed.csv"
    pd.DataFrame({"a": [1, "two", 3.5, "x"] * 15, "b": np.arange(60) % 7, "y": [0, 1] * 30}).to_csv(path, index=False)
    data = load_dataset(str(path), target="y")
    assert dict(zip(data.feature_names, data.feature_kinds, strict=True)) == {"a": "categorical", "b": "numeric"}


def test_huge_header_is_rejected_quickly(tmp_path):
    """A 16 MB file whose header has 2 M columns: a clear error in well under a second, not minutes of parsing."""
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(2_000_000)) + "\n")
    start = time.perf_counter()
    with pytest.raises(DatasetError, match="header line is longer"):
        load_dataset(str(path), target="c0")
    assert time.perf_counter() - start < 5


def test_huge_file_reads_only_the_row_cap(tmp_path):
    """A long file loads its first rows only (the loader reads at most 200,000 and keeps 2,000)."""
    path = tmp_path / "long.csv"
    rows = 300_000
    pd.DataFrame({"a": np.arange(rows) % 97, "y": np.arange(rows) % 2}).to_csv(path, index=False)
    data = load_dataset(str(path), target="y")
    assert len(data.x) + len(data.x_test) == 2000


def test_default_turn_budget_is_five(executor):
    env = gym.make("ETPO-DataSciText-v0", dataset="iris", executor=executor)
    env.reset(seed=0)
    for turn in range(1, 6):
        _, reward, terminated, truncated, info = env.step(f"model = undefined_{turn}")
        assert reward == -1.0 and not terminated and truncated == (turn == 5), turn
    env.close()


def test_tokenizer_from_a_local_path(executor, tmp_path):
    from etpo_gym.tokenizer import load_tokenizer

    load_tokenizer().save_pretrained(tmp_path / "tok")
    env = gym.make("ETPO-DataSci-v0", dataset="iris", executor=executor, tokenizer=str(tmp_path / "tok"))
    observation, info = env.reset(seed=0)
    assert env.unwrapped.tokenizer.decode(observation["input_ids"][: int(observation["attention_mask"].sum())],
                                          skip_special_tokens=True) == info["prompt"]  # fmt: skip
    env.close()
