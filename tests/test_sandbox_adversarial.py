"""Adversarial generated code (issue 6): every attempt is contained, pays the failure reward or cannot cheat.

:data:`ADVERSARIAL_CASES` is a reusable table ``(id, body, expectation)``; bodies contain the placeholders
``{sentinel}`` (a directory the code must not touch) and ``{package_data}`` (the package's dataset files), filled
by :func:`render`. Expectations:

* ``"fail"``: status is not ok, reward is ``task.FAILURE_REWARD``;
* ``"honest"``: the attempt is harmless by construction and may succeed as a program, but its AUC must not be
  the ~1.0 that stolen labels give (kidney_stone's honest models score ~0.75); each such case says why;
* ``"ok"``: legitimate but abusive code (``n_jobs=-1``) that must still be scored.

Label-stealing attempts that a layer present everywhere blocks (the audit hook, the result-size check) expect
``"fail"``: the audit hook is installed whether or not the kernel has Landlock and seccomp.

For every case (:func:`contained`): no file appears or changes outside the sandbox, no process is left in the
worker's session, the caller's arrays are unchanged; and the executor scores the next body normally.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from etpo_gym import task
from etpo_gym.datasets import TabularDataset, load_dataset
from etpo_gym.executor import CodeExecutor, ExecutionStatus

# Hands the generated code the real import function (bypassing the allow-list) to reach the next layer.
IMP = "import sklearn\nimp = sklearn.base.__builtins__['__import__']\n"

# A model answering with labels looked up in a stolen {feature row: label} table.
LOOKUP_MODEL = """
class Lookup:
    def __init__(self, table):
        self.table = table
    def predict_proba(self, x):
        labels = [self.table.get(tuple(np.round(row, 6)), 0) for row in x]
        return np.eye(2)[np.asarray(labels, dtype=int)]
