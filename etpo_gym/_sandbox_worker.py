"""Sandbox worker of :mod:`etpo_gym.executor`: a fork server that runs each split of untrusted code in a jail.

Started by the executor as ``python -I _sandbox_worker.py READ_FD WRITE_FD`` (a script, so it never imports
``etpo_gym`` and the package data). It imports scikit-learn & co. once ("warm"), receives datasets once, and for
every evaluation forks one short-lived child per 50/50 split. Each child, before running generated code:

1. moves to its own process group, asks for SIGKILL when the worker dies, points fds 0-2 at ``/dev/null`` and
   closes every other inherited fd but its result pipe;
2. copies its split's ``x_train, y_train, x_eval, x_test`` and **zeroes every label buffer of the worker**, so no
   label it is not given (eval halves, other datasets) remains in its memory; held-out labels never reach the
   worker at all, and the AUCs are computed by the parent from the probabilities the child returns;
3. ``chdir``s into a fresh private temp dir and sets rlimits (address space, CPU time, file size, no core);
4. applies Landlock (read-only Python install and system libraries minus the denied data dirs, read-write only
   its temp dir, no TCP, no signals or abstract sockets outside itself) and a seccomp filter (no fork, exec,
   sockets, ptrace, namespaces), where the kernel supports them;
5. installs an audit hook, seeds ``random`` and NumPy's global generator with the split index (code relying on
   ``random_state=None`` then scores the same in every process) and runs the code with an import allow-list
   (defence in depth, see :mod:`etpo_gym.executor`).

The worker acknowledges each evaluation request (``{"kind": "accepted"}``) before forking any child, so that the
parent can tell a worker that was dead or stopped before the code ran from a failure of the code itself.

Only this module's protocol helpers (:func:`write_message`, :func:`read_message`) are imported by the parent.
Messages are JSON headers plus raw buffers, never pickle, so a compromised worker cannot run code in the parent.
"""

from __future__ import annotations

import builtins
import gc
import importlib
import json
import math
import os
import platform
import random
import resource
import select
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time

UNTRUSTED_FILENAME = "<build_model>"
"""``co_filename`` of the generated module; the audit hook recognises untrusted frames by it."""

ALLOWED_IMPORTS = frozenset(
    {
        "numpy", "pandas", "scipy", "sklearn", "xgboost", "lightgbm", "catboost",
        "math", "cmath", "statistics", "random", "itertools", "functools", "operator", "collections",
        "heapq", "bisect", "copy", "numbers", "decimal", "fractions", "warnings", "typing", "dataclasses",
        "enum", "abc", "re", "string", "time", "datetime", "__future__",
    }
)  # fmt: skip
"""Top-level modules that generated code may import itself (libraries' own imports are not restricted)."""

DEFAULT_PRELOAD = (
    "numpy", "scipy.stats", "scipy.sparse", "pandas", "sklearn", "sklearn.base", "sklearn.calibration",
    "sklearn.cluster", "sklearn.compose", "sklearn.datasets", "sklearn.decomposition",
    "sklearn.discriminant_analysis", "sklearn.dummy", "sklearn.ensemble", "sklearn.feature_selection",
    "sklearn.gaussian_process",
    "sklearn.impute", "sklearn.kernel_approximation", "sklearn.linear_model", "sklearn.metrics",
    "sklearn.model_selection", "sklearn.multiclass", "sklearn.naive_bayes", "sklearn.neighbors",
    "sklearn.neural_network", "sklearn.pipeline", "sklearn.preprocessing", "sklearn.svm", "sklearn.tree",
    "xgboost", "lightgbm",
)  # fmt: skip
"""Imported once per worker so that children never pay for them; missing optional ones are skipped."""

