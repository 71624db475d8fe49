"""The token-level and text-level envs, run for real (sandboxed executor, packaged tokenizer)."""

import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from conftest import encode_action, run_action

import etpo_gym  # noqa: F401  (registers the envs)
from etpo_gym import task
from etpo_gym.datasets import load_dataset
from etpo_gym.env import DataSciTextEnv, DataSciTokenEnv
from etpo_gym.tokenizer import load_tokenizer

RF = (
    "from sklearn.ensemble import RandomForestClassifier\n"
    "    model = RandomForestClassifier(n_estimators=25, random_state=0)\n"
    "    model.fit(x_train, y_train)"
)
BROKEN = "model = UnknownClassifier()\n    model.fit(x_train, y_train)"


@pytest.fixture
def env(executor):
    env = gym.make("ETPO-DataSci-v0", dataset="kidney_stone", executor=executor, max_action_tokens=128)
    yield env
    env.close()


def direct_score(dataset_name: str, body: str) -> dict:
    """The paper's procedure in this process: exec the program, 5 sequential 50/50 splits."""
    data = load_dataset(dataset_name)
    namespace: dict = {}
    exec(task.program_source(body), namespace)
    return task.score_build_model(namespace["build_model"], data.x, data.y, data.x_test, data.y_test, data.num_classes)


def test_random_forest_reward_equals_direct_sklearn_computation(env):
    obs, info = env.reset(seed=0)
    assert info["prompt_changed"] and info["dataset"] == "kidney_stone"
    assert obs["attention_mask"].sum() == len(env.unwrapped.tokenizer(info["prompt"])["input_ids"])
    ids = encode_action(env.unwrapped.tokenizer, RF)
    for token in ids[:-1]:
        obs, reward, terminated, truncated, info = env.step(token)
        assert reward == 0.0 and not terminated and not truncated and not info["action_done"]
    obs, reward, terminated, truncated, info = env.step(ids[-1])
    expected = direct_score("kidney_stone", RF)
    assert info["action_done"] and info["stop_reason"] == "eos" and info["status"] == "ok"
    assert reward == pytest.approx(expected["auc"])
    assert info["split_aucs"] == pytest.approx(expected["split_aucs"])
    assert info["test_auc"] == pytest.approx(expected["test_auc"])
    assert info["auc_std"] == pytest.approx(expected["auc_std"])
    assert terminated and not truncated
    assert "RandomForestClassifier(n_estimators=25" in info["code"]
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)


def test_broken_code_gives_minus_one_and_reflection_prompt(env):
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = run_action(env, BROKEN)
    assert reward == -1.0 and not terminated and not truncated
    assert info["error_type"] == "NameError" and "UnknownClassifier" in info["error"]
    assert (
        info["prompt_changed"] and "An error was reported" in info["prompt"] and "UnknownClassifier()" in info["prompt"]
    )
    prompt_ids = env.unwrapped.tokenizer(info["prompt"])["input_ids"]
    assert obs["attention_mask"].sum() == len(prompt_ids)
    np.testing.assert_array_equal(obs["input_ids"][: len(prompt_ids)], prompt_ids)


def test_turn_cap_truncates(executor):
    env = gym.make("ETPO-DataSci-v0", dataset="iris", executor=executor, max_turns=3)
    env.reset(seed=1)
    flags = []
    for _ in range(3):
        _, reward, terminated, truncated, info = run_action(env, BROKEN)
        flags.append((reward, terminated, truncated, info["turn"]))
    assert flags == [(-1.0, False, False, 1), (-1.0, False, False, 2), (-1.0, False, True, 3)]
    env.close()


def test_max_action_tokens_and_stop_strings(executor):
    env = gym.make("ETPO-DataSci-v0", dataset="iris", executor=executor, max_action_tokens=5)
    env.reset(seed=0)
    tokenizer = env.unwrapped.tokenizer
    ids = tokenizer.encode("x = 1\n    y = 2\n    z = 3\n    w = 4", add_special_tokens=False)
    infos = [env.step(t)[4] for t in ids[:5]]
    assert [i["action_done"] for i in infos] == [False] * 4 + [True]
    assert infos[-1]["stop_reason"] == "max_action_tokens"
    env.close()
    env = DataSciTokenEnv(dataset="iris", executor=executor)
    env.reset(seed=0)
    body = RF + "\n\ndef helper():\n    pass"
    for token in tokenizer.encode(body, add_special_tokens=False):
        _, reward, terminated, _, info = env.step(token)
        if info["action_done"]:
            break
    assert info["stop_reason"] == "stop_string" and terminated and reward > 0.5
    assert "def helper" not in info["code"]
    env.close()


