"""Events: ComfyUI's websocket messages for one prompt, and the batch runner's own.

``parse_frame`` turns a raw websocket frame into an :class:`Event`; a
:class:`JobTracker` follows the events of one prompt_id and knows which nodes ran,
which were cached, the current node's step, per-node timings and whether the
prompt finished. One tracker per prompt, so several prompts can share one socket
(the batch runner multiplexes them by ``event.prompt_id``).

A :class:`BatchEvent` is the same shape one level up: what happened to a batch or
to one of its jobs (``JOB_*`` / ``BATCH_*`` types), for displays, ``--json`` and tests.

Facts from ComfyUI 0.3.64 (server.py, execution.py, main.py) this relies on:
- ``execution_success`` is sent BEFORE /history is written; ``executing`` with
  ``node: null`` and our prompt_id is sent AFTER it. Only the latter ends a prompt.
- On a reconnect the server replays ``executing {node}`` WITHOUT a prompt_id.
- Cached output nodes resend ``executed``; cached upstream nodes send nothing.
- Binary frames start with a big-endian u32 type (1 preview, 3 progress text,
  4 preview with JSON metadata).
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PREVIEW_IMAGE = 1
UNENCODED_PREVIEW_IMAGE = 2
PROGRESS_TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4
_IMAGE_FORMATS = {1: "jpeg", 2: "png"}

# Events the driver itself emits (not sent by ComfyUI) so callers can show them.
SUBMITTED = "driver_submitted"
WS_DROPPED = "driver_ws_dropped"
WS_RECONNECTED = "driver_ws_reconnected"
HISTORY_POLL = "driver_history_poll"
RESUBMITTED = "driver_resubmitted"


@dataclass(frozen=True)
class Event:
    """One message: ``type`` is ComfyUI's message type (or a driver_* type)."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    prompt_id: str | None = None
    t: float = field(default_factory=time.monotonic)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form (binary payloads replaced by their size)."""
        data = {k: (f"<{len(v)} bytes>" if isinstance(v, (bytes, bytearray)) else v) for k, v in self.data.items()}
        return {"type": self.type, "prompt_id": self.prompt_id, "data": data}


EventCallback = Callable[[Event, "JobTracker"], None]

# Batch event types. job_* events carry the job's id, index, label and prompt_id.
BATCH_STARTED, BATCH_FINISHED = "batch_started", "batch_finished"
JOB_SUBMITTED, JOB_RUNNING, JOB_PROGRESS, JOB_FINISHED = "job_submitted", "job_running", "job_progress", "job_finished"
JOB_WAITING, JOB_RETRY, JOB_RESUBMITTED, JOB_ADOPTED = "job_waiting", "job_retry", "job_resubmitted", "job_adopted"
JOB_WS_DROPPED, JOB_WS_RECONNECTED, JOB_HISTORY_POLL = "job_ws_dropped", "job_ws_reconnected", "job_history_poll"


@dataclass(frozen=True)
class BatchEvent:
    """One thing that happened in a batch: ``type`` is a BATCH_* or JOB_* constant,
    ``data`` what the type carries (see BatchRunner). ``job`` is None for batch_* events."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    job: str | None = None
    index: int | None = None
    label: str = ""
    prompt_id: str | None = None
    t: float = field(default_factory=time.monotonic)

    def to_json(self) -> dict[str, Any]:
        """The flat JSON object ``batch --json`` prints: type, the job's fields, then data."""
        head: dict[str, Any] = {"type": self.type}
        if self.job is not None:
            head.update(job=self.job, index=self.index, label=self.label, prompt_id=self.prompt_id)
        return {**head, **self.data}


BatchEventSink = Callable[[BatchEvent], None]


def parse_frame(frame: str | bytes | bytearray) -> Event | None:
    """Parse one websocket frame; None for frames that carry nothing usable."""
    if isinstance(frame, (bytes, bytearray)):
        return _parse_binary(bytes(frame))
    try:
        msg = json.loads(frame)
    except ValueError:
        return None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        return None
    data = msg.get("data")
    if not isinstance(data, dict):
        data = {}
    pid = data.get("prompt_id")
    return Event(msg["type"], data, pid if isinstance(pid, str) else None)


