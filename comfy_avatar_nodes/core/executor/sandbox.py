"""Run untrusted, model-written Blender scripts: hostile until proven otherwise.

Layers (each one alone stops the common attacks; together they stop the tricks):

1. :func:`check_script` - a static AST check before anything runs: imports outside
   :data:`ALLOWED_IMPORTS`, code-loading builtins (``__import__``, exec, eval, compile, open
   ...), attribute names starting with ``_`` (``__subclasses__``, ``__globals__``,
   ``__builtins__``), frame/code introspection, bpy file/handler APIs, and getattr-style
   calls with computed or forbidden names are refused with their line numbers.
2. Runtime guards inside Blender (blender_cli/_sandbox_guard.py): an audit hook installed
   BEFORE the script runs (no writes outside the work dir, no sockets, subprocesses,
   os.system/exec/fork, ctypes), an operator guard (paths must stay in the work dir) and
   restricted builtins with an import allow-list.
3. The process: rlimits (CPU seconds, address space, file size, process count) and a
   wall-clock timeout from the runner, and an environment with only PATH/HOME/LANG-style
   variables (no keys, tokens, passwords, cloud credentials), HOME and TMPDIR inside the
   work dir.
4. The work dir is a fresh temp folder, removed after the run (outputs and the log are
   copied out first).
"""
from __future__ import annotations

import ast
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..runtime.blender import BlenderRuntime, ResourceLimits, run_blender
from ..secrets import is_secret_env
from ..config import Config, load_config
from ..errors import AvatarError

log = logging.getLogger("comfy_avatar.sandbox")

STAGE = "Blender executor"
FORMATS = ("glb", "fbx", "blend")
ALLOWED_IMPORTS = ("bpy", "bmesh", "mathutils", "math", "random", "colorsys", "itertools", "functools",
                   "collections", "dataclasses", "enum", "typing", "statistics", "copy", "operator",
                   "string", "fractions", "decimal", "heapq", "bisect", "numpy", "bpy_extras")
DENIED_NAMES = frozenset({
    "__import__", "exec", "eval", "compile", "open", "input", "breakpoint", "globals", "locals", "vars",
    "__builtins__", "__loader__", "__spec__", "help", "exit", "quit", "memoryview",
})
# getattr-family builtins: allowed only with a constant, harmless attribute name.
ATTR_CALLS = frozenset({"getattr", "setattr", "delattr", "hasattr"})
DENIED_ATTRS = frozenset({
    # frame / code / generator introspection (ways back to unrestricted globals)
    "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "f_trace", "gi_frame", "gi_code", "cr_frame",
    "cr_code", "ag_frame", "ag_code", "tb_frame", "tb_next", "co_code", "func_globals", "mro",
    # bpy APIs that read/write files, run code or register callbacks outside the script
    "save", "save_as", "save_render", "save_as_mainfile", "save_mainfile", "open_mainfile", "load", "reload",
    "filepath", "filepath_raw", "libraries", "handlers", "driver_namespace", "timers", "as_module",
    "python_file_run", "execfile", "url_open", "path_open", "utils", "write", "unpack", "pack_all",
    # numpy file I/O and native access
    "tofile", "fromfile", "savetxt", "savez", "savez_compressed", "loadtxt", "genfromtxt", "memmap",
    "ctypeslib", "ctypes", "DataSource",
    # os/sys-style escapes if a module object leaks in
    "system", "popen", "spawn", "fork", "environ", "getenv", "modules", "subprocess", "socket",
})
_ENV_KEEP = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_NUMERIC", "TZ", "TERM", "SYSTEMROOT",
             "OCIO", "BLENDER_SYSTEM_SCRIPTS", "BLENDER_SYSTEM_DATAFILES", "BLENDER_SYSTEM_PYTHON",
             "LD_LIBRARY_PATH", "DISPLAY")
BLOCK_PREFIX = "SANDBOX BLOCKED: "


