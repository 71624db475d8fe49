"""Sandboxed execution of generated ``build_model`` bodies, with a result cache.

:class:`CodeExecutor` scores a body exactly like :func:`etpo_gym.task.score_build_model` (5 random 50/50 splits,
mean ROC AUC; held-out AUC on the side) but never runs it in the caller's process. Layout::

    caller (CodeExecutor)  --JSON+raw arrays-->  warm worker (fork server, sklearn imported once)
        computes every AUC                          |-- fork --> jailed child: split 0 (own pgid, temp dir)
        from returned probabilities                 |-- fork --> jailed child: split 1 ...  (parallel)

Threat model. The generated code is hostile: an RL policy optimised for reward will probe for anything that pays.

*Contained* (each child, see :mod:`etpo_gym._sandbox_worker` for the mechanisms):

* **Reward hacking through data.** Held-out labels never leave the caller. The worker holds the reward pool's
  labels, but each child zeroes every label buffer it was not given before the code runs, so the labels of the
  split it is scored on are not in its memory (frame walking, ``gc``, reading freed heap finds nothing). The child
  only returns probabilities; the caller computes the AUCs, so forging the result pipe gains nothing. Each split
  runs in a fresh child with its own temp dir, so a model cannot memorise one split's training labels and replay
  them on another split's evaluation rows (possible in the official in-process procedure). The package's data
  files and scikit-learn's bundled dataset files (iris, wine, ...) are unreadable.
* **Resources.** Wall-clock timeout per evaluation (whole process group killed), CPU-time, address-space and
  file-size rlimits, BLAS/OpenMP/joblib capped to one thread, generated stdout/stderr sent to ``/dev/null``.
* **System.** Where the kernel has them: Landlock (read-only Python install and libraries, writes only in the
  child's temp dir, no TCP, no signals outside itself) and seccomp (no fork, exec, sockets, ptrace,
  namespaces). Everywhere: an audit hook that refuses the same operations plus frame / ``gc`` introspection,
  and an import allow-list (:data:`ALLOWED_IMPORTS`) on the generated code's own imports.
* **Crashes.** A segfault, ``os._exit``, hang or memory blow-up ends one child; the caller gets a result with the
  right :class:`ExecutionStatus`; a hung or dead worker is killed and replaced. A body sent to a worker that was
  already dead or stopped runs again on a fresh one, and failures of the worker rather than of the body are never
  cached. Workers and temp dirs are removed by :meth:`CodeExecutor.close`, at garbage collection and at
  interpreter exit.
* **Reproducibility.** Python's ``random`` and NumPy's global generator are seeded with the split index right
  before the code runs, so code relying on scikit-learn's ``random_state=None`` scores the same in every process.

*Not contained*:

* Without Landlock/seccomp (non-Linux, old kernels, or ``use_landlock=False``) file and process confinement rests
  on the audit hook and the import allow-list. These are defence in depth, not a sandbox: in-process Python
  restrictions can be bypassed (``object.__subclasses__`` walks, or numpy's ``__array_interface__`` to read and
  write raw memory).
* The child can read what its read-only view allows (the Python installation, shared libraries) and use CPU, RAM
  and its temp dir's disk up to the limits. UDP and Unix-socket networking are blocked by seccomp only.
* The worker (never running generated code) holds the reward pool's features and labels; a kernel exploit from a
  child, or a same-user process outside the sandbox, can reach them. Run untrusted training on a dedicated,
  unprivileged account or container as well.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import enum
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref

import numpy as np

from etpo_gym import _sandbox_worker as worker_protocol
from etpo_gym import task
from etpo_gym.datasets import TabularDataset

ALLOWED_IMPORTS = worker_protocol.ALLOWED_IMPORTS
"""Top-level modules generated code may import (libraries' own imports are unrestricted)."""

THREAD_LIMIT_VARIABLES = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS", "LOKY_MAX_CPU_COUNT",
)  # fmt: skip
"""Set to 1 in workers: ``n_jobs=-1`` and BLAS cannot take more than the child's core."""

