"""Persistent model workers: one warm subprocess per GPU model, spoken to in JSON lines.

A worker is a script from ``comfy_avatar_nodes/workers/`` run by path with the model env's
OWN Python (TRELLIS and UniRig each need their own torch/CUDA stack; none of it is
imported here). Protocol: workers/_protocol.py. This module:

- starts the worker in its own process group (``start_new_session``) with a stripped,
  offline environment (HF_HUB_OFFLINE=1, TRANSFORMERS_OFFLINE=1, HF_HOME from config; API
  keys, tokens and other secret-looking variables removed), stderr to a log file;
- waits for its ready handshake (versions, device, or the list of problems);
- keeps it warm across jobs in a module-level registry (one worker per model name) and
  serialises jobs with a FIFO lock, so concurrent prompts queue instead of loading the
  model twice;
- gives each request a timeout: past it the whole process group is killed and the next
  job starts a fresh worker; a crash fails the running request with the stderr tail and
  the next job restarts it too;
- shuts a worker down after ``workers.idle_timeout_s`` without a job (freeing GPU memory),
  and all of them when this process exits.

Why threads and not asyncio subprocesses: ComfyUI runs every prompt in a NEW event loop
(execution.py ``PromptExecutor.execute`` -> ``asyncio.run``), and an asyncio subprocess's
pipes die with the loop that made them. A Popen + reader thread outlives loops, and the
lock here works from any loop or thread.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import setting_name
from ..errors import AvatarError
from ..secrets import is_secret_env
from . import isolation
from .procs import PYTHON_ENV_DROP, kill_group, tail_file

log = logging.getLogger("comfy_avatar.workers")

WORKERS_DIR = Path(__file__).resolve().parents[2] / "workers"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "WANDB_MODE": "disabled",
    "PYTHONUNBUFFERED": "1",
    "PYTHONFAULTHANDLER": "1",
}
# Cache locations are not secrets even though they start with a denied prefix (HF_).
KEEP_ENV = ("HF_HOME", "HF_HUB_CACHE", "TORCH_HOME", "U2NET_HOME", "XDG_CACHE_HOME")
LOG_FILES_KEPT = 10
FAILED_JOBS_KEPT = 5
ProgressFn = Callable[[float, str], None]


class WorkerError(AvatarError):
    """A model worker could not start, failed its preflight, crashed, timed out or answered an error.

    ``kind``: start_failed | preflight | start_timeout | crashed | timeout | request | bad_args.
    ``problems``: the handshake's problem list (preflight). ``response``: the error reply (request).
    """

    def __init__(
        self,
        what: str,
        problem: str,
        fix: str = "",
        *,
        detail: str = "",
        kind: str = "",
        problems: list[dict] | None = None,
        info: dict | None = None,
        response: dict | None = None,
    ) -> None:
        super().__init__(what, problem, fix, detail=detail)
        self.kind = kind
        self.problems = list(problems or [])
        self.info = dict(info or {})
        self.response = dict(response or {})


def worker_env(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a worker gets: ``base`` (default os.environ) without secrets or
    PYTHONPATH-style variables, forced offline, plus ``extra`` (empty values skipped)."""
    src = os.environ if base is None else base
    env = {k: v for k, v in src.items() if k not in PYTHON_ENV_DROP and (k in KEEP_ENV or not is_secret_env(k))}
    env.update(OFFLINE_ENV)
    env.update({k: str(v) for k, v in (extra or {}).items() if v not in (None, "")})
    return env


@dataclass(frozen=True)
class WorkerSpec:
    """How to start one model worker. Two equal specs share one warm process."""

    name: str  # registry key, e.g. "trellis"
    python: str
    script: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = ""
    start_timeout_s: float = 900.0
    idle_timeout_s: float = 900.0
    log_dir: str = ""
    label: str = ""  # shown in messages ("TRELLIS")
    # auto: network unshared with bubblewrap when it works here (isolation.check_net), else as is; none: as is
    isolation: str = "auto"
    bwrap: str = "bwrap"

    @property
    def title(self) -> str:
        return self.label or self.name

    def command(self) -> list[str]:
        """The worker's command line; under ``bwrap --unshare-net`` when isolation allows it, so a
        malicious input file cannot reach the network through a model's dependencies."""
        cmd = [self.python, "-u", self.script, *self.args]
        if self.isolation == "none":
            return cmd
        bwrap, why = isolation.check_net(self.bwrap)
        if bwrap is None:
            log.info("%s worker runs with the host network: %s", self.title, why)
            return cmd
        return isolation.net_argv(bwrap, cmd)


