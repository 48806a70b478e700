"""Run many jobs (one prompt each) over one or several ComfyUI servers.

- At most ``concurrency`` jobs are in flight (submitted to a server and not finished);
  each worker thread follows its job with its own ComfyClient (one websocket per
  client id, as ComfyUI requires).
- Each job has a fixed prompt_id (uuid5 of batch id + job index): every submission of
  the job uses it, and before submitting again the worker asks the server whether the
  prompt is already queued, running or in /history, so a retry never doubles a job.
- Transient failures (connection refused, 5xx, server restart) are retried with
  exponential backoff, on whichever server is best then; permanent ones (validation,
  node exceptions, missing node types, timeouts) are not.
- A prompt that vanished (server restarted: not queued, not running, not in history)
  is resubmitted at most ``max_resubmit`` times (default once) under the same id.
- Cancel: pending jobs are never submitted; submitted ones are removed from the server
  queue (POST /queue delete) or interrupted (POST /interrupt with their prompt_id).
  `comfy-avatar cancel` from another shell works through the job database.
- Every change is recorded in the JobStore (exactly one terminal state per job), each
  finished job gets a manifest.json with its outputs' sha256, and optionally a signed
  callback.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import events as ev
from .batch_client import BatchClient, cancel_on_server
from .callback import CallbackSender
from .client import ComfyClient, safe_component
from .convert import required_node_types
from .errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    DriverError,
    JobFailed,
    JobInterrupted,
    JobLost,
    JobTimeout,
    PromptRejected,
    ServerUnreachable,
)
from .events import BatchEvent, BatchEventSink
from .inputs import UPLOAD_SUBFOLDER
from .manifest import build_manifest, write_manifest
from .pool import MissingNodes, ServerPool, ServerState
from .results import JobResult
from .store import (
    CANCELLED,
    FAILED,
    PENDING,
    RETRYING,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    TERMINAL,
    JobStore,
    canonical_hash,
)

log = logging.getLogger("comfy_avatar.driver.batch")

PROMPT_ID_NAMESPACE = uuid.UUID("5d0c7a9e-6c53-4f8e-9a43-0c5f3b1a2e77")

# The client's connection events, passed on as the job's.
_CONNECTION_EVENTS = {
    ev.WS_DROPPED: ev.JOB_WS_DROPPED,
    ev.WS_RECONNECTED: ev.JOB_WS_RECONNECTED,
    ev.HISTORY_POLL: ev.JOB_HISTORY_POLL,
}

# Failure kinds (for exit codes and the summary).
PERMANENT, UNREACHABLE, CANCEL = "permanent", "unreachable", "cancelled"


def job_prompt_id(batch_id: str, index: int) -> str:
    """The client-chosen prompt_id of job `index`: stable across retries and restarts."""
    return str(uuid.uuid5(PROMPT_ID_NAMESPACE, f"{batch_id}/{index}"))


def new_batch_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


@dataclass
class BatchJob:
    index: int
    id: str
    prompt_id: str
    prompt: dict[str, Any]  # API prompt, params applied
    out_dir: Path
    label: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # what made this job (row, image...)
    uploads: list[tuple[str, str, Path]] = field(default_factory=list)  # (node id, input, file)
    status: str = PENDING
    attempts: int = 0
    resubmits: int = 0
    server: str | None = None
    error: str | None = None
    failure: str | None = None  # PERMANENT / UNREACHABLE / CANCEL
    result: JobResult | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    ready_at: float = 0.0
    submitted: bool = False  # a POST was attempted on `server`
    accepted_on: str | None = None  # server that confirmed the POST
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    t_start: float | None = None
    t_end: float | None = None
    prompt_hash: str = ""  # canonical_hash(prompt), computed once


@dataclass
class BatchSummary:
    batch_id: str
    total: int
    succeeded: int
    failed: int
    cancelled: int
    unreachable: int
    duration_s: float
    jobs: list[BatchJob]

    @property
    def exit_code(self) -> int:
        """0 all succeeded; 3 when every job that did not succeed found no server; else 1."""
        if self.succeeded == self.total:
            return EXIT_OK
        if self.unreachable and self.unreachable == self.total - self.succeeded:
            return EXIT_UNREACHABLE
        return EXIT_FAILED

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "unreachable": self.unreachable,
            "duration_s": round(self.duration_s, 3),
            "exit_code": self.exit_code,
        }


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs, as plain values (the CLI builds one from its flags; tests and
    the bench build their own). The runner's collaborators (job store, event sink,
    callback sender) are objects with a lifetime, not settings: they stay arguments
    of BatchRunner."""

    batch_id: str
    workflow_path: str = ""  # recorded with every job
    workflow_hash: str = ""  # "" = each job's own prompt hash
    concurrency: int = 4  # jobs in flight at once
    front: bool = False  # queue at the front of the servers' queues
    retries: int = 3  # transient failures retried per job
    backoff_base_s: float = 1.0  # first retry delay, doubled per attempt ...
    backoff_max_s: float = 30.0  # ... up to this
    give_up_s: float = 300.0  # fail a job after this long without a reachable server
    timeout_s: float | None = None  # per job: fail and cancel after this long
    max_resubmit: int = 1  # times a prompt lost in a server restart is posted again
    download: bool = True  # fetch the outputs (False: only list them)
    forward_progress: bool = True  # build job_progress events (a log display skips them)
    cancel_poll_s: float = 0.5  # how often the job database is read for cancel requests
    ws_silence_s: float = 10.0  # client: poll /history after this long without a message
    poll_interval_s: float = 1.0  # client: /history poll interval while the socket is silent
    reconnect_give_up_s: float = 60.0  # client: a server may vanish this long during one job

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise DriverError("--concurrency", f"{self.concurrency} is not a positive number", "pass 1 or more")


