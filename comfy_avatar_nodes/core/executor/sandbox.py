"""Run untrusted, model-written Blender scripts: hostile until proven otherwise.

The boundary is the operating system, not Python (core/runtime/isolation.py):

1. **OS isolation** (``sandbox.isolation: bwrap``, the default): the script's Blender runs
   under bubblewrap in its own user, pid, net, ipc, uts and cgroup namespaces with a seccomp
   filter, seeing only the Blender runtime (read-only), system libraries, a private /tmp and
   its work dir (/job); no network, no other process, no secret. Where bubblewrap cannot run,
   a script is refused (:class:`IsolationUnavailable`, with the fix), never run unisolated.
2. **The parent trusts nothing the job can touch**: output over a pipe into a log outside
   the work dir (capped), result.json and the outputs read only as regular files inside the
   work dir (no symlinks on the way, size-capped), copied out, the work dir removed; its
   size and file count are watched while the job runs. The outputs are the job's own bytes,
   so each is checked on the host as data before it is handed on (:mod:`.output_check`: a
   self-contained, well-formed GLB; a .blend without text blocks, scripted drivers or
   library links) and refused otherwise.
3. **The process**: rlimits (CPU seconds, address space, file size, process count), a pids
   cgroup of ``sandbox.nproc`` tasks (binds root, which RLIMIT_NPROC does not), a work dir
   that is a tmpfs of ``sandbox.work_mb``, a wall-clock timeout that kills the job's whole
   pid namespace, an environment with only PATH/LANG-style variables.
4. **A static pass** (:func:`check_script` / :func:`advise`): with OS isolation it refuses only
   what will certainly fail (a syntax error) and gives advice for what the sandbox will stop
   (network, processes, writes outside the work dir), so ordinary scripts (os.path, sys.argv,
   pathlib, json ...) run and the repair loop is not spent on false alarms.

``sandbox.isolation: none`` (never the default; warned on every run) drops layer 1 and runs
the old in-process layers instead: the strict static check (imports outside
:data:`ALLOWED_IMPORTS`, code loading, introspection refused) and, inside Blender, the audit
hook, operator guard and restricted builtins of blender_cli/_sandbox_guard.py. Those are a
best effort that a determined script gets past; use it only where nobody untrusted reaches
the prompt.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import BlenderSettings, SandboxSettings, load_settings
from ..errors import AvatarError
from ..runtime import isolation
from ..runtime.blender import SCRIPTS_DIR, BlenderRuntime, ResourceLimits, find_runtime, run_blender
from ..runtime.isolation import IsolationUnavailable
from ..secrets import is_secret_env
from . import output_check

log = logging.getLogger("comfy_avatar.sandbox")

STAGE = "Blender executor"
FORMATS = ("glb", "fbx", "blend")
ISOLATION_MODES = ("bwrap", "none")
# The imports the strict check (isolation: none) allows; with OS isolation any module may be imported.
ALLOWED_IMPORTS = (
    "bpy",
    "bmesh",
    "mathutils",
    "math",
    "random",
    "os",
    "sys",
    "pathlib",
    "json",
    "colorsys",
    "itertools",
    "functools",
    "collections",
    "dataclasses",
    "enum",
    "typing",
    "statistics",
    "copy",
    "operator",
    "string",
    "fractions",
    "decimal",
    "heapq",
    "bisect",
    "numpy",
    "bpy_extras",
    "re",
    "time",
)
# Modules that cannot work in the sandbox (no network, no new processes): advice, not refusal.
NO_NETWORK_MODULES = (
    "socket",
    "ssl",
    "http",
    "urllib",
    "requests",
    "httpx",
    "aiohttp",
    "ftplib",
    "smtplib",
    "poplib",
    "imaplib",
    "telnetlib",
    "webbrowser",
    "xmlrpc",
    "websocket",
    "websockets",
)
NO_PROCESS_MODULES = ("subprocess", "multiprocessing", "pty")
NO_PROCESS_CALLS = (
    "system",
    "popen",
    "fork",
    "forkpty",
    "spawnl",
    "spawnlp",
    "spawnv",
    "spawnvp",
    "execv",
    "execve",
    "execvp",
    "execl",
    "execlp",
    "posix_spawn",
    "posix_spawnp",
)
DENIED_NAMES = frozenset(
    {
        "__import__",
        "exec",
        "eval",
        "compile",
        "open",
        "input",
        "breakpoint",
        "globals",
        "locals",
        "vars",
        "__builtins__",
        "__loader__",
        "__spec__",
        "help",
        "exit",
        "quit",
        "memoryview",
    }
)
# getattr-family builtins: allowed only with a constant, harmless attribute name.
ATTR_CALLS = frozenset({"getattr", "setattr", "delattr", "hasattr"})
DENIED_ATTRS = frozenset(
    {
        # frame / code / generator introspection (ways back to unrestricted globals)
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_back",
        "f_code",
        "f_trace",
        "gi_frame",
        "gi_code",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "tb_frame",
        "tb_next",
        "co_code",
        "func_globals",
        "mro",
        # bpy APIs that read/write files, run code or register callbacks outside the script
        "save",
        "save_as",
        "save_render",
        "save_as_mainfile",
        "save_mainfile",
        "open_mainfile",
        "load",
        "reload",
        "filepath",
        "filepath_raw",
        "libraries",
        "handlers",
        "driver_namespace",
        "timers",
        "as_module",
        "python_file_run",
        "execfile",
        "url_open",
        "path_open",
        "utils",
        "write",
        "unpack",
        "pack_all",
        # numpy file I/O and native access
        "tofile",
        "fromfile",
        "savetxt",
        "savez",
        "savez_compressed",
        "loadtxt",
        "genfromtxt",
        "memmap",
        "ctypeslib",
        "ctypes",
        "DataSource",
        # os/sys-style escapes if a module object leaks in
        "system",
        "popen",
        "spawn",
        "fork",
        "modules",
        "subprocess",
        "socket",
        "execv",
        "execve",
        "killpg",
        "posix_spawn",
        "spawnv",
    }
)
_ENV_KEEP = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_NUMERIC",
    "TZ",
    "TERM",
    "SYSTEMROOT",
    "OCIO",
    "BLENDER_SYSTEM_SCRIPTS",
    "BLENDER_SYSTEM_DATAFILES",
    "BLENDER_SYSTEM_PYTHON",
    "LD_LIBRARY_PATH",
    "DISPLAY",
)
BLOCK_PREFIX = "SANDBOX BLOCKED: "


class ScriptRefused(AvatarError):
    """The static check refused a script; ``violations`` has (line, message) pairs."""

    def __init__(self, violations: list[tuple[int, str]]) -> None:
        self.violations = violations
        shown = "; ".join(f"line {ln}: {msg}" for ln, msg in violations[:8])
        more = f" (+{len(violations) - 8} more)" if len(violations) > 8 else ""
        super().__init__(
            f"{STAGE} (static check)",
            f"the script was refused before running: {shown}{more}",
            "fix the line(s) named; without OS isolation (sandbox.isolation: none) scripts may "
            f"only import {', '.join(ALLOWED_IMPORTS[:9])} ... and use no code loading, processes, "
            "network or introspection",
        )


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def check_script(
    source: str, allowed_imports: tuple[str, ...] = ALLOWED_IMPORTS, *, strict: bool = False
) -> list[tuple[int, str]]:
    """What stops a script before it runs: [] when it may run, else (line, problem) pairs.

    Default (OS isolation contains the script): only what will certainly fail, a syntax error.
    ``strict`` (sandbox.isolation: none, where nothing else contains it): also imports outside
    ``allowed_imports``, code-loading builtins, dunder/private attributes, introspection, bpy
    file/handler APIs and getattr with computed names, each with its line.
    """
    try:
        tree = ast.parse(source, filename="generated_script.py")
    except SyntaxError as e:
        return [(e.lineno or 0, f"syntax error: {e.msg}")]
    if not strict:
        return []
    allowed = set(allowed_imports)
    out: list[tuple[int, str]] = []

    def bad(node: ast.AST, msg: str) -> None:
        out.append((getattr(node, "lineno", 0), msg))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] not in allowed or a.name.startswith(("bpy.utils", "bpy.app.handlers")):
                    bad(node, f"import of {a.name!r} is not allowed")
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level or mod.split(".")[0] not in allowed:
                bad(node, f"import from {'.' * node.level}{mod!r} is not allowed")
            for a in node.names:
                if a.name == "*" or a.name.startswith("_") or a.name in DENIED_ATTRS:
                    bad(node, f"importing {a.name!r} from {mod!r} is not allowed")
        elif isinstance(node, ast.Name):
            if node.id in DENIED_NAMES:
                bad(node, f"use of {node.id!r} is not allowed")
            elif node.id.startswith("__") and node.id != "__name__":
                bad(node, f"use of the dunder name {node.id!r} is not allowed")
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                bad(node, f"access to the private/dunder attribute {node.attr!r} is not allowed")
            elif node.attr in DENIED_ATTRS:
                bad(node, f"access to {node.attr!r} is not allowed (files, code loading or introspection)")
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            if isinstance(node.func, ast.Name) and name in ATTR_CALLS:
                arg = node.args[1] if len(node.args) > 1 else None
                if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                    bad(node, f"{name}() with a computed attribute name is not allowed")
                elif arg.value.startswith("_") or arg.value in DENIED_ATTRS:
                    bad(node, f"{name}() with attribute {arg.value!r} is not allowed")
            for kw in node.keywords:
                if kw.arg and kw.arg.startswith("_"):
                    bad(node, f"passing the private keyword {kw.arg}= is not allowed")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.search(r"__\w+__", node.value) and any(
                k in node.value
                for k in (
                    "__import__",
                    "__builtins__",
                    "__globals__",
                    "__subclasses__",
                    "__class__",
                    "__base__",
                    "__mro__",
                    "__code__",
                    "__dict__",
                )
            ):
                bad(node, "a string naming a dunder attribute is not allowed")
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            continue
    out.sort()
    return out


def _module_of(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and not node.level:
        return [node.module or ""]
    return []


def advise(source: str) -> list[tuple[int, str]]:
    """Advice, not refusal: (line, note) for what the sandbox will certainly stop, so the coder
    model hears it with the error instead of guessing. [] for a script that does not parse."""
    try:
        tree = ast.parse(source, filename="generated_script.py")
    except SyntaxError:
        return []
    notes: list[tuple[int, str]] = []

    def note(node: ast.AST, msg: str) -> None:
        item = (getattr(node, "lineno", 0), msg)
        if item not in notes:
            notes.append(item)

    for node in ast.walk(tree):
        for mod in _module_of(node):
            top = mod.split(".")[0]
            if top in NO_NETWORK_MODULES:
                note(node, f"{mod}: the sandbox has no network, so nothing can be fetched or sent")
            elif top in NO_PROCESS_MODULES:
                note(node, f"{mod}: the sandbox cannot start processes (fork/exec are refused)")
        if isinstance(node, ast.Call):
            name = _call_name(node)
            if isinstance(node.func, ast.Attribute) and name in NO_PROCESS_CALLS:
                note(node, f"{name}(): the sandbox cannot start processes")
            if name == "quit_blender":
                note(node, "quit_blender ends Blender before the executor exports the scene; remove it")
            if name == "input":
                note(node, "input(): there is no one to answer (stdin is empty)")
            if name in ("open", "write_text", "write_bytes", "mkdir", "makedirs"):
                consts = [
                    a.value
                    for a in [*node.args, *(k.value for k in node.keywords)]
                    if isinstance(a, ast.Constant) and isinstance(a.value, str)
                ]
                writes = name != "open" or any(set(c) & set("wax+") and len(c) <= 3 for c in consts[1:])
                for c in consts[:1]:
                    if writes and c.startswith("/") and not c.startswith(("/job", "/tmp")):
                        note(
                            node,
                            f"{c!r} is outside the work dir: only the current folder (the work dir, "
                            "COMFY_AVATAR_OUTPUT_DIR) and /tmp are writable",
                        )
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("handlers", "timers")
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "app"
        ):
            if node.attr == "timers":
                note(node, "bpy.app.timers never fire: the script runs once, headless, then the scene is exported")
            else:  # save_pre and depsgraph handlers do fire during the executor's export: say what that costs
                note(
                    node,
                    "bpy.app.handlers: load, frame and render handlers never fire (the script runs once, headless); "
                    "a save or depsgraph handler runs during the export, and an output it plants code in is refused",
                )
        if (
            isinstance(node, ast.While)
            and isinstance(node.test, ast.Constant)
            and node.test.value is True
            and not any(isinstance(n, (ast.Break, ast.Return)) for n in ast.walk(node))
        ):
            note(node, "a `while True` loop without break never ends: the script will hit the timeout")
    return sorted(notes)


def safe_env(work_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Only harmless variables (PATH, locale ...); never anything secret-looking."""
    src = dict(os.environ if base is None else base)
    env = {k: v for k, v in src.items() if k in _ENV_KEEP and not is_secret_env(k)}
    env.setdefault("PATH", "/usr/bin:/bin")
    home, tmp = work_dir / "home", work_dir / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    env.update(
        {
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "TMP": str(tmp),
            "TEMP": str(tmp),
            "LANG": env.get("LANG", "C.UTF-8"),
            "MALLOC_ARENA_MAX": "2",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
        }
    )
    return env


