"""HTTP + websocket client for one ComfyUI server.

``ComfyClient.run`` is the safe way to execute a prompt: it connects the websocket
first (ComfyUI buffers nothing for a socket that is not connected), posts the prompt
with a client-chosen prompt_id, follows that prompt's events, survives a dropped
socket (reconnect with the same client id, resync from /queue and /history), falls
back to polling /history when the socket goes quiet, and finishes only on
``executing {node: null, prompt_id}`` or a /history entry (never on
``execution_success`` alone: it is sent before /history is written).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websocket

from . import events as ev
from .errors import (
    DriverError,
    JobFailed,
    JobInterrupted,
    JobLost,
    JobTimeout,
    PromptRejected,
    ServerError,
    ServerUnreachable,
    parse_node_errors,
)
from .events import Event, EventCallback, JobTracker
from .manifest import write_all
from .nodeinfo import NodeInfo
from .results import Downloaded, JobResult, OutputFile, Uploaded, collect_outputs
from .servers import DEFAULT_SERVER, normalize_url
from .transport import Http, HttpTimeout, HttpUnreachable, Response, translate

log = logging.getLogger("comfy_avatar.driver.client")

_UNSAFE = re.compile(r"[^A-Za-z0-9._()\- ]+")
_SEP = re.compile(r"[\\/]+")


def safe_component(name: str) -> str:
    """One path component that cannot climb out of a folder or hide itself."""
    cleaned = _UNSAFE.sub("_", name).strip(" .")
    return cleaned or "_"


def local_path_for(out_dir: Path, f: OutputFile, *, resolved: bool = False) -> Path:
    """Where ``f`` goes under ``out_dir``: output files at <subfolder>/<name>, others
    under <type>/...; every component sanitized; never outside ``out_dir``.
    ``resolved``: ``out_dir`` is already absolute with no symlinks (saves resolving it)."""
    parts = [] if f.type == "output" else [safe_component(f.type)]
    parts += [safe_component(p) for p in _SEP.split(f.subfolder) if p not in ("", ".", "..")]
    parts.append(safe_component(_SEP.split(f.filename)[-1]))
    root = out_dir if resolved else out_dir.resolve()
    dest = root.joinpath(*parts)
    # The parts hold no separator and no '..': only a symlink below root can lead outside.
    if _symlink_below(root, parts) and not dest.resolve().is_relative_to(root):
        raise DriverError(
            f"output file {f.filename!r}",
            f"would be written outside {root}",
            "remove the symlink inside the output folder",
        )
    return dest


def _symlink_below(root: Path, parts: list[str]) -> bool:
    """Whether root/parts[0], root/parts[0]/parts[1], ... include a symlink (lstat each
    existing component; below a missing one nothing exists)."""
    path = str(root)
    for part in parts:
        path = os.path.join(path, part)
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return True
        except OSError:
            return False
    return False


class ComfyClient:
    """Client for one ComfyUI server (HTTP + websocket, no ComfyUI imports).

    ``timeout`` is the per-request HTTP timeout. ``ws_silence_s``: after this long
    without any websocket message the client polls /history every
    ``poll_interval_s``. ``reconnect_give_up_s``: how long a vanished server may stay
    unreachable during ``run`` before ServerUnreachable is raised.
    """

    def __init__(
        self,
        server_url: str = DEFAULT_SERVER,
        client_id: str | None = None,
        timeout: float = 30.0,
        *,
        ws_silence_s: float = 10.0,
        poll_interval_s: float = 2.0,
        reconnect_give_up_s: float = 120.0,
        http: Http | None = None,
    ) -> None:
        self.url = normalize_url(server_url)
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout = timeout
        self.ws_silence_s = ws_silence_s
        self.poll_interval_s = poll_interval_s
        self.reconnect_give_up_s = reconnect_give_up_s
        # Proxies, CA bundle and auth are read from the environment once, here.
        self.http = http or Http(self.url, timeout=timeout)
        self.last_node_errors: dict[str, Any] = {}
        self._following = threading.Lock()
        self._node_info: NodeInfo | None = None

    # -- plumbing ----------------------------------------------------------------------
    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ComfyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kw: Any) -> Response:
        try:
            r = self.http.request(method, path, **kw)
        except HttpUnreachable as e:
            raise ServerUnreachable(self.url, _reason(e)) from e
        except HttpTimeout as e:
            raise ServerUnreachable(
                self.url,
                f"no answer to {method} {path} within {self.timeout:g} s",
                "check that ComfyUI is not stuck; raise the timeout for slow servers",
            ) from e
        if r.status not in ok:
            raise ServerError(f"{self.url}{path}", r.status, _text(r))
        return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        r = self._request(method, path, **kw)
        try:
            return r.json()
        except ValueError as e:
            raise ServerError(f"{self.url}{path}", r.status, "answer is not JSON: " + _text(r)[:200]) from e

    @property
    def ws_url(self) -> str:
        scheme = "wss" if self.url.startswith("https") else "ws"
        return f"{scheme}://{self.url.split('://', 1)[1]}/ws?clientId={self.client_id}"

    def _ws_connect(self) -> websocket.WebSocket:
        # websocket-client puts no limit on frame size (unlike `websockets`' 1 MiB
        # default), so large previews are received whole; nothing to raise here.
        ws = _BufferedWebSocket(skip_utf8_validation=True)
        try:
            ws.connect(self.ws_url, timeout=min(10.0, self.timeout), suppress_origin=True)
            ws.send('{"type": "feature_flags", "data": {"supports_preview_metadata": true}}')
        except (OSError, websocket.WebSocketException) as e:
            ws.close()
            raise ServerUnreachable(self.url, f"{_reason(e)} (websocket /ws)") from e
        return ws

    # -- plain endpoints ---------------------------------------------------------------
    def system_stats(self) -> dict[str, Any]:
        return self._json("GET", "/system_stats")

    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        return self._json("GET", "/object_info" + (f"/{node_class}" if node_class else ""))

    def node_info(self) -> NodeInfo:
        """This server's node definitions, fetched per class on first use (driver.nodeinfo:
        the whole /object_info is seconds on a big server; a workflow needs a dozen)."""
        if self._node_info is None:
            self._node_info = NodeInfo(self.object_info, self.object_info)
        return self._node_info

    def queue(self) -> dict[str, Any]:
        """{queue_running: [...], queue_pending: [...]}; items [number, prompt_id, prompt, extra, outputs]."""
        return self._json("GET", "/queue")

    def queue_ids(self) -> tuple[list[str], list[str]]:
        q = self.queue()
        ids = lambda items: [str(it[1]) for it in items or [] if isinstance(it, list) and len(it) > 1]  # noqa: E731
        return ids(q.get("queue_running")), ids(q.get("queue_pending"))

    def queue_remaining(self) -> int:
        return int(self._json("GET", "/prompt").get("exec_info", {}).get("queue_remaining", 0))

    def history(self, prompt_id: str | None = None, max_items: int | None = None) -> dict[str, Any]:
        if prompt_id is not None:
            return self._json("GET", f"/history/{prompt_id}")
        return self._json("GET", "/history", params={"max_items": max_items} if max_items else None)

    def history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        return self.history(prompt_id).get(prompt_id)

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt ``prompt_id`` if it is the running one (global when None)."""
        self._request("POST", "/interrupt", json={"prompt_id": prompt_id} if prompt_id else {})

    def delete_pending(self, ids: Iterable[str]) -> None:
        """Remove pending prompts from the queue (running ones need interrupt())."""
        self._request("POST", "/queue", json={"delete": list(ids)})

    def cancel(self, prompt_id: str) -> None:
        """Cancel one prompt wherever it is: pending -> deleted, running -> interrupted."""
        self.delete_pending([prompt_id])
        self.interrupt(prompt_id)

    def upload(
        self, path: str | os.PathLike[str], subfolder: str = "", overwrite: bool = False, type: str = "input"
    ) -> Uploaded:
        p = Path(path)
        if not p.is_file():
            raise DriverError(f"input file {p}", "does not exist or is not a file", "pass an existing file path")
        r = self._request(
            "POST",
            "/upload/image",
            ok=(200, 400, 413),
            fields={
                "image": (p.name, p.read_bytes(), "application/octet-stream"),
                "subfolder": subfolder,
                "type": type,
                "overwrite": "true" if overwrite else "false",
            },
        )
        if r.status == 413:
            raise DriverError(
                f"input file {p}",
                f"{p.stat().st_size} bytes is over the server's upload limit",
                "start ComfyUI with a larger --max-upload-size or pass a smaller file",
            )
        if r.status == 400:
            raise DriverError(
                f"input file {p}",
                f"rejected by /upload/image (subfolder {subfolder!r})",
                "use a plain file name and a subfolder without '..'",
            )
        d = r.json()
        return Uploaded(str(d["name"]), str(d.get("subfolder") or ""), str(d.get("type") or type))

    def submit(
        self,
        prompt: dict[str, Any],
        prompt_id: str | None = None,
        *,
        front: bool = False,
        number: float | None = None,
        extra_data: dict[str, Any] | None = None,
    ) -> str:
        """POST /prompt; returns the prompt_id. A 400 raises PromptRejected."""
        if not isinstance(prompt, dict) or not prompt:
            raise DriverError(
                "prompt",
                "must be a non-empty API-format dict {node_id: {class_type, inputs}}",
                "export the workflow with 'Save (API)' or pass a UI workflow to the CLI",
            )
        pid = prompt_id or str(uuid.uuid4())
        body: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id, "prompt_id": pid}
        if extra_data:
            body["extra_data"] = extra_data
        if number is not None:
            body["number"] = number
        elif front:
            body["front"] = True
        r = self._request("POST", "/prompt", json=body, ok=(200, 400))
        try:
            d = r.json()
        except ValueError as e:
            raise ServerError(f"{self.url}/prompt", r.status, _text(r)) from e
        if r.status == 400:
            raise PromptRejected(d.get("error") or {}, d.get("node_errors") or {})
        self.last_node_errors = d.get("node_errors") or {}
        if self.last_node_errors:
            log.warning(
                "prompt %s queued, but some outputs failed validation and will not run:\n%s",
                pid,
                "\n".join(f"  {e}" for e in parse_node_errors(self.last_node_errors)),
            )
        return str(d.get("prompt_id") or pid)

    # -- running a prompt --------------------------------------------------------------
    def run(
        self,
        prompt: dict[str, Any],
        *,
        prompt_id: str | None = None,
        on_event: EventCallback | None = None,
        timeout: float | None = None,
        front: bool = False,
        extra_data: dict[str, Any] | None = None,
        resubmit_lost: int = 1,
        cancel_on_timeout: bool = True,
    ) -> JobResult:
        """Submit ``prompt`` and follow it to the end.

        ``prompt_id``: client-chosen id (uuid4 when None) so a resubmission after a
        server restart cannot double a job. ``on_event(event, tracker)`` sees every
        event of this prompt plus unaddressed ones (status, previews, driver_*).
        ``resubmit_lost``: how many times a prompt that vanished (server restarted)
        is posted again under the same id. Raises JobFailed / JobInterrupted /
        JobTimeout / JobLost / PromptRejected / ServerUnreachable.
        """
        pid = prompt_id or str(uuid.uuid4())
        job = JobTracker(pid, prompt)
        deadline = time.monotonic() + timeout if timeout else None
        with self._exclusive():
            ws = self._ws_connect()  # before POST: nothing is buffered for an absent socket
            try:
                self.submit(prompt, pid, front=front, extra_data=extra_data)
                job.t_submit = time.monotonic()
                self._emit(on_event, Event(ev.SUBMITTED, {"server": self.url, "client_id": self.client_id}, pid), job)
                resubmit = _Resubmit(prompt, front, extra_data, resubmit_lost)
                return self._follow(job, ws, on_event, deadline, timeout, resubmit, cancel_on_timeout)
            finally:
                _close(ws)

    def wait(
        self,
        prompt_id: str,
        *,
        prompt: dict[str, Any] | None = None,
        on_event: EventCallback | None = None,
        timeout: float | None = None,
    ) -> JobResult:
        """Follow a prompt submitted earlier with this client's id (events missed
        before this call are recovered from /history)."""
        job = JobTracker(prompt_id, prompt)
        deadline = time.monotonic() + timeout if timeout else None
        with self._exclusive():
            ws = self._ws_connect()
            try:
                if self._check_server(job, on_event, None):
                    return self._finish(job)
                return self._follow(job, ws, on_event, deadline, timeout, None, False)
            finally:
                _close(ws)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        # One websocket per client_id: a second socket with the same id silently
        # replaces the first on the server, so one client follows one prompt at a time.
        if not self._following.acquire(blocking=False):
            raise DriverError(
                "ComfyClient.run",
                "this client is already following a prompt",
                "use one ComfyClient (client_id) per concurrent job",
            )
        try:
            yield
        finally:
            self._following.release()

    def _follow(
        self,
        job: JobTracker,
        ws: websocket.WebSocket | None,
        on_event: EventCallback | None,
        deadline: float | None,
        timeout: float | None,
        resubmit: _Resubmit | None,
        cancel_on_timeout: bool,
    ) -> JobResult:
        last_rx = last_poll = time.monotonic()
        down_since: float | None = None
        backoff = 0.2
        while not job.done:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                if cancel_on_timeout:
                    self._try_cancel(job.prompt_id)
                raise JobTimeout(
                    job.prompt_id, timeout or 0, f"last state: {job.status}, node {job.label(job.current)}"
                )
            remaining = (deadline - now) if deadline is not None else None
            if ws is None:
                try:
                    ws = self._ws_connect()
                except ServerUnreachable:
                    down_since = down_since or now
                    if now - down_since > self.reconnect_give_up_s:
                        raise
                    time.sleep(min(backoff, remaining) if remaining is not None else backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                log.info("websocket reconnected to %s; resyncing prompt %s", self.url, job.prompt_id)
                self._emit(on_event, Event(ev.WS_RECONNECTED, {"server": self.url}, job.prompt_id), job)
                last_rx = last_poll = time.monotonic()
                try:
                    if self._check_server(job, on_event, resubmit):
                        break
                    down_since, backoff = None, 0.2
                except (ServerUnreachable, ServerError) as e:
                    ws, down_since = self._degraded(e, ws, down_since, backoff, remaining)
                    backoff = min(backoff * 2, 5.0)
                continue
            frame = _recv(ws, min(self.poll_interval_s, 1.0, remaining if remaining is not None else 1.0))
            if frame is _DROPPED:
                log.warning("websocket to %s dropped while following prompt %s", self.url, job.prompt_id)
                _close(ws)
                ws = None
                self._emit(on_event, Event(ev.WS_DROPPED, {"server": self.url}, job.prompt_id), job)
                continue
            now = time.monotonic()
            if frame is not None:
                last_rx = now
                event = ev.parse_frame(frame)
                if event is not None:
                    self._dispatch(event, job, on_event)
                continue
            if now - last_rx >= self.ws_silence_s and now - last_poll >= self.poll_interval_s:
                last_poll = now
                self._emit(on_event, Event(ev.HISTORY_POLL, {"silent_s": round(now - last_rx, 1)}, job.prompt_id), job)
                try:
                    if self._check_server(job, on_event, resubmit):
                        break
                except (ServerUnreachable, ServerError) as e:
                    ws, down_since = self._degraded(e, ws, down_since, backoff, remaining)
                    backoff = min(backoff * 2, 5.0)
        return self._finish(job)

    def _degraded(
        self,
        err: DriverError,
        ws: websocket.WebSocket | None,
        down_since: float | None,
        backoff: float,
        remaining: float | None,
    ) -> tuple[None, float]:
        """A transient HTTP failure while following: drop the socket, back off, and let
        the reconnect path resync; give up after reconnect_give_up_s."""
        if not err.transient:
            raise err
        down_since = down_since or time.monotonic()
        if time.monotonic() - down_since > self.reconnect_give_up_s:
            raise err
        log.warning("talking to %s failed (%s); retrying", self.url, err.problem)
        _close(ws)
        time.sleep(min(backoff, remaining) if remaining is not None else backoff)
        return None, down_since

    def _dispatch(self, event: Event, job: JobTracker, on_event: EventCallback | None) -> None:
        if event.type == "executing" and event.prompt_id is None and "prompt_id" not in event.data:
            # Reconnect replay: addressed to this client's running prompt. It is ours
            # only if /queue said ours is running (set by _check_server on reconnect).
            if job.started and not job.done:
                job.apply_replay(event.data.get("node"), event.t)
                self._emit(on_event, Event(event.type, event.data, job.prompt_id, event.t), job)
            return
        if job.apply(event) or event.prompt_id is None:
            self._emit(on_event, event, job)

    def _check_server(self, job: JobTracker, on_event: EventCallback | None, resubmit: _Resubmit | None) -> bool:
        """Resync from the server; True when /history has the finished prompt.

        Order matters: /queue first, then /history. A prompt moves queue -> running
        -> history under one server lock, so absent from both (read in this order)
        means the server lost it.
        """
        entry = self.history_entry(job.prompt_id)
        if entry is None:
            running, pending = self.queue_ids()
            if job.prompt_id in running:
                job.started = True
                return False
            if job.prompt_id in pending:
                return False
            entry = self.history_entry(job.prompt_id)
        if entry is not None:
            if not job.done:
                job.finish_from_history(entry)
            return True
        if resubmit is None or resubmit.left <= 0:
            raise JobLost(job.prompt_id, self.url)
        resubmit.left -= 1
        log.warning("prompt %s vanished from %s; submitting it again under the same id", job.prompt_id, self.url)
        self.submit(resubmit.prompt, job.prompt_id, front=resubmit.front, extra_data=resubmit.extra_data)
        self._emit(on_event, Event(ev.RESUBMITTED, {"server": self.url}, job.prompt_id), job)
        return False

    def _finish(self, job: JobTracker) -> JobResult:
        entry = None
        for delay in (0.0, 0.1, 0.3):  # history is written before executing-null; this is only a safety net
            if delay:
                time.sleep(delay)
            entry = self.history_entry(job.prompt_id)
            if entry is not None:
                break
        if entry is not None:
            job.finish_from_history(entry)
        else:
            log.warning(
                "prompt %s finished but /history/%s is empty; using websocket outputs", job.prompt_id, job.prompt_id
            )
        result = JobResult(
            prompt_id=job.prompt_id,
            status=job.status if job.status != "running" else "success",
            outputs=collect_outputs(job.ui_outputs),
            timings=dict(job.timings),
            messages=list(job.messages),
            ui_outputs=dict(job.ui_outputs),
            cached=sorted(job.cached),
            node_types=dict(job.node_types),
            duration_s=round((job.t_end or time.monotonic()) - job.t_submit, 3),
            server=self.url,
            error=job.error or job.interrupted,
        )
        if job.error is not None:
            raise JobFailed(result, job.error)
        if job.interrupted is not None:
            raise JobInterrupted(result, job.interrupted)
        return result

    def _emit(self, on_event: EventCallback | None, event: Event, job: JobTracker) -> None:
        if on_event is None:
            return
        try:
            on_event(event, job)
        except Exception:  # a broken progress display must not lose a long job
            log.exception("event callback failed on %s", event.type)

    def _try_cancel(self, prompt_id: str) -> None:
        try:
            self.cancel(prompt_id)
        except DriverError as e:
            log.warning("could not cancel prompt %s after timeout: %s", prompt_id, e)

    # -- downloads ---------------------------------------------------------------------
    def download(self, outputs: Iterable[OutputFile] | JobResult, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Fetch each output via /view into ``out_dir`` (atomic: temp file, then rename).

        Names are sanitized and checked to stay inside ``out_dir``; a file listed twice
        is fetched once. Returns the local paths in output order.
        """
        return [d.path for d in self.download_files(outputs, out_dir)]

    def download_files(
        self, outputs: Iterable[OutputFile] | JobResult, out_dir: str | os.PathLike[str]
    ) -> list[Downloaded]:
        """As ``download``, with each file's sha256 and size (for manifests)."""
        files = outputs.outputs if isinstance(outputs, JobResult) else list(outputs)
        root = Path(out_dir)
        root.mkdir(parents=True, exist_ok=True)
        root = root.resolve()
        done: dict[Path, Downloaded] = {}
        for f in files:
            dest = local_path_for(root, f, resolved=True)
            if dest in done:
                continue
            sha, size = self._fetch(f, dest)
            done[dest] = Downloaded(f, dest, os.path.relpath(dest, root), sha, size)
        return list(done.values())

    def _fetch(self, f: OutputFile, dest: Path) -> tuple[str, int]:
        params = {"filename": f.filename, "subfolder": f.subfolder, "type": f.type}
        r = self._request("GET", "/view", params=params, stream=True, ok=(200, 400, 403, 404))
        read = False
        try:
            if r.status != 200:
                raise DriverError(
                    f"output {f.type}/{f.subfolder}/{f.filename} of node {f.node_id}",
                    f"/view answered HTTP {r.status}",
                    "the file was removed from ComfyUI's output folder or its name is invalid",
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            h, size = hashlib.sha256(), 0
            try:
                try:
                    for chunk in _chunks(r):
                        write_all(fd, chunk)
                        h.update(chunk)
                        size += len(chunk)
                finally:
                    os.close(fd)
                os.replace(tmp, dest)
                read = True
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        finally:
            if not read:  # a short error body is read off; a half-read file's connection is dropped
                r.drain_conn() if r.status != 200 else r.close()
            r.release_conn()
        return h.hexdigest(), size


@dataclass
class _Resubmit:
    prompt: dict[str, Any]
    front: bool
    extra_data: dict[str, Any] | None
    left: int


_DROPPED = object()


class _BufferedWebSocket(websocket.WebSocket):
    """websocket-client reads a frame's header and its payload with separate socket
    reads (each a poll + recv with the timeout); this takes whatever the socket holds
    (at least 4 KiB) in one read and serves the frame reader from it. Only frame reading
    goes through here (the handshake reads the socket directly, before any frame).
    Larger reads fragment the heap: RSS crept up ~0.5 KiB per prompt with 64 KiB.

    This overrides websocket-client's private ``WebSocket._recv(bufsize)``, which its
    ``frame_buffer`` calls for every read (same code in 1.7.0 to 1.9.x). Hence the
    upper bound on websocket-client in pyproject.toml, and
    tests/test_driver_client.py::test_websocket_private_recv_contract, which fails when
    that method changes or stops being the frame reader's only way to the socket."""

    _buf = b""
    _pos = 0

    def _recv(self, bufsize: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            buf, pos = super()._recv(max(bufsize, 4096)), 0  # raises on timeout / closed
            if len(buf) <= bufsize:
                self._buf, self._pos = b"", 0
                return buf
        end = min(pos + bufsize, len(buf))
        self._buf, self._pos = buf, end
        return buf[pos:end]


def _recv(ws: websocket.WebSocket, wait_s: float) -> Any:
    """One frame (str/bytes), None on timeout, _DROPPED when the socket is gone."""
    try:
        wait_s = max(wait_s, 0.01)
        now = ws.gettimeout()
        if now is None or wait_s < now or wait_s - now > 0.05:  # a syscall each; a bit shorter is fine
            ws.settimeout(wait_s)
        frame = ws.recv()
    except websocket.WebSocketTimeoutException:
        return None
    except (websocket.WebSocketException, OSError):
        return _DROPPED
    # recv() answers a close frame with "" and marks the socket disconnected.
    return _DROPPED if frame == "" and not ws.connected else frame


def _chunks(r: Response) -> Iterator[bytes]:
    try:
        yield from r.stream(1 << 20)
    except Exception as e:  # urllib3 ProtocolError / ReadTimeoutError / DecodeError, OSError
        err = translate(e)
        raise DriverError("download", f"connection lost while reading {r.geturl()}: {err}", "run it again") from e


def _text(r: Response) -> str:
    """The body of an answer as text (read now if it was streamed)."""
    try:
        data = r.data if r.data is not None else b""
    except Exception:  # noqa: BLE001 - a broken body still names the status
        data = b""
    return data.decode("utf-8", "replace")


def _close(ws: websocket.WebSocket | None) -> None:
    if ws is not None:
        try:
            ws.close(timeout=1)
        except Exception:  # closing a dead socket may raise anything
            pass


def _reason(e: BaseException) -> str:
    text = str(e)
    for hint in ("Connection refused", "Name or service not known", "timed out", "No route to host"):
        if hint.lower() in text.lower():
            return hint.lower() if hint != "Connection refused" else "cannot connect (connection refused)"
    return f"cannot connect ({type(e.__cause__ or e).__name__})"