WORKER_ACK_TIMEOUT_S = 10.0
"""Seconds a worker may take to acknowledge a request (it does so before running anything); silence for longer
means it is stopped or stuck, and the body is sent to a fresh worker instead."""

_PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__))
_WORKER_ERRORS = (EOFError, TimeoutError, ValueError, OSError, KeyError)
"""What a dead, stopped or confused worker raises in the parent: closed or broken pipe, silence, bad message."""


class ExecutionStatus(str, enum.Enum):
    """Outcome of one evaluation."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    CRASH = "crash"


@dataclasses.dataclass(frozen=True)
class ExecutionResult:
    """Result of scoring one ``build_model`` body.

    Attributes:
        status: see :class:`ExecutionStatus`.
        message: last line of the traceback (``"NameError: name 'Foo' is not defined"``), at most 300
            characters; ``""`` when ok.
        error_type: exception class name (``"SyntaxError"``, ``"TimeoutError"``, ``"MemoryError"``,
            ``"WorkerCrash"``...); ``None`` when ok.
        duration_s: wall time of the evaluation in seconds (the lookup time for cache hits).
        split_aucs: ROC AUC of each of the ``task.NUM_SPLITS`` splits; empty on failure.
        auc: mean of ``split_aucs``, the reward.
        auc_std: standard deviation of ``split_aucs``.
        test_auc: mean held-out AUC of the split models (never part of the reward).
        cached: whether the result came from the cache.
    """

    status: ExecutionStatus
    message: str
    error_type: str | None
    duration_s: float
    split_aucs: tuple[float, ...] = ()
    auc: float | None = None
    auc_std: float | None = None
    test_auc: float | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status is ExecutionStatus.OK

    @property
    def reward(self) -> float:
        """The paper's reward: mean split AUC on success, ``task.FAILURE_REWARD`` (-1) otherwise."""
        return self.auc if self.ok and self.auc is not None else task.FAILURE_REWARD


class _Worker:
    """One warm fork-server process, its pipes and its temp root (everything it and its children write)."""

    def __init__(self, init: dict):
        self.root = tempfile.mkdtemp(prefix="etpo-sandbox-")
        env = {"PATH": "/usr/bin:/bin", "HOME": self.root, "TMPDIR": self.root, "LANG": "C.UTF-8"}
        env.update({name: "1" for name in THREAD_LIMIT_VARIABLES})
        worker_read, self.write_fd = os.pipe()
        self.read_fd, worker_write = os.pipe()
        with open(os.path.join(self.root, "worker.log"), "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-I", worker_protocol.__file__, str(worker_read), str(worker_write)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=self.root,
                env=env,
                pass_fds=(worker_read, worker_write),
                start_new_session=True,  # its own process group: one killpg ends it and anything it left
            )
        os.close(worker_read)
        os.close(worker_write)
        worker_protocol.write_message(self.write_fd, init)
        self.ready: dict | None = None
        self.killed = False

    def wait_ready(self, timeout_s: float) -> dict:
        if self.ready is None:
            try:
                self.ready, _ = worker_protocol.read_message(self.read_fd, 0, time.monotonic() + timeout_s)
            except (EOFError, TimeoutError) as error:
                log = self.log_tail()
                self.kill()
                raise RuntimeError(f"sandbox worker failed to start ({error}); its stderr:\n{log}") from error
        return self.ready

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.root, "worker.log"), "rb") as handle:
                return handle.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def request(self, header: dict, buffers: tuple, max_bytes: int, deadline: float) -> tuple[dict, list]:
        worker_protocol.write_message(self.write_fd, header, buffers)
        return self.receive(max_bytes, deadline)

    def receive(self, max_bytes: int, deadline: float) -> tuple[dict, list]:
        return worker_protocol.read_message(self.read_fd, max_bytes, deadline)

    def kill(self) -> None:
        """SIGKILL the worker's process group (its children die with it: PDEATHSIG), reap, remove temp root.

        Idempotent: closing the pipes twice could close descriptors that the process has reused since.
        """
        if self.killed:
            return
        self.killed = True
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        worker_protocol._remove_tree(self.root)