def _parse_binary(frame: bytes) -> Event | None:
    if len(frame) < 4:
        return None
    (kind,) = struct.unpack(">I", frame[:4])
    body = frame[4:]
    if kind in (PREVIEW_IMAGE, UNENCODED_PREVIEW_IMAGE) and len(body) >= 4:
        (fmt,) = struct.unpack(">I", body[:4])
        return Event("preview", {"format": _IMAGE_FORMATS.get(fmt, str(fmt)), "image": body[4:]})
    if kind == PROGRESS_TEXT and len(body) >= 4:
        (n,) = struct.unpack(">I", body[:4])
        node = body[4 : 4 + n].decode("utf-8", "replace")
        text = body[4 + n :].decode("utf-8", "replace")
        return Event("progress_text", {"node": node, "text": text})
    if kind == PREVIEW_IMAGE_WITH_METADATA and len(body) >= 4:
        (n,) = struct.unpack(">I", body[:4])
        try:
            meta = json.loads(body[4 : 4 + n])
        except ValueError:
            meta = {}
        meta = meta if isinstance(meta, dict) else {}
        pid = meta.get("prompt_id")
        data = {
            "format": meta.get("image_type", ""),
            "node": meta.get("node_id"),
            "image": body[4 + n :],
            "metadata": meta,
        }
        return Event("preview", data, pid if isinstance(pid, str) else None)
    return Event("binary", {"kind": kind, "size": len(body)})