def limits(sandbox: SandboxSettings) -> ResourceLimits:
    """The process limits of the sandbox settings (0 = no limit of that kind)."""
    mb = 1024 * 1024
    return ResourceLimits(
        cpu_s=int(sandbox.cpu_s) or None,
        memory_bytes=int(sandbox.memory_mb) * mb or None,
        fsize_bytes=int(sandbox.fsize_mb) * mb or None,
        nproc=int(sandbox.nproc) or None,
    )


@dataclass
class SandboxRun:
    """One script run. ``ok`` False carries ``stage`` ("static check" / "blender"), ``error``
    and the log tail; ``outputs`` maps format -> file copied out of the (removed) work dir.
    ``isolation``: "bwrap" or "none"; ``advice``: the static pass's notes ("line N: ...")."""

    ok: bool
    stage: str
    error: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    log_tail: str = ""
    blocked: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    timed_out: bool = False
    work_dir: str = ""  # already removed when run_script returns
    isolation: str = ""
    advice: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _blocked_lines(log_text: str) -> list[str]:
    seen: list[str] = []
    for line in log_text.splitlines():
        if line.startswith(BLOCK_PREFIX):
            item = line[len(BLOCK_PREFIX) :].strip()
            if item not in seen:
                seen.append(item)
    return seen


