"""The fleet's wire format: job messages, their headers, progress events. Pure functions.

A job message carries everything a worker needs and nothing secret: the workflow (either
format: the worker converts an editor workflow with its own server's /object_info), the
``--set`` / ``--seed`` overrides (typed by the worker against that same /object_info), and
the input files, small ones inline (base64) and others by URL (s3://bucket/key through
rclone, or http(s)). The job id and the client-chosen prompt_id are fixed at submit time:
every delivery of the message, redelivered or retried, runs under that prompt_id, which
is how a worker can ask ComfyUI whether the job already ran.

Headers say what happened to a message on its way: ``x-ca-attempt`` (1-based attempt
number; a retry republishes the message with it incremented), ``x-ca-error`` and
``x-ca-error-class`` (why it was retried or dead-lettered), ``x-ca-worker``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import DriverError, JobFailed, JobInterrupted, JobTimeout, PromptRejected, UsageError
from .settings import PRIORITIES

MESSAGE_VERSION = 1
PROMPT_NAMESPACE = uuid.UUID("0b6f3f2e-2f4c-4d57-9a0e-7d5f2c9b1e11")
FLEET_BATCH = "fleet"  # batch_id of fleet jobs in the job database (status --batch fleet)

H_ATTEMPT, H_ERROR, H_ERROR_CLASS, H_WORKER = "x-ca-attempt", "x-ca-error", "x-ca-error-class", "x-ca-worker"

# Event kinds (routing key job.<id>.<kind>)
QUEUED, STARTED, COMFY, RETRY, DEFERRED, FINISHED, DEAD, CANCELLED = (
    "queued",
    "started",
    "comfy",
    "retry",
    "deferred",
    "finished",
    "dead",
    "cancelled",
)
FINAL_KINDS = frozenset({FINISHED, DEAD, CANCELLED})


class MessageError(DriverError):
    """A message a worker cannot use (bad JSON, wrong version, missing fields): permanent."""


def url_filename(url: str, fallback: str) -> str:
    """The file name an input URL's object goes by: the last segment of its path (never its
    query: a presigned URL's signature must not become a file name on ComfyUI), or
    ``fallback`` where that is empty, '.' or '..'."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return fallback
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name if name not in ("", ".", "..") and "\\" not in name and "\x00" not in name else fallback