class _Retry(Exception):
    def __init__(self, err: DriverError, kind: str = "transient") -> None:
        super().__init__(str(err))
        self.err, self.kind = err, kind


class BatchRunner:
    """Runs ``jobs`` on ``pool`` as ``options`` say; see the module docstring.

    ``store`` records every job (None: in memory only), ``on_event`` gets a
    BatchEvent for each change (batch_started, job_submitted, job_running,
    job_progress, job_retry, job_waiting, job_resubmitted, job_adopted,
    job_ws_dropped/reconnected, job_history_poll, job_finished, batch_finished),
    ``callback`` gets each finished job's manifest."""

    def __init__(
        self,
        jobs: list[BatchJob],
        pool: ServerPool,
        options: BatchOptions,
        *,
        store: JobStore | None = None,
        on_event: BatchEventSink | None = None,
        callback: CallbackSender | None = None,
    ) -> None:
        self.jobs, self.pool, self.options, self.store = jobs, pool, options, store
        self.batch_id = options.batch_id
        self.on_event, self.callback = on_event, callback
        self._heap: list[tuple[float, int]] = []
        self._by_index = {j.index: j for j in jobs}
        self._cv = threading.Condition()
        self._remaining = len(jobs)
        self._stop = threading.Event()
        self._required = [required_node_types(j.prompt) for j in jobs]
        self._emit_lock = threading.Lock()

    # -- public -------------------------------------------------------------------------
    def register(self) -> None:
        """Record every job as pending in the store (one transaction)."""
        if self.store is None:
            return
        self.store.add_jobs(
            [
                {
                    "id": j.id,
                    "prompt_id": j.prompt_id,
                    "batch_id": self.batch_id,
                    "label": j.label,
                    "workflow_path": self.options.workflow_path,
                    "workflow_hash": self._workflow_hash(j),
                    "params": j.params,
                    "out_dir": str(j.out_dir),
                }
                for j in self.jobs
            ]
        )

    def run(self) -> BatchSummary:
        t0 = time.monotonic()
        self.register()
        with self._cv:
            for j in self.jobs:
                heapq.heappush(self._heap, (0.0, j.index))
        self._emit(
            BatchEvent(
                ev.BATCH_STARTED,
                {
                    "batch_id": self.batch_id,
                    "total": len(self.jobs),
                    "servers": [s.url for s in self.pool.servers],
                    "concurrency": self.options.concurrency,
                },
            )
        )
        workers = [
            threading.Thread(target=self._worker, args=(w,), name=f"batch-worker-{w}", daemon=True)
            for w in range(min(self.options.concurrency, max(1, len(self.jobs))))
        ]
        for t in workers:
            t.start()
        watching = threading.Event()
        if self.store is not None:
            threading.Thread(
                target=self._watch_cancels, args=(watching,), name="batch-cancel-watch", daemon=True
            ).start()
        try:
            for t in workers:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            self.cancel_all()
            for t in workers:
                t.join(30)
            raise
        finally:
            watching.set()
            if self.callback is not None:
                self.callback.close(wait_s=60)
        s = BatchSummary(
            self.batch_id,
            len(self.jobs),
            succeeded=sum(j.status == SUCCEEDED for j in self.jobs),
            failed=sum(j.status == FAILED for j in self.jobs),
            cancelled=sum(j.status == CANCELLED for j in self.jobs),
            unreachable=sum(j.failure == UNREACHABLE for j in self.jobs),
            duration_s=time.monotonic() - t0,
            jobs=self.jobs,
        )
        self._emit(BatchEvent(ev.BATCH_FINISHED, {**s.to_dict(), "servers": self.pool.summary()}))
        return s

    def cancel(self, job_id: str) -> bool:
        """Cancel one job: not yet submitted -> never runs; queued -> deleted from the
        server queue; running -> interrupted. False when it already finished."""
        job = next((j for j in self.jobs if j.id == job_id), None)
        if job is None or job.status in TERMINAL:
            return False
        job.cancel.set()
        if job.submitted and job.server:
            cancel_on_server(job.server, job.prompt_id)
        with self._cv:
            self._cv.notify_all()
        return True

    def cancel_all(self) -> None:
        self._stop.set()
        for j in self.jobs:
            if j.status not in TERMINAL:
                self.cancel(j.id)

    # -- events -------------------------------------------------------------------------
    def _emit(self, event: BatchEvent) -> None:
        if self.on_event is None:
            return
        try:
            with self._emit_lock:
                self.on_event(event)
        except Exception:  # a broken display must not lose jobs
            log.exception("batch event sink failed on %s", event.type)

    def _job_event(self, job: BatchJob, type_: str, **data: Any) -> None:
        if self.on_event is None:
            return
        self._emit(BatchEvent(type_, data, job.id, job.index, job.label, job.prompt_id))

    def _record(self, job: BatchJob, status: str, detail: str | None = None, **fields: Any) -> bool:
        """Set the job's status in memory and store. False when the store already holds a
        terminal state (e.g. `comfy-avatar cancel` from another shell won the race)."""
        ok = True
        if self.store is not None:
            try:
                ok = self.store.set_status(job.id, status, detail=detail, **fields)
            except DriverError as e:
                log.error("could not record job %s as %s: %s", job.id, status, e)
        if ok:
            job.status = status
        return ok

    # -- scheduling -----------------------------------------------------------------------
    def _next_job(self) -> BatchJob | None:
        with self._cv:
            while True:
                if self._remaining <= 0:
                    return None
                if self._heap:
                    ready_at, idx = self._heap[0]
                    now = time.monotonic()
                    if ready_at <= now or self._stop.is_set():
                        heapq.heappop(self._heap)
                        return self._by_index[idx]
                    self._cv.wait(min(ready_at - now, 1.0))
                else:
                    self._cv.wait(1.0)

    def _requeue(self, job: BatchJob, delay: float) -> None:
        job.ready_at = time.monotonic() + delay
        with self._cv:
            heapq.heappush(self._heap, (job.ready_at, job.index))
            self._cv.notify()

    def _done(self, job: BatchJob) -> None:
        with self._cv:
            self._remaining -= 1
            self._cv.notify_all()

    def _worker(self, wid: int) -> None:
        clients: dict[str, ComfyClient] = {}
        try:
            while True:
                job = self._next_job()
                if job is None:
                    return
                try:
                    finished = self._attempt(job, clients)
                except Exception as e:  # noqa: BLE001 - a driver bug must not hang the batch
                    log.exception("job %s crashed the worker", job.id)
                    self._fail(
                        job, PERMANENT, DriverError(f"job {job.id}", f"driver error: {e!r}", "report this as a bug")
                    )
                    finished = True
                if finished:
                    self._done(job)
        finally:
            for c in clients.values():
                c.close()

    def _cancel_requested(self, job: BatchJob) -> bool:
        return job.cancel.is_set() or self._stop.is_set()

    def _watch_cancels(self, done: threading.Event) -> None:
        """Pick up `comfy-avatar cancel` from other shells: poll the job database for
        this batch's cancel requests and cancel those jobs here too."""
        by_id = {j.id: j for j in self.jobs}
        while not done.wait(self.options.cancel_poll_s):
            try:
                ids = self.store.cancel_requests(self.batch_id) if self.store is not None else []
            except DriverError as e:
                log.warning("could not read cancel requests: %s", e)
                continue
            for jid in ids:
                job = by_id.get(jid)
                if job is not None and not job.cancel.is_set() and job.status not in TERMINAL:
                    log.info("job %s: cancel requested from another process", jid)
                    self.cancel(jid)

    # -- one attempt ----------------------------------------------------------------------
    def _attempt(self, job: BatchJob, clients: dict[str, ComfyClient]) -> bool:
        """Run `job` once; True when it reached a terminal state, False when requeued."""
        if self._cancel_requested(job):
            self._cancelled(job, "cancelled before it was submitted" if not job.submitted else "cancelled")
            return True
        if job.t_start is None:
            job.t_start = time.monotonic()
        try:
            server = self.pool.acquire(self._required[job.index])
        except MissingNodes as e:
            self._fail(job, PERMANENT, e)
            return True
        if server is None:
            return self._wait_for_server(job)
        done = False
        try:
            client = clients.get(server.url)
            if client is None:
                client = clients[server.url] = BatchClient(
                    server.url,
                    ws_silence_s=self.options.ws_silence_s,
                    poll_interval_s=self.options.poll_interval_s,
                    reconnect_give_up_s=self.options.reconnect_give_up_s,
                )
            job.attempts += 1
            self._run_on(job, server, client)
            done = True
            return True
        except _Retry as r:
            return self._retry_or_fail(job, server, r)
        finally:
            self.pool.release(server, done=done)

    def _wait_for_server(self, job: BatchJob) -> bool:
        waited = time.monotonic() - (job.t_start or time.monotonic())
        if waited > self.options.give_up_s:
            errors = "; ".join(f"{s.url}: {s.last_error or 'down'}" for s in self.pool.servers)
            self._fail(
                job,
                UNREACHABLE,
                ServerUnreachable(
                    ", ".join(s.url for s in self.pool.servers), f"no server reachable for {waited:.0f} s ({errors})"
                ),
            )
            return True
        if job.status != RETRYING:
            self._record(job, RETRYING, detail="waiting for a server")
            self._job_event(job, ev.JOB_WAITING, reason="no server is up", servers=self.pool.summary())
        self._requeue(job, self.pool.next_retry_in())
        return False

    def _retry_or_fail(self, job: BatchJob, server: ServerState, r: _Retry) -> bool:
        err = r.err
        if isinstance(err, ServerUnreachable):
            self.pool.mark_down(server, err)
        if self._cancel_requested(job):
            self._cancelled(job, "cancelled")
            return True
        if job.attempts > self.options.retries:
            self._fail(
                job,
                UNREACHABLE if isinstance(err, ServerUnreachable) else PERMANENT,
                err,
                note=f" (gave up after {job.attempts} attempts)",
            )
            return True
        delay = min(self.options.backoff_max_s, self.options.backoff_base_s * 2 ** (job.attempts - 1))
        delay *= random.uniform(0.8, 1.2)
        self._record(job, RETRYING, detail=f"attempt {job.attempts} on {server.url}: {err.problem}")
        self._job_event(
            job,
            ev.JOB_RETRY,
            attempt=job.attempts,
            server=server.url,
            error=str(err).splitlines()[0],
            delay_s=round(delay, 2),
        )
        self._requeue(job, delay)
        return False

    def _run_on(self, job: BatchJob, server: ServerState, client: ComfyClient) -> None:
        same_server = job.server == server.url
        job.server = server.url
        try:
            if job.submitted and same_server and self._adopt_existing(job, client, server):
                return
            prompt = self._with_uploads(job, client)
            while True:
                try:
                    result = self._submit_and_follow(job, client, prompt, server)
                    break
                except JobLost as lost:
                    if self._cancel_requested(job):
                        self._cancelled(job, "cancelled (removed from the server queue)")
                        return
                    if job.resubmits >= self.options.max_resubmit:
                        self._fail(job, PERMANENT, lost, note=f" (already resubmitted {job.resubmits}x)")
                        return
                    job.resubmits += 1
                    self._record(job, RETRYING, detail=f"vanished from {server.url}; resubmitting under the same id")
                    self._job_event(job, ev.JOB_RESUBMITTED, server=server.url, resubmits=job.resubmits)
            self._succeed(job, client, result)
        except JobInterrupted as e:
            if self._cancel_requested(job):
                self._cancelled(job, "interrupted on request")
            else:
                self._fail(job, PERMANENT, e)
        except (JobFailed, PromptRejected, JobTimeout) as e:
            self._fail(job, PERMANENT, e)
        except DriverError as e:
            if e.transient or isinstance(e, ServerUnreachable):
                raise _Retry(e) from e
            self._fail(job, PERMANENT, e)

    def _adopt_existing(self, job: BatchJob, client: ComfyClient, server: ServerState) -> bool:
        """After a failed attempt on the same server: if the prompt is already there
        (queued, running, or finished in /history), follow it instead of posting again.
        A prompt the server had accepted and no longer knows vanished (restart): it may
        be posted again at most max_resubmit times. True when the job was handled here."""
        entry = client.history_entry(job.prompt_id)
        if entry is None:
            running, pending = client.queue_ids()
            if job.prompt_id not in running and job.prompt_id not in pending:
                entry = client.history_entry(job.prompt_id)
                if entry is None:
                    if job.accepted_on != server.url:
                        return False  # the earlier POST never got through: just post
                    if job.resubmits >= self.options.max_resubmit:
                        self._fail(
                            job,
                            PERMANENT,
                            JobLost(job.prompt_id, client.url),
                            note=f" (already resubmitted {job.resubmits}x)",
                        )
                        return True
                    job.resubmits += 1
                    self._job_event(job, ev.JOB_RESUBMITTED, server=client.url, resubmits=job.resubmits)
                    return False
        log.info("job %s: prompt %s is already on %s; following it", job.id, job.prompt_id, client.url)
        self._job_event(job, ev.JOB_ADOPTED, server=client.url)
        try:
            result = client.wait(
                job.prompt_id, prompt=job.prompt, on_event=self._progress_cb(job), timeout=self.options.timeout_s
            )
        except JobLost:
            return False
        self._succeed(job, client, result)
        return True

    def _with_uploads(self, job: BatchJob, client: ComfyClient) -> dict[str, Any]:
        if not job.uploads:
            return job.prompt
        prompt = copy.deepcopy(job.prompt)
        for node_id, input_name, path in job.uploads:
            up = client.upload(path, subfolder=f"{UPLOAD_SUBFOLDER}/{safe_component(self.batch_id)}", overwrite=True)
            prompt[node_id]["inputs"][input_name] = up.ref
        return prompt

    def _progress_cb(self, job: BatchJob) -> Callable[[ev.Event, Any], None]:
        def cb(event: ev.Event, tracker: Any) -> None:
            if event.type == ev.SUBMITTED:
                job.accepted_on = job.server
            elif event.type == "execution_start" and job.status != RUNNING:
                self._record(job, RUNNING)
                self._job_event(job, ev.JOB_RUNNING, server=job.server)
            elif event.type in _CONNECTION_EVENTS:
                self._job_event(job, _CONNECTION_EVENTS[event.type], server=job.server)
            elif self.options.forward_progress and event.type in ("executing", "progress", "execution_cached"):
                node = tracker.current if event.type != "execution_cached" else None
                self._job_event(
                    job,
                    ev.JOB_PROGRESS,
                    node=node,
                    node_type=tracker.node_types.get(node or "", ""),
                    step=list(tracker.step) if tracker.step else None,
                    nodes_done=tracker.nodes_done,
                    nodes_total=tracker.total,
                )

        return cb

    def _submit_and_follow(
        self, job: BatchJob, client: ComfyClient, prompt: dict[str, Any], server: ServerState
    ) -> JobResult:
        if not self._record(job, SUBMITTED, server=server.url, attempts=job.attempts):
            job.cancel.set()  # the store already holds a terminal state: `comfy-avatar cancel` won
            raise JobInterrupted(
                JobResult(job.prompt_id, "cancelled", [], {}, []),
                {"node_id": "-", "node_type": "-", "exception_message": "cancelled"},
            )
        job.submitted = True
        self._job_event(job, ev.JOB_SUBMITTED, server=server.url, attempt=job.attempts)
        progress = self._progress_cb(job)
        return client.run(
            prompt,
            prompt_id=job.prompt_id,
            on_event=progress,
            timeout=self.options.timeout_s,
            front=self.options.front,
            resubmit_lost=0,
        )

    # -- endings ----------------------------------------------------------------------------
    def _succeed(self, job: BatchJob, client: ComfyClient, result: JobResult) -> None:
        job.result = result
        files: list[dict[str, Any]] = []
        if self.options.download and result.outputs:
            for i in range(3):
                try:
                    # sha256 and size of the bytes written, hashed while writing them
                    files = [
                        {**d.output.to_dict(), "path": d.rel, "sha256": d.sha256, "size": d.size}
                        for d in client.download_files(result, job.out_dir)
                    ]
                    break
                except DriverError as e:
                    if not e.transient or i == 2:
                        self._fail(job, PERMANENT if not e.transient else UNREACHABLE, e, note=" (downloading outputs)")
                        return
                    time.sleep(0.5 * 2**i)
        else:
            files = [o.to_dict() for o in result.outputs]
        job.files = files
        job.t_end = time.monotonic()
        won = True
        if self.store is not None:
            try:
                won = self.store.finish(
                    job.id,
                    SUCCEEDED,
                    [{**f, "path": str(job.out_dir / f["path"]) if "path" in f else None} for f in files],
                    detail=f"{len(files)} output file(s)",
                    timings=result.timings,
                    duration_s=result.duration_s,
                    server=result.server,
                )
            except DriverError as e:
                log.error("could not record job %s as succeeded: %s", job.id, e)
        if won:
            job.status = SUCCEEDED
        else:
            self._sync_from_store(job)
        self._finish(job)

    def _fail(self, job: BatchJob, kind: str, err: BaseException, note: str = "") -> None:
        text = str(err) + note
        job.error, job.failure, job.t_end = text, kind, time.monotonic()
        if not self._record(job, FAILED, detail=kind, error=text):
            self._sync_from_store(job)
        self._finish(job)

    def _cancelled(self, job: BatchJob, why: str) -> None:
        job.error, job.failure, job.t_end = why, CANCEL, time.monotonic()
        if job.submitted and job.server:
            cancel_on_server(job.server, job.prompt_id)
        if not self._record(job, CANCELLED, detail=why):
            self._sync_from_store(job)
        self._finish(job)

    def _sync_from_store(self, job: BatchJob) -> None:
        if self.store is not None:
            with contextlib.suppress(DriverError):
                job.status = self.store.status_of(job.id)[0]
                if job.status == CANCELLED:
                    job.failure = CANCEL

    def _finish(self, job: BatchJob) -> None:
        manifest = self.manifest(job)
        try:
            write_manifest(job.out_dir, manifest)
        except OSError as e:
            log.error("could not write the manifest of job %s: %s", job.id, e)
        self._job_event(
            job,
            ev.JOB_FINISHED,
            status=job.status,
            error=job.error,
            server=job.server,
            outputs=job.files,
            duration_s=manifest.get("duration_s"),
        )
        if self.callback is not None:
            self.callback.send(manifest)
        # Keep what the summary needs, drop the rest: memory stays flat over long batches.
        job.result, job.prompt, job.uploads = None, {}, []

    def _workflow_hash(self, job: BatchJob) -> str:
        if self.options.workflow_hash:
            return self.options.workflow_hash
        if not job.prompt_hash:
            job.prompt_hash = canonical_hash(job.prompt)
        return job.prompt_hash

    def manifest(self, job: BatchJob) -> dict[str, Any]:
        r = job.result
        return build_manifest(
            job_id=job.id,
            batch_id=self.batch_id,
            index=job.index,
            label=job.label,
            status=job.status,
            prompt_id=job.prompt_id,
            server=job.server,
            attempts=job.attempts,
            resubmits=job.resubmits,
            workflow=self.options.workflow_path,
            workflow_hash=self._workflow_hash(job),
            params=job.params,
            error=job.error,
            duration_s=round(job.t_end - job.t_start, 3) if job.t_end and job.t_start else None,
            timings=r.timings if r else {},
            cached=r.cached if r else [],
            outputs=job.files,
        )