class FairLock:
    """FIFO mutex usable from any thread and any event loop (asyncio.Lock is bound to one loop)."""

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._locked = False
        self._waiters: collections.deque[concurrent.futures.Future] = collections.deque()

    def locked(self) -> bool:
        return self._locked

    def try_acquire(self) -> bool:
        with self._mu:
            if self._locked:
                return False
            self._locked = True
            return True

    async def acquire(self) -> None:
        with self._mu:
            if not self._locked:
                self._locked = True
                return
            fut: concurrent.futures.Future = concurrent.futures.Future()
            self._waiters.append(fut)
        try:
            await asyncio.wrap_future(fut)
        except BaseException:
            with self._mu:
                if fut in self._waiters:  # never granted
                    self._waiters.remove(fut)
                    raise
            if not fut.cancelled():  # granted while we were being cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        with self._mu:
            while self._waiters:
                fut = self._waiters.popleft()
                if fut.set_running_or_notify_cancel():
                    fut.set_result(None)  # ownership moves to that waiter; stays locked
                    return
            self._locked = False

    async def __aenter__(self) -> FairLock:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.release()


@dataclass
class _Conn:
    """One started worker process and the requests waiting on it."""

    proc: subprocess.Popen
    log_path: Path
    ready: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    pending: dict[str, tuple[str, concurrent.futures.Future, ProgressFn | None]] = field(default_factory=dict)
    mu: threading.Lock = field(default_factory=threading.Lock)
    stopping: str = ""  # why we ended it ("" = it ended by itself: a crash)
    closed: bool = False  # the reader saw EOF; no new request may wait on this process


def workers_dir(log_dir: str = "") -> Path:
    """Where worker logs and job folders go (config workers.log_dir, else <temp>/comfy-avatar-workers)."""
    return Path(log_dir).expanduser() if log_dir else Path(tempfile.gettempdir()) / "comfy-avatar-workers"


@contextlib.contextmanager
def job_dir(spec: WorkerSpec, *, keep_on_error: bool = False) -> Iterator[Path]:
    """A fresh folder for one job's scratch files; removed after, or kept after a failure
    (the newest FAILED_JOBS_KEPT per worker) when ``keep_on_error`` so its logs can be read."""
    root = workers_dir(spec.log_dir) / "jobs"
    root.mkdir(parents=True, exist_ok=True)
    old = sorted(root.glob(f"{spec.name}-*"), key=lambda p: p.stat().st_mtime)
    for stale in old[:-FAILED_JOBS_KEPT]:
        shutil.rmtree(stale, ignore_errors=True)
    path = root / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    ok = False
    try:
        yield path
        ok = True
    finally:
        if ok or not keep_on_error:
            shutil.rmtree(path, ignore_errors=True)


def _exit_text(rc: int | None) -> str:
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit code {rc}"


def _prune_logs(log_dir: Path, name: str, keep: int = LOG_FILES_KEPT) -> None:
    logs = sorted(log_dir.glob(f"{name}-*.log"), key=lambda p: p.stat().st_mtime)
    for old in logs[:-keep] if keep else logs:
        try:
            old.unlink()
        except OSError:
            pass


