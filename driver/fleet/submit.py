"""Submitting a job to the fleet: checks that need no ComfyUI, the job record, the message.

Used by ``comfy-avatar submit`` and by ``serve``'s POST /jobs, so both check the same things
the same way. One job: the message is published first, then the record written (a crash in
between leaves a queued job whose worker writes the record, never a record without a
message). Batches (``submit --count``): records first, a batch at a time, then the batch's
messages (see submit_jobs for what a crash leaves).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..errors import DriverError, UsageError
from ..inputs import find_input_target
from ..params import Override
from ..store import FAILED, JobStore, canonical_hash
from ..workflow import is_api_prompt, is_ui_workflow
from .broker import Publisher
from .messages import FLEET_BATCH, QUEUED, InputFile, JobMessage, event_body, routing_key, url_filename
from .settings import FleetSettings

log = logging.getLogger("comfy_avatar.driver.fleet.submit")

URL_SCHEMES = ("s3://", "http://", "https://")


def check_input_url(name: str, url: str, settings: FleetSettings) -> None:
    """An s3:// input must name a bucket in ``input_buckets`` when that list is set: the
    workers fetch inputs with their own rclone credentials, which may read buckets the
    person submitting should not (serve checks this for every URL a request names; the
    worker checks it again before fetching)."""
    if url.startswith("s3://"):
        bucket, _, key = url[5:].partition("/")
        if not bucket or not key or any(seg in (".", "..") for seg in key.split("/")):
            raise UsageError(f"input {name!r}", f"{url[:200]!r} is not an s3://BUCKET/KEY URL", "name one object")
    allowed = settings.allowed_input_buckets
    if url.startswith("s3://") and allowed:
        bucket = url[5:].split("/", 1)[0]
        if bucket not in allowed:
            raise UsageError(
                f"input {name!r}",
                f"bucket {bucket!r} is not one the fleet reads inputs from",
                f"upload it to s3://{sorted(allowed)[0]}/... (COMFY_AVATAR__FLEET__INPUT_BUCKETS)",
            )


def input_from_spec(spec: str, settings: FleetSettings) -> InputFile:
    """``NAME=FILE`` (inline, up to inline_max_bytes) or ``NAME=s3://bucket/key`` / ``NAME=https://...``."""
    name, sep, value = spec.partition("=")
    if not sep or not name or not value:
        raise UsageError(
            f"--input {spec}", "must look like NAME=FILE or NAME=s3://bucket/key", "e.g. --input image=photo.png"
        )
    if value.startswith(URL_SCHEMES):
        check_input_url(name, value, settings)
        return InputFile(name, url_filename(value, name), url=value)
    path = Path(value).expanduser()
    if not path.is_file():
        raise UsageError(f"--input {spec}", f"file {path} does not exist", "pass an existing file or an s3:// URL")
    size = path.stat().st_size
    if size > settings.inline_max_bytes:
        raise UsageError(
            f"--input {spec}",
            f"{size} bytes is over the {settings.inline_max_bytes} bytes a message carries inline",
            f"upload it (rclone copyto FILE s3:BUCKET/KEY) and pass {name}=s3://BUCKET/KEY",
        )
    return InputFile.inline(name, path.name, path.read_bytes())


def check_job(msg: JobMessage) -> None:
    """What can be checked without a ComfyUI: --set syntax, and for API prompts that every
    input NAME names a node input (an editor workflow's titles are known after conversion,
    on the worker)."""
    if not (is_api_prompt(msg.workflow) or is_ui_workflow(msg.workflow)):
        # refused here, before a record or a message exists: a worker would only dead-letter it
        raise UsageError(
            "workflow",
            "is neither an API prompt ({id: {class_type, inputs}}) nor an editor workflow ({nodes, links})",
            "export it from the editor (Save, or Export (API)), or send a name from GET /workflows",
        )
    if not isinstance(msg.timeout_s, (int, float, type(None))) or (
        msg.timeout_s is not None and not (0 < msg.timeout_s < math.inf)
    ):
        raise UsageError("timeout", f"{msg.timeout_s!r} is not a positive number of seconds", "pass e.g. 600")
    for s in msg.sets:
        Override.parse(s)
    if is_api_prompt(msg.workflow):
        for inp in msg.inputs:
            find_input_target(msg.workflow, inp.name)


def submit_job(msg: JobMessage, publisher: Publisher, store: JobStore | None) -> None:
    """Check, publish (confirmed), then write the record. In that order so that a submitter
    killed in between (serve SIGKILLed mid-POST) leaves no ``pending`` record that no message
    will ever run: a queued job whose record is missing gets it from the worker that takes
    it (jobrun makes it from the message), and a publish that fails leaves nothing at all."""
    check_job(msg)
    publisher.publish_job(msg)
    if store is not None:
        try:
            store.add_jobs([_record_of(msg)])
        except IntegrityError:
            log.debug("job %s: a worker took it and wrote its record first", msg.job_id)
        except (SQLAlchemyError, DriverError) as e:
            log.warning(
                "job %s is queued, but its record was not written (%s); the worker that takes it writes it",
                msg.job_id,
                type(e).__name__,
            )
    publisher.publish_event(
        routing_key(msg.job_id, QUEUED), event_body(msg.job_id, QUEUED, {"priority": msg.priority, "label": msg.label})
    )
    log.info("job %s queued (%s priority)", msg.job_id, msg.priority)


def submit_jobs(
    msgs: list[JobMessage], publisher: Publisher, store: JobStore | None, *, batch: int = 200
) -> Iterator[list[JobMessage]]:
    """Many jobs, ``batch`` at a time: each batch's records in one transaction, then its
    messages published with one wait for all their confirms; yields each batch's queued jobs
    once the broker has them all (what ``submit --count`` prints as it goes).

    A crash (or a broker gone past publish_give_up_s) in the middle leaves the batches
    already yielded queued and durable; the batch in flight has records and may have some
    of its messages on the broker (those run; the rest stay ``pending`` records with no
    message: submit them again); later batches have neither record nor message. A batch
    that fails for good marks its records failed ("not queued") and raises."""
    for m in msgs:
        check_job(m)
    for start in range(0, len(msgs), batch):
        chunk = msgs[start : start + batch]
        if store is not None:
            store.add_jobs([_record_of(m) for m in chunk])
        try:
            refused = publisher.publish_batch(chunk)
        except DriverError as e:
            if store is not None:  # later batches have no records yet
                for m in chunk:
                    store.set_status(m.job_id, FAILED, detail="not queued", error=str(e))
            raise
        for m in chunk:
            if m.job_id in refused and store is not None:
                store.set_status(m.job_id, FAILED, detail="not queued", error="the broker refused the message (nack)")
        queued = [m for m in chunk if m.job_id not in refused]
        for m in queued:
            publisher.publish_event(
                routing_key(m.job_id, QUEUED), event_body(m.job_id, QUEUED, {"priority": m.priority, "label": m.label})
            )
        log.info("%d job(s) queued, %d refused by the broker", len(queued), len(refused))
        yield queued


def _record_of(m: JobMessage) -> dict[str, Any]:
    return {
        "id": m.job_id,
        "prompt_id": m.prompt_id,
        "workflow_hash": canonical_hash(m.workflow),
        "workflow_path": m.workflow_name,
        "params": m.record_params(),
        "batch_id": FLEET_BATCH,
        "label": m.label,
    }


def job_summary(msg: JobMessage) -> dict[str, Any]:
    return {
        "job_id": msg.job_id,
        "prompt_id": msg.prompt_id,
        "priority": msg.priority,
        "label": msg.label,
        "workflow": msg.workflow_name,
    }
