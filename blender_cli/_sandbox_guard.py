"""Runtime guard for untrusted scripts, installed INSIDE Blender by sandbox_exec.py (stdlib + bpy only).

Three layers, all installed before the script's code runs:

1. ``sys.addaudithook``: blocks, for the rest of the process's life, file writes and file-system
   changes outside the job's work dir, reads of other processes' /proc entries and of files
   outside the runtime's own folders, sockets and other network clients, subprocesses,
   os.system / exec* / spawn* / fork / posix_spawn, signals to other processes, ctypes
   (except Blender's own bundled libraries), gc object walking and extra audit hooks.
   A hook cannot be removed once added; its policy lives in closure cells of a function
   that nothing else references.
2. A guard around bpy's operator dispatcher (``bpy.ops._op_call``): operators that run
   code, reach the network or change preferences are refused, and every file path an
   operator is given must lie inside the work dir (C-level exporters such as OBJ/STL/USD
   and .blend saving bypass the audit hook, so they are checked here).
3. Restricted builtins for the script itself: no open/exec/eval/compile/input/breakpoint,
   and ``__import__`` only for the allow-listed modules (Blender's own modules keep the
   real builtins, so exporters still import what they need).

Every refusal raises PermissionError("sandbox: ...") in the script AND writes one line
"SANDBOX BLOCKED: ..." to fd 2, which the parent reads from the log even if the script
swallows the exception.
"""

from __future__ import annotations

import builtins
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

BLOCK_PREFIX = "SANDBOX BLOCKED: "

# Operator families that run code, open URLs/paths, touch preferences/extensions (network),
# render to scene.render.filepath, or write files to paths they do not take as an argument.
DENY_OPS = (
    "script.",
    "text.",
    "preferences.",
    "extensions.",
    "wm.url_open",
    "wm.path_open",
    "wm.doc_view",
    "wm.save_userpref",
    "wm.read_userpref",
    "wm.save_homefile",
    "wm.quit_blender",
    "wm.recover",
    "wm.revert_mainfile",
    "render.",
    "image.save",
    "image.save_all_modified",
    "image.save_sequence",
    "file.",
    "sound.",
    "wm.console_toggle",
    "wm.call_panel",
)
PATH_KEYS = ("filepath", "directory", "filename", "path", "files", "dirpath", "filter_folder")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_NET_EVENTS = (
    "http.client.",
    "urllib.",
    "ftplib.",
    "smtplib.",
    "poplib.",
    "imaplib.",
    "nntplib.",
    "telnetlib.",
    "webbrowser.",
    "ssl.",
)
_PROC_EVENTS = (
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.startfile",
    "subprocess.Popen",
    "pty.spawn",
    "os.kill",
    "os.killpg",
    "signal.pthread_kill",
)
_FS_EVENTS = {  # event -> indexes of path arguments that must stay inside the work dir
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.link": (0, 1),
    "os.symlink": (1,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.chflags": (0,),
    "os.lchflags": (0,),
    "os.lchmod": (0,),
    "os.lchown": (0,),
    "os.truncate": (0,),
    "os.utime": (0,),
    "os.mkfifo": (0,),
    "os.mknod": (0,),
    "os.removexattr": (0,),
    "os.setxattr": (0,),
    "os.chdir": (0,),
    "shutil.copyfile": (1,),
    "shutil.copymode": (1,),
    "shutil.copystat": (1,),
    "shutil.copytree": (1,),
    "shutil.rmtree": (0,),
    "shutil.move": (0, 1),
    "shutil.chown": (0,),
    "shutil.make_archive": (0,),
    "shutil.unpack_archive": (1,),
    "tempfile.mkstemp": (0,),
    "tempfile.mkdtemp": (0,),
}
_DENY_EVENTS = (
    "gc.get_objects",
    "gc.get_referrers",
    "gc.get_referents",
    "sys.addaudithook",
    "sys.setprofile",
    "sys.settrace",
    "cpython._PySys_ClearAuditHooks",
    "os.setuid",
    "os.setgid",
    "resource.setrlimit",
    "resource.prlimit",
    "os.sched_setaffinity",
    "mmap.__new__",
    "sys.remote_exec",
    "winreg.",
)


def _real(path: Any) -> str | None:
    if isinstance(path, int) or path is None:
        return None  # an fd: the open that made it was checked
    try:
        return os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return ""


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def install_audit_hook(
    work_dir: str, *, extra_write: Iterable[str] = (), read_roots: Iterable[str] = (), dll_roots: Iterable[str] = ()
) -> None:
    """Add the process-wide audit hook. Call once, before running untrusted code."""
    write_roots = tuple(os.path.realpath(p) for p in (work_dir, *extra_write))
    reads = tuple(sorted({os.path.realpath(p) for p in (*write_roots, *read_roots) if p}))
    dlls = tuple(os.path.realpath(p) for p in dll_roots if p)
    own_pid = os.getpid()
    proc_self = (f"/proc/{own_pid}", "/proc/self", "/proc/thread-self")
    write2 = os.write
    deny_events = _DENY_EVENTS

    def deny(what: str) -> None:
        msg = f"sandbox: {what}"
        try:
            write2(2, (BLOCK_PREFIX + what + "\n").encode("utf-8", "replace"))
        except OSError:
            pass
        raise PermissionError(msg)

    def readable(p: str) -> bool:
        if p.startswith("/proc/"):
            first = p.split("/")[2]
            return _under(p, proc_self) or not first.isdigit()
        return _under(p, reads)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, 0))[:3]
            p = _real(path)
            if p is None:
                return
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & _WRITE_FLAGS)
            if writing and not _under(p, write_roots):
                deny(f"writing {p} (outside the work dir)")
            if not writing and not readable(p):
                deny(f"reading {p} (outside the work dir and the Blender runtime)")
            return
        if event in _FS_EVENTS:
            for i in _FS_EVENTS[event]:
                if i < len(args):
                    p = _real(args[i])
                    if p is not None and not _under(p, write_roots):
                        deny(f"{event} on {p} (outside the work dir)")
            return
        if event.startswith("socket.") or event.startswith(_NET_EVENTS):
            deny(f"network access ({event})")
        if event.startswith(_PROC_EVENTS):
            if event in ("os.kill", "os.killpg") and args and args[0] in (own_pid, 0):
                return
            deny(f"starting or signalling processes ({event})")
        if event.startswith("ctypes."):
            if event == "ctypes.dlopen":
                p = _real(args[0]) if args else ""
                if p and _under(p, dlls):
                    return
                deny(f"loading native library {args[0] if args else '?'} (ctypes)")
            if (
                event == "ctypes.dlsym"
                and len(args) > 1
                and isinstance(args[1], str)
                and args[1].startswith(("encoder", "decoder"))
            ):
                return  # Draco mesh compression bundled with the glTF exporter
            deny(f"native code access ({event})")
        if event.startswith(deny_events):
            deny(f"{event} is not allowed in generated scripts")

    sys.addaudithook(hook)


