"""The sandboxed executor: reward equal to the in-process procedure, every failure status, cache, futures, cleanup."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import psutil
import pytest

from etpo_gym import _sandbox_worker as worker_protocol
from etpo_gym import executor as executor_module
from etpo_gym import task
from etpo_gym.datasets import load_dataset
from etpo_gym.executor import CodeExecutor, ExecutionStatus

RANDOM_FOREST = """
from sklearn.ensemble import RandomForestClassifier
model = RandomForestClassifier(n_estimators=50, random_state=0)
model.fit(x_train, y_train)
return model
"""
LOGISTIC = "from sklearn.linear_model import LogisticRegression\nmodel = LogisticRegression(max_iter=500).fit(x_train, y_train)"
TIMEOUT_S = 3.0


def session_members(session_ids: set[int]) -> list[int]:
    """Live processes in the given sessions (each worker leads one; its children stay in it)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) in session_ids and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            pass
    return members


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("kidney_stone")


@pytest.fixture(scope="module")
def executor():
    with CodeExecutor(timeout_s=TIMEOUT_S, memory_limit_mb=1024) as executor:
        yield executor


def test_random_forest_matches_in_process_procedure(executor, dataset):
    result = executor.evaluate(dataset, RANDOM_FOREST)
    namespace: dict = {}
    exec(task.program_source(RANDOM_FOREST), namespace)
    expected = task.score_build_model(
        namespace["build_model"], dataset.x, dataset.y, dataset.x_test, dataset.y_test, dataset.num_classes
    )
    assert result.status is ExecutionStatus.OK and result.ok
    assert result.message == "" and result.error_type is None and not result.cached
    assert result.split_aucs == pytest.approx(expected["split_aucs"], abs=1e-12)
    assert result.auc == pytest.approx(expected["auc"], abs=1e-12)
    assert result.auc_std == pytest.approx(expected["auc_std"], abs=1e-12)
    assert result.test_auc == pytest.approx(expected["test_auc"], abs=1e-12)
    assert result.reward == result.auc and 0.5 < result.auc < 1.0


def test_multiclass_dataset(executor):
    result = executor.evaluate(load_dataset("iris"), LOGISTIC)
    assert result.ok and len(result.split_aucs) == task.NUM_SPLITS and result.auc > 0.9


@pytest.mark.parametrize(
    ("body", "error_type", "message"),
    [
        ("model = 1 / 0", "ZeroDivisionError", "ZeroDivisionError: division by zero"),
        ("model = Foo()", "NameError", "NameError: name 'Foo' is not defined"),
        ("model = (", "SyntaxError", "SyntaxError: '(' was never closed (line 4)"),
        (
            "from sklearn.svm import LinearSVC\nmodel = LinearSVC().fit(x_train, y_train)",
            "TypeError",
            "TypeError: build_model must return a fitted model with predict_proba, got LinearSVC",
        ),
        ("model = 42", "TypeError", "TypeError: build_model must return a fitted model with predict_proba, got int"),
        ("import os\nmodel = None", "ImportError", "ImportError: import of 'os' is not allowed in the sandbox"),
    ],
    ids=["exception", "name-error", "syntax-error", "no-predict-proba", "wrong-return", "forbidden-import"],
)
def test_errors_give_short_message_and_failure_reward(executor, dataset, body, error_type, message):
    result = executor.evaluate(dataset, body)
    assert result.status is ExecutionStatus.ERROR and not result.ok
    assert result.error_type == error_type
    assert result.message.startswith(message) and len(result.message) <= 300 and "\n" not in result.message
    assert result.reward == task.FAILURE_REWARD and result.auc is None and result.split_aucs == ()


def test_bad_probabilities_are_errors(executor, dataset):
    nan_model = "class M:\n    def predict_proba(self, x):\n        return np.full((len(x), 2), np.nan)\nmodel = M()"
    result = executor.evaluate(dataset, nan_model)
    assert result.status is ExecutionStatus.ERROR and "NaN" in result.message
    shape_model = "class M:\n    def predict_proba(self, x):\n        return np.zeros(len(x))\nmodel = M()"
    result = executor.evaluate(dataset, shape_model)
    assert result.status is ExecutionStatus.ERROR and "shape" in result.message