"""

STEAL_FROM_CSV = (
    (
        "import pandas as pd\n"
        "frame = pd.read_csv('{package_data}/kidney_stone.csv.gz')\n"
        "values = frame.drop(columns=['id', 'target']).to_numpy(float)\n"
        "table = {tuple(np.round(r, 6)): int(t) for r, t in zip(values, frame['target'])}\n"
    )
    + LOOKUP_MODEL
    + "model = Lookup(table)"
)

STEAL_FROM_FRAMES = (
    IMP + "inspect = imp('inspect')\n"
    "frame, found = inspect.currentframe(), []\n"
    "while frame is not None:\n"
    "    found += [v for v in frame.f_locals.values() if isinstance(v, np.ndarray) and v.dtype == np.int64]\n"
    "    frame = frame.f_back\n"
    "labels = max(found, key=len)\n"
    "class Stolen:\n"
    "    def predict_proba(self, x):\n"
    "        return np.eye(2)[labels[: len(x)] % 2]\n"
    "model = Stolen()"
)

STEAL_WITH_GC = (
    IMP + "gc = imp('gc')\n"
    "arrays = [o for o in gc.get_objects() if isinstance(o, np.ndarray) and o.dtype == np.int64]\n"
    "labels = max(arrays, key=len)\n"
    "class Stolen:\n"
    "    def predict_proba(self, x):\n"
    "        return np.eye(2)[labels[: len(x)] % 2]\n"
    "model = Stolen()"
)

# Splits overlap: a model that remembers one split's training rows knows ~half of another split's eval labels.
MEMO_ACROSS_SPLITS = (
    (
        "memo = getattr(np, '_etpo_memo', {})\n"
        "memo.update({tuple(np.round(r, 6)): int(t) for r, t in zip(x_train, y_train)})\n"
        "np._etpo_memo = memo\n"
    )
    + LOOKUP_MODEL
    + "model = Lookup(memo)"
)

MEMO_IN_FILE = (
    (
        IMP + "pickle = imp('pickle')\nos = imp('os')\n"
        "path = '/tmp/etpo_pwned_memo.pkl'\n"
        "memo = pickle.load(open(path, 'rb')) if os.path.exists(path) else {}\n"
        "memo.update({tuple(np.round(r, 6)): int(t) for r, t in zip(x_train, y_train)})\n"
        "pickle.dump(memo, open(path, 'wb'))\n"
    )
    + LOOKUP_MODEL
    + "model = Lookup(memo)"
)

FORGE_RESULT = IMP + textwrap.dedent("""\
    os, json, struct = imp('os'), imp('json'), imp('struct')
    perfect = np.eye(2)[np.zeros(10_000, dtype=int)]
    header = json.dumps({'ok': True, 'nbytes': [perfect.nbytes, perfect.nbytes]}).encode()
    os.write(3, struct.pack('!Q', len(header)) + header + perfect.tobytes() * 2)
    os._exit(0)""")

MALICIOUS_PREDICT = textwrap.dedent("""\
    from sklearn.linear_model import LogisticRegression
    class Trojan(LogisticRegression):
        def predict_proba(self, x):
            import sklearn
            sklearn.os.system('touch /tmp/etpo_pwned_trojan')
            open('{sentinel}/keep.txt', 'w').write('pwned')
            return super().predict_proba(x)
    model = Trojan(max_iter=500).fit(x_train, y_train)""")

MALICIOUS_GETATTR = textwrap.dedent("""\
    class Sneaky:
        def __getattr__(self, name):
            import sklearn
            sklearn.os.remove('{sentinel}/keep.txt')
            raise AttributeError(name)
    model = Sneaky()""")

ADVERSARIAL_CASES: list[tuple[str, str, str]] = [
    ("read-etc-passwd", "text = open('/etc/passwd').read()\nmodel = None", "fail"),
    # the package's data files are denied by the audit hook (and by Landlock, which leaves them out of its view)
    ("read-package-data-labels", STEAL_FROM_CSV, "fail"),
    ("read-sklearn-bundled-data", "from sklearn.datasets import load_iris\nload_iris()\nmodel = None", "fail"),
    ("read-proc-parent-memory", IMP + "os = imp('os')\nopen(f'/proc/{os.getppid()}/mem', 'rb')\nmodel = None", "fail"),
    ("listdir-home", IMP + "imp('os').listdir('/root')\nmodel = None", "fail"),
    # the audit hook refuses frame introspection (sys._getframe) from generated code
    ("frames-steal-labels", STEAL_FROM_FRAMES, "fail"),
    ("traceback-frame-walk", "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    f = e.__traceback__.tb_frame\nmodel = None", "fail"),
    # the audit hook refuses gc.get_objects (and the child zeroed every label buffer it was not given)
    ("gc-steal-labels", STEAL_WITH_GC, "fail"),
    # harmless: every split runs in a fresh child, so the memo holds only this split's training rows, none of
    # which is an evaluation row of the same split; a valid program that scores ~0.5
    ("memo-across-splits", MEMO_ACROSS_SPLITS, "honest"),
    # the audit hook (and Landlock) refuse writes outside the child's temp dir
    ("memo-in-tmp-file", MEMO_IN_FILE, "fail"),
    # the worker rejects a result whose sizes do not match the split: "exited with code 0 without a result"
    ("forge-result-pipe", FORGE_RESULT, "fail"),
    ("numpy-c-level-read", "np.fromfile('{package_data}/kidney_stone.csv.gz', dtype=np.uint8)\nmodel = None", "fail"),
    ("numpy-c-level-write", "np.zeros(3).tofile('/tmp/etpo_pwned_tofile')\nmodel = None", "fail"),
    ("raw-fork-exec", IMP + "imp('_posixsubprocess').fork_exec([b'/bin/touch', b'/tmp/etpo_pwned_fe'], [b'/bin/touch'], "
     "True, (), None, None, -1, -1, -1, -1, -1, -1, *imp('os').pipe(), False, False, -1, None, None, None, -1, None, "
        "False)",
     "fail"),
    ("write-tmp", "open('/tmp/etpo_pwned_write', 'w').write('x')\nmodel = None", "fail"),
    ("overwrite-sentinel", "open('{sentinel}/keep.txt', 'w').write('pwned')\nmodel = None", "fail"),
    ("delete-sentinel", IMP + "imp('os').remove('{sentinel}/keep.txt')\nmodel = None", "fail"),
    ("rename-sentinel", IMP + "imp('os').rename('{sentinel}/keep.txt', '{sentinel}/moved.txt')\nmodel = None", "fail"),
    ("chmod-sentinel", IMP + "imp('os').chmod('{sentinel}', 0o000)\nmodel = None", "fail"),
    ("symlink-escape", IMP + "imp('os').symlink('/etc/passwd', 'link')\nopen('link').read()\nmodel = None", "fail"),
    ("write-site-packages", "open(np.__file__ + '.pwned', 'w')\nmodel = None", "fail"),
    ("socket-connect", IMP + "imp('socket').create_connection(('127.0.0.1', 22), timeout=1)\nmodel = None", "fail"),
    ("urllib", IMP + "imp('urllib.request', fromlist=['x']).urlopen('http://example.com', timeout=1)\nmodel = None", "fail"),
    ("http-client", IMP + "imp('http.client', fromlist=['x']).HTTPConnection('example.com', timeout=1).request('GET', '/')\nmodel = None", "fail"),
    ("subprocess-run", IMP + "imp('subprocess').run(['touch', '/tmp/etpo_pwned_subprocess'])\nmodel = None", "fail"),
    ("os-system", "import sklearn\nsklearn.os.system('touch /tmp/etpo_pwned_system')\nmodel = None", "fail"),
    ("os-popen", "import sklearn\nsklearn.os.popen('touch /tmp/etpo_pwned_popen').read()\nmodel = None", "fail"),
    ("os-execv", "import sklearn\nsklearn.os.execv('/bin/sh', ['sh', '-c', 'touch /tmp/etpo_pwned_exec'])", "fail"),
    ("posix-spawn", "import sklearn\nsklearn.os.posix_spawn('/bin/touch', ['touch', '/tmp/etpo_pwned_spawn'], {})", "fail"),
    ("fork-bomb", "import sklearn\nwhile True:\n    sklearn.os.fork()", "fail"),
    ("multiprocessing-bomb", IMP + "mp = imp('multiprocessing')\nwhile True:\n    mp.Process(target=print).start()", "fail"),
    ("threading-bomb", IMP + "t = imp('threading')\nwhile True:\n    t.Thread(target=imp('time').sleep, args=(60,)).start()", "fail"),
    ("kill-parent", "import sklearn\nsklearn.os.kill(sklearn.os.getppid(), 9)\nmodel = None", "fail"),
    ("os-exit", "import sklearn\nsklearn.os._exit(0)", "fail"),
    ("sys-exit", IMP + "imp('sys').exit(0)", "fail"),
    ("exit-builtin", "exit()", "fail"),
    ("raise-system-exit", "raise SystemExit(0)", "fail"),
    ("raise-keyboard-interrupt", "raise KeyboardInterrupt", "fail"),
    ("raise-base-exception", "raise BaseException('bye')", "fail"),
    ("ctypes-segfault", IMP + "imp('ctypes').string_at(0)", "fail"),
    ("real-segfault", IMP + "imp('faulthandler')._sigsegv()", "fail"),
    ("infinite-loop", "while True:\n    pass", "fail"),
    ("sleep-forever", "import time\ntime.sleep(10_000)", "fail"),
    ("memory-bomb", "big = np.ones((64 << 30,), dtype=np.uint8)", "fail"),
    ("memory-bomb-incremental", "chunks = []\nwhile True:\n    chunks.append(np.ones(1 << 24))", "fail"),
    ("deep-recursion", "def f(n):\n    return f(n + 1)\nf(0)", "fail"),
    ("print-gigabytes", "import sklearn\nline = 'x' * 1_000_000\nwhile True:\n    print(line)", "fail"),
    ("dunder-import", "os = __import__('os')\nos.system('touch /tmp/etpo_pwned_dunder')\nmodel = None", "fail"),
    ("importlib", IMP + "imp('importlib').import_module('os').system('touch /tmp/etpo_pwned_il')\nmodel = None", "fail"),
    ("builtins-dict", "__builtins__['__import__']('os').system('touch /tmp/etpo_pwned_bi')\nmodel = None", "fail"),
    (
        "subclasses-escape",
        "popen = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'][0]\n"
        "popen(['touch', '/tmp/etpo_pwned_subclasses'])\nmodel = None",
        "fail",
    ),
    (
        "signal-handlers",
        IMP + "signal = imp('signal')\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGXCPU, signal.SIGALRM):\n"
        "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass",
        "fail",
    ),
    (  # harmless: the child's arrays are its own copies (the caller's stay unchanged, see contained())
        "mutate-inputs",
        "x_train[:] = 0\ny_train[:] = 1 - y_train\nfrom sklearn.linear_model import LogisticRegression\n"
        "model = LogisticRegression().fit(x_train + np.arange(len(x_train))[:, None], y_train)",
        "honest",
    ),
    (
        "n-jobs-all-cores",
        "from sklearn.ensemble import ExtraTreesClassifier\n"
        "model = ExtraTreesClassifier(n_estimators=200, n_jobs=-1, random_state=0).fit(x_train, y_train)",
        "ok",
    ),
    ("nan-probabilities", "class M:\n    def predict_proba(self, x):\n        return np.full((len(x), 2), np.nan)\nmodel = M()", "fail"),
    ("wrong-shape-probabilities", "class M:\n    def predict_proba(self, x):\n        return np.ones((3, 7))\nmodel = M()", "fail"),
    ("malicious-predict-proba", MALICIOUS_PREDICT, "fail"),
    ("malicious-getattr", MALICIOUS_GETATTR, "fail"),
]  # fmt: skip

PACKAGE_DATA = os.path.join(os.path.dirname(task.__file__), "data")


def render(body: str, sentinel: str | os.PathLike) -> str:
    """Fill a case body's placeholders (``str.replace``, since bodies contain braces)."""
    return body.replace("{sentinel}", os.fspath(sentinel)).replace("{package_data}", PACKAGE_DATA)