MESSAGE_MAX_HEADER_BYTES = 1 << 20
_LENGTH = struct.Struct("!Q")
_OPEN_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_DENIED_EVENTS = frozenset(
    {
        "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg",
        "os.setuid", "os.chroot", "pty.spawn", "signal.pthread_kill", "resource.setrlimit", "resource.prlimit",
        "sys.addaudithook", "sys.setprofile", "sys.settrace", "sys._current_frames", "sys._current_exceptions",
        "gc.get_objects", "gc.get_referrers", "gc.get_referents", "webbrowser.open", "urllib.Request",
        "http.client.connect", "ftplib.connect", "smtplib.connect", "imaplib.open", "poplib.connect",
    }
)  # fmt: skip
_DENIED_PREFIXES = ("socket.", "subprocess.", "_posixsubprocess.", "ssl.")
_PATH_WRITE_EVENTS = frozenset(
    {"os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink",
     "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile", "os.setxattr",
     "os.removexattr"}
)  # fmt: skip
_PATH_READ_EVENTS = frozenset({"os.listdir", "os.scandir", "glob.glob", "os.getxattr", "os.listxattr"})
_SYSTEM_READ_ROOTS = (
    "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/etc/ld.so.cache", "/etc/localtime",
    "/usr/share/zoneinfo", "/proc/cpuinfo", "/proc/meminfo", "/sys/fs/cgroup", "/sys/devices/system/cpu",
    "/dev/urandom", "/dev/zero",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------- protocol


def write_message(fd: int, header: dict, buffers: tuple = ()) -> None:
    """Write one frame: 8-byte length, JSON header (with ``nbytes`` of each buffer), raw buffers."""
    views = [memoryview(buffer).cast("B") for buffer in buffers]
    data = json.dumps({**header, "nbytes": [view.nbytes for view in views]}).encode()
    for chunk in [_LENGTH.pack(len(data)) + data, *views]:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]


def _read_into(fd: int, buffer: bytearray, deadline: float | None) -> None:
    view, position = memoryview(buffer), 0
    while position < len(buffer):
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError("no answer from the sandbox worker before the deadline")
        count = os.readv(fd, [view[position:]])
        if count == 0:
            raise EOFError("sandbox worker closed its pipe")
        position += count


def read_message(fd: int, max_buffer_bytes: int, deadline: float | None = None) -> tuple[dict, list[bytearray]]:
    """Read one frame written by :func:`write_message`; buffers are read straight into fresh ``bytearray``s.

    Raises:
        EOFError: the other side closed the pipe. TimeoutError: ``deadline`` (monotonic) passed.
        ValueError: a frame larger than the limits.
    """
    length = bytearray(_LENGTH.size)
    _read_into(fd, length, deadline)
    (header_bytes,) = _LENGTH.unpack(length)
    if header_bytes > MESSAGE_MAX_HEADER_BYTES:
        raise ValueError(f"message header of {header_bytes} bytes exceeds the limit")
    raw = bytearray(header_bytes)
    _read_into(fd, raw, deadline)
    header = json.loads(raw)
    sizes = [int(n) for n in header.pop("nbytes")]
    if any(n < 0 for n in sizes) or sum(sizes) > max_buffer_bytes:
        raise ValueError(f"message buffers of {sum(sizes)} bytes exceed the limit of {max_buffer_bytes}")
    buffers = [bytearray(n) for n in sizes]
    for buffer in buffers:
        _read_into(fd, buffer, deadline)
    return header, buffers


def decode_message(data: bytes | bytearray) -> tuple[dict, list[memoryview]]:
    """Parse a complete frame held in memory (a child's whole output). Raises ``ValueError`` if malformed."""
    view = memoryview(data)
    if len(view) < _LENGTH.size:
        raise ValueError("truncated message")
    (header_bytes,) = _LENGTH.unpack(view[: _LENGTH.size])
    end = _LENGTH.size + header_bytes
    header = json.loads(bytes(view[_LENGTH.size : end]))
    if not isinstance(header, dict):
        raise ValueError("message header is not an object")
    buffers = []
    for size in header.pop("nbytes"):
        buffers.append(view[end : end + int(size)])
        end += int(size)
    if end != len(view):
        raise ValueError("message length does not match its header")
    return header, buffers


def short_error(error: BaseException) -> tuple[str, str]:
    """``(type name, "Name: message")``, whitespace collapsed to one line, truncated to 100 / 300 characters.

    The unqualified type name (``NotFittedError``, not ``sklearn.exceptions.NotFittedError``) keeps reflection
    prompts short and in the form the embedded model was trained on.
    """
    name = type(error).__name__[:100]
    if isinstance(error, SyntaxError):
        line = f"{name}: {error.msg} (line {error.lineno})"
    else:
        message = " ".join(str(error).split())
        line = f"{name}: {message}" if message else name
    return name, line if len(line) <= 300 else line[:297] + "..."


# --------------------------------------------------------------------------------------------- jail layers


def _set_parent_death_signal() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _libc_syscall():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return ctypes, libc


