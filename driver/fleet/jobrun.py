"""One fleet job on one ComfyUI, in a worker's job thread: the part that must run exactly once.

Order, and why:
1. The job record decides first: a terminal record means this delivery is a copy of a job
   that already ended (drop it); a cancel request ends it before anything runs.
2. The lease (leases.py): if another live worker holds the job, this copy is deferred.
3. Before posting anything, ask ComfyUI whether the prompt (its client-chosen prompt_id) is
   already there: the previous holder's server first (a worker on another box that died
   mid-job), then this worker's own. Queued or running: follow it; in /history: take its
   result. Only a prompt no server knows is posted, and only by the lease holder.
4. Outputs are stored (shared folder or S3), then the record is made final; only then does
   the worker ack the message (worker.py).

The outcome says what the worker does with the message: ack it (succeeded, cancelled,
dropped), republish it to a retry queue (retry: a transient failure, counted; defer: not
this worker's turn, not counted) or to the dead-letter queue (dead).
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import events as ev
from ..client import ComfyClient
from ..convert import ConversionError, to_api_prompt
from ..errors import DriverError, JobInterrupted, ServerUnreachable
from ..inputs import UPLOAD_SUBFOLDER, find_input_target
from ..params import apply_params
from ..results import JobResult
from ..store import CANCELLED, RUNNING, SUCCEEDED, TERMINAL, JobRow, JobStore, canonical_hash
from .leases import LeaseError, Leases
from .messages import (
    COMFY,
    FLEET_BATCH,
    STARTED,
    JobMessage,
    failure_class,
    is_transient,
    tracker_snapshot,
)
from .settings import FleetSettings, WorkerSettings
from .storage import fetch_input, store_outputs

log = logging.getLogger("comfy_avatar.driver.fleet.job")

SUCCESS, RETRY, DEFER, DEAD, CANCEL, DROP = "succeeded", "retry", "defer", "dead", "cancelled", "drop"
_SKIP_EVENTS = frozenset({"preview", "binary"})
EventSink = Callable[[str, str, dict[str, Any]], None]  # (job id, kind, data)


@dataclass
class Outcome:
    kind: str
    error: str = ""
    error_class: str = ""
    delay_ms: int = 0
    outputs: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0
    workflow: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    node_types: dict[str, str] = field(default_factory=dict)


class JobRun:
    """Runs one delivery of a job; ``cancel()`` may be called from any thread."""

    def __init__(
        self,
        msg: JobMessage,
        attempt: int,
        fleet: FleetSettings,
        worker: WorkerSettings,
        store: JobStore,
        leases: Leases,
        publish: EventSink,
        object_info: Callable[[], dict[str, Any]],
    ) -> None:
        self.msg, self.attempt, self.fleet, self.worker = msg, attempt, fleet, worker
        self.store, self.leases, self.publish = store, leases, publish
        self.object_info = object_info
        self.cancelled = threading.Event()
        self.running_on: str | None = None  # the server the prompt is on (for cancel)
        self.holds_lease = False
        self._last_progress = 0.0

    @property
    def job_id(self) -> str:
        return self.msg.job_id

    # -- cancel ----------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop the job: not posted yet -> never posted; on a server -> deleted / interrupted."""
        self.cancelled.set()
        server = self.running_on
        if server:
            threading.Thread(
                target=_cancel_on, args=(server, self.msg.prompt_id), daemon=True, name=f"cancel-{self.job_id[:8]}"
            ).start()

    # -- the job ---------------------------------------------------------------------------
    def execute(self) -> Outcome:
        t0 = time.monotonic()
        try:
            out = self._execute()
        except DriverError as e:
            out = self._failed(e)
        except ConversionError as e:
            # the submitted workflow is not one (or not convertible here): the job's fault, not a bug
            out = Outcome(DEAD, str(e), "ConversionError")
        except Exception as e:  # noqa: BLE001 - a driver bug must end in the DLQ, not a crash loop
            log.exception("job %s: unexpected error", self.job_id)
            out = Outcome(DEAD, f"driver error: {e!r}. Fix: report this as a bug", "DriverBug")
        out.duration_s = out.duration_s or round(time.monotonic() - t0, 3)
        out.workflow = self.msg.workflow_name
        return out

    def _failed(self, e: DriverError) -> Outcome:
        if self.cancelled.is_set() or (isinstance(e, JobInterrupted) and self._cancel_requested()):
            return Outcome(CANCEL, "cancelled", "Cancelled")
        return Outcome(RETRY if is_transient(e) else DEAD, str(e), failure_class(e))

    def _cancel_requested(self) -> bool:
        try:
            status, requested = self.store.status_of(self.job_id)
        except DriverError:
            return False
        return requested or status == CANCELLED

    def _record(self) -> tuple[str, bool, int, str | None]:
        """(status, cancel requested, attempts so far, server) of the job, in one query,
        creating the record when this database has none (a submitter that wrote elsewhere)."""
        jobs = JobRow.__table__
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(jobs.c.status, jobs.c.cancel_requested, jobs.c.attempts, jobs.c.server).where(
                    jobs.c.id == self.job_id
                )
            ).first()
        if row is None:
            m = self.msg
            try:
                self.store.add_job(
                    job_id=m.job_id,
                    prompt_id=m.prompt_id,
                    workflow_hash=canonical_hash(m.workflow),
                    workflow_path=m.workflow_name,
                    params=m.record_params(),
                    batch_id=FLEET_BATCH,
                    label=m.label,
                )
            except IntegrityError:  # the submitter wrote it a moment ago (it publishes first)
                return self._record()
            return "pending", False, 0, None
        return str(row.status), bool(row.cancel_requested), int(row.attempts or 0), row.server

    def _execute(self) -> Outcome:
        status, cancel_requested, attempts, rec_server = self._record()
        if status in TERMINAL:
            return Outcome(DROP, f"already {status}")
        if cancel_requested:
            self.store.set_status(self.job_id, CANCELLED, detail=f"cancel requested; dropped by {self.worker.name}")
            return Outcome(CANCEL, "cancelled before it ran", "Cancelled")
        if attempts >= 3 * self.fleet.max_attempts:
            return Outcome(
                DEAD,
                f"job {self.job_id}: delivered {attempts} times without finishing (a worker "
                "crashing on it each time?). Fix: check the workers' logs",
                "Poison",
            )
        try:
            claim = self.leases.claim(self.job_id, self.worker.lease_owner, self.worker.server, self.fleet.lease_s)
        except LeaseError as e:
            return Outcome(DEFER, str(e), "LeaseError", delay_ms=5000)
        if not claim.ok:
            delay = int(math.ceil(claim.expires_in_s * 1000)) + 500
            return Outcome(
                DEFER,
                f"held by {claim.holder} for {claim.expires_in_s:.1f} s more",
                "Held",
                delay_ms=min(delay, int(self.fleet.lease_s * 1000) + 500),
            )
        self.holds_lease = True
        if not self.store.set_status(
            self.job_id,
            RUNNING,
            detail=f"worker {self.worker.name} attempt {self.attempt}",
            server=self.worker.server,
            attempts=attempts + 1,
        ):
            return Outcome(DROP, "ended meanwhile")
        prompt = self._prompt()
        self.publish(
            self.job_id,
            STARTED,
            {
                "worker": self.worker.name,
                "server": self.worker.server,
                "attempt": self.attempt,
                "prompt_id": self.msg.prompt_id,
                "nodes": {
                    k: [v.get("class_type", "?"), (v.get("_meta") or {}).get("title", "")] for k, v in prompt.items()
                },
            },
        )
        previous = claim.previous_server or (rec_server if rec_server and rec_server != self.worker.server else "")
        if previous and previous != self.worker.server:
            result = self._adopt_elsewhere(previous, prompt)
            if result is not None:
                return result
        return self._run_here(prompt)

    def _prompt(self) -> dict[str, Any]:
        """The API prompt with --set/--seed applied (typed by this server's /object_info);
        inputs are set when uploading."""
        m = self.msg
        prompt = to_api_prompt(m.workflow, self.object_info)
        if m.sets or m.seed is not None:
            prompt = apply_params(prompt, m.sets, m.seed, self.object_info)
        for inp in m.inputs:
            find_input_target(prompt, inp.name)  # a bad NAME fails here, before any upload
        return prompt

    def _client(self, server: str) -> ComfyClient:
        # One client id per job: a successor worker on the same box reconnects under it and
        # gets the prompt's events (ComfyUI sends them to the submitting client id only).
        return ComfyClient(
            server,
            client_id=f"ca-fleet-{self.job_id}",
            ws_silence_s=self.fleet.ws_silence_s,
            poll_interval_s=self.fleet.poll_interval_s,
            reconnect_give_up_s=self.fleet.reconnect_give_up_s,
        )

    def _known_to(self, client: ComfyClient) -> bool:
        pid = self.msg.prompt_id
        if client.history_entry(pid) is not None:
            return True
        running, pending = client.queue_ids()
        return pid in running or pid in pending or client.history_entry(pid) is not None

    def _adopt_elsewhere(self, server: str, prompt: dict[str, Any]) -> Outcome | None:
        """The previous holder's server ran or runs the prompt: follow it there and take its
        outputs from there. None when that server does not know it (or is gone)."""
        try:
            with self._client(server) as client:
                if not self._known_to(client):
                    return None
                log.info(
                    "job %s: prompt %s is on the previous server %s; adopting it",
                    self.job_id,
                    self.msg.prompt_id,
                    server,
                )
                self.running_on = server
                result = client.wait(
                    self.msg.prompt_id,
                    prompt=prompt,
                    on_event=self._on_event,
                    timeout=self.msg.timeout_s or self.fleet.job_timeout_s,
                )
                return self._succeed(client, result, adopted_from=server)
        except ServerUnreachable as e:
            log.warning("job %s: previous server %s unreachable (%s); running it here", self.job_id, server, e.problem)
            return None

    def _run_here(self, prompt: dict[str, Any]) -> Outcome:
        m = self.msg
        with self._client(self.worker.server) as client:
            self.running_on = self.worker.server
            timeout = m.timeout_s or self.fleet.job_timeout_s
            if self._known_to(client):
                log.info(
                    "job %s: prompt %s already on %s (a redelivery); following it", self.job_id, m.prompt_id, client.url
                )
                result = client.wait(m.prompt_id, prompt=prompt, on_event=self._on_event, timeout=timeout)
                return self._succeed(client, result, adopted_from=client.url)
            if self.cancelled.is_set():
                return Outcome(CANCEL, "cancelled before it was posted", "Cancelled")
            prompt = self._with_inputs(client, prompt)
            result = client.run(
                prompt, prompt_id=m.prompt_id, on_event=self._on_event, timeout=timeout, resubmit_lost=1
            )
            return self._succeed(client, result)

    def _with_inputs(self, client: ComfyClient, prompt: dict[str, Any]) -> dict[str, Any]:
        if not self.msg.inputs:
            return prompt
        with tempfile.TemporaryDirectory(prefix="ca-in-") as tmp:
            for inp in self.msg.inputs:
                node_id, input_name = find_input_target(prompt, inp.name)
                local = fetch_input(inp, Path(tmp), self.fleet)
                # A folder per job: every phone names its picture image.jpg, and with one shared
                # folder a second job's upload replaced the first's before its LoadImage ran (on
                # --concurrency 2, or with the first still queued on ComfyUI): one person's avatar
                # made from another's photo. overwrite: a redelivery uploads the same bytes again.
                up = client.upload(local, subfolder=f"{UPLOAD_SUBFOLDER}/fleet/{self.job_id}", overwrite=True)
                prompt[node_id]["inputs"][input_name] = up.ref
        return prompt

    def _succeed(self, client: ComfyClient, result: JobResult, adopted_from: str = "") -> Outcome:
        extra = {"worker": self.worker.name, "attempt": self.attempt, "adopted_from": adopted_from or None}
        outputs = store_outputs(client, result, self.msg, self.worker.out, self.fleet, extra=extra)
        won = self.store.finish(
            self.job_id,
            SUCCEEDED,
            outputs,
            detail=f"{len(outputs)} output file(s) by "
            f"{self.worker.name}" + (f" (adopted from {adopted_from})" if adopted_from else ""),
            timings=result.timings,
            duration_s=result.duration_s,
            server=result.server,
        )
        if not won:
            status = self.store.status_of(self.job_id)[0]
            return Outcome(CANCEL if status == CANCELLED else DROP, f"already {status}")
        return Outcome(
            SUCCESS,
            outputs=outputs,
            duration_s=result.duration_s,
            timings=dict(result.timings),
            node_types=dict(result.node_types),
        )

    # -- progress --------------------------------------------------------------------------
    def _on_event(self, event: ev.Event, tracker: Any) -> None:
        if event.type in _SKIP_EVENTS:
            return
        if event.type == "progress":
            now = time.monotonic()
            step = tracker.step or (0, 0)
            if now - self._last_progress < 0.1 and step[0] < step[1]:
                return
            self._last_progress = now
        nodes = event.type in ("execution_start", "executing", ev.SUBMITTED)
        self.publish(self.job_id, COMFY, {"event": event.to_json(), "job": tracker_snapshot(tracker, nodes)})


def _cancel_on(server: str, prompt_id: str) -> None:
    try:
        with ComfyClient(server, timeout=10) as c:
            c.cancel(prompt_id)
    except DriverError as e:
        log.warning("could not cancel prompt %s on %s: %s", prompt_id, server, e)