def _shutdown(slots: list, owner_pid: int) -> None:
    if os.getpid() != owner_pid:  # a forked copy of the caller does not own the workers
        return
    for index, worker in enumerate(slots):
        if worker is not None:
            worker.kill()
            slots[index] = None


class CodeExecutor:
    """Scores ``build_model`` bodies in sandboxed worker processes; caches results by (dataset, normalised body).

    Args:
        num_workers: warm worker processes, i.e. evaluations that run at the same time.
        timeout_s: wall-clock budget of one evaluation (all splits) in seconds.
        memory_limit_mb: address space each split's process may add on top of the warm worker's (``None``: no
            limit).
        cache_size: results kept in the LRU cache (0 disables it).
        max_parallel_splits: splits one worker runs at the same time; default: usable cores / ``num_workers``.
        preload_modules: modules each worker imports once at start.
        use_landlock: confine files, TCP and signals with Linux Landlock where available.
        use_seccomp: forbid process creation, sockets and ptrace with seccomp where available.
        startup_timeout_s: how long a worker may take to import its modules.
        max_datasets_per_worker: datasets a worker keeps after receiving them.
    """

    def __init__(
        self,
        num_workers: int = 1,
        timeout_s: float = 60.0,
        memory_limit_mb: int | None = 4096,
        cache_size: int = 4096,
        max_parallel_splits: int | None = None,
        preload_modules: tuple[str, ...] = worker_protocol.DEFAULT_PRELOAD,
        use_landlock: bool = True,
        use_seccomp: bool = True,
        startup_timeout_s: float = 120.0,
        max_datasets_per_worker: int = 16,
    ):
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if memory_limit_mb is not None and memory_limit_mb < 64:
            raise ValueError(f"memory_limit_mb must be >= 64 or None, got {memory_limit_mb}")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.timeout_s = float(timeout_s)
        self.cache_size = int(cache_size)
        self.startup_timeout_s = float(startup_timeout_s)
        self._init = {
            "kind": "init",
            "sys_path": [p for p in sys.path if p and os.path.realpath(p) != os.path.dirname(_PACKAGE_DIR)],
            "preload": list(preload_modules),
            "parallel": max_parallel_splits or max(1, cores // num_workers),
            "memory_limit_mb": memory_limit_mb,
            "max_datasets": max_datasets_per_worker,
            "deny_roots": [_PACKAGE_DIR],
            "use_landlock": use_landlock,
            "use_seccomp": use_seccomp,
        }
        self._cache: collections.OrderedDict[tuple[str, str], ExecutionResult] = collections.OrderedDict()
        self._inflight: dict[tuple[str, str], concurrent.futures.Future] = {}
        self._splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._slots: list[_Worker | None] = [_Worker(self._init) for _ in range(num_workers)]
        self._idle: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(num_workers):
            self._idle.put(index)
        self._pool = concurrent.futures.ThreadPoolExecutor(num_workers, thread_name_prefix="etpo-sandbox")
        self._finalizer = weakref.finalize(self, _shutdown, self._slots, os.getpid())

    def evaluate(self, dataset: TabularDataset, body: str) -> ExecutionResult:
        """Score ``body`` (a ``build_model`` body, any indentation) on ``dataset``; blocks until done."""
        return self.submit(dataset, body).result()

    def submit(self, dataset: TabularDataset, body: str) -> concurrent.futures.Future:
        """Like :meth:`evaluate` but returns at once with a future of the :class:`ExecutionResult`."""
        start = time.perf_counter()
        key = (dataset.fingerprint, task.normalize_body(body))
        with self._lock:
            if self._closed:
                raise RuntimeError("CodeExecutor is closed")
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                future: concurrent.futures.Future = concurrent.futures.Future()
                future.set_result(dataclasses.replace(hit, cached=True, duration_s=time.perf_counter() - start))
                return future
            if key not in self._inflight:  # an identical request already running is shared, not repeated
                self._inflight[key] = self._pool.submit(self._evaluate_uncached, key, dataset)
            return self._inflight[key]

    def worker_pids(self) -> list[int]:
        """Process ids of the live warm workers (their children share each one's session id)."""
        return [w.process.pid for w in list(self._slots) if w is not None and w.process.poll() is None]

    def close(self) -> None:
        """Kill every worker and remove their temp dirs; pending evaluations are cancelled. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._finalizer()

    def __enter__(self) -> CodeExecutor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _evaluate_uncached(self, key: tuple[str, str], dataset: TabularDataset) -> ExecutionResult:
        index = self._idle.get()
        try:
            result, caused_by_code = self._run_on_worker(index, dataset, task.program_source(key[1]))
        finally:
            self._idle.put(index)
        with self._lock:
            self._inflight.pop(key, None)
            if caused_by_code and self.cache_size > 0 and not self._closed:
                self._cache[key] = result
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return result

    def _run_on_worker(self, index: int, dataset: TabularDataset, source: str) -> tuple[ExecutionResult, bool]:
        """Run ``source`` on worker ``index``: the result and whether the body caused it (only then is it cached).

        The worker acknowledges an evaluation request ("accepted") before it forks the first child, and the body
        runs only in those children. That acknowledgement tells the two kinds of failure apart:

        * A result reported *by the worker* (ok, or a child's error, timeout, memory or crash status) is the
          body's doing: cached, so an agent repeating an infinite loop or a segfault pays nothing. The one
          exception, a child whose jail could not be set up, the worker flags as not caused by the body.
        * A broken pipe, EOF or silence *before* the acknowledgement means the worker was already dead or stopped
          when the body was sent; the body never ran. The worker is replaced and the body sent again, once.
        * Losing the worker *after* the acknowledgement (EOF, no reply within the grace, a malformed reply) is
          reported as a crash or timeout but never cached: the jail keeps the children from signalling the worker
          and caps what they send it at a result's size, so the likely cause lies outside the body (an external
          kill, the OOM killer); the body did start, though, so it is not run a second time.
        """
        train_idx, eval_idx = self._split_indices(dataset)
        max_bytes = len(train_idx) * (eval_idx.shape[1] + len(dataset.x_test)) * dataset.num_classes * 8
        request = {
            "kind": "evaluate", "fingerprint": dataset.fingerprint, "source": source, "timeout_s": self.timeout_s,
        }  # fmt: skip
        for attempt in range(2):
            worker = self._ready_worker(index)
            start = time.perf_counter()
            try:
                self._hand_over(worker, dataset, request)
                break
            except _WORKER_ERRORS as error:  # dead or stopped before taking the body: a fresh worker gets it, once
                self._replace_worker(index, worker)
                if attempt == 1:
                    return self._worker_failure(error, start), False
        try:
            # The worker answers by itself at timeout_s; the extra grace only covers a worker that is stuck.
            reply, buffers = worker.receive(max_bytes, time.monotonic() + self.timeout_s + 10.0)
        except _WORKER_ERRORS as error:
            self._replace_worker(index, worker)
            return self._worker_failure(error, start), False
        if reply["status"] != "ok":
            status, duration = ExecutionStatus(reply["status"]), time.perf_counter() - start
            return ExecutionResult(status, reply["message"], reply["error_type"], duration), reply["caused_by_code"]
        return self._score(dataset, eval_idx, buffers, start), True

    def _ready_worker(self, index: int) -> _Worker:
        """The worker in slot ``index``, started if the slot is empty; one that fails to start is not kept."""
        with self._lock:
            if self._closed:
                raise RuntimeError("CodeExecutor is closed")
            if self._slots[index] is None:
                self._slots[index] = _Worker(self._init)
            worker = self._slots[index]
        try:
            worker.wait_ready(self.startup_timeout_s)
        except RuntimeError:
            with self._lock:
                if self._slots[index] is worker:
                    self._slots[index] = None
            raise
        return worker

    def _hand_over(self, worker: _Worker, dataset: TabularDataset, request: dict) -> None:
        """Send ``request`` (and the dataset if the worker lacks it) until the worker acknowledges it."""
        reply, _ = worker.request(request, (), 0, time.monotonic() + WORKER_ACK_TIMEOUT_S)
        if reply["kind"] == "need_dataset":
            worker.request(*self._dataset_message(dataset), 0, time.monotonic() + WORKER_ACK_TIMEOUT_S)
            reply, _ = worker.request(request, (), 0, time.monotonic() + WORKER_ACK_TIMEOUT_S)
        if reply["kind"] != "accepted":
            raise ValueError(f"the sandbox worker answered {reply['kind']!r} to an evaluation request")

    @staticmethod
    def _worker_failure(error: Exception, start: float) -> ExecutionResult:
        status = ExecutionStatus.TIMEOUT if isinstance(error, TimeoutError) else ExecutionStatus.CRASH
        error_type = "TimeoutError" if status is ExecutionStatus.TIMEOUT else "WorkerCrash"
        return ExecutionResult(status, f"{error_type}: {error}", error_type, time.perf_counter() - start)

    def _score(self, dataset: TabularDataset, eval_idx: np.ndarray, buffers: list, start: float) -> ExecutionResult:
        """The AUCs, computed here from the children's probabilities: labels never enter the sandbox."""
        num_classes = dataset.num_classes
        split_aucs, test_aucs = [], []
        try:
            for split, rows in enumerate(eval_idx):
                eval_proba = np.frombuffer(buffers[2 * split], np.float64).reshape(len(rows), num_classes)
                test_proba = np.frombuffer(buffers[2 * split + 1], np.float64).reshape(-1, num_classes)
                split_aucs.append(task.roc_auc(dataset.y[rows], eval_proba, num_classes))
                test_aucs.append(task.roc_auc(dataset.y_test, test_proba, num_classes))
        except ValueError as error:
            error_type, message = worker_protocol.short_error(error)
            return ExecutionResult(ExecutionStatus.ERROR, message, error_type, time.perf_counter() - start)
        return ExecutionResult(
            ExecutionStatus.OK,
            "",
            None,
            time.perf_counter() - start,
            split_aucs=tuple(split_aucs),
            auc=float(np.mean(split_aucs)),
            auc_std=float(np.std(split_aucs)),
            test_auc=float(np.mean(test_aucs)),
        )

    def _replace_worker(self, index: int, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._slots[index] = None if self._closed else _Worker(self._init)

    def _split_indices(self, dataset: TabularDataset) -> tuple[np.ndarray, np.ndarray]:
        """Row indices of the reward's splits, identical to ``train_test_split(x, y, 0.5, random_state=seed)``."""
        if dataset.fingerprint not in self._splits:
            from sklearn.model_selection import train_test_split

            rows = np.arange(len(dataset.y))
            pairs = [
                train_test_split(rows, test_size=0.5, random_state=s, shuffle=True) for s in range(task.NUM_SPLITS)
            ]
            self._splits[dataset.fingerprint] = (np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))
        return self._splits[dataset.fingerprint]

    def _dataset_message(self, dataset: TabularDataset) -> tuple[dict, tuple]:
        """The reward pool (features and labels), held-out features and split indices; never held-out labels."""
        train_idx, eval_idx = self._split_indices(dataset)
        header = {
            "kind": "dataset",
            "fingerprint": dataset.fingerprint,
            "num_classes": dataset.num_classes,
            "num_splits": len(train_idx),
            "x_shape": list(dataset.x.shape),
        }
        arrays = (dataset.x, dataset.y, dataset.x_test, train_idx, eval_idx)
        dtypes = (np.float64, np.int64, np.float64, np.int64, np.int64)
        return header, tuple(np.ascontiguousarray(a, dtype=d) for a, d in zip(arrays, dtypes, strict=True))
