"""Warm Blender workers for TRUSTED jobs: bpy imported once, our own scripts run one after another.

Why: a one-shot Blender launch spends ~2 s and ~270 MB importing bpy before any work; our
own scripts (rig + VRM export, rigged -> VRM, export asset) run many times per session. The
worker (blender_cli/_warm_server.py) runs each job exactly as a launch would (same job.json /
result.json protocol, cwd, per-job log) after resetting Blender to factory settings.

The process machinery is core/runtime/workers.py's :class:`ModelWorker` (JSON lines over
stdin/stdout, reader thread, kill the process group on timeout, fresh process after a
crash); this module adds only what is Blender-specific:

- **Trust is a type.** :func:`run` takes a :class:`TrustedScript`, which only
  :func:`trusted_script` makes, and only for a script that resolves (symlinks followed) to a
  file directly in blender_cli/ whose name is in :data:`TRUSTED_SCRIPTS`. sandbox_exec.py
  (the Blender Executor's runner for model-written code) is never in that set, and
  blender.run_blender only asks for one when the job has no jail, no resource limits and no
  custom environment, which every executor job has. So an untrusted script cannot reach a
  warm process even by a caller's mistake: it always gets a fresh isolated one.
- **One worker per job slot** (``blender.warm_slots``): a job takes a free slot or queues FIFO.
- **Recycling**: after ``blender.warm_max_jobs`` jobs, or when the worker's resident memory
  after a job passes ``blender.warm_max_rss_mb``, the worker is stopped and a fresh one is
  started in the background, so a slow leak never grows without bound.
- **A failed start falls back**: :func:`run` returns None and the caller launches one-shot.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from ..config import BlenderSettings
from .workers import FairLock, ModelWorker, WorkerError, WorkerSpec

log = logging.getLogger("comfy_avatar.blender.warm")

SCRIPTS_DIR = Path(__file__).resolve().parents[3] / "blender_cli"
SERVER = SCRIPTS_DIR / "_warm_server.py"
# Our own scripts, reviewed and shipped with the pack. Add a new trusted stage here; NEVER add
# sandbox_exec.py or anything that executes model-written code.
# Our own job scripts (the face and expression stage runs inside the two VRM scripts).
TRUSTED_SCRIPTS = frozenset({"rig_vrm.py", "rigged_to_vrm.py", "export_asset.py"})
NEVER_WARM = frozenset({"sandbox_exec.py"})
_TOKEN = object()


class TrustedScript:
    """A blender_cli/ script that may run in a warm worker. Made only by :func:`trusted_script`
    (the constructor checks a private token), so no caller can wrap an arbitrary path."""

    __slots__ = ("path",)

    def __init__(self, path: Path, _token: object = None) -> None:
        if _token is not _TOKEN:
            raise TypeError("TrustedScript is made only by warm_blender.trusted_script()")
        self.path = path

    def __repr__(self) -> str:
        return f"TrustedScript({self.path.name})"


def trusted_script(script: str | os.PathLike[str]) -> TrustedScript | None:
    """A TrustedScript for ``script`` when it is one of our own scripts, else None."""
    try:
        real = Path(script).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if real.parent != SCRIPTS_DIR or real.name not in TRUSTED_SCRIPTS or real.name in NEVER_WARM:
        return None
    if not real.is_file():
        return None
    return TrustedScript(real, _TOKEN)


def _spec(slot: int, python: str, blender: BlenderSettings, user_root: Path) -> WorkerSpec:
    user = user_root / f"slot{slot}"
    env = {
        "BLENDER_USER_RESOURCES": str(user),
        "BLENDER_USER_CONFIG": str(user / "config"),
        "BLENDER_USER_SCRIPTS": str(user / "scripts"),
        "BLENDER_USER_DATAFILES": str(user / "datafiles"),
        "PYTHONNOUSERSITE": "1",
    }
    for p in env.values():
        if p.startswith(str(user_root)):
            Path(p).mkdir(parents=True, exist_ok=True)
    return WorkerSpec(
        name=f"blender-warm-{slot}",
        python=python,
        script=str(SERVER),
        env=tuple(sorted(env.items())),
        start_timeout_s=120.0,
        idle_timeout_s=float(blender.warm_idle_s),
        label=f"warm Blender {slot}",
        isolation="none",
    )


class WarmPool:
    """The warm workers for one Blender runtime, one per job slot."""

    def __init__(self, python: str, blender: BlenderSettings) -> None:
        self.python = python
        self.settings = blender
        self._user_root = Path(tempfile.mkdtemp(prefix="comfy-avatar-warm-blender-"))
        n = max(1, int(blender.warm_slots))
        self.workers = [ModelWorker(_spec(i, python, blender, self._user_root)) for i in range(n)]
        self._locks = [FairLock() for _ in range(n)]
        self._next = 0
        self._mu = threading.Lock()
        self.recycled = 0

    async def _slot(self) -> int:
        for i, lock in enumerate(self._locks):
            if lock.try_acquire():
                return i
        with self._mu:
            i, self._next = self._next, (self._next + 1) % len(self._locks)
        await self._locks[i].acquire()
        return i

    async def run(
        self, script: TrustedScript, job: Path, cwd: Path, log_path: Path, timeout: float | None
    ) -> tuple[int, bool] | None:
        """Run one job; (exit code, timed out) as a launch would give, or None when no worker
        could be started (the caller then launches one-shot)."""
        if not isinstance(script, TrustedScript) or trusted_script(script.path) is None:
            raise TypeError(f"{script!r} is not a trusted blender_cli script; untrusted code never runs warm")
        slot = await self._slot()
        worker = self.workers[slot]
        try:
            try:
                await asyncio.to_thread(worker.ensure_started)
            except WorkerError as e:
                log.warning("warm Blender could not start (%s); launching one-shot instead", e.problem)
                return None
            args = {"script": str(script.path), "job": str(job), "cwd": str(cwd), "log": str(log_path)}
            try:
                out = await worker.call("run", args, timeout_s=timeout)
            except WorkerError as e:
                if e.kind == "timeout":
                    return -signal.SIGKILL, True
                if e.kind == "crashed":
                    return _crash_code(e.problem), False
                raise
            rc = int(out.get("returncode", 1))
            jobs, rss = int(out.get("jobs", 0)), int(out.get("rss_bytes", 0))
            why = ""
            if self.settings.warm_max_jobs > 0 and jobs >= self.settings.warm_max_jobs:
                why = f"{jobs} jobs"
            elif self.settings.warm_max_rss_mb > 0 and rss > self.settings.warm_max_rss_mb * 2**20:
                why = f"RSS {rss / 2**20:.0f} MB > {self.settings.warm_max_rss_mb} MB"
            if why:
                log.info("recycling warm Blender %s after %s", slot, why)
                self.recycled += 1
                await asyncio.to_thread(worker.shutdown, "idle")
                threading.Thread(target=_prestart, args=(worker,), daemon=True).start()
            return rc, False
        finally:
            self._locks[slot].release()

    def shutdown(self) -> None:
        for w in self.workers:
            w.shutdown()
        shutil.rmtree(self._user_root, ignore_errors=True)


def _prestart(worker: ModelWorker) -> None:
    try:
        worker.ensure_started()
    except WorkerError as e:
        log.warning("warm Blender restart failed: %s", e.problem)


def _crash_code(problem: str) -> int:
    m = re.search(r"killed by (SIG[A-Z0-9]+)", problem)
    if m and hasattr(signal, m.group(1)):
        return -int(getattr(signal, m.group(1)))
    m = re.search(r"exit code (-?\d+)", problem)
    return int(m.group(1)) if m else -int(signal.SIGKILL)


_POOLS: dict[tuple, WarmPool] = {}
_POOLS_MU = threading.Lock()


def pool_for(python: str | os.PathLike[str], blender: BlenderSettings) -> WarmPool:
    """The pool for this runtime and these settings; changed settings replace the old pool."""
    key = (str(python), blender.warm_slots, blender.warm_max_jobs, blender.warm_max_rss_mb, blender.warm_idle_s)
    with _POOLS_MU:
        pool = _POOLS.get(key)
        if pool is None:
            old = [p for k, p in _POOLS.items() if k[0] == key[0]]
            for k in [k for k in _POOLS if k[0] == key[0]]:
                del _POOLS[k]
            pool = _POOLS[key] = WarmPool(str(python), blender)
        else:
            old = []
    for p in old:
        p.shutdown()
    return pool


def shutdown_all() -> None:
    with _POOLS_MU:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for p in pools:
        p.shutdown()


atexit.register(shutdown_all)

__all__ = ["TrustedScript", "trusted_script", "WarmPool", "pool_for", "shutdown_all", "TRUSTED_SCRIPTS"]