class ScriptRefused(AvatarError):
    """The static check refused a script; ``violations`` has (line, message) pairs."""

    def __init__(self, violations: list[tuple[int, str]]) -> None:
        self.violations = violations
        shown = "; ".join(f"line {ln}: {msg}" for ln, msg in violations[:8])
        more = f" (+{len(violations) - 8} more)" if len(violations) > 8 else ""
        super().__init__(f"{STAGE} (static check)", f"the script was refused before running: {shown}{more}",
                         "generated scripts may only use bpy, bmesh, mathutils and plain math; no files, "
                         "processes, network or introspection")


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def check_script(source: str, allowed_imports: tuple[str, ...] = ALLOWED_IMPORTS) -> list[tuple[int, str]]:
    """Static check. Returns [] when the script may run, else (line, problem) pairs.
    A syntax error is returned as a violation too (with its line)."""
    try:
        tree = ast.parse(source, filename="generated_script.py")
    except SyntaxError as e:
        return [(e.lineno or 0, f"syntax error: {e.msg}")]
    allowed = set(allowed_imports)
    out: list[tuple[int, str]] = []

    def bad(node: ast.AST, msg: str) -> None:
        out.append((getattr(node, "lineno", 0), msg))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] not in allowed:
                    bad(node, f"import of {a.name!r} is not allowed")
                elif a.name.startswith(("bpy.utils", "bpy.app.handlers")):
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
                if kw.arg and (kw.arg.startswith("_") or kw.arg in ("filepath", "directory", "filename", "files")):
                    bad(node, f"passing a file path ({kw.arg}=) is not allowed; the executor saves the result")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.search(r"__\w+__", node.value) and any(
                    k in node.value for k in ("__import__", "__builtins__", "__globals__", "__subclasses__",
                                              "__class__", "__base__", "__mro__", "__code__", "__dict__")):
                bad(node, "a string naming a dunder attribute is not allowed")
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            continue
    out.sort()
    return out