def test_user_csv_and_dataframe_tasks(executor, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    frame = pd.DataFrame(x, columns=["f1", "f2", "f3"]).assign(
        label=(x[:, 0] + 0.3 * rng.normal(size=300) > 0).astype(int)
    )
    path = tmp_path / "toy.csv"
    frame.to_csv(path, index=False)
    for spec in (str(path), frame):
        env = gym.make(
            "ETPO-DataSci-v0",
            dataset=spec,
            target="label",
            description="A toy task.",
            executor=executor,
            prompt_style="rich",
        )
        _, info = env.reset(seed=0)
        assert "A toy task." in info["prompt"] and "f1 (numeric)" in info["prompt"]
        _, reward, terminated, _, _ = run_action(
            env,
            "from sklearn.linear_model import LogisticRegression\n    model = LogisticRegression().fit(x_train, y_train)",
        )
        assert terminated and reward > 0.9
        env.close()
    with pytest.raises(ValueError, match="not in dataset"):
        gym.make("ETPO-DataSci-v0", dataset=frame, target="nope", executor=executor)


def test_gymnasium_and_sb3_env_checkers(executor):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = DataSciTokenEnv(dataset="iris", executor=executor, max_action_tokens=8, max_obs_tokens=512)
    check_env(env, skip_render_check=False)
    sb3_check_env(env, warn=True)
    env.close()
    # The text env executes code on its first step, and its info reports wall time and cache hits, which
    # legitimately differ between two identical steps; every other check of check_env applies.
    from gymnasium.utils import env_checker

    text_env = DataSciTextEnv(dataset="iris", executor=executor)
    env_checker.check_action_space(text_env.action_space)
    env_checker.check_observation_space(text_env.observation_space)
    env_checker.check_reset_return_type(text_env)
    env_checker.check_reset_seed_determinism(text_env)
    env_checker.check_reset_options(text_env)
    env_checker.env_step_passive_checker(text_env, text_env.action_space.sample())
    text_env.close()


def test_docstring_tables_match_declared_spaces(executor):
    env = DataSciTokenEnv(dataset="iris", executor=executor, max_obs_tokens=512)
    doc = DataSciTokenEnv.__doc__
    for key, space in env.observation_space.spaces.items():
        row = re.search(rf"\| `{key}`\s*\| `([^`]*)`", doc)
        assert row, f"{key} missing from the Observation Space table"
        declared = row.group(1).replace("vocab_size - 1", str(env.vocab_size - 1)).replace("max_obs_tokens", "512")
        assert declared == f"Box({int(space.low.min())}, {int(space.high.max())}, {space.shape}, {space.dtype})"
    assert "Discrete(len(tokenizer))" in doc and env.action_space.n == len(env.tokenizer)
    for section in (
        "Description",
        "Action Space",
        "Observation Space",
        "Rewards",
        "Starting State",
        "Episode End",
        "Info keys",
        "Arguments",
        "Version History",
    ):
        assert f"## {section}" in doc
    env.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs(mode):
    envs = gym.make_vec("ETPO-DataSci-v0", num_envs=2, vectorization_mode=mode, dataset="iris", max_action_tokens=64)
    obs, infos = envs.reset(seed=[0, 1])
    assert obs["input_ids"].shape == (2, 1024)
    tokenizer = load_tokenizer()  # the envs' default
    ids = encode_action(
        tokenizer, "from sklearn.naive_bayes import GaussianNB\n    model = GaussianNB().fit(x_train, y_train)"
    )
    for token in ids:
        obs, rewards, terminated, truncated, infos = envs.step(np.array([token, token]))
    assert terminated.all() and (rewards > 0.9).all()
    envs.close()


def test_same_seed_same_rollout(executor):
    def rollout(seed):
        env = DataSciTokenEnv(executor=executor, max_action_tokens=6)
        out = []
        for episode in range(3):
            obs, info = env.reset(seed=seed if episode == 0 else None)
            rng = np.random.default_rng(seed + episode)
            tokens = rng.integers(3, env.vocab_size, 6)
            result = [env.step(int(t)) for t in tokens][-1]
            out.append((info["dataset"], obs["input_ids"].tolist(), result[1], result[4]["error"]))
        env.close()
        return out

    first, second = rollout(7), rollout(7)
    assert first == second
    assert {r[0] for r in rollout(7)} != {r[0] for r in rollout(8)} or rollout(7)[0][1] != rollout(8)[0][1]


def test_timeout_and_crash_leave_env_working(executor):
    from etpo_gym.executor import CodeExecutor

    with CodeExecutor(timeout_s=2) as short:
        env = DataSciTokenEnv(dataset="iris", executor=short)
        env.reset(seed=0)
        _, reward, _, _, info = run_action(env, "while True:\n        pass")
        assert reward == -1.0 and info["status"] == "timeout"
        # past the import allow-list (faulthandler reached through sklearn's builtins): a real segfault of the child
        segfault = "import sklearn\n    sklearn.base.__builtins__['__import__']('faulthandler')._sigsegv()"
        _, reward, _, _, info = run_action(env, segfault)
        assert reward == -1.0 and info["status"] == "crash", info["error"]
        assert info["error"] == "WorkerCrash: killed by signal SIGSEGV"
        _, reward, terminated, _, info = run_action(env, RF)
        assert terminated and reward > 0.9
        env.close()


def test_bad_api_input(executor):
    env = DataSciTokenEnv(dataset="iris", executor=executor)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(5)
    env.reset(seed=0)
    for bad in (-1, env.vocab_size, 3.5, "a", np.array([1, 2]), None, True):
        with pytest.raises(gym.error.InvalidAction):
            env.step(bad)
    env.step(np.int64(5))
    env.step(np.array(5))
    with pytest.raises(ValueError, match="not among"):
        env.reset(options={"dataset": "wine"})
    env.close()
    with pytest.raises(ValueError, match="unknown dataset"):
        gym.make("ETPO-DataSci-v0", dataset="nope", executor=executor)
    with pytest.raises(ValueError, match="max_action_tokens"):
        DataSciTokenEnv(dataset="iris", executor=executor, max_action_tokens=2000)
    with pytest.raises(ValueError, match="prompt_style"):
        DataSciTokenEnv(dataset="iris", executor=executor, prompt_style="fancy")
    with pytest.raises(ValueError, match="unknown argument"):  # not TypeError: gym.make would print every argument
        gym.make("ETPO-DataSci-v0", dataset="iris", executor=executor, not_an_argument=1)
    with pytest.raises(ValueError, match="not both"):
        gym.make("ETPO-DataSci-v0", dataset="iris", executor=executor, timeout_s=3)


def test_text_env_matches_token_env_reward(executor):
    env = gym.make("ETPO-DataSciText-v0", dataset="kidney_stone", executor=executor)
    obs, info = env.reset(seed=0)
    assert obs.startswith('"""Classification with a Kidney Stone') and info["prompt"] == obs
    assert env.unwrapped.tokenizer is not None
    _, reward, terminated, _, info = env.step(RF)
    assert terminated and reward == pytest.approx(direct_score("kidney_stone", RF)["auc"])
    env.close()


def test_render_ansi(executor):
    env = gym.make("ETPO-DataSci-v0", dataset="iris", executor=executor, render_mode="ansi")
    env.reset(seed=0)
    for token in env.unwrapped.tokenizer.encode("model = 1", add_special_tokens=False):
        env.step(token)
    assert env.render().endswith("model = 1")
    env.close()


def test_per_dataset_ids_and_importing_does_not_import_torch():
    env = gym.make("ETPO-DataSci-Pharyngitis-v0")
    _, info = env.reset(seed=0)
    assert info["dataset"] == "pharyngitis"
    env.close()
    code = "import sys, gymnasium as gym, etpo_gym; env = gym.make('ETPO-DataSci-v0', dataset='iris'); env.reset(seed=0); env.close(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
