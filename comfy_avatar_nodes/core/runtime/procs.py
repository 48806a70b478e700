"""Child-process helpers shared by the Blender runner and the model workers."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Protocol

IS_POSIX = os.name == "posix"
LOG_TAIL_LINES = 40
# Environment variables that would make a child's Python load another interpreter's modules.
PYTHON_ENV_DROP = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONEXECUTABLE")


class _HasPid(Protocol):
    # Read-only members, so both subprocess.Popen and asyncio's Process match.
    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...


def kill_group(proc: _HasPid) -> None:
    """SIGKILL the process group a child leads (it was started with start_new_session=True),
    so nothing it spawned outlives it. Safe to call after the child has exited."""
    if IS_POSIX:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # group already empty
    elif proc.returncode is None:
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, check=False)


def tail_file(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a log file (long lines cut), '' when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(line if len(line) <= 500 else line[:500] + " ..." for line in text)