def landlock_abi() -> int:
    """Landlock ABI version of the running kernel (0 when unavailable)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return 0
    _, libc = _libc_syscall()
    return max(0, int(libc.syscall(444, None, 0, 1)))  # landlock_create_ruleset(NULL, 0, VERSION)


def _apply_landlock(abi: int, read_rules: list[tuple[str, str]], workdir: str) -> None:
    """Restrict this process's filesystem, TCP and signal reach (Linux Landlock; irrevocable)."""
    ctypes, libc = _libc_syscall()
    fs_bits = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}.get(abi, 16)
    handled_fs = (1 << fs_bits) - 1
    read_dir, read_file = 0b1101, 0b101  # EXECUTE | READ_FILE (| READ_DIR)
    file_rights = 0b111 | (1 << 14 if abi >= 3 else 0)  # EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    attr = RulesetAttr(handled_fs, 0b11 if abi >= 4 else 0, 0b11 if abi >= 6 else 0)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    ruleset = libc.syscall(444, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    rules = [(path, {"dir": read_dir, "file": read_file, "list": 0b1000}[kind]) for path, kind in read_rules]
    rules += [(workdir, handled_fs), (os.devnull, file_rights), (f"/proc/{os.getpid()}", read_dir)]
    for path, rights in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            rule = PathBeneath(rights & handled_fs, fd)
            if libc.syscall(445, ruleset, 1, ctypes.byref(rule), 0) < 0:
                raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
        finally:
            os.close(fd)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.syscall(446, ruleset, 0) != 0:  # NO_NEW_PRIVS, restrict_self
        raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    os.close(ruleset)


# Syscalls answered with EPERM: process creation and replacement, sockets, tracing, namespaces, mounts.
_SECCOMP_TABLES = {
    "x86_64": (0xC000003E, 56, {57, 58, 59, 322, 41, 53, 101, 310, 311, 272, 308, 165, 434, 424, 425}),
    "aarch64": (0xC00000B7, 220, {221, 281, 198, 199, 117, 270, 271, 97, 268, 40, 434, 424, 425}),
}


def seccomp_supported() -> bool:
    return platform.system() == "Linux" and platform.machine() in _SECCOMP_TABLES


def _apply_seccomp() -> None:
    """Install a seccomp-BPF filter: threads may be created (clone with CLONE_THREAD), processes may not."""
    ctypes, libc = _libc_syscall()
    arch, clone, denied = _SECCOMP_TABLES[platform.machine()]
    allow, kill, eperm, enosys = 0x7FFF0000, 0x80000000, 0x00050000 | 1, 0x00050000 | 38
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    program = [(ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, kill), (ld, 0, 0, 0)]
    jumps = [(jge, 0x40000000, "eperm")]  # x32 ABI syscall numbers on x86_64
    jumps += [(jeq, nr, "eperm") for nr in sorted(denied)] + [(jeq, 435, "enosys"), (jeq, clone, "clone_check")]
    labels_at = len(program) + len(jumps)
    positions = {"allow": labels_at, "clone_check": labels_at + 1, "eperm": labels_at + 4, "enosys": labels_at + 5}
    for code, k, target in jumps:
        program.append((code, positions[target] - (len(program) + 1), 0, k))
    # allow; clone_check: ld args[0] (low word); jset CLONE_THREAD -> allow(ret) else eperm; eperm; enosys
    program += [(ret, 0, 0, allow), (ld, 0, 0, 16), (jset, 0, 1, 0x00010000), (ret, 0, 0, allow)]
    program += [(ret, 0, 0, eperm), (ret, 0, 0, enosys)]

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    filters = (SockFilter * len(program))(*[SockFilter(*instruction) for instruction in program])
    fprog = SockFprog(len(program), filters)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "installing the seccomp filter failed")


def _inside(path: str, roots) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