class JobTracker:
    """State of one prompt, fed with the events of its prompt_id (see ``apply``)."""

    def __init__(self, prompt_id: str, prompt: dict[str, Any] | None = None) -> None:
        self.prompt_id = prompt_id
        self.node_types: dict[str, str] = {
            str(k): str(v.get("class_type", "?")) for k, v in (prompt or {}).items() if isinstance(v, dict)
        }
        self.titles: dict[str, str] = {
            str(k): str((v.get("_meta") or {}).get("title") or "")
            for k, v in (prompt or {}).items()
            if isinstance(v, dict)
        }
        self.started = False
        self.done = False
        self.success_seen = False
        self.cached: set[str] = set()
        self.finished: set[str] = set()
        self.current: str | None = None
        self.step: tuple[float, float] | None = None
        self.timings: dict[str, float] = {}
        self.ui_outputs: dict[str, dict[str, Any]] = {}
        self.error: dict[str, Any] | None = None
        self.interrupted: dict[str, Any] | None = None
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.queue_remaining: int | None = None
        self.t_submit = time.monotonic()
        self.t_start: float | None = None
        self.t_end: float | None = None
        self._node_t0: float | None = None

    # -- derived state -------------------------------------------------------------
    @property
    def total(self) -> int:
        return max(len(self.node_types), len(self.finished | self.cached))

    @property
    def nodes_done(self) -> int:
        return len(self.finished | self.cached)

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        if self.interrupted is not None:
            return "interrupted"
        if self.done:
            return "success"
        return "running" if self.started else "pending"

    def label(self, node: str | None) -> str:
        """'3 KSampler "My title"' style label for messages."""
        if node is None:
            return "-"
        parts = [str(node), self.node_types.get(node, "")]
        title = self.titles.get(node)
        if title and title != self.node_types.get(node):
            parts.append(f'"{title}"')
        return " ".join(p for p in parts if p)

    # -- feeding ---------------------------------------------------------------------
    def apply(self, ev: Event) -> bool:
        """Update from one event; True when the event belongs to this prompt."""
        if ev.type == "status":
            info = (ev.data.get("status") or {}).get("exec_info") or {}
            if isinstance(info.get("queue_remaining"), int):
                self.queue_remaining = info["queue_remaining"]
            return False
        if ev.prompt_id != self.prompt_id:
            return False
        d = ev.data
        if ev.type in (
            "execution_start",
            "execution_cached",
            "execution_success",
            "execution_error",
            "execution_interrupted",
        ):
            self.messages.append((ev.type, d))
        if ev.type == "execution_start":
            self._start(ev.t)
        elif ev.type == "execution_cached":
            self._start(ev.t)
            self.cached.update(str(n) for n in d.get("nodes") or [])
        elif ev.type == "executing":
            self._start(ev.t)
            node = d.get("node")
            self._enter(None if node is None else str(node), ev.t)
            if node is None:
                self.done = True
                self.t_end = ev.t
        elif ev.type == "progress":
            node = d.get("node")
            if node is not None and str(node) == self.current:
                self.step = (float(d.get("value") or 0), float(d.get("max") or 0))
        elif ev.type == "progress_state":
            # Newer ComfyUI (0.4+) reports node progress here too; the V3 progress API
            # (execution.set_progress) sends only this, never a plain "progress" message.
            for nid, st in (d.get("nodes") or {}).items():
                if not isinstance(st, dict):
                    continue
                if st.get("state") == "finished":
                    self.finished.add(str(nid))
                elif st.get("state") == "running" and str(nid) == self.current and float(st.get("max") or 0) > 1:
                    self.step = (float(st.get("value") or 0), float(st.get("max") or 0))
        elif ev.type == "executed":
            node = d.get("node")
            if node is not None and isinstance(d.get("output"), dict):
                self.ui_outputs[str(node)] = d["output"]
        elif ev.type == "execution_success":
            self.success_seen = True
        elif ev.type == "execution_error":
            self.error = dict(d)
        elif ev.type == "execution_interrupted":
            self.interrupted = dict(d)
        return True

    def apply_replay(self, node: str | None, t: float | None = None) -> None:
        """A reconnect replays ``executing {node}`` without a prompt_id: the caller
        knows (from /queue) that this prompt is the one running and hands it here."""
        if node is not None:
            self._start(t or time.monotonic())
            self._enter(str(node), t or time.monotonic())

    def finish_from_history(self, entry: dict[str, Any]) -> None:
        """Complete the state from a /history entry (authoritative when present)."""
        status = entry.get("status") or {}
        for name, data in status.get("messages") or []:
            if not isinstance(data, dict):
                continue
            if (name, data) not in self.messages:
                self.messages.append((name, data))
            if name == "execution_cached":
                self.cached.update(str(n) for n in data.get("nodes") or [])
            elif name == "execution_error" and self.error is None:
                self.error = dict(data)
            elif name == "execution_interrupted" and self.interrupted is None:
                self.interrupted = dict(data)
            elif name == "execution_success":
                self.success_seen = True
        if status.get("status_str") == "error" and self.error is None and self.interrupted is None:
            self.error = {
                "node_id": "?",
                "node_type": "?",
                "exception_type": "",
                "exception_message": "ComfyUI recorded the prompt as failed without an error message",
            }
        outputs = entry.get("outputs")
        if isinstance(outputs, dict):
            self.ui_outputs.update({str(k): v for k, v in outputs.items() if isinstance(v, dict)})
        self.started = True
        if self.current is not None:
            self._enter(None, time.monotonic())
        if self.error is None and self.interrupted is None:
            # A successful prompt executed every node it needed.
            self.finished.update(n for n in self.node_types if n not in self.cached)
        self.done = True
        self.t_end = self.t_end or time.monotonic()

    def _start(self, t: float) -> None:
        if not self.started:
            self.started = True
            self.t_start = t

    def _enter(self, node: str | None, t: float) -> None:
        if node == self.current:
            return
        if self.current is not None and self._node_t0 is not None:
            self.timings[self.current] = self.timings.get(self.current, 0.0) + (t - self._node_t0)
            if self.error is None or str(self.error.get("node_id")) != self.current:
                self.finished.add(self.current)
        self.current = node
        self.step = None
        self._node_t0 = t if node is not None else None
