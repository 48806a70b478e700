"""RabbitMQ through pika: connections, the fleet's topology, confirmed publishing.

Topology (names from FleetSettings.prefix, everything durable so a broker restart keeps it):

    <p>.jobs          classic queue, x-max-priority 9: the work. Messages are persistent
                      (delivery_mode 2) and published with publisher confirms.
    <p>.retry.<ms>    one queue per retry delay, no consumer: a message waits there for its
                      per-message TTL (expiration = <ms>), then is dead-lettered back to
                      <p>.jobs (x-dead-letter-exchange "" + routing key <p>.jobs). One delay per
                      queue because RabbitMQ expires messages only at the head of a queue: a
                      10-minute message in front would hold back a 5-second one behind it.
    <p>.dead          the dead-letter queue: permanent failures, with the error in headers.
    <p>.events        topic exchange: job.<id>.<kind> progress events (transient, no queue of
                      its own; each follower binds an exclusive queue to job.<id>.*).
    <p>.control       fanout exchange: cancel requests; each worker binds an exclusive queue.

Errors name the broker with its password hidden.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions as pex
from pika.adapters.blocking_connection import BlockingChannel

from ..errors import DriverError
from .messages import H_ATTEMPT, JobMessage, encode
from .settings import MAX_PRIORITY, FleetSettings, redact_url

log = logging.getLogger("comfy_avatar.driver.fleet.broker")

CONNECTION_ERRORS = (
    pex.AMQPConnectionError,
    pex.ChannelClosed,
    pex.ChannelWrongStateError,
    pex.ConnectionWrongStateError,
    pex.StreamLostError,
    OSError,
)


class BrokerUnreachable(DriverError):
    """The broker did not answer (down, restarting, wrong URL): transient."""

    transient = True

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(
            f"RabbitMQ broker {redact_url(url)}",
            problem,
            "start rabbitmq-server there, or pass the right --broker / COMFY_AVATAR_BROKER",
        )


class PublishRefused(DriverError):
    """The broker nacked or could not route a message."""


def parameters(settings: FleetSettings, name: str = "", heartbeat_s: int | None = None) -> pika.URLParameters:
    try:
        p = pika.URLParameters(settings.broker_url)
    except Exception as e:  # noqa: BLE001 - pika raises ValueError / AttributeError on odd URLs
        raise BrokerUnreachable(settings.broker_url, f"not a usable AMQP URL ({type(e).__name__})") from None
    p.heartbeat = settings.heartbeat_s if heartbeat_s is None else heartbeat_s
    p.blocked_connection_timeout = 300
    p.socket_timeout = settings.connect_timeout_s
    p.stack_timeout = settings.connect_timeout_s * 2
    p.connection_attempts = 1
    p.client_properties = {"connection_name": name or "comfy-avatar"}
    return p


def connect(settings: FleetSettings, name: str = "", heartbeat_s: int | None = None) -> pika.BlockingConnection:
    try:
        return pika.BlockingConnection(parameters(settings, name, heartbeat_s))
    except pex.ProbableAuthenticationError:
        raise BrokerUnreachable(settings.broker_url, "refused the user name or password") from None
    except (pex.AMQPError, OSError) as e:
        raise BrokerUnreachable(
            settings.broker_url, f"cannot connect ({type(e).__name__}: {e or 'no answer'})"
        ) from None


def declare(ch: BlockingChannel, settings: FleetSettings) -> None:
    """The durable topology (idempotent: every client declares it before use)."""
    ch.queue_declare(settings.jobs_queue, durable=True, arguments={"x-max-priority": MAX_PRIORITY})
    ch.queue_declare(settings.dead_queue, durable=True)
    ch.exchange_declare(settings.events_exchange, "topic", durable=True)
    ch.exchange_declare(settings.control_exchange, "fanout", durable=True)


def declare_retry_queue(ch: BlockingChannel, settings: FleetSettings, delay_ms: int) -> str:
    name = settings.retry_queue(delay_ms)
    ch.queue_declare(
        name,
        durable=True,
        arguments={
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": settings.jobs_queue,
            "x-max-priority": MAX_PRIORITY,
            # the queue itself goes away after a day without use (a delay nobody uses any more)
            "x-expires": max(86_400_000, delay_ms * 4),
        },
    )
    return name


def job_properties(
    msg: JobMessage, attempt: int = 1, headers: dict[str, Any] | None = None, expiration_ms: int | None = None
) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=2,
        priority=msg.priority_value,
        message_id=msg.job_id,
        headers={**(headers or {}), H_ATTEMPT: attempt},
        expiration=str(expiration_ms) if expiration_ms is not None else None,
    )


def publish_confirmed(ch: BlockingChannel, routing_key: str, body: bytes, props: pika.BasicProperties) -> None:
    """One persistent message through the default exchange; returns when the broker has it
    (the channel is in confirm mode). Raises PublishRefused on a nack or no route."""
    try:
        ch.basic_publish("", routing_key, body, props, mandatory=True)
    except pex.UnroutableError:
        raise PublishRefused(
            f"queue {routing_key}",
            "does not exist on the broker",
            "declare the topology first (any comfy-avatar submit/worker does)",
        ) from None
    except pex.NackError:
        raise PublishRefused(
            f"queue {routing_key}",
            "the broker refused the message (nack)",
            "check the broker's log (disk or memory alarm, queue limits)",
        ) from None


class Publisher:
    """Confirmed publishing for submitters (``submit``, ``serve``), thread-safe, surviving a
    broker restart: a publish that fails on a dropped connection is retried on a new one
    until ``publish_give_up_s``. A message the broker took but whose confirm was lost in the
    drop is published twice; workers drop the second copy (same job id: the job record and
    the lease say it is done or running)."""

    def __init__(self, settings: FleetSettings, name: str = "comfy-avatar-publisher") -> None:
        self.settings, self.name = settings, name
        self._lock = threading.Lock()
        self._conn: pika.BlockingConnection | None = None
        self._ch: BlockingChannel | None = None
        self._events: BlockingChannel | None = None  # no confirms: events are best effort
        self._retry_declared: set[int] = set()

    def _channel(self) -> BlockingChannel:
        if self._ch is not None and self._ch.is_open and self._conn is not None and self._conn.is_open:
            return self._ch
        self._drop()
        # No heartbeats needed: between publishes the connection idles, and a dead one is
        # found (and replaced) on the next publish.
        self._conn = connect(self.settings, self.name, heartbeat_s=0)
        ch = self._conn.channel()
        declare(ch, self.settings)
        ch.confirm_delivery()
        self._ch = ch
        self._events = self._conn.channel()
        self._retry_declared.clear()
        return ch

    def _drop(self) -> None:
        conn, self._conn, self._ch, self._events = self._conn, None, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass

    def _with_retry(self, what: str, fn: Any) -> Any:
        deadline = time.monotonic() + self.settings.publish_give_up_s
        delay = 0.2
        with self._lock:
            while True:
                try:
                    return fn(self._channel())
                except PublishRefused:
                    raise
                except (BrokerUnreachable, *CONNECTION_ERRORS) as e:
                    self._drop()
                    if time.monotonic() + delay > deadline:
                        if isinstance(e, BrokerUnreachable):
                            raise
                        raise BrokerUnreachable(
                            self.settings.broker_url, f"lost the connection while {what}: {type(e).__name__}"
                        ) from None
                    log.warning(
                        "broker connection lost while %s (%s); retrying in %.1f s", what, type(e).__name__, delay
                    )
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)

    def publish_job(self, msg: JobMessage) -> None:
        body, props = encode(msg), job_properties(msg)
        self._with_retry(
            f"publishing job {msg.job_id}", lambda ch: publish_confirmed(ch, self.settings.jobs_queue, body, props)
        )

    def publish_batch(self, msgs: list[JobMessage]) -> set[str]:
        """Many jobs with one wait for their confirms (not one round trip each); returns the
        ids of the jobs the broker refused (nack, or no route); the others are on the queue.

        Every message is as durable as one from publish_job: persistent, to the durable queue,
        and the call returns only when the broker has confirmed every one of them. A dropped
        connection republishes the whole batch on a new one (the copies the broker already
        had are dropped by the workers, as for publish_job). pika's BlockingChannel waits for
        each confirm in basic_publish, so the batch goes through its underlying channel
        (pika.channel.Channel, the one BlockingChannel wraps) with an ack/nack callback."""
        if not msgs:
            return set()
        frames = [(m.job_id, encode(m), job_properties(m)) for m in msgs]
        return set(self._with_retry(f"publishing {len(msgs)} jobs", lambda _ch: self._confirmed_batch(frames)))

    def _confirmed_batch(self, frames: list[tuple[str, bytes, pika.BasicProperties]]) -> set[str]:
        assert self._conn is not None
        conn = self._conn
        bch = conn.channel()
        impl = bch._impl  # noqa: SLF001 - the async channel under the blocking one (see publish_batch)
        unconfirmed = set(range(1, len(frames) + 1))  # a new channel in confirm mode numbers from 1
        refused: set[str] = set()
        ready: list[bool] = []

        def on_confirm(frame: Any) -> None:
            m = frame.method
            tags = {t for t in unconfirmed if t <= m.delivery_tag} if m.multiple else {m.delivery_tag}
            unconfirmed.difference_update(tags)
            if isinstance(m, pika.spec.Basic.Nack):
                refused.update(frames[t - 1][0] for t in tags)

        def on_return(_ch: Any, _method: Any, props: pika.BasicProperties, _body: bytes) -> None:
            refused.add(str(props.message_id))  # a Basic.Return comes before its message's ack

        # The confirms go to callbacks of the underlying channel, which process_data_events does
        # not count as events to return for: it would block for all of its time_limit. Hence
        # short slices.
        impl.add_on_return_callback(on_return)
        impl.confirm_delivery(ack_nack_callback=on_confirm, callback=lambda _f: ready.append(True))
        deadline = time.monotonic() + self.settings.publish_give_up_s
        while not ready:
            conn.process_data_events(time_limit=0.01)
            if time.monotonic() > deadline:
                raise BrokerUnreachable(self.settings.broker_url, "did not turn on publisher confirms")
        for _jid, body, props in frames:
            impl.basic_publish("", self.settings.jobs_queue, body, props, mandatory=True)
        while unconfirmed:
            if not impl.is_open:
                raise pex.ChannelWrongStateError("the batch channel closed before every confirm came")
            conn.process_data_events(time_limit=0.01)
            if unconfirmed and time.monotonic() > deadline:
                raise BrokerUnreachable(
                    self.settings.broker_url,
                    f"confirmed {len(frames) - len(unconfirmed)} of {len(frames)} jobs in time",
                )
        try:
            bch.close()
        except CONNECTION_ERRORS:
            pass
        return refused

    def publish_event(self, routing_key: str, body: bytes) -> None:
        """A transient event on the events exchange (best effort: errors are logged)."""
        try:
            self._with_retry(
                "publishing an event",
                lambda _ch: self._events.basic_publish(  # type: ignore[union-attr]
                    self.settings.events_exchange,
                    routing_key,
                    body,
                    pika.BasicProperties(content_type="application/json", delivery_mode=1),
                ),
            )
        except DriverError as e:
            log.warning("event %s not published: %s", routing_key, e)

    def publish_control(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self._with_retry(
            "publishing a control message",
            lambda ch: ch.basic_publish(
                self.settings.control_exchange, "", body, pika.BasicProperties(content_type="application/json")
            ),
        )

    def queue_depth(self, queue: str | None = None) -> int:
        """Messages ready in a queue (the jobs queue by default): what autoscaling watches."""
        name = queue or self.settings.jobs_queue
        return int(
            self._with_retry(
                "reading the queue depth", lambda ch: ch.queue_declare(name, passive=True).method.message_count
            )
        )

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def browse_dead(settings: FleetSettings, limit: int = 100) -> Iterator[dict[str, Any]]:
    """The dead-letter queue's messages, read without removing them: consumed without acks
    on a private connection, then given back by closing it (RabbitMQ requeues unacked
    messages in their original order)."""
    conn = connect(settings, "comfy-avatar-list-dead", heartbeat_s=0)
    try:
        ch = conn.channel()
        declare(ch, settings)
        n = ch.queue_declare(settings.dead_queue, passive=True).method.message_count
        ch.basic_qos(prefetch_count=min(max(n, 1), limit))
        for seen, (method, props, body) in enumerate(
            ch.consume(settings.dead_queue, auto_ack=False, inactivity_timeout=1.0), 1
        ):
            if method is None or seen > min(n, limit):
                break
            headers = dict(props.headers or {})
            try:
                d = json.loads(body)
            except (ValueError, RecursionError):  # a poison message is exactly what lands here
                d = {}
            if not isinstance(d, dict):
                d = {}
            yield {
                "job_id": props.message_id or d.get("job_id"),
                "label": d.get("label", ""),
                "workflow": d.get("workflow_name", ""),
                "priority": d.get("priority", ""),
                "attempt": headers.get(H_ATTEMPT),
                "error_class": _text(headers.get("x-ca-error-class")),
                "error": _text(headers.get("x-ca-error")),
                "worker": _text(headers.get("x-ca-worker")),
            }
            if seen >= min(n, limit):
                break
    finally:
        try:
            conn.close()  # unacked -> requeued: the DLQ keeps every message
        except Exception:  # noqa: BLE001
            pass


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")