class _AuditPolicy:
    """``sys.addaudithook`` policy of a child: what the Python runtime refuses to do on behalf of any code."""

    def __init__(self, workdir: str, read_roots: tuple[str, ...], deny_roots: tuple[str, ...]):
        self.workdir = os.path.realpath(workdir)
        self.read_roots = read_roots + (f"/proc/{os.getpid()}",)
        self.deny_roots = deny_roots
        self.ctypes_dir = os.path.dirname(sys.modules["ctypes"].__file__) if "ctypes" in sys.modules else "?"
        self.local = threading.local()

    def __call__(self, event: str, args: tuple) -> None:
        if getattr(self.local, "busy", False):  # the hook's own calls raise events too
            return
        self.local.busy = True
        try:
            self.check(event, args)
        finally:
            self.local.busy = False

    def check(self, event: str, args: tuple) -> None:
        if event in _DENIED_EVENTS or event.startswith(_DENIED_PREFIXES):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event.startswith("ctypes."):
            if self.untrusted_caller(skip_dir=self.ctypes_dir, depth=1):
                raise PermissionError(f"sandbox: {event} is not allowed")
        elif event == "open":
            path, mode, flags = (tuple(args) + (None, None))[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and bool(flags & _OPEN_WRITE_FLAGS)
            )
            self.check_path(event, path, writing, directory_ok=False)
        elif event in _PATH_WRITE_EVENTS:
            for path in args[:2] if event in ("os.rename", "os.link", "os.symlink", "shutil.move") else args[:1]:
                self.check_path(event, path, writing=True, directory_ok=True)
        elif event in _PATH_READ_EVENTS:
            self.check_path(event, args[0] if args else ".", writing=False, directory_ok=True)
        elif event == "sys._getframe" or (event == "object.__getattr__" and str(args[1]).endswith("frame")):
            if self.untrusted_caller(skip_dir=None, depth=2):
                raise PermissionError(f"sandbox: frame introspection ({event}) is not allowed")

    def check_path(self, event: str, path, writing: bool, directory_ok: bool) -> None:
        if path is None or isinstance(path, int):
            return  # an already open descriptor: it was checked when opened
        real = os.path.realpath(os.fsdecode(path))
        if _inside(real, (self.workdir,)) or real == os.devnull:
            return
        if writing:
            raise PermissionError(f"sandbox: writing {real!r} is not allowed (only the working directory)")
        if _inside(real, self.deny_roots) or not _inside(real, self.read_roots):
            raise PermissionError(f"sandbox: reading {real!r} is not allowed")
        if not directory_ok and os.path.isdir(real):  # a directory fd would allow dir_fd-relative escapes
            raise PermissionError(f"sandbox: opening directory {real!r} is not allowed")

    def untrusted_caller(self, skip_dir: str | None, depth: int) -> bool:
        """Whether one of the ``depth`` nearest frames outside this file (and ``skip_dir``) is generated code."""
        frame = sys._getframe(1)
        while frame is not None and (
            frame.f_code.co_filename == __file__ or (skip_dir and frame.f_code.co_filename.startswith(skip_dir))
        ):
            frame = frame.f_back
        for _ in range(depth):
            if frame is None:
                return False
            if frame.f_code.co_filename == UNTRUSTED_FILENAME:
                return True
            frame = frame.f_back
        return False


def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    """``__import__`` seen by generated code: only :data:`ALLOWED_IMPORTS`, no relative imports.

    C functions of libraries called from generated code import through the same hook (``PyImport_Import``,
    recognisable by its ``fromlist=["__doc__"]``); those imports are the library's, not the code's, and pass.
    """
    if fromlist == ["__doc__"] and level == 0:
        return importlib.__import__(name, globals, locals, fromlist, level)
    if level != 0 or name.partition(".")[0] not in ALLOWED_IMPORTS:
        raise ImportError(f"import of {name!r} is not allowed in the sandbox; allowed: {sorted(ALLOWED_IMPORTS)}")
    return importlib.__import__(name, globals, locals, fromlist, level)


# ------------------------------------------------------------------------------------------------ server


class _Dataset:
    def __init__(self, header: dict, buffers: list[bytearray]):
        import numpy as np

        num_rows, num_features = header["x_shape"]
        num_splits = header["num_splits"]
        self.num_classes = int(header["num_classes"])
        self.x = np.frombuffer(buffers[0], np.float64).reshape(num_rows, num_features)
        self.y_buffer = buffers[1]  # kept as the writable bytearray so that children can zero it
        self.x_test = np.frombuffer(buffers[2], np.float64).reshape(-1, num_features)
        self.train_idx = np.frombuffer(buffers[3], np.int64).reshape(num_splits, -1)
        self.eval_idx = np.frombuffer(buffers[4], np.int64).reshape(num_splits, -1)

    def result_sizes(self, split: int) -> list[int]:
        """Bytes of a split's float64 probabilities: ``[eval rows x classes, test rows x classes]``."""
        return [len(self.eval_idx[split]) * self.num_classes * 8, len(self.x_test) * self.num_classes * 8]