def public_url(url: str) -> str:
    """An input URL as job records, events and errors show it: without user:password and
    without its query string (a presigned S3 URL's query is its credential)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    netloc = f"***@{host}{port}" if "@" in parts.netloc else parts.netloc
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def printable_label(label: str) -> str:
    """A job's label without control characters, at most 200 of them: labels are printed by
    ``list`` and ``status`` on terminals, where ESC sequences from whoever submitted would
    rewrite the screen or the window title."""
    return "".join(c if c.isprintable() else " " for c in label)[:200]


def new_job_id() -> str:
    return uuid.uuid4().hex


def prompt_id_for(job_id: str) -> str:
    """The client-chosen ComfyUI prompt_id of a job: the same for every delivery."""
    return str(uuid.uuid5(PROMPT_NAMESPACE, job_id))


@dataclass(frozen=True)
class InputFile:
    """One input file of a job: ``name`` is the --input NAME (node id or title[.input])."""

    name: str
    filename: str
    data_b64: str | None = None  # inline bytes
    url: str | None = None  # s3://bucket/key or http(s)://...
    sha256: str = ""
    size: int = 0

    @classmethod
    def inline(cls, name: str, filename: str, data: bytes) -> InputFile:
        return cls(
            name, filename, base64.b64encode(data).decode("ascii"), None, hashlib.sha256(data).hexdigest(), len(data)
        )

    def data(self) -> bytes:
        if self.data_b64 is None:
            raise MessageError(f"input {self.name}", "has no inline data", "fetch it from its url")
        return base64.b64decode(self.data_b64)


@dataclass(frozen=True)
class JobMessage:
    job_id: str
    prompt_id: str
    workflow: dict[str, Any]
    workflow_name: str = ""
    sets: list[str] = field(default_factory=list)
    seed: int | None = None
    inputs: list[InputFile] = field(default_factory=list)
    priority: str = "normal"
    label: str = ""
    submitted_at: str = ""
    timeout_s: float | None = None

    @property
    def priority_value(self) -> int:
        return PRIORITIES.get(self.priority, PRIORITIES["normal"])

    def record_params(self) -> dict[str, Any]:
        """What the job record keeps of the message (no file bytes)."""
        return {
            "fleet": {"priority": self.priority, "submitted_at": self.submitted_at},
            "set": list(self.sets),
            "seed": self.seed,
            "inputs": [
                {
                    "name": i.name,
                    "filename": i.filename,
                    "url": public_url(i.url) if i.url else None,
                    "sha256": i.sha256,
                    "size": i.size,
                }
                for i in self.inputs
            ],
        }


def make_job(
    workflow: dict[str, Any],
    *,
    workflow_name: str = "",
    sets: list[str] | None = None,
    seed: int | None = None,
    inputs: list[InputFile] | None = None,
    priority: str = "normal",
    label: str = "",
    timeout_s: float | None = None,
    job_id: str | None = None,
) -> JobMessage:
    if priority not in PRIORITIES:
        raise UsageError(f"--priority {priority}", "is not a priority", "use one of: " + ", ".join(PRIORITIES))
    jid = job_id or new_job_id()
    return JobMessage(
        jid,
        prompt_id_for(jid),
        workflow,
        workflow_name,
        list(sets or []),
        seed,
        list(inputs or []),
        priority,
        printable_label(label),
        dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
        timeout_s,
    )


def encode(msg: JobMessage) -> bytes:
    d = asdict(msg)
    d["v"] = MESSAGE_VERSION
    return json.dumps(d, separators=(",", ":")).encode()


def decode(body: bytes) -> JobMessage:
    try:
        d = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        # RecursionError: JSON nested deeper than the interpreter's stack ("[[[[..."); left
        # uncaught it escaped the worker's delivery callback and stopped the worker, and the
        # unacked message then stopped every other worker it went to.
        raise MessageError(
            "job message",
            f"is not JSON ({type(e).__name__}: {str(e)[:200]})",
            "publish messages with comfy-avatar submit",
        ) from None
    if not isinstance(d, dict) or d.get("v") != MESSAGE_VERSION:
        raise MessageError(
            "job message",
            f"has version {d.get('v') if isinstance(d, dict) else None!r}, this worker reads {MESSAGE_VERSION}",
            "run the same comfy-avatar version everywhere",
        )
    try:
        inputs = [InputFile(**i) for i in d.get("inputs") or []]
        msg = JobMessage(
            job_id=str(d["job_id"]),
            prompt_id=str(d["prompt_id"]),
            workflow=d["workflow"],
            workflow_name=str(d.get("workflow_name") or ""),
            sets=[str(s) for s in d.get("sets") or []],
            seed=d.get("seed"),
            inputs=inputs,
            priority=str(d.get("priority") or "normal"),
            label=printable_label(str(d.get("label") or "")),
            submitted_at=str(d.get("submitted_at") or ""),
            timeout_s=d.get("timeout_s"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MessageError(
            "job message", f"lacks or mistypes a field ({e})", "publish messages with comfy-avatar submit"
        ) from None
    if msg.priority not in PRIORITIES:
        raise MessageError(
            f"job {msg.job_id}",
            f"priority {msg.priority[:40]!r} is not one of {', '.join(PRIORITIES)}",
            "publish messages with comfy-avatar submit",
        )
    if not (msg.seed is None or (isinstance(msg.seed, int) and not isinstance(msg.seed, bool))) or not (
        msg.timeout_s is None
        or (
            isinstance(msg.timeout_s, (int, float))
            and not isinstance(msg.timeout_s, bool)
            and 0 < msg.timeout_s < float("inf")
        )
    ):
        raise MessageError(
            f"job {msg.job_id}", "seed or timeout_s is not a number", "publish messages with comfy-avatar submit"
        )
    if not isinstance(msg.workflow, dict) or not msg.workflow:
        raise MessageError(f"job {msg.job_id}", "has no workflow", "submit a workflow file")
    if msg.prompt_id != prompt_id_for(msg.job_id):
        raise MessageError(
            f"job {msg.job_id}", "prompt_id does not belong to the job id", "publish messages with comfy-avatar submit"
        )
    return msg


def attempt_of(headers: dict[str, Any] | None) -> int:
    try:
        return max(1, int((headers or {}).get(H_ATTEMPT, 1)))
    except (TypeError, ValueError):
        return 1


def retry_delay_ms(attempt: int, base_s: float, max_s: float) -> int:
    """Delay before attempt ``attempt + 1``: base x 4^(attempt-1), capped. Few distinct values
    on purpose: each is its own retry queue (see broker.retry_queue)."""
    return int(1000 * min(max_s, base_s * 4 ** max(0, attempt - 1)))


def is_transient(err: BaseException) -> bool:
    """Whether trying the job again later can help: an unreachable or restarting ComfyUI, a
    5xx, a lost prompt, a storage hiccup can; validation errors, node exceptions, timeouts,
    bad parameters and malformed messages cannot (they go to the dead-letter queue)."""
    if isinstance(err, (PromptRejected, JobFailed, JobInterrupted, JobTimeout, UsageError, MessageError)):
        return False
    return bool(getattr(err, "transient", False))


def failure_class(err: BaseException) -> str:
    """A short, bounded label for metrics and the DLQ: the error class, and for a node
    exception the exception's class name (``JobFailed:RuntimeError``)."""
    name = type(err).__name__
    if isinstance(err, JobFailed) and not isinstance(err, JobInterrupted) and err.exception_type:
        name += ":" + err.exception_type.rpartition(".")[2][:60]
    return name


def routing_key(job_id: str, kind: str) -> str:
    return f"job.{job_id}.{kind}"


def event_body(job_id: str, kind: str, data: dict[str, Any], worker: str = "") -> bytes:
    return json.dumps(
        {
            "v": MESSAGE_VERSION,
            "job_id": job_id,
            "kind": kind,
            "worker": worker,
            "t": dt.datetime.now(dt.timezone.utc).timestamp(),
            "data": data,
        },
        separators=(",", ":"),
        default=str,
    ).encode()


def parse_event(body: bytes) -> dict[str, Any] | None:
    try:
        d = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return d if isinstance(d, dict) and isinstance(d.get("kind"), str) else None


def tracker_snapshot(tracker: Any, with_nodes: bool = False) -> dict[str, Any]:
    """What a follower needs to draw the same bars as a local run, from a JobTracker:
    a late follower sets its own tracker from this (see follow.apply_snapshot)."""
    snap: dict[str, Any] = {
        "status": tracker.status,
        "started": tracker.started,
        "done": tracker.done,
        "current": tracker.current,
        "step": list(tracker.step) if tracker.step else None,
        "finished": sorted(tracker.finished),
        "cached": sorted(tracker.cached),
        "queue_remaining": tracker.queue_remaining,
    }
    if with_nodes:
        snap["nodes"] = {k: [v, tracker.titles.get(k, "")] for k, v in tracker.node_types.items()}
    return snap
