"""The adversarial sandbox cases (issue 6) routed through the real token-level env, token by token.

For every case: the env answers with the failure reward (or, for harmless attempts, no unearned reward), shows the
reflection prompt after a failure, is contained as in the executor-level test (no file changed outside the
sandbox, no process left, the env's dataset arrays unchanged) and goes on to score the next action of the same
episode.
"""

import gymnasium as gym
import pytest
from conftest import run_action
from test_sandbox_adversarial import ADVERSARIAL_CASES, contained, make_sentinel, render

import etpo_gym  # noqa: F401
from etpo_gym.executor import CodeExecutor

FOLLOW_UP = (
    "from sklearn.linear_model import LogisticRegression\n    model = LogisticRegression().fit(x_train, y_train)"
)


@pytest.fixture(scope="module")
def env():
    with CodeExecutor(timeout_s=3.0, memory_limit_mb=1024) as executor:
        # no stop strings: several cases define classes or functions inside the body on purpose
        env = gym.make("ETPO-DataSci-v0", dataset="kidney_stone", executor=executor, stop_strings=(),
                       max_action_tokens=1000, max_obs_tokens=3000, max_turns=2)  # fmt: skip
        yield env
        env.close()


@pytest.mark.parametrize(
    ("body", "expectation"), [c[1:] for c in ADVERSARIAL_CASES], ids=[c[0] for c in ADVERSARIAL_CASES]
)
def test_adversarial_case_through_env(env, tmp_path, body, expectation):
    sentinel = make_sentinel(tmp_path)
    env.reset(seed=0)
    task = env.unwrapped.task
    with contained(task.executor, task.dataset, sentinel):
        _, reward, terminated, truncated, info = run_action(env, render(body, sentinel))
    if expectation == "fail":
        assert reward == -1.0 and not terminated and not truncated, info["error"]
        assert info["prompt_changed"] and "An error was reported" in info["prompt"]
    elif expectation == "honest":
        assert reward < 0.95, info
    else:
        assert info["status"] == "ok", info["error"]
    if not (terminated or truncated):
        _, reward, terminated, _, info = run_action(env, FOLLOW_UP + f"  # after {body[:30]!r}")
        assert terminated and reward > 0.5, info["error"]