class _Server:
    def __init__(self, init: dict, read_fd: int, write_fd: int):
        self.read_fd, self.write_fd = read_fd, write_fd
        self.root = os.getcwd()
        self.parallel = int(init["parallel"])
        self.memory_limit_mb = init["memory_limit_mb"]
        self.max_datasets = int(init["max_datasets"])
        self.datasets: dict[str, _Dataset] = {}
        self.deny_roots = tuple(init["deny_roots"]) + tuple(_sklearn_data_dirs())
        self.read_roots = _read_roots()
        self.landlock_rules = _landlock_rules(self.read_roots, self.deny_roots)
        self.landlock_abi = landlock_abi() if init["use_landlock"] else 0
        self.seccomp = bool(init["use_seccomp"]) and seccomp_supported()

    def serve(self) -> None:
        while True:
            try:
                header, buffers = read_message(self.read_fd, max_buffer_bytes=1 << 34)
            except EOFError:
                return
            if header["kind"] == "dataset":
                self.datasets.pop(header["fingerprint"], None)
                self.datasets[header["fingerprint"]] = _Dataset(header, buffers)
                while len(self.datasets) > self.max_datasets:
                    self.datasets.pop(next(iter(self.datasets)))
                write_message(self.write_fd, {"kind": "stored"})
            elif header["fingerprint"] not in self.datasets:
                write_message(self.write_fd, {"kind": "need_dataset"})
            else:
                write_message(self.write_fd, {"kind": "accepted"})  # nothing of the request has run yet
                reply, arrays = self.evaluate(self.datasets[header["fingerprint"]], header)
                write_message(self.write_fd, {"kind": "result", **reply}, arrays)

    def evaluate(self, data: _Dataset, request: dict) -> tuple[dict, tuple]:
        """Run every split in its own child, ``self.parallel`` at a time; stop at the first failure."""
        timeout_s = float(request["timeout_s"])
        deadline = time.monotonic() + timeout_s
        num_splits = len(data.train_idx)
        results: list[tuple | None] = [None] * num_splits
        running: dict[int, dict] = {}
        failure, next_split = None, 0
        try:
            while failure is None and (next_split < num_splits or running):
                while next_split < num_splits and len(running) < self.parallel:
                    child = self.spawn(data, next_split, request["source"], timeout_s)
                    running[child["fd"]] = child
                    next_split += 1
                remaining = deadline - time.monotonic()
                ready = select.select(list(running), [], [], max(remaining, 0))[0] if remaining > 0 else []
                if not ready and remaining <= 0:
                    failure = ("timeout", "TimeoutError", f"TimeoutError: execution exceeded {timeout_s:g} s", True)
                for fd in ready:
                    child = running[fd]
                    chunk = os.read(fd, 1 << 20)
                    child["output"] += chunk
                    if chunk and len(child["output"]) <= child["max_bytes"]:
                        continue
                    del running[fd]
                    outcome = self.finish(child, data, too_large=bool(chunk))
                    if outcome[0] == "ok":
                        results[child["split"]] = outcome[1]
                    elif failure is None:
                        failure = outcome
        finally:
            for child in running.values():
                self.finish(child, data, too_large=False, kill=True)
        if failure is not None:
            status, error_type, message, caused_by_code = failure
            reply = {"status": status, "error_type": error_type, "message": message, "caused_by_code": caused_by_code}
            return reply, ()
        return {"status": "ok", "num_splits": num_splits}, tuple(b for pair in results for b in pair)

    def spawn(self, data: _Dataset, split: int, source: str, timeout_s: float) -> dict:
        workdir = tempfile.mkdtemp(prefix=f"split{split}-", dir=self.root)
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never returns
            status = 70
            try:
                os.close(read_fd)
                self.child(data, split, source, timeout_s, write_fd, workdir)
                status = 0
            finally:
                os._exit(status)
        os.close(write_fd)
        return {"pid": pid, "fd": read_fd, "split": split, "workdir": workdir, "output": b"",
                "max_bytes": sum(data.result_sizes(split)) + MESSAGE_MAX_HEADER_BYTES}  # fmt: skip

    def finish(self, child: dict, data: _Dataset, too_large: bool, kill: bool = False) -> tuple:
        """Reap a child (killing its whole process group) and turn its output into an outcome."""
        pid = child["pid"]
        exited = None
        if not kill:  # EOF: give a child that is exiting a moment to do so, to report its real status
            for _ in range(100):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    exited = status
                    break
                time.sleep(0.001)
        for target in (pid, -pid):  # the child, then anything left in its process group
            try:
                os.kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if exited is None:
            exited = os.waitpid(pid, 0)[1]
        os.close(child["fd"])
        _remove_tree(child["workdir"])
        if kill:
            return ("timeout", "TimeoutError", "TimeoutError: killed", True)
        if too_large:
            return ("crash", "WorkerCrash", "WorkerCrash: the child wrote more output than a result can have", True)
        return _child_outcome(child, data, exited)

    def child(self, data: _Dataset, split: int, source: str, timeout_s: float, write_fd: int, workdir: str):
        """Jail this forked process and run one split of the generated code (see the module docstring)."""
        import numpy as np

        os.setpgid(0, 0)
        _set_parent_death_signal()
        if write_fd != 3:
            os.dup2(write_fd, 3)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(4, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        y = np.frombuffer(data.y_buffer, np.int64)
        train, evaluation = data.train_idx[split], data.eval_idx[split]
        arrays = (data.x[train], y[train], data.x[evaluation], np.array(data.x_test))
        for dataset in self.datasets.values():  # no label the split is not given stays in this process
            np.frombuffer(dataset.y_buffer, np.uint8)[:] = 0
        del y
        os.chdir(workdir)
        os.environ.update(HOME=workdir, TMPDIR=workdir)
        tempfile.tempdir = workdir
        self.set_limits(timeout_s)
        try:
            if self.landlock_abi:
                _apply_landlock(self.landlock_abi, self.landlock_rules, workdir)
            if self.seccomp:
                _apply_seccomp()
            sys.addaudithook(_AuditPolicy(workdir, self.read_roots, self.deny_roots))
        except Exception as error:  # fail closed; not the code's failure, so the parent does not cache it
            header = {"ok": False, "error_type": "WorkerCrash", "message": f"sandbox setup: {error}", "setup": True}
            write_message(3, header)
            return
        try:
            eval_proba, test_proba = _run_untrusted(source, split, *arrays, data.num_classes)
        except BaseException as error:  # noqa: B036 -- SystemExit, KeyboardInterrupt... are the code's failures
            error_type, message = short_error(error)
            if isinstance(error, MemoryError):  # numpy raises a private subclass
                error_type = "MemoryError"
            write_message(3, {"ok": False, "error_type": error_type, "message": message})
            return
        write_message(3, {"ok": True}, (eval_proba, test_proba))

    def set_limits(self, timeout_s: float) -> None:
        cpu = math.ceil(timeout_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 20, 256 << 20))
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        if self.memory_limit_mb is not None:
            # The address space the warm worker already maps (libraries, thread arenas) plus the budget.
            with open("/proc/self/statm") as handle:
                baseline = int(handle.read().split()[0]) * resource.getpagesize()
            limit = baseline + int(self.memory_limit_mb) * (1 << 20)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _run_untrusted(source: str, split: int, x_train, y_train, x_eval, x_test, num_classes: int):
    """Exec the generated module, fit on the train half, return float64 probabilities for eval and test rows."""
    import numpy as np

    code = compile(source, UNTRUSTED_FILENAME, "exec")
    namespace = {"__builtins__": {**vars(builtins), "__import__": _guarded_import}, "__name__": "generated"}
    # scikit-learn's random_state=None draws from NumPy's global generator, which each worker seeds from OS entropy
    # (and `random` reseeds itself in every forked child): unseeded, one body would score differently per process.
    random.seed(split)
    np.random.seed(split)
    exec(code, namespace)
    model = namespace["build_model"](x_train, y_train)
    if model is None or not hasattr(model, "predict_proba"):
        raise TypeError(f"build_model must return a fitted model with predict_proba, got {type(model).__name__}")
    outputs = []
    for x in (x_eval, x_test):
        proba = np.ascontiguousarray(np.asarray(model.predict_proba(x), dtype=np.float64))
        if proba.shape != (len(x), num_classes):
            raise ValueError(f"predict_proba returned shape {proba.shape}, expected {(len(x), num_classes)}")
        outputs.append(proba)
    return outputs


