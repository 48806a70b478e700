"""``comfy-avatar worker``: one per ComfyUI box, consuming the fleet's job queue.

Threads, and why:
- The connection thread owns the pika BlockingConnection and does nothing that blocks for
  long: it turns ``process_data_events`` (which also sends and checks heartbeats), takes
  deliveries, and runs the callbacks other threads hand it with
  ``add_callback_threadsafe`` (acks, confirmed publishes to retry/dead queues, events).
  pika is not thread-safe; this is its documented way to work from other threads. A job
  that ran on this thread would starve heartbeats: after ~2 heartbeat intervals the broker
  closes the connection and redelivers a job that is still running.
- ``concurrency`` job threads (prefetch = concurrency, manual acks) each run one JobRun.
  The ack goes out only after the outputs are stored and the record is final.
- A lease thread renews the leases of running jobs every lease_s/3 and picks up cancel
  requests recorded in the job database (a cancel sent while this worker was reconnecting).

When the broker connection drops (broker restart), running jobs go on; the worker
reconnects. Their messages were requeued by the broker, so their acks are not sent (the
delivery tags died with the connection): a redelivery to this worker joins the running job
and is acked when it ends; one to another worker is deferred by the lease.

Stop (SIGTERM / SIGINT): no new deliveries; running jobs may finish for ``drain_s``; then the
connection closes and whatever is unacked goes back to the queue.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pika

from ..client import ComfyClient
from ..errors import DriverError
from ..store import FAILED, RETRYING, JobStore
from .broker import CONNECTION_ERRORS, BrokerUnreachable, connect, declare, declare_retry_queue
from .jobrun import CANCEL, DEAD, DEFER, DROP, RETRY, SUCCESS, JobRun, Outcome
from .leases import Leases
from .messages import (
    CANCELLED,
    DEFERRED,
    FINISHED,
    H_ATTEMPT,
    H_ERROR,
    H_ERROR_CLASS,
    H_WORKER,
    MessageError,
    attempt_of,
    decode,
    event_body,
    retry_delay_ms,
    routing_key,
)
from .messages import (
    DEAD as DEAD_EVENT,
)
from .messages import (
    RETRY as RETRY_EVENT,
)
from .metrics import WorkerMetrics
from .settings import FleetSettings, WorkerSettings

log = logging.getLogger("comfy_avatar.driver.fleet.worker")


@dataclass
class _Active:
    run: JobRun
    props: pika.BasicProperties
    body: bytes
    deliveries: list[tuple[int, int]] = field(default_factory=list)  # (connection generation, delivery tag)
    started: bool = False


class Worker:
    def __init__(
        self, fleet: FleetSettings, settings: WorkerSettings, store: JobStore, *, metrics: WorkerMetrics | None = None
    ) -> None:
        self.fleet, self.settings, self.store = fleet, settings, store
        self.metrics = metrics or WorkerMetrics()
        self.metrics.concurrency.set(settings.concurrency)
        self.leases = Leases(store)
        self.executor = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="job")
        self._inflight: dict[str, _Active] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._gen = 0
        self._conn: pika.BlockingConnection | None = None
        self._ch: Any = None
        self._pub: Any = None
        self._events: Any = None
        self._retry_declared: set[int] = set()
        self._pending: set[Future[Any]] = set()
        self._info: tuple[float, dict[str, Any]] | None = None
        self._info_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def run(self) -> None:
        """Consume until stop(); reconnects to the broker with backoff."""
        lease_thread = threading.Thread(target=self._lease_loop, name="leases", daemon=True)
        lease_thread.start()
        backoff = 0.5
        try:
            while not self._stop.is_set():
                try:
                    self._session()
                    backoff = 0.5
                except (BrokerUnreachable, *CONNECTION_ERRORS) as e:
                    self.metrics.broker_up.set(0)
                    if self._stop.is_set():
                        break
                    log.warning(
                        "broker connection: %s; reconnecting in %.1f s",
                        e if isinstance(e, DriverError) else type(e).__name__,
                        backoff,
                    )
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                finally:
                    self._end_session()
        finally:
            self.executor.shutdown(wait=False, cancel_futures=True)
            log.info("worker %s stopped", self.settings.name)

    def _session(self) -> None:
        conn = connect(self.fleet, f"comfy-avatar-worker {self.settings.name}")
        ch = conn.channel()
        declare(ch, self.fleet)
        ch.basic_qos(prefetch_count=self.settings.concurrency)
        pub = conn.channel()
        pub.confirm_delivery()
        events = conn.channel()
        ctl = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
        ch.queue_bind(ctl, self.fleet.control_exchange)
        ch.basic_consume(ctl, self._on_control, auto_ack=True)
        with self._lock:
            self._gen += 1
            gen = self._gen
            self._conn, self._ch, self._pub, self._events = conn, ch, pub, events
            self._retry_declared = set()
        tag = ch.basic_consume(self.fleet.jobs_queue, partial(self._on_delivery, gen))
        self.metrics.broker_up.set(1)
        log.info(
            "worker %s consuming %s (concurrency %d) for %s",
            self.settings.name,
            self.fleet.jobs_queue,
            self.settings.concurrency,
            self.settings.server,
        )
        consuming, drain_until, next_depth = True, 0.0, 0.0
        while True:
            now = time.monotonic()
            if self._stop.is_set():
                if consuming:
                    ch.basic_cancel(tag)
                    consuming, drain_until = False, now + self.settings.drain_s
                    log.info(
                        "stopping: no new jobs; %d running may finish (up to %.0f s)",
                        self.in_flight,
                        self.settings.drain_s,
                    )
                if self.in_flight == 0 or now > drain_until:
                    conn.close()
                    return
            if now >= next_depth:
                next_depth = now + 5.0
                depth = ch.queue_declare(self.fleet.jobs_queue, passive=True).method.message_count
                self.metrics.queue_depth.labels(self.fleet.jobs_queue).set(depth)
            self.metrics.beat()
            conn.process_data_events(time_limit=0.2)

    def _end_session(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            self._ch = self._pub = self._events = None
            pending, self._pending = self._pending, set()
        for fut in pending:
            if not fut.done():
                fut.set_exception(BrokerUnreachable(self.fleet.broker_url, "the connection closed"))
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    # -- on the connection thread ------------------------------------------------------------
    def _on_delivery(self, gen: int, ch: Any, method: Any, props: pika.BasicProperties, body: bytes) -> None:
        try:
            msg = decode(body)
        except Exception as e:  # noqa: BLE001 - any message a worker cannot read is the message's fault
            # Whatever the bytes are, the message goes to the dead-letter queue and is acked:
            # an exception out of this callback would stop the worker, and the unacked
            # message would then stop every worker it is redelivered to.
            if not isinstance(e, MessageError):
                e = MessageError(
                    "job message", f"cannot be read ({type(e).__name__})", "publish it with comfy-avatar submit"
                )
            log.error("undecodable message %s: %s; dead-lettered", props.message_id, e)
            self._publish_dead_now(body, props, e.__class__.__name__, str(e))
            ch.basic_ack(method.delivery_tag)
            return
        with self._lock:
            active = self._inflight.get(msg.job_id)
            if active is not None:
                # A redelivery of a job this worker runs (after a reconnect): it joins the run
                # and is acked when the run ends.
                active.deliveries.append((gen, method.delivery_tag))
                log.info("job %s redelivered while running here; it stays one run", msg.job_id)
                return
            run = JobRun(
                msg,
                attempt_of(props.headers),
                self.fleet,
                self.settings,
                self.store,
                self.leases,
                self._publish_event,
                self._object_info,
            )
            active = _Active(run, props, body, [(gen, method.delivery_tag)])
            self._inflight[msg.job_id] = active
            self.metrics.in_flight.set(len(self._inflight))
        self.executor.submit(self._job_thread, active)

    def _on_control(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        try:
            d = json.loads(body)
        except (ValueError, RecursionError):  # anyone on the broker can publish here
            return
        if isinstance(d, dict) and d.get("type") == "cancel":
            with self._lock:
                active = self._inflight.get(str(d.get("job_id")))
            if active is not None:
                log.info("job %s: cancel requested", active.run.job_id)
                active.run.cancel()

    def _publish_dead_now(self, body: bytes, props: pika.BasicProperties, err_class: str, error: str) -> None:
        headers = {
            **(props.headers or {}),
            H_ERROR: error[:4000],
            H_ERROR_CLASS: err_class,
            H_WORKER: self.settings.name,
        }
        self._pub.basic_publish(
            "",
            self.fleet.dead_queue,
            body,
            pika.BasicProperties(
                content_type="application/json", delivery_mode=2, message_id=props.message_id, headers=headers
            ),
            mandatory=True,
        )

    def _publish_retry_now(self, active: _Active, attempt: int, delay_ms: int, err_class: str, error: str) -> None:
        if delay_ms not in self._retry_declared:
            declare_retry_queue(self._pub, self.fleet, delay_ms)
            self._retry_declared.add(delay_ms)
        p = active.props
        headers = {
            **(p.headers or {}),
            H_ATTEMPT: attempt,
            H_ERROR: error[:4000],
            H_ERROR_CLASS: err_class,
            H_WORKER: self.settings.name,
        }
        self._pub.basic_publish(
            "",
            self.fleet.retry_queue(delay_ms),
            active.body,
            pika.BasicProperties(
                content_type="application/json",
                delivery_mode=2,
                priority=p.priority,
                message_id=p.message_id,
                headers=headers,
                expiration=str(delay_ms),
            ),
            mandatory=True,
        )

    # -- handing work to the connection thread ------------------------------------------------
    def _call(self, fn: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Run ``fn`` on the connection thread and wait for its result."""
        fut: Future[Any] = Future()
        with self._lock:
            conn = self._conn
            if conn is None or not conn.is_open:
                raise BrokerUnreachable(self.fleet.broker_url, "not connected")
            self._pending.add(fut)

        def cb() -> None:
            if fut.done():
                return
            try:
                fut.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
                fut.set_exception(e)

        try:
            conn.add_callback_threadsafe(cb)
            return fut.result(timeout)
        except CONNECTION_ERRORS as e:
            raise BrokerUnreachable(self.fleet.broker_url, f"connection lost ({type(e).__name__})") from None
        finally:
            with self._lock:
                self._pending.discard(fut)

    def _publish_event(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        """Best effort, not waited for: progress is never worth slowing a job."""
        body = event_body(job_id, kind, data, self.settings.name)
        with self._lock:
            conn = self._conn
        if conn is None or not conn.is_open:
            return

        def cb() -> None:
            ch = self._events
            if ch is not None and ch.is_open:
                try:
                    ch.basic_publish(
                        self.fleet.events_exchange,
                        routing_key(job_id, kind),
                        body,
                        pika.BasicProperties(content_type="application/json", delivery_mode=1),
                    )
                except CONNECTION_ERRORS as e:
                    log.debug("event not published: %s", e)

        try:
            conn.add_callback_threadsafe(cb)
        except CONNECTION_ERRORS:
            pass

    def _ack(self, active: _Active) -> None:
        """Ack every delivery of this job on the current connection (older ones died with
        their connection and were requeued; their copies come back and are dropped)."""
        with self._lock:
            gen = self._gen
        tags = [t for g, t in active.deliveries if g == gen]
        if not tags:
            log.info(
                "job %s ended, but its delivery died with an earlier connection; the redelivered copy will be dropped",
                active.run.job_id,
            )
            return

        def ack() -> None:
            for t in tags:
                self._ch.basic_ack(t)

        self._call(ack)

    # -- job threads ---------------------------------------------------------------------------
    def _job_thread(self, active: _Active) -> None:
        run = active.run
        try:
            if self._stop.is_set():
                self._requeue(active)
                return
            active.started = True
            outcome = run.execute()
            self._settle(active, outcome)
        except Exception:  # noqa: BLE001 - never lose the thread silently
            log.exception("job %s: settling failed; the broker will redeliver it", run.job_id)
        finally:
            if run.holds_lease:
                try:
                    self.leases.release(run.job_id, self.settings.lease_owner)
                except DriverError as e:
                    log.warning("job %s: lease not released (%s); it expires by itself", run.job_id, e)
            with self._lock:
                self._inflight.pop(run.job_id, None)
                self.metrics.in_flight.set(len(self._inflight))

    def _requeue(self, active: _Active) -> None:
        with self._lock:
            gen = self._gen
        tags = [t for g, t in active.deliveries if g == gen]
        if tags:
            self._call(lambda: [self._ch.basic_nack(t, requeue=True) for t in tags])

    def _settle(self, active: _Active, out: Outcome) -> None:
        run, msg = active.run, active.run.msg
        attempt = run.attempt
        if out.kind == RETRY and attempt >= self.fleet.max_attempts:
            out = Outcome(
                DEAD,
                f"{out.error} (gave up after {attempt} attempts)",
                out.error_class,
                duration_s=out.duration_s,
                workflow=out.workflow,
            )
        if out.kind == RETRY:
            delay = retry_delay_ms(attempt, self.fleet.retry_base_s, self.fleet.retry_max_s)
            self._call(lambda: self._publish_retry_now(active, attempt + 1, delay, out.error_class, out.error))
            self.store.set_status(
                msg.job_id,
                RETRYING,
                detail=f"attempt {attempt} failed ({out.error_class}); retry in {delay / 1000:g} s",
                error=out.error,
            )
            self._publish_event(
                msg.job_id,
                RETRY_EVENT,
                {"attempt": attempt, "delay_s": delay / 1000, "error": out.error, "error_class": out.error_class},
            )
            log.warning(
                "job %s: attempt %d failed, retry in %g s: %s",
                msg.job_id,
                attempt,
                delay / 1000,
                out.error.splitlines()[0],
            )
        elif out.kind == DEFER:
            self._call(lambda: self._publish_retry_now(active, attempt, out.delay_ms, out.error_class, out.error))
            self._publish_event(msg.job_id, DEFERRED, {"delay_s": out.delay_ms / 1000, "why": out.error})
            log.info("job %s deferred %.1f s: %s", msg.job_id, out.delay_ms / 1000, out.error)
        elif out.kind == DEAD:
            self._call(lambda: self._publish_dead_now(active.body, active.props, out.error_class, out.error))
            self.store.set_status(
                msg.job_id, FAILED, detail=f"dead-lettered ({out.error_class}) by {self.settings.name}", error=out.error
            )
            self._publish_event(msg.job_id, DEAD_EVENT, {"error": out.error, "error_class": out.error_class})
            log.error("job %s dead-lettered: %s", msg.job_id, out.error.splitlines()[0] if out.error else "")
        elif out.kind == SUCCESS:
            self._publish_event(
                msg.job_id, FINISHED, {"status": "succeeded", "outputs": out.outputs, "duration_s": out.duration_s}
            )
            log.info("job %s succeeded in %.2f s (%d output file(s))", msg.job_id, out.duration_s, len(out.outputs))
        elif out.kind == CANCEL:
            self._publish_event(msg.job_id, CANCELLED, {"why": out.error})
            log.info("job %s cancelled", msg.job_id)
        elif out.kind == DROP:
            log.info("job %s: dropped a copy (%s)", msg.job_id, out.error)
        if out.kind not in (DROP, DEFER):
            self.metrics.ended(
                msg.workflow_name,
                msg.priority,
                out.kind,
                out.error_class if out.kind in (RETRY, DEAD) else "",
                out.duration_s,
                out.timings,
                out.node_types,
            )
        self._ack(active)

    # -- leases and cancel requests -----------------------------------------------------------
    def _lease_loop(self) -> None:
        every = max(0.2, self.fleet.lease_s / 3)
        while not self._stop.wait(every) or self.in_flight:
            with self._lock:
                runs = [a.run for a in self._inflight.values()]
            held = [r.job_id for r in runs if r.holds_lease]
            try:
                lost = self.leases.renew(held, self.settings.lease_owner, self.fleet.lease_s) if held else []
                for jid in lost:
                    log.warning("job %s: lease lost (this worker looked dead to another one)", jid)
                for r in runs:
                    if not r.cancelled.is_set() and r.holds_lease:
                        status, requested = self.store.status_of(r.job_id)
                        if requested or status == "cancelled":
                            log.info("job %s: cancel recorded in the job database", r.job_id)
                            r.cancel()
            except DriverError as e:
                log.warning("lease renewal failed: %s", e)
            except Exception as e:  # noqa: BLE001 - a DB hiccup must not stop renewals
                log.warning("lease renewal failed: %s", type(e).__name__)
            if self._stop.is_set() and not self.in_flight:
                return

    def _object_info(self) -> dict[str, Any]:
        """This worker's server's /object_info, cached 5 minutes (for converting editor
        workflows and typing --set values)."""
        with self._info_lock:
            if self._info is None or time.monotonic() - self._info[0] > 300:
                with ComfyClient(self.settings.server, timeout=60) as c:
                    self._info = (time.monotonic(), c.object_info())
            return self._info[1]
