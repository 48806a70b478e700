"""serve's one broker connection for job events, shared by every websocket client.

A thread owns a pika connection and one exclusive queue; it binds ``job.<id>.*`` while at
least one client follows that job and unbinds after, and hands each event to the
subscribers' asyncio queues with ``loop.call_soon_threadsafe``. One connection for the
whole API instead of one per browser tab; pika's work stays on its own thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from typing import Any

from .broker import CONNECTION_ERRORS, BrokerUnreachable, connect, declare
from .messages import parse_event
from .settings import FleetSettings

log = logging.getLogger("comfy_avatar.driver.fleet.hub")


class EventHub:
    def __init__(self, settings: FleetSettings) -> None:
        self.settings = settings
        self._subs: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]]]]] = defaultdict(set)
        self._lock = threading.Lock()
        self._changes: list[tuple[str, str]] = []  # ("bind"|"unbind", job id), done on the hub thread
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="event-hub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def subscribe(self, job_id: str) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
        with self._lock:
            first = not self._subs[job_id]
            self._subs[job_id].add((asyncio.get_running_loop(), q))
            if first:
                self._changes.append(("bind", job_id))
        return q

    def unsubscribe(self, job_id: str, q: asyncio.Queue[dict[str, Any]]) -> None:
        with self._lock:
            self._subs[job_id] = {s for s in self._subs[job_id] if s[1] is not q}
            if not self._subs[job_id]:
                del self._subs[job_id]
                self._changes.append(("unbind", job_id))

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._session()
                backoff = 0.5
            except (BrokerUnreachable, *CONNECTION_ERRORS) as e:
                self.connected.clear()
                log.warning("event hub: broker connection lost (%s); reconnecting", type(e).__name__)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _session(self) -> None:
        conn = connect(self.settings, "comfy-avatar-serve-events")
        try:
            ch = conn.channel()
            declare(ch, self.settings)
            q = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
            with self._lock:
                bound = set(self._subs)
                self._changes.clear()
            for jid in bound:
                ch.queue_bind(q, self.settings.events_exchange, routing_key=f"job.{jid}.*")
            ch.basic_consume(q, self._deliver, auto_ack=True)
            self.connected.set()
            while not self._stop.is_set():
                with self._lock:
                    changes, self._changes = self._changes, []
                for op, jid in changes:
                    key = f"job.{jid}.*"
                    if op == "bind":
                        ch.queue_bind(q, self.settings.events_exchange, routing_key=key)
                    else:
                        ch.queue_unbind(q, self.settings.events_exchange, routing_key=key)
                conn.process_data_events(time_limit=0.1)
        finally:
            self.connected.clear()
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def _deliver(self, _ch: Any, _method: Any, _props: Any, body: bytes) -> None:
        evt = parse_event(body)
        if evt is None:
            return
        with self._lock:
            subs = list(self._subs.get(str(evt.get("job_id")), ()))
        for loop, q in subs:
            try:
                loop.call_soon_threadsafe(_put, q, evt)
            except RuntimeError:  # the client's loop is gone
                pass


def _put(q: asyncio.Queue[dict[str, Any]], evt: dict[str, Any]) -> None:
    try:
        q.put_nowait(evt)
    except asyncio.QueueFull:
        pass