def _read_log(path: Path, max_bytes: int = 256 * 1024) -> str:
    """The tail of the job's log: a file the parent wrote from the job's pipe, outside the work dir."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return data.decode("utf-8", "replace")


def jail_for(sandbox: SandboxSettings, runtime: BlenderRuntime, blender: BlenderSettings) -> isolation.Jail:
    """How this script runs: under bubblewrap (sandbox.isolation: bwrap), refused with the fix
    where that cannot run; or, with sandbox.isolation: none, unisolated with a warning."""
    mode = sandbox.isolation.strip().lower()
    if mode not in ISOLATION_MODES:
        raise AvatarError(
            "sandbox.isolation (COMFY_AVATAR__SANDBOX__ISOLATION)",
            f"{sandbox.isolation!r} is not a mode",
            f"use one of {', '.join(ISOLATION_MODES)} (bwrap is the default and the only isolated one)",
        )
    work_mb, tmp_mb = max(16, sandbox.work_mb), max(16, sandbox.tmp_mb)
    if mode == "none":
        log.warning(
            "sandbox.isolation is 'none': this model-written script runs WITHOUT OS isolation, contained only "
            "by in-process guards that a determined script can get past; set sandbox.isolation: bwrap"
        )
        return isolation.Jail(work_mb=work_mb, tmp_mb=tmp_mb)
    status = isolation.check(sandbox.bwrap)
    if not status.ok:
        raise IsolationUnavailable(
            STAGE,
            "model-written scripts run only under OS isolation, and bubblewrap cannot "
            f"run here: {status.problem}. The script was not run",
            status.fix,
        )
    extra = [str(SCRIPTS_DIR)]
    if runtime.kind == "binary":
        extra.append(str(Path(blender.runtime_dir) / "blender-addons"))
    roots = isolation.runtime_roots(runtime.kind, str(runtime.executable), tuple(p for p in extra if Path(p).is_dir()))
    # the memory cgroup holds the address-space budget plus the memory-backed mounts (/job, /tmp, /dev/shm)
    memory_max = int(sandbox.memory_mb) + work_mb + tmp_mb + isolation.Jail.shm_mb if sandbox.memory_mb else 0
    return isolation.Jail(
        bwrap=status.bwrap,
        ro_paths=roots,
        work_mb=work_mb,
        tmp_mb=tmp_mb,
        pids_max=max(0, int(sandbox.nproc)),
        memory_max_mb=memory_max,
    )


async def run_script(
    source: str,
    *,
    out_dir: str | os.PathLike[str],
    name: str = "asset",
    formats: tuple[str, ...] | list[str] = ("glb",),
    sandbox: SandboxSettings | None = None,
    runtime: BlenderRuntime | None = None,
    static_check: bool = True,
    keep_log: str | os.PathLike[str] | None = None,
    blender: BlenderSettings | None = None,
) -> SandboxRun:
    """Check and run ``source`` in a fresh work dir; copy the exported files to ``out_dir``.

    Never raises for a failing script (the repair loop needs the failure): the returned
    :class:`SandboxRun` says what happened. Raises :class:`AvatarError` only for the
    caller's mistakes (bad formats, an unknown sandbox.isolation), a missing Blender runtime
    and missing OS isolation (:class:`IsolationUnavailable`: the script is not run).
    ``sandbox`` / ``blender``: the limits and the runtime's settings (loaded when None).
    """
    fmts = [f.lower().lstrip(".") for f in formats]
    bad = [f for f in fmts if f not in FORMATS]
    if not fmts or bad:
        raise AvatarError("formats", f"{bad or 'none'} not supported", f"choose from {', '.join(FORMATS)}")
    if sandbox is None or blender is None:
        loaded = load_settings()
        sandbox, blender = sandbox or loaded.sandbox, blender or loaded.blender
    runtime = runtime or find_runtime(blender)
    jail = jail_for(sandbox, runtime, blender)
    mode = "bwrap" if jail.isolated else "none"
    start = time.perf_counter()
    advice = [f"line {ln}: {msg}" for ln, msg in advise(source)]
    if static_check:
        violations = check_script(source, strict=not jail.isolated)
        if violations:
            err = ScriptRefused(violations)
            return SandboxRun(
                False,
                "static check",
                error=f"{err.problem}",
                duration_s=time.perf_counter() - start,
                isolation=mode,
                advice=advice,
            )
    base = Path(tempfile.mkdtemp(prefix="comfy-avatar-sandbox-")).resolve()
    work = base / "job"  # the job sees only this; its log and nothing else of ours sits beside it in base
    work.mkdir()
    try:
        (work / "generated_script.py").write_text(source, encoding="utf-8")
        res = await run_blender(
            "sandbox_exec.py",
            {
                "script": "generated_script.py",
                "formats": fmts,
                "name": name,
                "guard": not jail.isolated,
                "allowed_imports": list(ALLOWED_IMPORTS),
            },
            work_dir=work,
            timeout_s=sandbox.timeout_s,
            runtime=runtime,
            env=safe_env(work),
            limits=limits(sandbox),
            check=False,
            blender=blender,
            jail=jail,
        )
        log_text = _read_log(res.log_path)
        if keep_log:
            Path(keep_log).parent.mkdir(parents=True, exist_ok=True)
            Path(keep_log).write_text(log_text, encoding="utf-8")
        blocked = _blocked_lines(log_text) if not jail.isolated else []
        run = SandboxRun(
            res.ok,
            "blender",
            log_tail=res.log_tail,
            blocked=blocked,
            duration_s=time.perf_counter() - start,
            timed_out=res.timed_out,
            result=res.result,
            work_dir=str(work),
            isolation=mode,
            advice=advice,
        )
        if res.timed_out:
            run.error = (
                f"the script did not finish within {sandbox.timeout_s:g} s (endless loop or too much "
                "work); its processes were killed"
            )
        elif not res.ok:
            run.error = _explain(res.error, sandbox)
        if blocked and run.ok:
            run.ok = False
            run.error = "the script tried something the sandbox blocks: " + "; ".join(blocked[:5])
        elif blocked and not any(b in run.error for b in blocked):
            run.error += " (sandbox blocked: " + "; ".join(blocked[:5]) + ")"
        if run.ok:
            dest = Path(out_dir)
            dest.mkdir(parents=True, exist_ok=True)
            cap = int(sandbox.fsize_mb) * 1024 * 1024 or (1 << 40)
            for fmt in fmts:  # where the exporter writes; the job's own result names nothing we read
                rel = f"out/{name}.{fmt}"
                target = dest / f"{name}.{fmt}"
                try:
                    isolation.copy_out(work, rel, target, cap)
                except isolation.UntrustedFile as e:
                    run.ok, run.error = False, f"the {fmt} output could not be taken from the work dir: {e}"
                    break
                problem = _check_output(fmt, target)
                if problem:  # the job's own bytes: never handed on unchecked
                    target.unlink(missing_ok=True)
                    run.ok, run.error = False, f"the {fmt} output was refused: {problem}"
                    break
                run.outputs[fmt] = str(target)
            if not run.ok:
                for path in run.outputs.values():
                    Path(path).unlink(missing_ok=True)
                run.outputs = {}
        if not run.ok and advice:
            run.error += " (static advice: " + "; ".join(advice[:5]) + ")"
        return run
    finally:
        if not isolation.remove_tree(base):
            log.warning("could not remove the sandbox work dir %s", base)


def _check_output(fmt: str, path: Path) -> str:
    """What is wrong with an output the job handed back ("" = nothing), read as data on the host
    (core/executor/output_check.py); FBX has no loader-side code paths and is only size-capped."""
    try:
        if fmt == "glb":
            return output_check.check_glb(path)
        if fmt == "blend":
            return output_check.check_blend(path)
    except OSError as e:
        return f"it could not be read ({e.strerror})"
    return ""


def _explain(error: str, sandbox: SandboxSettings) -> str:
    low = error.lower()
    if "sigxcpu" in low:
        return f"the script used more than {sandbox.cpu_s} CPU seconds and was killed ({error})"
    if "memoryerror" in low or "out of memory" in low:
        return f"the script ran out of memory (limit {sandbox.memory_mb} MB, sandbox.memory_mb)"
    if "sigxfsz" in low or "file too large" in low:
        return f"the script wrote a file larger than {sandbox.fsize_mb} MB: {error}"
    if "no space left on device" in low:
        return (
            f"{error} (the work dir holds at most sandbox.work_mb={sandbox.work_mb} MB, /tmp sandbox.tmp_mb="
            f"{sandbox.tmp_mb} MB: write less, or raise the limit)"
        )
    if "read-only file system" in low:
        return (
            f"{error} (in the sandbox only the current folder, the work dir with COMFY_AVATAR_OUTPUT_DIR, and "
            "/tmp are writable)"
        )
    if "operation not permitted" in low:
        return (
            f"{error} (the sandbox refuses new processes, network sockets and calls that reach outside it; "
            "build the object with bpy/bmesh only)"
        )
    return error
