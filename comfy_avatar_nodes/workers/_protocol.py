"""The JSON-lines protocol every model worker speaks (stdlib only; runs in the model's Python).

The parent (core/runtime/workers.py) writes one request per line on the worker's stdin and reads
one message per line from its stdout::

    -> {"id": "7f..", "op": "image_to_mesh", "args": {...}}
    <- {"event": "progress", "id": "7f..", "fraction": 0.4, "message": "sampling"}
    <- {"id": "7f..", "ok": true, "result": {...}}
    <- {"id": "7f..", "ok": false, "error": "...", "error_kind": "...", "traceback": "..."}

Before any request the worker sends one handshake line::

    <- {"event": "ready", "ok": true, "protocol": 1, "pid": ..., "python": "3.11.9",
        "versions": {...}, "device": {...}, ...}
    <- {"event": "ready", "ok": false, "problems": [{"kind": "missing_weights", "message": ...}], ...}

and exits (code 3) after a failed one. Ops every worker has: ``ping`` and ``shutdown``.
EOF on stdin (the parent went away) ends the worker too. stdout is reserved for the
protocol: fd 1 is pointed at stderr before any model import, so library prints, tqdm and
child processes all land in the worker's stderr log instead of breaking the stream.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

PROTOCOL = 1
EXIT_PREFLIGHT = 3

Handler = Callable[[dict, "Request"], dict]


class WorkerFailure(Exception):
    """An expected failure with a machine-readable kind (the parent maps kinds to fixes)."""

    def __init__(self, kind: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.kind = kind
        self.extra = extra


class Preflight(Exception):
    """Startup found problems; ``problems`` lists every one, not just the first."""

    def __init__(self, problems: list[dict], info: dict | None = None) -> None:
        super().__init__("; ".join(p["message"] for p in problems))
        self.problems = problems
        self.info = info or {}


def problem(kind: str, message: str, **extra: Any) -> dict:
    return {"kind": kind, "message": message, **extra}


class Channel:
    """The protocol stream: a private copy of fd 1; fd 1 itself now goes to stderr."""

    def __init__(self) -> None:
        sys.stdout.flush()
        fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._out = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def send(self, msg: dict) -> None:
        line = json.dumps(msg, default=str)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


class Request:
    def __init__(self, channel: Channel, rid: Any) -> None:
        self._channel = channel
        self.id = rid

    def progress(self, fraction: float, message: str = "") -> None:
        self._channel.send({"event": "progress", "id": self.id, "fraction": float(fraction), "message": message})


def serve(startup: Callable[[], tuple[dict, dict[str, Handler]]]) -> int:
    """Run ``startup`` (preflight + model load), send the handshake, then answer requests.

    ``startup`` returns (handshake info, {op: handler}) or raises :class:`Preflight`.
    Returns the process exit code.
    """
    channel = Channel()
    base = {
        "event": "ready",
        "protocol": PROTOCOL,
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
    }
    started = time.monotonic()
    try:
        info, handlers = startup()
    except Preflight as e:
        channel.send({**base, **e.info, "ok": False, "problems": e.problems})
        return EXIT_PREFLIGHT
    except BaseException as e:  # noqa: BLE001 - any startup failure must reach the parent
        channel.send(
            {
                **base,
                "ok": False,
                "traceback": traceback.format_exc(),
                "problems": [problem("startup_error", f"{type(e).__name__}: {e}")],
            }
        )
        return EXIT_PREFLIGHT
    channel.send(
        {**base, **info, "ok": True, "ops": sorted(handlers), "startup_s": round(time.monotonic() - started, 3)}
    )

    served = 0
    while True:
        line = sys.stdin.readline()
        if not line:
            return 0  # parent closed stdin: it is gone or done with us
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request must be a JSON object")
        except ValueError as e:
            channel.send({"id": None, "ok": False, "error": f"bad request line: {e}", "error_kind": "bad_request"})
            continue
        rid, op, args = req.get("id"), req.get("op"), req.get("args") or {}
        if op == "shutdown":
            channel.send({"id": rid, "ok": True, "result": {"served": served}})
            return 0
        if op == "ping":
            channel.send(
                {
                    "id": rid,
                    "ok": True,
                    "result": {"pid": os.getpid(), "served": served, "uptime_s": round(time.monotonic() - started, 3)},
                }
            )
            continue
        handler = handlers.get(op)
        if handler is None:
            channel.send(
                {
                    "id": rid,
                    "ok": False,
                    "error_kind": "bad_request",
                    "error": f"unknown op {op!r}; this worker knows {sorted(handlers) + ['ping', 'shutdown']}",
                }
            )
            continue
        served += 1
        try:
            result = handler(args if isinstance(args, dict) else {}, Request(channel, rid))
            channel.send({"id": rid, "ok": True, "result": result})
        except WorkerFailure as e:
            channel.send(
                {
                    "id": rid,
                    "ok": False,
                    "error": str(e),
                    "error_kind": e.kind,
                    "traceback": traceback.format_exc(),
                    **e.extra,
                }
            )
        except Exception as e:  # noqa: BLE001 - report, keep serving (the model stays loaded)
            channel.send(
                {
                    "id": rid,
                    "ok": False,
                    "error": f"{type(e).__name__}: {e}",
                    "error_kind": "exception",
                    "traceback": traceback.format_exc(),
                }
            )
