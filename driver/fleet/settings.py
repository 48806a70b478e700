"""Typed fleet settings: broker URL, names, heartbeats, retries, limits.

One dataclass, filled from defaults, then ``COMFY_AVATAR__FLEET__<FIELD>`` environment
variables (the pack's ``COMFY_AVATAR__SECTION__KEY`` convention), then explicit
overrides (CLI flags). The broker URL comes from ``--broker`` or ``COMFY_AVATAR_BROKER``; it
may carry a password, so it is only ever logged through :func:`redact_url`.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import UsageError

BROKER_ENV = "COMFY_AVATAR_BROKER"
ENV_PREFIX = "COMFY_AVATAR__FLEET__"
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672/%2F"

# Message priorities (the queue is declared with x-max-priority = MAX_PRIORITY). Few levels on
# purpose: RabbitMQ keeps one internal queue per priority level.
PRIORITIES = {"low": 1, "normal": 5, "high": 9}
MAX_PRIORITY = 9


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***, for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class FleetSettings:
    """Every knob of the fleet, typed. Names of exchanges and queues derive from ``prefix``,
    so two fleets (or two test runs) can share one broker."""

    broker_url: str = DEFAULT_BROKER
    prefix: str = "comfy-avatar"
    heartbeat_s: int = 30  # AMQP heartbeat; the broker drops a silent connection after ~2x
    connect_timeout_s: float = 10.0
    publish_give_up_s: float = 120.0  # submit/serve: keep retrying a publish this long (broker restart)
    max_attempts: int = 4  # transient failures: attempts before the dead-letter queue
    retry_base_s: float = 5.0  # first retry delay, x4 per attempt ...
    retry_max_s: float = 600.0  # ... up to this
    lease_s: float = 60.0  # a running job's lease in the job database, renewed every lease_s/3
    inline_max_bytes: int = 16 << 20  # input files up to this go inside the message
    job_timeout_s: float | None = None  # per job on ComfyUI (None: no limit)
    reconnect_give_up_s: float = 30.0  # a ComfyUI may vanish this long during a job before it is retried
    ws_silence_s: float = 10.0  # client: poll /history after this long without a websocket message
    poll_interval_s: float = 1.0
    s3_remote: str = "s3"  # rclone remote for s3:// URLs (RCLONE_CONFIG_<NAME>_* or rclone.conf)
    s3_public_base_url: str = ""  # http(s) base of the output bucket, for links and redirects
    # comma list of the buckets s3:// inputs may come from ("": any the workers' rclone reads);
    # serve refuses others with 400 and workers refuse to fetch them
    input_buckets: str = ""

    @property
    def allowed_input_buckets(self) -> frozenset[str]:
        return frozenset(b.strip() for b in self.input_buckets.split(",") if b.strip())

    # -- names ---------------------------------------------------------------------------
    @property
    def jobs_queue(self) -> str:
        return f"{self.prefix}.jobs"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def events_exchange(self) -> str:
        return f"{self.prefix}.events"

    @property
    def control_exchange(self) -> str:
        return f"{self.prefix}.control"

    def retry_queue(self, delay_ms: int) -> str:
        return f"{self.prefix}.retry.{delay_ms}"

    # -- building ------------------------------------------------------------------------
    @classmethod
    def load(cls, env: dict[str, str] | None = None, **overrides: Any) -> FleetSettings:
        """Defaults <- environment <- overrides (None values are ignored)."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        if env.get(BROKER_ENV):
            values["broker_url"] = env[BROKER_ENV]
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        s = cls(**values)
        s.check()
        return s

    def check(self) -> None:
        if not self.broker_url.startswith(("amqp://", "amqps://")):
            raise UsageError(
                f"broker URL {redact_url(self.broker_url)}",
                "is not an amqp:// or amqps:// URL",
                f"pass --broker amqp://USER:PASSWORD@HOST:5672/%2F or set {BROKER_ENV}",
            )
        if self.max_attempts < 1 or self.heartbeat_s < 0 or self.lease_s <= 0:
            raise UsageError(
                "fleet settings",
                "max_attempts must be >= 1, heartbeat_s >= 0 and lease_s > 0",
                f"fix the {ENV_PREFIX}* variables",
            )


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = str(f.type)
    try:
        if "int" in kind and "float" not in kind:
            return int(raw)
        if "float" in kind:
            return None if raw.lower() in ("none", "null") else float(raw)
    except ValueError:
        raise UsageError(
            f"{ENV_PREFIX}{f.name.upper()}={raw}", f"is not a number ({kind})", "set a number or unset the variable"
        ) from None
    return raw


@dataclass(frozen=True)
class WorkerSettings:
    """What one worker is: its ComfyUI, how many jobs at once, where outputs go."""

    server: str
    out: str  # shared folder (path) or s3://bucket/prefix
    concurrency: int = 1
    name: str = field(default_factory=default_worker_name)
    metrics_port: int | None = None
    drain_s: float = 600.0  # on SIGTERM: let running jobs finish this long
    # this process, whatever its --name: two workers started with the same name (a copied
    # unit file, a restarted worker whose old process still runs) must not share leases,
    # or the second would take over a job the first still runs and run it again
    instance: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def lease_owner(self) -> str:
        return f"{self.name}#{self.instance}"

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError("--concurrency", f"{self.concurrency} is not a positive number", "pass 1 or more")