def install_ops_guard(work_dir: str) -> None:
    """Wrap bpy's operator dispatcher: refuse risky operator families and out-of-dir paths."""
    import bpy.ops as ops_mod  # the module bpy/ops.py

    real_call: Callable[..., Any] = ops_mod._op_call
    root = os.path.realpath(work_dir)
    deny_ops = DENY_OPS
    write2 = os.write

    def refuse(what: str) -> None:
        try:
            write2(2, (BLOCK_PREFIX + what + "\n").encode("utf-8", "replace"))
        except OSError:
            pass
        raise PermissionError(f"sandbox: {what}")

    def paths_in(value: Any) -> list[str]:
        if isinstance(value, (str, bytes)):
            return [os.fsdecode(value)] if value else []
        if isinstance(value, (list, tuple)):
            out: list[str] = []
            for item in value:
                out.extend(paths_in(item.get("name", "") if isinstance(item, dict) else item))
            return out
        return []

    def guarded_call(idname: str, kw: Any, *rest: Any) -> Any:
        if idname.startswith(deny_ops):
            refuse(f"operator bpy.ops.{idname} is not allowed in generated scripts")
        for key, value in dict(kw or {}).items():
            if key in PATH_KEYS or key.endswith(("path", "dir")):
                for p in paths_in(value):
                    full = os.path.realpath(os.path.join(os.getcwd(), p))
                    if not _under(full, (root,)):
                        refuse(f"bpy.ops.{idname}({key}={p!r}) points outside the work dir")
        return real_call(idname, kw, *rest)

    ops_mod._op_call = guarded_call


def restricted_builtins(allowed_imports: Iterable[str]) -> dict[str, Any]:
    """Builtins for the script's globals: no code loading or file access, imports allow-listed."""
    allowed = frozenset(allowed_imports)
    real_import = builtins.__import__

    def guarded_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        top = name.split(".")[0]
        if level != 0 or top not in allowed:
            msg = f"import of {name!r} is not allowed (allowed: {', '.join(sorted(allowed))})"
            try:
                os.write(2, (BLOCK_PREFIX + msg + "\n").encode())
            except OSError:
                pass
            raise ImportError(f"sandbox: {msg}")
        return real_import(name, globals, locals, fromlist, level)

    safe = {
        k: v
        for k, v in vars(builtins).items()
        if k
        not in (
            "open",
            "exec",
            "eval",
            "compile",
            "input",
            "breakpoint",
            "__import__",
            "help",
            "exit",
            "quit",
            "globals",
            "locals",
            "vars",
            "memoryview",
            "__loader__",
            "__spec__",
        )
    }
    safe["__import__"] = guarded_import
    return safe