def _child_outcome(child: dict, data: _Dataset, status: int) -> tuple:
    """Outcome of a finished child: ``("ok", (eval bytes, test bytes))`` or a failure
    ``(status, error_type, message, caused_by_code)``.

    Every failure counts as the code's doing except a jail that could not be set up. A child killed by a signal is
    taken to have caused it (segfault, ``RLIMIT_CPU``, the OOM killer reacting to its allocations): the jail keeps
    other sandboxed code from signalling it, and an external kill of one child cannot be told apart from these.
    """
    if child["output"]:
        try:
            header, buffers = decode_message(child["output"])
            if header.get("ok") is True:
                if [len(b) for b in buffers] == data.result_sizes(child["split"]):
                    return ("ok", tuple(bytes(b) for b in buffers))
            elif header.get("ok") is False:
                error_type = str(header.get("error_type"))[:100]
                message = str(header.get("message"))[:300]
                kind = {"MemoryError": "memory", "WorkerCrash": "crash"}.get(error_type, "error")
                return (kind, error_type, message, header.get("setup") is not True)
        except (ValueError, KeyError, TypeError):
            pass
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number == signal.SIGXCPU:
            return ("timeout", "TimeoutError", "TimeoutError: CPU time limit exceeded", True)
        return ("crash", "WorkerCrash", f"WorkerCrash: killed by signal {signal.Signals(number).name}", True)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return ("crash", "WorkerCrash", f"WorkerCrash: exited with code {code} without a result", True)