def _snapshot(path: str) -> dict:
    return {
        name: (os.stat(os.path.join(path, name)).st_mode, open(os.path.join(path, name), "rb").read())
        for name in sorted(os.listdir(path))
    } | {".": os.stat(path).st_mode}


def _pwned_files() -> set[str]:
    return {name for name in os.listdir("/tmp") if "etpo_pwned" in name}


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("kidney_stone")


@pytest.fixture(scope="module")
def executor():
    with CodeExecutor(timeout_s=3.0, memory_limit_mb=1024) as executor:
        yield executor


def make_sentinel(parent: Path) -> Path:
    """A directory with one file, which adversarial code must not touch."""
    directory = parent / "sentinel"
    directory.mkdir()
    (directory / "keep.txt").write_text("original")
    return directory


@contextlib.contextmanager
def contained(executor: CodeExecutor, dataset: TabularDataset, sentinel: Path) -> Iterator[None]:
    """Asserts that the code run inside the block changed no file outside the sandbox (the sentinel, ``/tmp``),
    left no process in a worker's session and did not change the caller's arrays."""
    arrays = (dataset.x, dataset.y, dataset.x_test, dataset.y_test)
    arrays_before = [a.copy() for a in arrays]
    files_before, sentinel_before = _pwned_files(), _snapshot(str(sentinel))
    yield
    assert _pwned_files() == files_before
    assert _snapshot(str(sentinel)) == sentinel_before
    workers = executor.worker_pids()
    strays = [p for p in psutil.process_iter() if p.pid not in workers and _session(p.pid) in workers]
    assert not strays, f"processes left in a worker's session: {strays}"
    for old, new in zip(arrays_before, arrays, strict=True):
        np.testing.assert_array_equal(old, new)


