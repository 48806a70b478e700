"""Submitting a job to the fleet: checks that need no ComfyUI, the job record, the message.

Used by ``comfy-avatar submit`` and by ``serve``'s POST /jobs, so both check the same things
the same way. The record is written before the message is published (a worker that takes
the job at once finds it); a publish that fails for good marks the record failed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import DriverError, UsageError
from ..inputs import find_input_target
from ..params import Override
from ..store import FAILED, JobStore, canonical_hash
from ..workflow import is_api_prompt
from .broker import Publisher
from .messages import FLEET_BATCH, QUEUED, InputFile, JobMessage, event_body, routing_key
from .settings import FleetSettings

log = logging.getLogger("comfy_avatar.driver.fleet.submit")

URL_SCHEMES = ("s3://", "http://", "https://")


def input_from_spec(spec: str, settings: FleetSettings) -> InputFile:
    """``NAME=FILE`` (inline, up to inline_max_bytes) or ``NAME=s3://bucket/key`` / ``NAME=https://...``."""
    name, sep, value = spec.partition("=")
    if not sep or not name or not value:
        raise UsageError(
            f"--input {spec}", "must look like NAME=FILE or NAME=s3://bucket/key", "e.g. --input image=photo.png"
        )
    if value.startswith(URL_SCHEMES):
        return InputFile(name, value.rstrip("/").rsplit("/", 1)[-1] or name, url=value)
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
    for s in msg.sets:
        Override.parse(s)
    if is_api_prompt(msg.workflow):
        for inp in msg.inputs:
            find_input_target(msg.workflow, inp.name)


def submit_job(msg: JobMessage, publisher: Publisher, store: JobStore | None) -> None:
    check_job(msg)
    if store is not None:
        store.add_job(
            job_id=msg.job_id,
            prompt_id=msg.prompt_id,
            workflow_hash=canonical_hash(msg.workflow),
            workflow_path=msg.workflow_name,
            params=msg.record_params(),
            batch_id=FLEET_BATCH,
            label=msg.label,
        )
    try:
        publisher.publish_job(msg)
    except DriverError as e:
        if store is not None:
            store.set_status(msg.job_id, FAILED, detail="not queued", error=str(e))
        raise
    publisher.publish_event(
        routing_key(msg.job_id, QUEUED), event_body(msg.job_id, QUEUED, {"priority": msg.priority, "label": msg.label})
    )
    log.info("job %s queued (%s priority)", msg.job_id, msg.priority)


def job_summary(msg: JobMessage) -> dict[str, Any]:
    return {
        "job_id": msg.job_id,
        "prompt_id": msg.prompt_id,
        "priority": msg.priority,
        "label": msg.label,
        "workflow": msg.workflow_name,
    }