def test_infinite_loop_times_out(executor, dataset):
    start = time.perf_counter()
    result = executor.evaluate(dataset, "while True:\n    pass")
    assert result.status is ExecutionStatus.TIMEOUT and result.error_type == "TimeoutError"
    assert result.reward == task.FAILURE_REWARD
    assert TIMEOUT_S <= time.perf_counter() - start < TIMEOUT_S + 3


def test_memory_hog(executor, dataset):
    result = executor.evaluate(dataset, "big = np.ones((8 << 30,), dtype=np.uint8)")
    assert result.status is ExecutionStatus.MEMORY and result.error_type == "MemoryError"
    result = executor.evaluate(dataset, "chunks = []\nwhile True:\n    chunks.append(np.ones(1 << 24))")
    assert result.status in (ExecutionStatus.MEMORY, ExecutionStatus.TIMEOUT)


def test_output_flood_is_discarded(executor, dataset):
    body = "for _ in range(200_000):\n    print('x' * 5_000)\n" + LOGISTIC
    start = time.perf_counter()
    result = executor.evaluate(dataset, body)
    assert result.ok and time.perf_counter() - start < TIMEOUT_S


def test_process_spawning_is_blocked(executor, dataset):
    assert executor.evaluate(dataset, "import subprocess\nmodel = None").error_type == "ImportError"
    escape = "import sklearn\nsklearn.os.system('touch /tmp/etpo_pwned_spawn')\nmodel = None"
    result = executor.evaluate(dataset, escape)
    assert result.status is ExecutionStatus.ERROR and result.error_type == "PermissionError"
    fork = "import sklearn\nsklearn.os.fork()\nmodel = None"
    assert executor.evaluate(dataset, fork).error_type == "PermissionError"
    assert not os.path.exists("/tmp/etpo_pwned_spawn")


def test_crashes_are_reported_and_executor_recovers(executor, dataset):
    ctypes_segfault = "import numpy\nnumpy.ctypeslib.ctypes.string_at(0)"
    assert executor.evaluate(dataset, ctypes_segfault).status in (ExecutionStatus.CRASH, ExecutionStatus.ERROR)
    segfault = "import sklearn\nsklearn.base.__builtins__['__import__']('faulthandler')._sigsegv()"
    result = executor.evaluate(dataset, segfault)
    assert result.status is ExecutionStatus.CRASH and result.message == "WorkerCrash: killed by signal SIGSEGV"
    hard_exit = "import sklearn\nsklearn.os._exit(3)"
    assert executor.evaluate(dataset, hard_exit).message == "WorkerCrash: exited with code 3 without a result"
    assert executor.evaluate(dataset, LOGISTIC + "  # after crashes").ok


def test_body_sent_to_a_dead_worker_is_retried_and_scored(executor, dataset):
    expected = executor.evaluate(dataset, LOGISTIC + "  # before the kill")  # a worker is up and ready
    (pid,) = executor.worker_pids()
    os.kill(pid, signal.SIGKILL)
    body = LOGISTIC + "  # sent to a dead worker"
    first = executor.evaluate(dataset, body)
    assert first.ok and first.split_aucs == expected.split_aucs and not first.cached, first
    again = executor.evaluate(dataset, body)
    assert again.cached and again.ok and again.reward == expected.reward
    assert executor.worker_pids() != [pid]


def test_body_sent_to_a_stopped_worker_is_retried_and_scored(executor, dataset, monkeypatch):
    monkeypatch.setattr(executor_module, "WORKER_ACK_TIMEOUT_S", 1.0)
    expected = executor.evaluate(dataset, LOGISTIC + "  # before the stop")  # a worker is up and ready
    (pid,) = executor.worker_pids()
    os.kill(pid, signal.SIGSTOP)
    body = LOGISTIC + "  # sent to a stopped worker"
    first = executor.evaluate(dataset, body)
    assert first.ok and first.split_aucs == expected.split_aucs, first
    assert executor.evaluate(dataset, body).ok
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_worker_lost_during_an_evaluation_is_not_cached(executor, dataset):
    executor.evaluate(dataset, LOGISTIC + "  # before the loss")  # a worker is up and ready
    (pid,) = executor.worker_pids()
    body = "import time\ntime.sleep(0.3)\n" + LOGISTIC
    future = executor.submit(dataset, body)
    deadline = time.monotonic() + 10
    while not psutil.Process(pid).children() and time.monotonic() < deadline:  # the worker runs the body
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    lost = future.result(timeout=60)
    assert lost.status is ExecutionStatus.CRASH and lost.error_type == "WorkerCrash"
    again = executor.evaluate(dataset, body)
    assert again.ok and not again.cached