class ModelWorker:
    """One model's warm worker process. Use :func:`get_worker` rather than making these."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self._lock = FairLock()
        self._start_mu = threading.Lock()
        self._mu = threading.Lock()
        self._conn: _Conn | None = None
        self._idle_timer: threading.Timer | None = None
        self._last_used = time.monotonic()
        self._retired = False
        self.info: dict[str, Any] = {}
        self.starts = 0

    # ------------------------------------------------------------------ state
    @property
    def pid(self) -> int | None:
        conn = self._conn
        return conn.proc.pid if conn is not None and conn.proc.poll() is None else None

    @property
    def log_path(self) -> Path | None:
        conn = self._conn
        return conn.log_path if conn is not None else None

    def busy(self) -> bool:
        return self._lock.locked()

    # ------------------------------------------------------------------ public API
    async def call(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        """Run one request; starts the worker first if needed. Jobs queue in FIFO order."""
        await self._lock.acquire()
        try:
            self._cancel_idle()
            conn = await asyncio.to_thread(self._ensure_conn)
            return await self._request(conn, op, dict(args or {}), timeout_s, progress)
        finally:
            self._last_used = time.monotonic()
            self._lock.release()
            self._after_job()

    async def start(self) -> dict[str, Any]:
        """Start (if needed) and return the handshake, under the job lock."""
        await self._lock.acquire()
        try:
            self._cancel_idle()
            return await asyncio.to_thread(self.ensure_started)
        finally:
            self._last_used = time.monotonic()
            self._lock.release()
            self._after_job()

    def shutdown(self, reason: str = "shutdown") -> None:
        """Stop the process now (a running request fails as a crash would)."""
        self._cancel_idle()
        conn = self._conn
        if conn is not None:
            self._stop(conn, reason)

    async def aclose(self) -> None:
        """Stop after the running job (if any) finishes."""
        async with self._lock:
            await asyncio.to_thread(self.shutdown)

    def retire(self) -> None:
        """This spec is outdated (config changed): stop now if idle, else after the current job."""
        self._retired = True
        if self._lock.try_acquire():
            try:
                self.shutdown("retired")
            finally:
                self._lock.release()

    # ------------------------------------------------------------------ starting
    def ensure_started(self) -> dict[str, Any]:
        """Blocking: a live worker's handshake, starting one if there is none."""
        self._ensure_conn()
        return self.info

    def _ensure_conn(self) -> _Conn:
        with self._start_mu:
            conn = self._conn
            if conn is not None and conn.proc.poll() is None and conn.ready.done() and not conn.ready.exception():
                return conn
            if conn is not None:
                self._stop(conn, "restart")
            return self._start()

    def _start(self) -> _Conn:
        spec = self.spec
        if not Path(spec.python).is_file():
            raise WorkerError(
                f"{spec.title} worker",
                f"its Python {spec.python} does not exist",
                "set the model env's python in the config",
                kind="start_failed",
            )
        log_dir = workers_dir(spec.log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        _prune_logs(log_dir, spec.name, LOG_FILES_KEPT - 1)
        log_path = log_dir / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.log"
        popen: dict[str, Any] = (
            {"start_new_session": True}
            if os.name == "posix"
            else {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        )
        with open(log_path, "ab") as logf:
            try:
                proc = subprocess.Popen(
                    spec.command(),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=logf,
                    cwd=spec.cwd or None,
                    env=worker_env(dict(spec.env)),
                    **popen,
                )
            except OSError as e:
                raise WorkerError(
                    f"{spec.title} worker",
                    f"could not start {spec.python} ({e})",
                    "check that the model env's python runs",
                    kind="start_failed",
                ) from None
        conn = _Conn(proc, log_path)
        self._conn = conn
        threading.Thread(
            target=self._read_loop, args=(conn,), daemon=True, name=f"worker-{spec.name}-{proc.pid}"
        ).start()
        log.info("%s worker starting: pid %s, log %s", spec.title, proc.pid, log_path)
        try:
            hello = conn.ready.result(timeout=spec.start_timeout_s if spec.start_timeout_s > 0 else None)
        except concurrent.futures.TimeoutError:
            self._stop(conn, "start timeout")
            raise WorkerError(
                f"{spec.title} worker",
                f"did not finish starting within {spec.start_timeout_s:g} s "
                "(imports + model load); its process group was killed",
                f"raise {setting_name('workers.start_timeout_s')}; worker log: {log_path}",
                detail=self._tail_block(conn),
                kind="start_timeout",
            ) from None
        except WorkerError:
            self._stop(conn, "start failed")
            raise
        if not hello.get("ok"):
            self._stop(conn, "preflight failed")
            problems = [p for p in hello.get("problems", []) if isinstance(p, dict)]
            detail = "\n".join(f"- [{p.get('kind')}] {p.get('message')}" for p in problems)
            if hello.get("traceback"):
                detail += f"\n{hello['traceback']}"
            raise WorkerError(
                f"{spec.title} worker",
                "is not usable: " + "; ".join(str(p.get("message")) for p in problems),
                f"see the problems listed; worker log: {log_path}",
                detail=detail,
                kind="preflight",
                problems=problems,
                info=hello,
            )
        self.info = hello
        self.starts += 1
        log.info(
            "%s worker ready: pid %s in %s s, device %s",
            spec.title,
            proc.pid,
            hello.get("startup_s"),
            (hello.get("device") or {}).get("name"),
        )
        return conn

    # ------------------------------------------------------------------ I/O
    def _read_loop(self, conn: _Conn) -> None:
        proc = conn.proc
        assert proc.stdout is not None
        try:
            for raw in iter(proc.stdout.readline, b""):
                try:
                    msg = json.loads(raw)
                except ValueError:
                    log.warning("%s worker wrote a non-protocol line: %r", self.spec.title, raw[:200])
                    continue
                if not isinstance(msg, dict):
                    continue
                event = msg.get("event")
                if event == "ready":
                    if not conn.ready.done():
                        conn.ready.set_result(msg)
                    continue
                rid = msg.get("id")
                with conn.mu:
                    if not isinstance(rid, str):  # requests are keyed by str ids: nothing waits on another id
                        entry = None
                    else:
                        entry = conn.pending.get(rid) if event == "progress" else conn.pending.pop(rid, None)
                if entry is None:
                    log.debug("%s worker: reply for no waiting request: %.200s", self.spec.title, raw)
                    continue
                op, fut, progress = entry
                if event == "progress":
                    log.info(
                        "%s %s: %.0f%% %s",
                        self.spec.title,
                        op,
                        100 * float(msg.get("fraction") or 0),
                        msg.get("message", ""),
                    )
                    if progress is not None:
                        try:
                            progress(float(msg.get("fraction") or 0), str(msg.get("message") or ""))
                        except Exception:  # noqa: BLE001 - progress display must not break the job
                            log.debug("progress callback failed", exc_info=True)
                    continue
                if not fut.done():
                    fut.set_result(msg)
        finally:
            rc = proc.wait()
            kill_group(proc)  # a crashed worker's children (e.g. a UniRig step) go with it
            with self._mu:
                if self._conn is conn:
                    self._conn = None
            tail = self._tail_block(conn)
            if conn.stopping:
                log.info("%s worker pid %s stopped (%s, %s)", self.spec.title, proc.pid, conn.stopping, _exit_text(rc))
            else:
                log.warning(
                    "%s worker pid %s exited unexpectedly (%s); log %s",
                    self.spec.title,
                    proc.pid,
                    _exit_text(rc),
                    conn.log_path,
                )
            why = conn.stopping or "crashed"
            if not conn.ready.done():
                conn.ready.set_exception(
                    WorkerError(
                        f"{self.spec.title} worker",
                        f"exited ({_exit_text(rc)}) before its ready handshake",
                        f"see the stderr tail below and the worker log {conn.log_path}",
                        detail=tail,
                        kind="crashed",
                    )
                )
            with conn.mu:
                waiting, conn.pending, conn.closed = list(conn.pending.values()), {}, True
            for op, fut, _ in waiting:
                if not fut.done():
                    fut.set_exception(
                        WorkerError(
                            f"{self.spec.title} worker",
                            f"{why} ({_exit_text(rc)}) while running {op!r}",
                            f"the next job starts a fresh worker; worker log: {conn.log_path}",
                            detail=tail,
                            kind="crashed",
                        )
                    )

    @staticmethod
    def _tail_block(conn: _Conn) -> str:
        return f"--- worker stderr tail ({conn.log_path}) ---\n{tail_file(conn.log_path) or '(empty)'}"

    async def _request(
        self, conn: _Conn, op: str, args: dict[str, Any], timeout_s: float | None, progress: ProgressFn | None
    ) -> dict[str, Any]:
        title = self.spec.title
        try:
            line = json.dumps({"id": (rid := uuid.uuid4().hex), "op": op, "args": args}, default=_json_default) + "\n"
        except (TypeError, ValueError) as e:
            raise WorkerError(
                f"{title} {op}",
                f"arguments are not JSON-serializable ({e})",
                "pass str/number/bool/list/dict values (paths as str)",
                kind="bad_args",
            ) from None
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with conn.mu:
            if conn.closed:
                raise WorkerError(
                    f"{title} worker",
                    f"exited ({_exit_text(conn.proc.poll())}) before {op!r} was sent",
                    f"the next job starts a fresh worker; worker log: {conn.log_path}",
                    detail=self._tail_block(conn),
                    kind="crashed",
                )
            conn.pending[rid] = (op, fut, progress)
        try:
            assert conn.proc.stdin is not None
            conn.proc.stdin.write(line.encode("utf-8"))
            conn.proc.stdin.flush()
        except OSError:
            pass  # it died; the reader thread fails `fut` with the stderr tail
        limit = timeout_s if timeout_s and timeout_s > 0 else None
        try:
            msg = await asyncio.wait_for(asyncio.wrap_future(fut), limit)
        except asyncio.TimeoutError:
            with conn.mu:
                conn.pending.pop(rid, None)
            await asyncio.to_thread(self._stop, conn, "timeout")
            raise WorkerError(
                f"{title} {op}",
                f"took longer than {limit:g} s; the worker's process group was killed "
                "and the next job starts a fresh one",
                "raise the model's timeout_s in the config, or use a smaller input",
                detail=self._tail_block(conn),
                kind="timeout",
            ) from None
        except asyncio.CancelledError:
            with conn.mu:
                conn.pending.pop(rid, None)
            self._stop(conn, "cancelled")  # the GPU is busy with a job nobody waits for
            raise
        if msg.get("ok"):
            return dict(msg.get("result") or {})
        detail = ""
        if msg.get("log_tail"):
            detail += f"--- {msg.get('step', 'step')} log tail ({msg.get('log', '')}) ---\n{msg['log_tail']}\n"
        if msg.get("traceback") and msg.get("error_kind") == "exception":
            detail += f"--- worker traceback ---\n{str(msg['traceback'])[-4000:]}"
        raise WorkerError(
            f"{title} {op}",
            str(msg.get("error") or "failed"),
            f"see the details below; worker log: {conn.log_path}",
            detail=detail.strip(),
            kind="request",
            response=msg,
        )

    # ------------------------------------------------------------------ stopping
    def _stop(self, conn: _Conn, reason: str, grace_s: float = 5.0) -> None:
        """End ``conn``'s process: polite shutdown for idle/shutdown, SIGKILL to the group otherwise."""
        conn.stopping = conn.stopping or reason
        proc = conn.proc
        if proc.poll() is None and reason in ("idle", "shutdown", "retired"):
            try:
                assert proc.stdin is not None
                proc.stdin.write(b'{"id": "shutdown", "op": "shutdown"}\n')
                proc.stdin.close()
                proc.wait(grace_s)
            except (OSError, subprocess.TimeoutExpired):
                pass
        kill_group(proc)  # also after a clean exit: nothing the worker started outlives it
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            log.error("%s worker pid %s did not die after SIGKILL", self.spec.title, proc.pid)
        for pipe in (proc.stdin, proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
        with self._mu:
            if self._conn is conn:
                self._conn = None

    def _cancel_idle(self) -> None:
        with self._mu:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None

    def _after_job(self) -> None:
        if self._retired:
            self.retire()
            return
        idle = self.spec.idle_timeout_s
        with self._mu:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            if idle and idle > 0 and self._conn is not None:
                timer = threading.Timer(idle, self._idle_fire)
                timer.daemon = True
                timer.start()
                self._idle_timer = timer

    def _idle_fire(self) -> None:
        if not self._lock.try_acquire():
            return  # a job is running; it re-arms the timer when done
        try:
            if time.monotonic() - self._last_used >= self.spec.idle_timeout_s * 0.99 and self._conn is not None:
                log.info("%s worker idle for %g s: stopping it", self.spec.title, self.spec.idle_timeout_s)
                self.shutdown("idle")
        finally:
            self._lock.release()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


# ---------------------------------------------------------------------- registry
_REGISTRY: dict[str, ModelWorker] = {}
_REGISTRY_MU = threading.Lock()


def get_worker(spec: WorkerSpec) -> ModelWorker:
    """The warm worker for ``spec.name``; a changed spec (config edit) replaces the old one."""
    with _REGISTRY_MU:
        old = _REGISTRY.get(spec.name)
        if old is not None and old.spec == spec:
            return old
        worker = _REGISTRY[spec.name] = ModelWorker(spec)
    if old is not None:
        log.info("%s worker settings changed: retiring the old worker", spec.title)
        old.retire()
    return worker


def shutdown_all() -> None:
    with _REGISTRY_MU:
        workers = list(_REGISTRY.values())
        _REGISTRY.clear()
    for w in workers:
        w.shutdown()


atexit.register(shutdown_all)

__all__ = [
    "WorkerSpec",
    "WorkerError",
    "ModelWorker",
    "FairLock",
    "get_worker",
    "shutdown_all",
    "worker_env",
    "job_dir",
    "workers_dir",
    "WORKERS_DIR",
    "OFFLINE_ENV",
]