def _remove_tree(path: str) -> None:
    """Delete a child's working directory even if the child removed its own permissions."""
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            try:
                os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)


def _sklearn_data_dirs() -> list[str]:
    """scikit-learn's bundled dataset files: reading iris.csv would reveal the labels of the iris task."""
    module = sys.modules.get("sklearn")
    if module is None:
        return []
    base = os.path.join(os.path.dirname(module.__file__), "datasets")
    return [os.path.realpath(os.path.join(base, name)) for name in ("data", "descr", "images")]


def _read_roots() -> tuple[str, ...]:
    """The Python installation, the directory holding each imported top-level package, and system libraries."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and "." not in name and name != "__main__":
            directory = os.path.dirname(os.path.realpath(file))
            roots.add(os.path.dirname(directory) if os.path.basename(file).startswith("__init__.") else directory)
    return tuple(sorted(roots)) + _SYSTEM_READ_ROOTS


def _landlock_rules(read_roots: tuple[str, ...], deny_roots: tuple[str, ...]) -> list[tuple[str, str]]:
    """Read-only Landlock rules covering ``read_roots`` minus ``deny_roots`` (Landlock can only allow).

    Returns ``(path, kind)`` pairs: ``"dir"`` / ``"file"`` readable, ``"list"`` a directory holding a denied
    path, whose names stay listable (the import system needs that) while its entries get rules of their own.
    """
    rules: list[tuple[str, str]] = []

    def cover(path: str) -> None:
        if _inside(path, deny_roots) or not os.path.exists(path):
            return
        if not os.path.isdir(path) or not any(_inside(deny, (path,)) for deny in deny_roots):
            rules.append((path, "dir" if os.path.isdir(path) else "file"))
            return
        rules.append((path, "list"))
        for name in sorted(os.listdir(path)):
            cover(os.path.join(path, name))

    for root in sorted({os.path.realpath(r) for r in read_roots}):
        cover(root)
    return rules


def main(argv: list[str]) -> None:
    read_fd, write_fd = int(argv[1]), int(argv[2])
    init, _ = read_message(read_fd, max_buffer_bytes=0)
    sys.path[:] = [p for p in init["sys_path"] if p] + [p for p in sys.path if p not in init["sys_path"]]
    for name in init["preload"]:
        try:
            importlib.import_module(name)
        except Exception:  # optional packages (xgboost, ...) may be missing or broken
            pass
    import ctypes  # noqa: F401 -- imported while trusted so that the audit policy knows its directory

    server = _Server(init, read_fd, write_fd)
    gc.collect()
    gc.freeze()  # keep the warm heap shared between children (copy-on-write)
    write_message(write_fd, {"kind": "ready", "landlock_abi": server.landlock_abi, "seccomp": server.seccomp})
    server.serve()
    _remove_tree(server.root)  # the caller closed the pipe or died without cleaning up (e.g. SIGKILL)


if __name__ == "__main__":
    main(sys.argv)