def test_only_a_failed_sandbox_setup_is_not_blamed_on_the_body():
    def outcome(header: dict) -> tuple:
        read_fd, write_fd = os.pipe()
        worker_protocol.write_message(write_fd, header)
        os.close(write_fd)
        output = os.read(read_fd, 1 << 16)
        os.close(read_fd)
        return worker_protocol._child_outcome({"output": output, "split": 0}, None, 0)

    setup = {"ok": False, "error_type": "WorkerCrash", "message": "sandbox setup: landlock", "setup": True}
    assert outcome(setup) == ("crash", "WorkerCrash", "sandbox setup: landlock", False)
    assert outcome({"ok": False, "error_type": "NameError", "message": "NameError: x"})[-1] is True
    segfault = worker_protocol._child_outcome({"output": b"", "split": 0}, None, signal.SIGSEGV)
    assert segfault == ("crash", "WorkerCrash", "WorkerCrash: killed by signal SIGSEGV", True)


def test_default_random_state_is_reproducible_across_processes(executor, dataset):
    body = "from sklearn.ensemble import RandomForestClassifier\nmodel = RandomForestClassifier(n_estimators=10)\n"
    body += "model.fit(x_train, y_train)"
    with CodeExecutor(timeout_s=TIMEOUT_S, memory_limit_mb=1024, cache_size=0) as other:
        results = [other.evaluate(dataset, body), executor.evaluate(dataset, body)]
    assert all(r.ok for r in results) and results[0].split_aucs == results[1].split_aucs
    assert len(set(results[0].split_aucs)) > 1


def test_cache_hit_is_identical_and_fast(executor, dataset):
    first = executor.evaluate(dataset, RANDOM_FOREST)
    start = time.perf_counter()
    again = executor.evaluate(dataset, "    " + RANDOM_FOREST.strip().replace("\n", "\n    "))  # other indentation
    hit_s = time.perf_counter() - start
    assert again.cached and again.split_aucs == first.split_aucs and again.test_auc == first.test_auc
    real = executor.evaluate(dataset, RANDOM_FOREST + "# uncached")
    assert not real.cached and hit_s * 100 < real.duration_s


def test_failures_are_cached_too(executor, dataset):
    executor.evaluate(dataset, "model = undefined_name")
    assert executor.evaluate(dataset, "model = undefined_name\n").cached


def test_submit_returns_futures(executor, dataset):
    bodies = [LOGISTIC + f"  # variant {i}" for i in range(3)] + ["model = 1 / 0"]
    futures = [executor.submit(dataset, body) for body in bodies]
    results = [future.result(timeout=60) for future in futures]
    assert [r.ok for r in results] == [True, True, True, False]
    assert len({r.auc for r in results[:3]}) == 1


def test_caller_data_is_never_mutated(executor, dataset):
    before = [array.copy() for array in (dataset.x, dataset.y, dataset.x_test, dataset.y_test)]
    body = "x_train[:] = 0\ny_train[:] = 0\nx_train.flags.writeable = True\n" + LOGISTIC
    executor.evaluate(dataset, body)
    for old, new in zip(before, (dataset.x, dataset.y, dataset.x_test, dataset.y_test), strict=True):
        np.testing.assert_array_equal(old, new)


def test_close_leaves_no_process_or_temp_dir(dataset):
    executor = CodeExecutor(timeout_s=TIMEOUT_S)
    assert executor.evaluate(dataset, LOGISTIC).ok
    workers = [psutil.Process(pid) for pid in executor.worker_pids()]
    roots = [slot.root for slot in executor._slots]
    assert all(os.path.isdir(root) for root in roots)
    executor.close()
    executor.close()  # idempotent
    assert not any(worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE for worker in workers)
    assert not session_members({worker.pid for worker in workers})
    assert not any(os.path.exists(root) for root in roots)
    assert executor.worker_pids() == []
    with pytest.raises(RuntimeError, match="closed"):
        executor.evaluate(dataset, LOGISTIC)
