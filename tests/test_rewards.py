"""The trainer-agnostic batch reward and prompt dataset (etpo_gym/rewards.py), checked against the real envs."""

from importlib import resources

import gymnasium as gym
import pandas as pd
import pytest

import etpo_gym  # noqa: F401  (registers the envs)
from etpo_gym import rewards
from etpo_gym.executor import CodeExecutor

LOGISTIC = (
    "from sklearn.linear_model import LogisticRegression\n"
    "    model = LogisticRegression(max_iter=200)\n"
    "    model.fit(x_train, y_train)"
)
FAILING = "model = UnknownClassifier()\n    model.fit(x_train, y_train)"
LOOPING = "while True:\n        pass"
TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def batch_reward():
    """A reward with its own executor (2 workers), so no result comes from the env's cache."""
    with rewards.BatchReward(num_workers=2, timeout_s=TIMEOUT_S, keep_records=True) as reward:
        yield reward


def env_step(body: str, dataset: str = "kidney_stone", **env_kwargs) -> tuple[float, dict]:
    """Reward and info of one text-env step on a fresh env (its own executor)."""
    env = gym.make("ETPO-DataSciText-v0", dataset=dataset, timeout_s=TIMEOUT_S, **env_kwargs)
    try:
        env.reset(seed=0)
        _, reward, _, _, info = env.step(body)
    finally:
        env.close()
    return reward, info


def test_batch_reward_equals_env_reward_on_passing_failing_and_timing_out_bodies(batch_reward):
    bodies = [LOGISTIC, FAILING, LOOPING]
    scored = batch_reward.score(bodies, ["kidney_stone"] * 3)
    assert [s["status"] for s in scored] == ["ok", "error", "timeout"]
    env = gym.make("ETPO-DataSciText-v0", dataset="kidney_stone", timeout_s=TIMEOUT_S)  # its own executor: no cache
    try:
        for body, details in zip(bodies, scored, strict=True):
            env.reset(seed=0)  # every body is a first-turn action
            _, reward, _, _, info = env.step(body)
            assert details["reward"] == reward
            for key in ("status", "auc", "split_aucs", "test_auc", "error_type", "code", "cached"):
                assert details[key] == info[key], key
    finally:
        env.close()
    assert 0.5 < scored[0]["reward"] <= 1.0 and 0.5 < scored[0]["test_auc"] <= 1.0
    assert len(scored[0]["split_aucs"]) == 5
    assert scored[1]["reward"] == scored[2]["reward"] == -1.0
    assert scored[2]["test_auc"] is None


def test_trl_signature_returns_floats_logs_columns_and_records(batch_reward):
    logged = {}
    before = len(batch_reward.records)
    completions = [LOGISTIC + "\n    return model\n\ndef main():\n    print(1)", FAILING]
    out = batch_reward(
        prompts=["p", "p"],
        completions=completions,
        completion_ids=[[1], [2]],
        dataset=["kidney_stone", "kidney_stone"],
        target=["", ""],
        description=["", ""],
        load_options=["{}", "{}"],
        prompt_style=["paper", "paper"],
        trainer_state=None,
        log_extra=lambda column, values: logged.setdefault(column, values),
    )
    assert isinstance(out, list) and all(isinstance(r, float) for r in out)
    assert out[1] == -1.0 and out[0] > 0.5
    assert logged["status"] == ["ok", "error"] and logged["test_auc"][1] is None
    records = batch_reward.records[before:]
    assert [r["reward"] for r in records] == out
    assert records[0]["body"] == LOGISTIC + "\n    return model\n"  # cut before the stop string "\ndef "
    assert records[0]["cached"]  # the same body was scored by the first test


def test_completion_is_cut_like_the_token_env():
    text = "model = 1\nprint(model)\ndef f(): pass"
    assert rewards.completion_to_body(text) == "model = 1"
    assert rewards.completion_to_body("a\nclass A: pass\ndef b") == "a"
    assert rewards.completion_to_body("no stop string") == "no stop string"
    assert rewards.completion_to_body([{"role": "assistant", "content": "x = 1\ndef g"}]) == "x = 1"
    assert rewards.cut_at_stop_strings("abcXYdef", ("XY", "d")) == "abc"


def test_prompt_dataset_rows_are_the_env_first_prompts():
    table = rewards.build_prompt_dataset(["kidney_stone", "pharyngitis"], prompt_style="rich", num_repeats=2)
    assert table.column_names == list(rewards.PROMPT_COLUMNS)
    assert table["dataset"] == ["kidney_stone", "pharyngitis"] * 2
    env = gym.make("ETPO-DataSciText-v0", dataset=["kidney_stone", "pharyngitis"], prompt_style="rich")
    try:
        for row in table.select(range(2)):
            obs, _ = env.reset(options={"dataset": row["dataset"]})
            assert row["prompt"] == obs and row["prompt"].endswith("    ")
    finally:
        env.close()


def test_user_csv_prompt_and_reward_find_the_file(tmp_path, batch_reward):
    frame = pd.read_csv(resources.files("etpo_gym") / "data" / "kidney_stone.csv.gz").drop(columns=["id"])
    path = tmp_path / "stones.csv"
    frame.to_csv(path, index=False)
    table = rewards.build_prompt_dataset(str(path), target="target", description="Kidney stones from urine.")
    row = table[0]
    assert row["dataset"] == str(path) and row["target"] == "target" and row["load_options"] == "{}"
    assert "Stones" in row["prompt"]
    reward = batch_reward([row["prompt"]], [LOGISTIC], dataset=[row["dataset"]], target=[row["target"]],
                          description=[row["description"]], load_options=[row["load_options"]])  # fmt: skip
    expected, info = env_step(LOGISTIC, dataset=str(path), target="target")
    assert reward == [expected] and info["status"] == "ok"
    named = rewards.build_prompt_dataset(str(path), target="target", name="urine")[0]
    assert named["load_options"] == '{"name": "urine"}' and "Urine" in named["prompt"]
    assert batch_reward.dataset(named["dataset"], named["target"], "", named["load_options"]).name == "urine"


def test_bad_input_is_a_value_error_naming_the_fix():
    with pytest.raises(ValueError, match="to_csv"):
        rewards.build_prompt_dataset(pd.DataFrame({"a": [1], "b": [0]}), target="b")
    with pytest.raises(ValueError, match="num_repeats"):
        rewards.build_prompt_dataset("kidney_stone", num_repeats=0)
    with CodeExecutor() as executor:
        with pytest.raises(ValueError, match="not both"):
            rewards.BatchReward(executor, timeout_s=1.0)
        with pytest.raises(ValueError, match="one per completion"):
            rewards.BatchReward(executor).score(["a", "b"], ["kidney_stone"])