@pytest.fixture
def sentinel(tmp_path):
    return make_sentinel(tmp_path)


@pytest.mark.parametrize(
    ("body", "expectation"), [c[1:] for c in ADVERSARIAL_CASES], ids=[c[0] for c in ADVERSARIAL_CASES]
)
def test_adversarial_code_is_contained(executor, dataset, sentinel, body, expectation):
    with contained(executor, dataset, sentinel):
        result = executor.evaluate(dataset, render(body, sentinel))

    if expectation == "fail":
        assert result.status is not ExecutionStatus.OK and result.reward == task.FAILURE_REWARD, result
        assert result.message and result.error_type and len(result.message) <= 300
    elif expectation == "honest":
        assert not result.ok or result.auc < 0.95, result
    else:
        assert result.ok, result
    follow_up = (
        "from sklearn.linear_model import LogisticRegression\nmodel = LogisticRegression().fit(x_train, y_train)"
    )
    assert executor.evaluate(dataset, follow_up + f"  # after {body[:40]!r}").ok


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


KERNEL_LAYERS_SCRIPT = """
import os, socket, sys, threading
from etpo_gym import _sandbox_worker as worker

abi = worker.landlock_abi()
if not abi or not worker.seccomp_supported():
    print("unsupported")
    sys.exit(0)
workdir, package_data = sys.argv[1], sys.argv[2]
worker._apply_landlock(abi, worker._landlock_rules(worker._read_roots(), (package_data,)), workdir)
worker._apply_seccomp()
open(os.path.join(workdir, "allowed.txt"), "w").write("ok")
thread = threading.Thread(target=print)
thread.start()
thread.join()
attempts = {
    "read /etc/passwd": lambda: open("/etc/passwd").read(),
    "read package data": lambda: open(os.path.join(package_data, "kidney_stone.csv.gz"), "rb").read(),
    "write /tmp": lambda: open("/tmp/etpo_pwned_kernel", "w"),
    "fork": os.fork,
    "exec": lambda: os.execv("/bin/true", ["true"]),
    "socket": socket.socket,
    "signal parent": lambda: os.kill(os.getppid(), 0) if abi >= 6 else (_ for _ in ()).throw(PermissionError()),
}
for name, attempt in attempts.items():
    try:
        attempt()
    except PermissionError:
        continue
    print("not blocked:", name)
    sys.exit(1)
print("blocked")
"""


def test_kernel_layers_hold_without_the_audit_hook(tmp_path):
    """Landlock and seccomp alone (no audit hook, no import allow-list) block files, processes and sockets."""
    completed = subprocess.run(
        [sys.executable, "-c", KERNEL_LAYERS_SCRIPT, str(tmp_path), PACKAGE_DATA],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if completed.stdout.strip() == "unsupported":
        pytest.skip("this kernel has no Landlock or seccomp; the audit hook is the only file/process barrier")
    assert completed.returncode == 0 and completed.stdout.strip().endswith("blocked"), completed
    assert (tmp_path / "allowed.txt").read_text() == "ok"
    assert not os.path.exists("/tmp/etpo_pwned_kernel")
