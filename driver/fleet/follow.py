"""Following a job from anywhere: its events from the topic exchange, drawn like a local run.

The worker publishes ComfyUI's events of the job with a snapshot of its JobTracker (nodes
done, current node, step). A follower binds an exclusive queue to ``job.<id>.*`` and
rebuilds a tracker from those snapshots, so the same progress displays as ``comfy-avatar
run`` (driver.progress: bars, log lines, JSON) show the same thing, and a follower that
joins late is right from its first event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..events import Event, JobTracker
from .broker import connect, declare
from .messages import COMFY, FINAL_KINDS, STARTED, parse_event
from .settings import FleetSettings

log = logging.getLogger("comfy_avatar.driver.fleet.follow")


def follow(
    settings: FleetSettings,
    job_id: str,
    on_event: Callable[[dict[str, Any]], bool],
    *,
    ready: Callable[[], bool] | None = None,
    idle: Callable[[], bool] | None = None,
    timeout_s: float | None = None,
) -> bool:
    """Deliver the job's events to ``on_event`` until it returns True (final event).

    ``ready()`` runs once the queue is bound (nothing can be missed from then on); it returns
    True when the job already ended (then nothing is consumed). ``idle()`` runs every second
    without an event; True ends the wait. Returns False on timeout."""
    conn = connect(settings, f"comfy-avatar-follow {job_id[:12]}")
    try:
        ch = conn.channel()
        declare(ch, settings)
        q = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
        ch.queue_bind(q, settings.events_exchange, routing_key=f"job.{job_id}.*")
        if ready is not None and ready():
            return True
        deadline = time.monotonic() + timeout_s if timeout_s else None
        for method, _props, body in ch.consume(q, auto_ack=True, inactivity_timeout=1.0):
            if method is None:
                if (idle is not None and idle()) or (deadline is not None and time.monotonic() > deadline):
                    return idle is not None and idle()
                continue
            evt = parse_event(body)
            if evt is not None and on_event(evt):
                return True
        return False
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass


def apply_snapshot(tracker: JobTracker, snap: dict[str, Any]) -> None:
    """Set a follower's tracker from a worker's snapshot (messages.tracker_snapshot)."""
    nodes = snap.get("nodes")
    if isinstance(nodes, dict):
        set_nodes(tracker, nodes)
    tracker.started = bool(snap.get("started"))
    tracker.done = bool(snap.get("done"))
    tracker.current = snap.get("current")
    step = snap.get("step")
    tracker.step = (float(step[0]), float(step[1])) if isinstance(step, list) and len(step) == 2 else None
    tracker.finished = {str(n) for n in snap.get("finished") or []}
    tracker.cached = {str(n) for n in snap.get("cached") or []}
    if isinstance(snap.get("queue_remaining"), int):
        tracker.queue_remaining = snap["queue_remaining"]


def set_nodes(tracker: JobTracker, nodes: dict[str, Any]) -> None:
    for k, v in nodes.items():
        if isinstance(v, list) and v:
            tracker.node_types[str(k)] = str(v[0])
            tracker.titles[str(k)] = str(v[1] if len(v) > 1 else "")


class Follower:
    """Feeds fleet events into a driver.progress display (``progress(event, tracker)``);
    ``say`` gets the fleet's own lines (started on, retry, dead...)."""

    def __init__(self, job_id: str, progress: Callable[[Event, JobTracker], None], say: Callable[[str], None]) -> None:
        self.job_id = job_id
        self.tracker = JobTracker(job_id)
        self.progress, self.say = progress, say
        self.final: dict[str, Any] | None = None

    def __call__(self, evt: dict[str, Any]) -> bool:
        kind, data = evt.get("kind"), evt.get("data") or {}
        if kind == STARTED:
            self.tracker.prompt_id = str(data.get("prompt_id") or self.tracker.prompt_id)
            if isinstance(data.get("nodes"), dict):
                set_nodes(self.tracker, data["nodes"])
            self.say(
                f"job {self.job_id}: running on {data.get('server')} (worker {data.get('worker')}, "
                f"attempt {data.get('attempt')})"
            )
        elif kind == COMFY:
            e = data.get("event") or {}
            if isinstance(data.get("job"), dict):
                apply_snapshot(self.tracker, data["job"])
            if e.get("prompt_id"):
                self.tracker.prompt_id = str(e["prompt_id"])
            self.progress(Event(str(e.get("type") or "?"), e.get("data") or {}, e.get("prompt_id")), self.tracker)
        elif kind in FINAL_KINDS:
            self.final = evt
            return True
        elif kind == "retry":
            self.say(
                f"job {self.job_id}: attempt {data.get('attempt')} failed ({data.get('error_class')}); "
                f"retry in {data.get('delay_s')} s"
            )
        elif kind == "deferred":
            self.say(f"job {self.job_id}: waiting ({data.get('why')})")
        elif kind == "queued":
            self.say(f"job {self.job_id}: queued ({data.get('priority')} priority)")
        return False
