"""The one Blender runner: find a Blender runtime, run a blender_cli/ script in its own process.

Two runtimes run the same scripts unchanged (protocol: blender_cli/_job.py):

- ``binary``: a Blender >= 4.2 executable (config ``blender.binary`` / env ``BLENDER_BIN``)
  ``blender --background --factory-startup --python-exit-code 1 --python SCRIPT -- --job JOB``
- ``python``: a Python 3.11 with pip ``bpy`` (config ``blender.python`` / env
  ``COMFY_AVATAR_BLENDER_PYTHON``, default ``<runtime_dir>/blender-venv``, made by install.py)
  ``python SCRIPT -- --job JOB``

Every job gets its own process group (a timeout or a cancel kills the whole group, and the
group is killed after a normal exit too, so nothing is left behind), its own Blender user
folders (``BLENDER_USER_RESOURCES`` & co. point at a temp dir under the job folder), and a log
file with stdout+stderr. A failure raises :class:`BlenderError` with the script's error and
the log tail. bpy is never imported in this process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..assets import write_text_atomic
from ..config import PACK_DIR, BlenderSettings, load_settings
from ..errors import AvatarError, BlenderError
from . import isolation
from .procs import PYTHON_ENV_DROP, kill_group, tail_file

log = logging.getLogger("comfy_avatar.blender")
T = TypeVar("T")

MIN_VERSION = (4, 2)
SCRIPTS_DIR = PACK_DIR / "blender_cli"
INSTALL_FIX = f"run `python install.py` in {PACK_DIR} (it makes the bpy runtime), or set BLENDER_BIN to a Blender >= 4.2 executable"
_IS_POSIX = os.name == "posix"
_USER_DIRS = {
    "BLENDER_USER_RESOURCES": "",
    "BLENDER_USER_CONFIG": "config",
    "BLENDER_USER_SCRIPTS": "scripts",
    "BLENDER_USER_DATAFILES": "datafiles",
}


@dataclass(frozen=True)
class BlenderRuntime:
    kind: Literal["binary", "python"]
    executable: Path
    version: str

    def command(self, script: Path, job: Path) -> list[str]:
        """The documented command line for running ``script`` with ``job``."""
        if self.kind == "binary":
            return [
                str(self.executable),
                "--background",
                "--factory-startup",
                "--python-exit-code",
                "1",
                "--python",
                str(script),
                "--",
                "--job",
                str(job),
            ]
        return [str(self.executable), str(script), "--", "--job", str(job)]


@dataclass(frozen=True)
class ResourceLimits:
    """POSIX rlimits applied in the child before exec (``None`` = inherit).

    - ``cpu_s``: CPU seconds (RLIMIT_CPU; SIGXCPU at the limit, SIGKILL 1 s later).
    - ``memory_bytes``: address space (RLIMIT_AS), not RSS. ``import bpy`` alone maps ~1.3 GB,
      so use >= 2 GB for any job that imports bpy; a Blender binary needs more.
    - ``fsize_bytes``: largest file the job may write (RLIMIT_FSIZE); Python raises
      OSError(EFBIG), a non-Python writer gets SIGXFSZ. The job's log file counts too.
    - ``nproc``: RLIMIT_NPROC, which Linux counts per *real user id*, over all of that user's
      processes AND threads, not per job: a value below what the user already runs makes every
      fork/thread in the job fail (bpy starts ~5 threads). It bounds fork bombs only when the
      job runs as a dedicated user, and root (CAP_SYS_RESOURCE) is not limited by it at all.
    Limits are set as soft = hard (the job cannot raise them back) and never above the
    current hard limit.
    """

    cpu_s: int | None = None
    memory_bytes: int | None = None
    fsize_bytes: int | None = None
    nproc: int | None = None


@dataclass
class BlenderResult:
    ok: bool
    result: dict[str, Any]
    error: str
    log_tail: str
    duration_s: float
    returncode: int
    log_path: Path
    traceback: str = ""
    timed_out: bool = False


# ---------------------------------------------------------------- runtime discovery

_cache: dict[tuple[str, str], BlenderRuntime] = {}
_cache_lock = threading.Lock()
_VERSION_RE = re.compile(r"Blender\s+(\d+)\.(\d+)(?:\.(\d+))?")
_PY_PROBE = "import bpy; print('BPY_VERSION=' + bpy.app.version_string)"


def default_python(runtime_dir: str | os.PathLike[str]) -> Path:
    venv = Path(runtime_dir) / "blender-venv"
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _probe_env(tmp: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PYTHON_ENV_DROP}
    env.update({name: str(Path(tmp, sub)) for name, sub in _USER_DIRS.items()})
    return env


def _probe(cmd: list[str], what: str, fix: str) -> str:
    with tempfile.TemporaryDirectory(prefix="comfy-avatar-probe-") as tmp:
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=120,
                stdin=subprocess.DEVNULL,
                env=_probe_env(tmp),
                cwd=tmp,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BlenderError(what, f"could not run {cmd[0]} ({e})", fix) from None
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(out.strip().splitlines()[-15:])
        raise BlenderError(what, f"{shlex.join(cmd)} failed with exit code {proc.returncode}", fix, detail=tail)
    return out


def _find_binary(value: str) -> BlenderRuntime:
    what = "BLENDER_BIN (config blender.binary)"
    fix = "point BLENDER_BIN at a Blender >= 4.2 executable, or unset it and run `python install.py`"
    found = shutil.which(value) if os.sep not in value and "/" not in value else None
    path = Path(found or value).expanduser().absolute()
    if not path.is_file():
        raise BlenderError(what, f"{path} does not exist", fix)
    if not os.access(path, os.X_OK):
        raise BlenderError(what, f"{path} is not executable", fix)
    key = ("binary", str(path))
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    out = _probe([str(path), "--version"], what, fix)
    m = _VERSION_RE.search(out)
    if not m:
        raise BlenderError(what, f"`{path} --version` did not print a Blender version", fix, detail=out[-2000:])
    version = ".".join(g for g in m.groups() if g is not None)
    if _version_tuple(version) < MIN_VERSION:
        raise BlenderError(what, f"{path} is Blender {version}; the VRM add-on needs >= 4.2", fix)
    rt = BlenderRuntime("binary", path, version)
    with _cache_lock:
        _cache[key] = rt
    log.info("Blender runtime: binary %s (Blender %s)", path, version)
    return rt


def _find_python(value: str, runtime_dir: str) -> BlenderRuntime:
    if value:
        what, path = "COMFY_AVATAR_BLENDER_PYTHON (config blender.python)", Path(value).expanduser().absolute()
    else:
        what, path = "Blender runtime", default_python(runtime_dir).absolute()
    if not path.exists():
        problem = (
            f"{path} does not exist"
            if value
            else f"none found: BLENDER_BIN is not set, COMFY_AVATAR_BLENDER_PYTHON is not set "
            f"and the default bpy runtime {path} does not exist"
        )
        raise BlenderError(what, problem, INSTALL_FIX)
    key = ("python", str(path))
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    out = _probe([str(path), "-c", _PY_PROBE], what, f"{path} cannot import bpy: {INSTALL_FIX}")
    m = re.search(r"BPY_VERSION=(\S+)", out)
    if not m:
        raise BlenderError(what, f"{path} did not report a bpy version", INSTALL_FIX, detail=out[-2000:])
    version = m.group(1)
    if _version_tuple(version) < MIN_VERSION:
        raise BlenderError(what, f"{path} has bpy {version}; the VRM add-on needs >= 4.2", INSTALL_FIX)
    rt = BlenderRuntime("python", path, version)
    with _cache_lock:
        _cache[key] = rt
    log.info("Blender runtime: python %s (bpy %s)", path, version)
    return rt


def find_runtime(blender: BlenderSettings | None = None) -> BlenderRuntime:
    """The configured runtime: blender.binary (BLENDER_BIN) wins, else the bpy Python.

    Checked once per path and process (``--version`` / ``import bpy`` >= 4.2), then cached.
    """
    blender = blender or load_settings().blender
    if blender.binary.strip():
        return _find_binary(blender.binary.strip())
    return _find_python(blender.python.strip(), blender.runtime_dir)


def clear_runtime_cache() -> None:
    with _cache_lock:
        _cache.clear()


# ---------------------------------------------------------------- running a job


def resolve_script(script: str | os.PathLike[str]) -> Path:
    path = Path(script)
    if not path.is_absolute():
        path = SCRIPTS_DIR / path
    if not path.is_file():
        raise BlenderError(
            f"Blender script {script}",
            f"{path} does not exist",
            "reinstall the pack (blender_cli/ must sit beside comfy_avatar_nodes/)",
        )
    return path


def _limits_preexec(limits: ResourceLimits) -> Callable[[], None]:
    import resource

    wanted = [
        (resource.RLIMIT_CPU, limits.cpu_s),
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_FSIZE, limits.fsize_bytes),
        (resource.RLIMIT_NPROC, limits.nproc),
    ]
    plan: list[tuple[int, int, int]] = []
    for res, value in wanted:
        if value is None:
            continue
        _, hard = resource.getrlimit(res)
        value = int(value) if hard == resource.RLIM_INFINITY else min(int(value), hard)
        # CPU: SIGXCPU at the soft limit, SIGKILL at the hard one (in case SIGXCPU is caught).
        top = value + 1 if res == resource.RLIMIT_CPU else value
        if hard != resource.RLIM_INFINITY:
            top = min(top, hard)
        plan.append((res, value, top))

    def apply() -> None:  # runs in the child between fork and exec: no logging, no locks
        for res, soft, hard in plan:
            resource.setrlimit(res, (soft, hard))

    return apply


def _child_env(base: dict[str, str] | None, user_dir: Path) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    for name in PYTHON_ENV_DROP:
        env.pop(name, None)
    for name, sub in _USER_DIRS.items():
        (user_dir / sub).mkdir(parents=True, exist_ok=True)
        env[name] = str(user_dir / sub)
    env["PYTHONUNBUFFERED"] = "1"  # log lines in order, nothing lost on a crash
    env["PYTHONFAULTHANDLER"] = "1"  # a segfault/abort prints the Python stack into the log
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _link_addons(runtime: BlenderRuntime, user_dir: Path, runtime_dir: str) -> None:
    """A Blender binary gets io_scene_vrm from <runtime_dir>/blender-addons (install.py puts it
    there), since its own user add-ons are hidden by the temp BLENDER_USER_SCRIPTS."""
    src = Path(runtime_dir) / "blender-addons"
    if runtime.kind != "binary" or not src.is_dir():
        return
    dst = user_dir / "scripts" / "addons"
    dst.mkdir(parents=True, exist_ok=True)
    for pkg in src.iterdir():
        if pkg.is_dir() and (pkg / "__init__.py").is_file():
            try:
                (dst / pkg.name).symlink_to(pkg, target_is_directory=True)
            except OSError:
                shutil.copytree(pkg, dst / pkg.name, dirs_exist_ok=True)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "ok" in data else None


def _signal_problem(rc: int, limits: ResourceLimits | None) -> str:
    try:
        name = signal.Signals(-rc).name
    except ValueError:
        name = str(-rc)
    problem = f"Blender crashed: killed by signal {name} without writing a result"
    hints = {
        "SIGXCPU": f"the CPU limit ({limits.cpu_s} s) was reached" if limits and limits.cpu_s else "",
        "SIGXFSZ": f"the file size limit ({limits.fsize_bytes} bytes) was reached"
        if limits and limits.fsize_bytes
        else "",
        "SIGKILL": "out of memory, or the CPU hard limit"
        if limits
        else "out of memory (kernel OOM killer) or killed from outside",
    }
    return problem + (f" ({hints[name]})" if hints.get(name) else "")


def _error(res: BlenderResult, script: Path, fix: str) -> BlenderError:
    detail = ""
    if res.traceback:
        detail += f"--- script traceback ---\n{res.traceback.strip()[-4000:]}\n"
    detail += f"--- Blender log tail ({res.log_path}) ---\n{res.log_tail or '(empty)'}"
    return BlenderError(f"Blender job {script.name}", res.error, f"{fix}; full log: {res.log_path}", detail=detail)


def input_error(err: BlenderError, fixes: Mapping[str, str], file_input: str, file: Path) -> AvatarError:
    """Scripts report a bad input as "<input>: <problem>" (a JobError). Turn that into an
    AvatarError that names the input (the file input as "<input> (<file name>)") with the fix
    from ``fixes``; any other failure stays the BlenderError it is."""
    what, sep, rest = err.problem.partition(": ")
    base = what.split(".")[0]
    if not sep or base not in fixes:
        return err
    return AvatarError(f"{file_input} ({file.name})" if base == file_input else what, rest.strip(), fixes[base])


async def _run_plain(
    cmd: list[str],
    work: Path,
    env: dict[str, str],
    spawn: dict[str, Any],
    log_path: Path,
    timeout: float | None,
    runtime: BlenderRuntime,
) -> tuple[int, bool]:
    """A trusted job: output straight into its log file; (exit code, timed out)."""
    timed_out = False
    with open(log_path, "wb") as logf:
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, cwd=work, env=env, **spawn
            )
        except OSError as e:
            raise BlenderError(
                f"Blender runtime {runtime.executable}", f"could not start it ({e})", INSTALL_FIX
            ) from None
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except asyncio.TimeoutError:
        timed_out = True
        kill_group(proc)
        await proc.wait()
    finally:
        # Also on cancel and after a normal exit: leave nothing behind. The group id outlives
        # the reaped leader while any member runs; an empty group gives ESRCH (ignored).
        kill_group(proc)
    return (proc.returncode if proc.returncode is not None else -9), timed_out


async def _run_warm(
    script: Path,
    runtime: BlenderRuntime,
    blender: BlenderSettings,
    env: dict[str, str] | None,
    limits: ResourceLimits | None,
    job_path: Path,
    work: Path,
    log_path: Path,
    timeout: float | None,
) -> tuple[int, bool] | None:
    """A trusted job in a warm worker (core/runtime/warm_blender.py), or None: launch it one-shot.
    Only our own scripts with no custom env or limits qualify; jailed jobs never get here."""
    if not blender.warm or runtime.kind != "python" or env is not None or limits is not None:
        return None
    from . import warm_blender

    trusted = warm_blender.trusted_script(script)
    if trusted is None:
        return None
    return await warm_blender.pool_for(runtime.executable, blender).run(trusted, job_path, work, log_path, timeout)


def _read_untrusted_result(work: Path, result_path: Path) -> dict[str, Any] | None:
    """result.json of an untrusted job: a regular file inside the work dir, at most 4 MB, or
    nothing; its texts cut to what a message needs (they travel into errors, attempts logs and
    the coder model's prompt) and its result dropped when it is not small."""
    data = isolation.read_json(work, result_path.relative_to(work).as_posix(), max_bytes=4 << 20)
    if not isinstance(data, dict) or "ok" not in data:
        return None
    for key, cap in (("error", 4000), ("error_type", 100), ("traceback", 8000)):
        if key in data:
            data[key] = str(data[key])[:cap]
    if not isinstance(data.get("result"), dict) or len(json.dumps(data["result"], default=str)) > 256 * 1024:
        data["result"] = (
            {"note": "the job's result was not a small JSON object and was dropped"} if data.get("result") else {}
        )
    return data


async def run_blender(
    script: str | os.PathLike[str],
    args: dict[str, Any],
    *,
    work_dir: str | os.PathLike[str],
    timeout_s: float | None = None,
    runtime: BlenderRuntime | None = None,
    env: dict[str, str] | None = None,
    limits: ResourceLimits | None = None,
    check: bool = True,
    blender: BlenderSettings | None = None,
    jail: isolation.Jail | None = None,
) -> BlenderResult:
    """Run a blender_cli/ script (relative paths resolve there) with ``args`` in its own process.

    ``blender``: the blender settings (loaded when None); ``runtime`` None: the one they name.
    ``timeout_s`` None: blender.timeout_s (<= 0: no timeout). ``env``: the base
    environment for the child (default: a copy of os.environ); PYTHONPATH/PYTHONHOME are
    dropped and the Blender user folders are set either way. Job files (job.json,
    result.json, blender.log) go to ``work_dir/.blender/<script>-<id>/``; the child's cwd is
    ``work_dir``. check=True raises BlenderError on any failure; check=False returns it.

    ``jail``: the script is untrusted (core/runtime/isolation.py): it runs under bubblewrap
    (unless the jail has none) seeing the work dir as /job, its output comes over a pipe into
    ``<work_dir>-<job>.log`` BESIDE the work dir (out of its reach), result.json is read only
    as a regular file inside the work dir (no symlinks, size-capped) and the work dir's size
    is watched. Nothing else in the work dir is read here.
    """
    script_path = resolve_script(script)
    blender = blender or load_settings().blender
    runtime = runtime or find_runtime(blender)
    if timeout_s is None:
        timeout_s = blender.timeout_s
    timeout = timeout_s if timeout_s and timeout_s > 0 else None
    if limits is not None and not _IS_POSIX:
        raise BlenderError(
            "ResourceLimits",
            "resource limits need a POSIX system (Linux/macOS)",
            "run sandboxed jobs on Linux or pass limits=None",
        )
    work = Path(work_dir).absolute()
    job_dir = work / ".blender" / f"{script_path.stem}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    job_dir.mkdir(parents=True)
    job_path, result_path, log_path = job_dir / "job.json", job_dir / "result.json", job_dir / "blender.log"
    inside: Callable[[Path], str] = str if jail is None else (lambda p: jail.inside(p, work))
    if jail is not None:
        log_path = work.parent / f"{work.name}-{job_dir.name}.log"
    try:
        job_text = json.dumps(
            {"args": args, "result": inside(result_path), "work_dir": inside(work)}, indent=2, default=_json_default
        )
    except (TypeError, ValueError) as e:
        raise BlenderError(
            f"arguments for {script_path.name}",
            f"not JSON-serializable ({e})",
            "pass str/number/bool/list/dict values (paths as str)",
        ) from None
    write_text_atomic(job_path, job_text)

    user_dir = job_dir / "user"
    child_env = _child_env(env, user_dir)
    if jail is not None:
        child_env = jail.map_env(child_env, work)
    if runtime.kind == "binary":
        _link_addons(runtime, user_dir, blender.runtime_dir)
    cmd = runtime.command(script_path, Path(inside(job_path)))
    spawn: dict[str, Any] = (
        {"start_new_session": True}
        if _IS_POSIX
        else {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
    )
    if limits is not None:
        spawn["preexec_fn"] = _limits_preexec(limits)
    log.info("blender job: %s (cwd %s, timeout %s)", shlex.join(cmd), work, f"{timeout:g} s" if timeout else "none")

    start = time.perf_counter()
    timed_out, quota = False, ""
    try:
        if jail is not None:
            jr = await isolation.run_jailed(
                cmd,
                work=work,
                env=child_env,
                jail=jail,
                log_path=log_path,
                timeout_s=timeout,
                preexec=spawn.get("preexec_fn"),
            )
            rc, timed_out, quota = jr.returncode, jr.timed_out, jr.quota
        else:
            warm = await _run_warm(script_path, runtime, blender, env, limits, job_path, work, log_path, timeout)
            if warm is None:
                rc, timed_out = await _run_plain(cmd, work, child_env, spawn, log_path, timeout, runtime)
            else:
                rc, timed_out = warm
    finally:
        shutil.rmtree(user_dir, ignore_errors=True)
    duration = time.perf_counter() - start

    data = _read_result(result_path) if jail is None else _read_untrusted_result(work, result_path)
    res = BlenderResult(False, {}, "", tail_file(log_path), duration, rc, log_path, timed_out=timed_out)
    fix = "check the inputs named in the error"
    if quota:
        res.error, fix = quota, "make the script write less (outputs must fit in sandbox.work_mb)"
    elif data is not None and data.get("ok"):
        if timed_out:
            log.warning(
                "blender job %s wrote its result but did not exit; killed after %g s", script_path.name, timeout
            )
        res.ok, res.result, res.timed_out = True, dict(data.get("result") or {}), False
    elif data is not None:
        err, etype = str(data.get("error") or "failed"), str(data.get("error_type") or "")
        res.error = err if not etype or etype == "JobError" or err.startswith(etype) else f"{etype}: {err}"
        res.traceback = str(data.get("traceback") or "")
        if etype and etype != "JobError":
            fix = "see the script traceback and the log tail below"
            if limits and limits.memory_bytes and etype == "MemoryError":
                fix = f"the job's memory limit ({limits.memory_bytes} bytes) was reached; {fix}"
    elif timed_out:
        res.error = f"timed out after {timeout:g} s (its process group was killed)"
        fix = "raise blender.timeout_s (env COMFY_AVATAR__BLENDER__TIMEOUT_S) or give it a smaller input"
    elif rc < 0:
        res.error = _signal_problem(rc, limits)
        fix = "see the log tail below; check the runtime with `python install.py --check`"
    else:
        res.error = f"Blender exited with code {rc} without writing a result"
        fix = "see the log tail below (a blender_cli script must call _job.run_job)"
    log.info("blender job %s: %s in %.2f s (exit %s)", script_path.name, "ok" if res.ok else "FAILED", duration, rc)
    if check and not res.ok:
        raise _error(res, script_path, fix)
    return res


def run_sync(make: Callable[[], Coroutine[Any, Any, T]], name: str = "blender-job") -> T:
    """Run the coroutine ``make()`` to completion from blocking code (scripts, tests, bench, sync
    nodes). Inside a running event loop (ComfyUI, Jupyter) it runs in a worker thread with its own loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def run_blender_sync(script: str | os.PathLike[str], args: dict[str, Any], **kwargs: Any) -> BlenderResult:
    """Blocking wrapper for scripts, tests and sync nodes; safe to call while a loop runs."""
    return run_sync(lambda: run_blender(script, args, **kwargs))


__all__ = [
    "BlenderRuntime",
    "BlenderResult",
    "ResourceLimits",
    "find_runtime",
    "run_blender",
    "run_blender_sync",
    "run_sync",
    "input_error",
    "resolve_script",
    "default_python",
    "clear_runtime_cache",
    "MIN_VERSION",
]
