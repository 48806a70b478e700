"""The job protocol shared by every script in blender_cli/ (runs INSIDE Blender: stdlib + bpy only).

The runner (comfy_avatar_nodes/core/runtime/blender.py) starts a script as either
    blender --background --factory-startup --python-exit-code 1 --python SCRIPT -- --job JOB.json
or  python SCRIPT -- --job JOB.json          (a Python 3.11 with pip bpy)
JOB.json: {"args": {...}, "result": "/abs/result.json", "work_dir": "/abs/dir"}

A script does:
    import os, sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _job import run_job
    def main(args: dict, work_dir: str) -> dict: ...
    run_job(main)

run_job writes {"ok": true, "result": <main's dict>, "duration_s": x} or
{"ok": false, "error": "...", "error_type": "...", "traceback": "..."} to the result path
(temp file + rename) and exits 0 or 1.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

# Set by _warm_server.py: the script runs inside a persistent Blender worker, so run_job must
# return (with the exit code in LAST_CODE) instead of ending the process.
WARM = False
LAST_CODE: int | None = None


class Timer:
    """Per-step wall times for a script's result: ``timer.lap("import")`` after each step
    (a name used twice adds up)."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.steps[name] = round(self.steps.get(name, 0.0) + now - self._t, 4)
        self._t = now


class JobError(Exception):
    """Raise inside a script for an error the user can act on (message shown as is)."""


def _job_path(argv: list[str]) -> str:
    rest = argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]
    if len(rest) >= 2 and rest[0] == "--job":
        return rest[1]
    raise SystemExit("usage: SCRIPT -- --job JOB.json")


def write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.part"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)


def run_job(main: Callable[[dict, str], dict]) -> None:
    with open(_job_path(sys.argv), encoding="utf-8") as f:
        job = json.load(f)
    start = time.perf_counter()
    try:
        result = main(job.get("args", {}), job["work_dir"])
        out = {"ok": True, "result": result or {}, "duration_s": time.perf_counter() - start}
        code = 0
    except BaseException as e:  # report everything, including SystemExit from bpy ops
        out = {
            "ok": False,
            "error": str(e) or type(e).__name__,
            "error_type": type(e).__name__,
            "traceback": traceback.format_exc(),
            "duration_s": time.perf_counter() - start,
        }
        code = 1
    write_json(job["result"], out)
    sys.stdout.flush()
    sys.stderr.flush()
    global LAST_CODE
    LAST_CODE = code
    if WARM:
        return
    # bpy as a module can hang on interpreter teardown; leave at once.
    os._exit(code)