def safe_env(work_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Only harmless variables (PATH, locale ...); never anything secret-looking."""
    src = dict(os.environ if base is None else base)
    env = {k: v for k, v in src.items()
           if k in _ENV_KEEP and not is_secret_env(k)}
    env.setdefault("PATH", "/usr/bin:/bin")
    home, tmp = work_dir / "home", work_dir / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    env.update({"HOME": str(home), "TMPDIR": str(tmp), "TMP": str(tmp), "TEMP": str(tmp),
                "LANG": env.get("LANG", "C.UTF-8"), "MALLOC_ARENA_MAX": "2", "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONNOUSERSITE": "1"})
    return env


@dataclass
class SandboxSettings:
    timeout_s: float = 180.0
    cpu_s: int = 240
    memory_mb: int = 6144
    fsize_mb: int = 512
    nproc: int = 512

    @classmethod
    def from_config(cls, cfg: Config | None = None, **override: Any) -> "SandboxSettings":
        cfg = cfg or load_config()
        vals = {k: cfg.get(f"sandbox.{k}", getattr(cls, k)) for k in ("timeout_s", "cpu_s", "memory_mb",
                                                                       "fsize_mb", "nproc")}
        vals.update({k: v for k, v in override.items() if v is not None})
        return cls(**vals)

    def limits(self) -> ResourceLimits:
        mb = 1024 * 1024
        return ResourceLimits(cpu_s=int(self.cpu_s) or None, memory_bytes=int(self.memory_mb) * mb or None,
                              fsize_bytes=int(self.fsize_mb) * mb or None, nproc=int(self.nproc) or None)


@dataclass
class SandboxRun:
    """One script run. ``ok`` False carries ``stage`` ("static check" / "blender"), ``error``
    and the log tail; ``outputs`` maps format -> file copied out of the (removed) work dir."""

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _blocked_lines(log_text: str) -> list[str]:
    seen: list[str] = []
    for line in log_text.splitlines():
        if line.startswith(BLOCK_PREFIX):
            item = line[len(BLOCK_PREFIX):].strip()
            if item not in seen:
                seen.append(item)
    return seen


def _read_log(path: Path, max_bytes: int = 256 * 1024) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-max_bytes:].decode("utf-8", "replace")


async def run_script(source: str, *, out_dir: str | os.PathLike[str], name: str = "asset",
                     formats: tuple[str, ...] | list[str] = ("glb",), settings: SandboxSettings | None = None,
                     runtime: BlenderRuntime | None = None, static_check: bool = True,
                     keep_log: str | os.PathLike[str] | None = None) -> SandboxRun:
    """Check and run ``source`` in a fresh work dir; copy the exported files to ``out_dir``.

    Never raises for a failing script (the repair loop needs the failure): the returned
    :class:`SandboxRun` says what happened. Raises :class:`AvatarError` only for the
    caller's mistakes (bad formats) and a missing Blender runtime.
    """
    fmts = [f.lower().lstrip(".") for f in formats]
    bad = [f for f in fmts if f not in FORMATS]
    if not fmts or bad:
        raise AvatarError("formats", f"{bad or 'none'} not supported", f"choose from {', '.join(FORMATS)}")
    settings = settings or SandboxSettings.from_config()
    start = time.perf_counter()
    if static_check:
        violations = check_script(source)
        if violations:
            err = ScriptRefused(violations)
            return SandboxRun(False, "static check", error=f"{err.problem}", duration_s=time.perf_counter() - start)
    work = Path(tempfile.mkdtemp(prefix="comfy-avatar-sandbox-")).resolve()
    try:
        (work / "generated_script.py").write_text(source, encoding="utf-8")
        res = await run_blender("sandbox_exec.py",
                                {"script": "generated_script.py", "formats": fmts, "name": name,
                                 "allowed_imports": list(ALLOWED_IMPORTS)},
                                work_dir=work, timeout_s=settings.timeout_s, runtime=runtime,
                                env=safe_env(work), limits=settings.limits(), check=False)
        log_text = _read_log(res.log_path)
        if keep_log:
            Path(keep_log).parent.mkdir(parents=True, exist_ok=True)
            Path(keep_log).write_text(log_text, encoding="utf-8")
        blocked = _blocked_lines(log_text)
        run = SandboxRun(res.ok, "blender", log_tail=res.log_tail, blocked=blocked,
                         duration_s=time.perf_counter() - start, timed_out=res.timed_out, result=res.result,
                         work_dir=str(work))
        if res.timed_out:
            run.error = (f"the script did not finish within {settings.timeout_s:g} s (endless loop or too much "
                         "work); its processes were killed")
        elif not res.ok:
            run.error = _explain(res.error, settings)
        if blocked and run.ok:
            run.ok = False
            run.error = "the script tried something the sandbox blocks: " + "; ".join(blocked[:5])
        elif blocked and not any(b in run.error for b in blocked):
            run.error += " (sandbox blocked: " + "; ".join(blocked[:5]) + ")"
        if run.ok:
            dest = Path(out_dir)
            dest.mkdir(parents=True, exist_ok=True)
            for fmt, rel in (res.result.get("files") or {}).items():
                src = (work / rel).resolve()
                if work not in src.parents or not src.is_file():
                    run.ok, run.error = False, f"the {fmt} output is missing from the work dir"
                    break
                final = dest / src.name
                tmp = dest / f".{src.name}.part"
                shutil.copyfile(src, tmp)
                os.replace(tmp, final)
                run.outputs[fmt] = str(final)
        return run
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _explain(error: str, settings: SandboxSettings) -> str:
    low = error.lower()
    if "sigxcpu" in low:
        return f"the script used more than {settings.cpu_s} CPU seconds and was killed ({error})"
    if "memoryerror" in low or "out of memory" in low:
        return f"the script ran out of memory (limit {settings.memory_mb} MB, sandbox.memory_mb)"
    if "sigxfsz" in low or "file too large" in low:
        return f"the script wrote a file larger than {settings.fsize_mb} MB: {error}"
    return error
