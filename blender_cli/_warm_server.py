"""A persistent Blender for TRUSTED blender_cli/ scripts (runs INSIDE Blender: stdlib + bpy only).

Why: ``import bpy`` costs ~2 s and ~270 MB per launch, more than most of our jobs' real work.
This process imports bpy once and then runs our own scripts (rig_vrm.py, rigged_to_vrm.py,
export_asset.py, ...) one after another, each exactly as a one-shot launch would: the same
job.json / result.json protocol (_job.py; ``_job.WARM`` makes run_job return instead of
``os._exit``), cwd = the job's work dir, stdout+stderr into that job's own blender.log.

Started by core/runtime/warm_blender.py as ``python _warm_server.py`` (pip bpy runtime) and
spoken to in the JSON-lines protocol of comfy_avatar_nodes/workers/_protocol.py (one ready
handshake, then one request per stdin line, one reply per stdout line)::

    -> {"id": "..", "op": "run", "args": {"script": "/abs/rig_vrm.py", "job": "/abs/job.json",
                                          "cwd": "/abs/work", "log": "/abs/blender.log"}}
    <- {"id": "..", "ok": true, "result": {"returncode": 0, "rss_bytes": ..., "jobs": 3}}

What keeps one job from changing the next one's output:
- before every job the scene goes back to factory settings (``read_factory_settings(use_empty=True)``,
  which also resets preferences and disables add-ons) and the VRM add-on is enabled again;
- every module loaded from blender_cli/ (or anything else imported by the job) is dropped from
  sys.modules afterwards, so module-level state never carries over; bpy, numpy and the
  add-on stay (that is the point);
- sys.argv, cwd, os.environ and the fds are restored after each job.
A crash (segfault) ends this process; the parent fails that job and starts a fresh worker.
Untrusted, model-written scripts never come here (core/runtime/warm_blender.py refuses them).
"""

from __future__ import annotations

import json
import os
import resource
import runpy
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _rss_bytes() -> int:
    """Current resident set (not the peak): what the parent compares with blender.warm_max_rss_mb."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Channel:
    """The protocol stream on a private copy of fd 1; fd 1 itself goes to stderr (the worker log),
    so prints from bpy or a job never break the stream."""

    def __init__(self) -> None:
        sys.stdout.flush()
        fd = os.dup(1)
        os.dup2(2, 1)
        self._out = os.fdopen(fd, "w", encoding="utf-8", buffering=1)

    def send(self, msg: dict) -> None:
        self._out.write(json.dumps(msg, default=str) + "\n")
        self._out.flush()


def _reset(bpy) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    try:
        bpy.ops.preferences.addon_enable(module="io_scene_vrm")
    except Exception:  # noqa: BLE001 - the scripts report a missing add-on themselves, per job
        traceback.print_exc()


def _run(bpy, job_mod, args: dict, keep_modules: set[str]) -> dict:
    script, job, cwd, log = args["script"], args["job"], args["cwd"], args["log"]
    saved_fds = (os.dup(1), os.dup(2))
    saved_argv, saved_cwd, saved_env = list(sys.argv), os.getcwd(), dict(os.environ)
    saved_path = list(sys.path)
    rc = 1
    logf = open(log, "ab", buffering=0)  # noqa: SIM115 - closed in the finally below
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(logf.fileno(), 1)
        os.dup2(logf.fileno(), 2)
        _reset(bpy)
        job_mod.LAST_CODE = None
        sys.argv = [script, "--", "--job", job]
        os.chdir(cwd)
        try:
            runpy.run_path(script, run_name="__main__")
            rc = job_mod.LAST_CODE if job_mod.LAST_CODE is not None else 0
        except SystemExit as e:  # a script that exits before run_job
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - e.g. an import error before run_job: as a crashed launch
            traceback.print_exc()
            rc = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        logf.close()
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for name in [m for m in sys.modules if m not in keep_modules]:
            del sys.modules[name]
    return {"returncode": rc}


def main() -> None:
    start = time.perf_counter()
    chan = _Channel()
    import _job
    import bpy

    _job.WARM = True
    _reset(bpy)
    keep = set(sys.modules)  # bpy, numpy, the add-on, _job: everything a fresh job finds loaded
    jobs = 0
    chan.send(
        {
            "event": "ready",
            "ok": True,
            "protocol": 1,
            "pid": os.getpid(),
            "bpy": bpy.app.version_string,
            "startup_s": round(time.perf_counter() - start, 3),
            "rss_bytes": _rss_bytes(),
        }
    )
    for raw in sys.stdin:
        try:
            req = json.loads(raw)
        except ValueError:
            continue
        rid, op = req.get("id"), req.get("op")
        if op == "shutdown":
            break
        if op == "ping":
            chan.send({"id": rid, "ok": True, "result": {"jobs": jobs, "rss_bytes": _rss_bytes()}})
            continue
        if op != "run":
            chan.send({"id": rid, "ok": False, "error": f"unknown op {op!r}", "error_kind": "bad_op"})
            continue
        try:
            out = _run(bpy, _job, dict(req.get("args") or {}), keep)
        except Exception as e:  # noqa: BLE001 - the worker itself failed around the job
            chan.send(
                {
                    "id": rid,
                    "ok": False,
                    "error": f"{type(e).__name__}: {e}",
                    "error_kind": "exception",
                    "traceback": traceback.format_exc(),
                }
            )
            continue
        jobs += 1
        out.update(jobs=jobs, rss_bytes=_rss_bytes())
        chan.send({"id": rid, "ok": True, "result": out})
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # bpy as a module can hang on interpreter teardown


if __name__ == "__main__":
    main()
