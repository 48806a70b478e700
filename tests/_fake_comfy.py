"""A small in-process fake ComfyUI: real HTTP + websocket on 127.0.0.1, stdlib only.

It speaks the routes and message formats of ComfyUI 0.3.64 (server.py, execution.py,
main.py; sequences recorded from the real server are in
tests/data/comfyui_recorded/v0.3.64.json) and runs each posted prompt through a
*scenario*: a function of a :class:`FakeJob` that sends messages exactly as ComfyUI
does, in ComfyUI's order, and may misbehave on purpose (drop the socket, go silent,
delay the /history write after execution_success, ...).

Like ComfyUI: prompts run one at a time in a worker thread; messages go only to the
prompt's client_id and are lost when that client has no socket; a reconnecting
client whose prompt is running gets ``executing {node}`` without a prompt_id.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OBJECT_INFO: dict[str, Any] = {
    "EmptyImage": {
        "input": {
            "required": {
                "width": ["INT", {"default": 512, "min": 1}],
                "height": ["INT", {"default": 512, "min": 1}],
                "batch_size": ["INT", {"default": 1}],
                "color": ["INT", {"default": 0}],
            }
        },
        "input_order": {"required": ["width", "height", "batch_size", "color"]},
        "output": ["IMAGE"],
        "output_is_list": [False],
        "output_name": ["IMAGE"],
        "name": "EmptyImage",
        "display_name": "EmptyImage",
        "category": "image",
        "output_node": False,
    },
    "LoadImage": {
        "input": {"required": {"image": [[], {"image_upload": True}]}},
        "input_order": {"required": ["image"]},
        "output": ["IMAGE", "MASK"],
        "name": "LoadImage",
        "display_name": "Load Image",
        "category": "image",
        "output_node": False,
    },
    "SaveImage": {
        "input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]}},
        "input_order": {"required": ["images", "filename_prefix"]},
        "output": [],
        "name": "SaveImage",
        "display_name": "Save Image",
        "category": "image",
        "output_node": True,
    },
    "KSamplerLike": {
        "input": {"required": {"image": ["IMAGE"], "steps": ["INT", {"default": 4}]}},
        "input_order": {"required": ["image", "steps"]},
        "output": ["IMAGE"],
        "name": "KSamplerLike",
        "display_name": "KSamplerLike",
        "category": "test",
        "output_node": False,
    },
}


class WsConn:
    """Server side of one websocket (unmasked frames out, masked frames in)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.open = True

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def send_bytes(self, data: bytes) -> None:
        self._send(0x2, data)

    def _send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([n])
        elif n < 1 << 16:
            head += bytes([126]) + struct.pack(">H", n)
        else:
            head += bytes([127]) + struct.pack(">Q", n)
        with self.lock:
            if not self.open:
                return
            try:
                self.sock.sendall(head + payload)
            except OSError:
                self.open = False

    def read_frame(self) -> tuple[int, bytes] | None:
        try:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack(">H", self._exact(2))
            elif n == 127:
                (n,) = struct.unpack(">Q", self._exact(8))
            mask = self._exact(4) if b1 & 0x80 else b"\0\0\0\0"
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(self._exact(n)))
            return b0 & 0x0F, data
        except (OSError, ConnectionError):
            return None

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def drop(self) -> None:
        """Kill the TCP connection without a close frame (a network fault)."""
        with self.lock:
            self.open = False
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()


class FakeJob:
    """One queued prompt as the scenario sees it; methods send ComfyUI's messages."""

    def __init__(self, server: FakeComfy, number: int, prompt_id: str, prompt: dict, extra: dict) -> None:
        self.server, self.number, self.prompt_id, self.prompt, self.extra = server, number, prompt_id, prompt, extra
        self.client_id: str | None = extra.get("client_id")
        self.messages: list[list[Any]] = []
        self.outputs: dict[str, Any] = {}

    # raw sends ------------------------------------------------------------------------
    def send(self, type_: str, data: dict[str, Any]) -> None:
        self.server.send(type_, data, self.client_id)

    def send_bytes(self, payload: bytes) -> None:
        self.server.send_bytes(payload, self.client_id)

    def message(self, type_: str, data: dict[str, Any]) -> None:
        """execution.py add_message: recorded in history status AND sent."""
        data = {**data, "prompt_id": self.prompt_id, "timestamp": int(time.time() * 1000)}
        self.messages.append([type_, data])
        self.send(type_, data)

    # ComfyUI steps ----------------------------------------------------------------------
    def start(self, cached: list[str] = ()) -> None:
        self.message("execution_start", {})
        self.message("execution_cached", {"nodes": list(cached)})

    def node(
        self,
        node_id: str,
        *,
        steps: int = 0,
        output: dict[str, Any] | None = None,
        step_delay: float = 0.0,
        preview: bytes | None = None,
    ) -> None:
        pid = self.prompt_id
        self.send(
            "progress_state",
            {
                "prompt_id": pid,
                "nodes": {
                    node_id: {"value": 0.0, "max": 1.0, "state": "running", "node_id": node_id, "prompt_id": pid}
                },
            },
        )
        self.server.last_node_id = node_id
        self.send("executing", {"node": node_id, "display_node": node_id, "prompt_id": pid})
        for i in range(1, steps + 1):
            time.sleep(step_delay)
            self.send("progress", {"value": i, "max": steps, "prompt_id": pid, "node": node_id})
            if preview is not None:  # binary preview frame: u32 type 1, u32 format 2 (PNG), bytes
                self.send_bytes(struct.pack(">II", 1, 2) + preview)
        if output is not None:
            self.outputs[node_id] = output
            self.send("executed", {"node": node_id, "display_node": node_id, "output": output, "prompt_id": pid})
        self.send(
            "progress_state",
            {"prompt_id": pid, "nodes": {node_id: {"value": 1.0, "max": 1.0, "state": "finished", "node_id": node_id}}},
        )

    def cached_output(self, node_id: str, output: dict[str, Any]) -> None:
        """A cached output node resends `executed` with its cached UI (upstream: nothing)."""
        self.outputs[node_id] = output
        self.send("executed", {"node": node_id, "display_node": node_id, "output": output, "prompt_id": self.prompt_id})

    def save_image(self, node_id: str, name: str, data: bytes, subfolder: str = "", type_: str = "output") -> dict:
        self.server.files[(type_, subfolder, name)] = data
        return {"images": [{"filename": name, "subfolder": subfolder, "type": type_}]}

    def succeed(self, history_delay: float = 0.0) -> None:
        """execution_success, then (after ``history_delay``) the /history write, then
        status and `executing {node: null}`: ComfyUI's order."""
        self.message("execution_success", {})
        time.sleep(history_delay)
        self.finish("success")

    def fail(self, node_id: str, message: str, exception_type: str = "RuntimeError") -> None:
        self.message(
            "execution_error",
            {
                "node_id": node_id,
                "node_type": self.prompt[node_id]["class_type"],
                "executed": [],
                "exception_message": message + "\n",
                "exception_type": exception_type,
                "traceback": ['  File "nodes.py", line 1, in execute\n'],
                "current_inputs": {},
                "current_outputs": [],
            },
        )
        self.finish("error")

    def finish(self, status_str: str, notify: bool = True) -> None:
        self.server.task_done(self, status_str)
        if notify:
            self.send("status", {"status": {"exec_info": {"queue_remaining": self.server.remaining()}}})
            self.send("executing", {"node": None, "prompt_id": self.prompt_id})

    def drop_ws(self) -> None:
        self.server.drop_client(self.client_id)


def default_scenario(job: FakeJob) -> None:
    """Every node in order; SaveImage nodes write a file; like the recorded run."""
    job.start()
    for nid, node in job.prompt.items():
        out = None
        if node.get("class_type") == "SaveImage":
            prefix = str(node.get("inputs", {}).get("filename_prefix", "ComfyUI"))
            sub, _, base = prefix.rpartition("/")
            out = job.save_image(nid, f"{base}_00001_.png", b"\x89PNG fake " + nid.encode(), subfolder=sub)
        steps = node.get("inputs", {}).get("steps")
        job.node(nid, steps=steps if isinstance(steps, int) else 0, output=out)
    job.succeed()


Scenario = Callable[[FakeJob], None]


class FakeComfy:
    """Start with ``with FakeComfy() as fake:``; ``fake.url``; set ``fake.scenario``."""

    def __init__(self, scenario: Scenario = default_scenario, port: int = 0) -> None:
        self.scenario = scenario
        self.object_info = dict(OBJECT_INFO)
        self.reject: tuple[int, dict] | None = None  # canned answer for POST /prompt
        self.files: dict[tuple[str, str, str], bytes] = {}  # (type, subfolder, filename) -> bytes
        self.uploads: list[dict[str, Any]] = []
        self.posted: list[dict[str, Any]] = []
        self.history: dict[str, dict] = {}
        self.interrupts: list[Any] = []
        self.deleted: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.fail_next: dict[str, int] = {}  # path prefix -> answer HTTP 500 this many times
        self.ws_connects: list[str] = []
        self.sockets: dict[str, WsConn] = {}
        self.running: list[FakeJob] = []
        self.pending: list[FakeJob] = []
        self.last_node_id: str | None = None
        self.mutex = threading.RLock()
        self.closed = False
        self._q: queue.Queue[FakeJob | None] = queue.Queue()
        self._number = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> FakeComfy:
        serve = lambda: self._httpd.serve_forever(poll_interval=0.05)  # noqa: E731
        for target in (serve, self._worker):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        # Stop accepting first, as a killed server does: a client must not reconnect its
        # websocket in the moment between the drop and the listening socket closing.
        self.closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._q.put(None)
        for conn in list(self.sockets.values()):
            conn.drop()

    # server-side helpers ---------------------------------------------------------------
    def send(self, type_: str, data: dict[str, Any], client_id: str | None) -> None:
        conn = self.sockets.get(client_id or "")
        if conn is not None:
            conn.send_text(json.dumps({"type": type_, "data": data}))

    def send_bytes(self, payload: bytes, client_id: str | None) -> None:
        conn = self.sockets.get(client_id or "")
        if conn is not None:
            conn.send_bytes(payload)

    def drop_client(self, client_id: str | None) -> None:
        conn = self.sockets.pop(client_id or "", None)
        if conn is not None:
            conn.drop()

    def remaining(self) -> int:
        with self.mutex:
            return len(self.running) + len(self.pending)

    def task_done(self, job: FakeJob, status_str: str) -> None:
        with self.mutex:
            if job in self.running:
                self.running.remove(job)
            self.history[job.prompt_id] = {
                "prompt": [job.number, job.prompt_id, job.prompt, job.extra, list(job.prompt)],
                "outputs": job.outputs,
                "status": {"status_str": status_str, "completed": status_str == "success", "messages": job.messages},
                "meta": {},
            }
        self.last_node_id = None

    def restart(self) -> None:
        """Simulate a server restart: queue and history are lost, sockets dropped."""
        with self.mutex:
            self.pending.clear()
            self.running.clear()
            self.history.clear()
        for cid in list(self.sockets):
            self.drop_client(cid)

    def _worker(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            with self.mutex:
                if job not in self.pending:
                    continue  # deleted or lost in a restart
                self.pending.remove(job)
                self.running.append(job)
            self.send("status", {"status": {"exec_info": {"queue_remaining": self.remaining()}}}, job.client_id)
            self.scenario(job)

    def enqueue(self, body: dict[str, Any]) -> tuple[int, dict]:
        self.posted.append(body)
        if self.reject is not None:
            return self.reject
        prompt = body.get("prompt")
        if not isinstance(prompt, dict):
            return 400, {
                "error": {
                    "type": "no_prompt",
                    "message": "No prompt provided",
                    "details": "No prompt provided",
                    "extra_info": {},
                },
                "node_errors": {},
            }
        for nid, node in prompt.items():
            if node.get("class_type") not in self.object_info:
                return 400, {
                    "error": {
                        "type": "invalid_prompt",
                        "message": f"Cannot execute because node {node.get('class_type')} does not exist.",
                        "details": f"Node ID '#{nid}'",
                        "extra_info": {},
                    },
                    "node_errors": {},
                }
        pid = str(body.get("prompt_id") or uuid.uuid4())
        extra = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        with self.mutex:
            number = -self._number if body.get("front") else self._number
            self._number += 1
            job = FakeJob(self, number, pid, prompt, extra)
            self.pending.append(job)
        self._q.put(job)
        return 200, {"prompt_id": pid, "number": number, "node_errors": {}}

    def queue_json(self) -> dict[str, Any]:
        with self.mutex:
            item = lambda j: [j.number, j.prompt_id, j.prompt, j.extra, list(j.prompt)]  # noqa: E731
            return {"queue_running": [item(j) for j in self.running], "queue_pending": [item(j) for j in self.pending]}


def _make_handler(fake: FakeComfy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def _reply(
            self, status: int, body: Any = None, raw: bytes | None = None, ctype: str = "application/json"
        ) -> None:
            data = raw if raw is not None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _injected_failure(self, path: str) -> bool:
            for prefix, n in list(fake.fail_next.items()):
                if n > 0 and path.startswith(prefix):
                    fake.fail_next[prefix] = n - 1
                    self._reply(500, raw=b"500 Internal Server Error", ctype="text/plain")
                    return True
            return False

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def do_GET(self) -> None:  # noqa: N802
            u = urlsplit(self.path)
            path = u.path[4:] if u.path.startswith("/api/") else u.path
            q = {k: v[0] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
            fake.requests.append(("GET", path))
            if self._injected_failure(path):
                return None
            if path == "/ws":
                return self._websocket(q.get("clientId") or uuid.uuid4().hex)
            if path == "/system_stats":
                return self._reply(
                    200,
                    {
                        "system": {"comfyui_version": "0.3.64-fake", "required_frontend_version": "1.27.10"},
                        "devices": [],
                    },
                )
            if path == "/object_info":
                return self._reply(200, fake.object_info)
            if path.startswith("/object_info/"):
                name = unquote(path.split("/", 2)[2])  # aiohttp hands ComfyUI the unquoted name
                return self._reply(200, {name: fake.object_info[name]} if name in fake.object_info else {})
            if path == "/queue":
                return self._reply(200, fake.queue_json())
            if path == "/prompt":
                return self._reply(200, {"exec_info": {"queue_remaining": fake.remaining()}})
            if path == "/history":
                with fake.mutex:
                    return self._reply(200, dict(fake.history))
            if path.startswith("/history/"):
                pid = path.split("/", 2)[2]
                with fake.mutex:
                    return self._reply(200, {pid: fake.history[pid]} if pid in fake.history else {})
            if path == "/view":
                key = (q.get("type", "output"), q.get("subfolder", ""), q.get("filename", ""))
                if key not in fake.files:
                    return self._reply(404, raw=b"", ctype="text/plain")
                return self._reply(200, raw=fake.files[key], ctype="image/png")
            return self._reply(404, raw=b"404: Not Found", ctype="text/plain")

        def do_POST(self) -> None:  # noqa: N802
            path = urlsplit(self.path).path
            path = path[4:] if path.startswith("/api/") else path
            fake.requests.append(("POST", path))
            raw = self._body()
            if self._injected_failure(path):
                return None
            if path == "/upload/image":
                return self._upload(raw)
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {}
            if path == "/prompt":
                status, answer = fake.enqueue(body)
                return self._reply(status, answer)
            if path == "/queue":
                with fake.mutex:
                    for pid in body.get("delete", []):
                        fake.deleted.append(pid)
                        fake.pending[:] = [j for j in fake.pending if j.prompt_id != pid]
                    if body.get("clear"):
                        fake.pending.clear()
                return self._reply(200, raw=b"", ctype="text/plain")
            if path == "/interrupt":
                fake.interrupts.append(body.get("prompt_id"))
                return self._reply(200, raw=b"", ctype="text/plain")
            return self._reply(404, raw=b"404: Not Found", ctype="text/plain")

        def _upload(self, raw: bytes) -> None:
            head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
            msg = BytesParser(policy=HTTP).parsebytes(head + raw)
            fields: dict[str, Any] = {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                fields[name] = (part.get_filename(), part.get_payload(decode=True))
            if "image" not in fields or not fields["image"][0]:
                return self._reply(400, raw=b"", ctype="text/plain")
            filename, data = fields["image"]
            sub = (fields.get("subfolder") or (None, b""))[1].decode()
            typ = (fields.get("type") or (None, b"input"))[1].decode() or "input"
            fake.files[(typ, sub, filename)] = data
            fake.uploads.append({"name": filename, "subfolder": sub, "type": typ, "data": data})
            return self._reply(200, {"name": filename, "subfolder": sub, "type": typ})

        def _websocket(self, client_id: str) -> None:
            key = self.headers.get("Sec-WebSocket-Key", "")
            accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
            conn = WsConn(self.connection)
            with conn.lock:  # like ComfyUI (one event loop): registered as the 101 goes out, no gap
                old = fake.sockets.pop(client_id, None)  # same id: the new socket replaces the old
                fake.sockets[client_id] = conn
                self.send_response(101, "Switching Protocols")
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept", accept)
                self.end_headers()
                self.wfile.flush()
            if fake.closed:  # accepted just before the server went away
                conn.drop()
                self.close_connection = True
                return
            fake.ws_connects.append(client_id)
            conn.send_text(
                json.dumps(
                    {
                        "type": "status",
                        "data": {"status": {"exec_info": {"queue_remaining": fake.remaining()}}, "sid": client_id},
                    }
                )
            )
            with fake.mutex:
                mine = any(j.client_id == client_id for j in fake.running)
            if mine and fake.last_node_id is not None:  # server.py: replay WITHOUT prompt_id
                conn.send_text(json.dumps({"type": "executing", "data": {"node": fake.last_node_id}}))
            del old
            while conn.open:
                frame = conn.read_frame()
                if frame is None:
                    break
                if frame[0] == 0x8:  # client close: answer it, then hang up
                    conn._send(0x8, frame[1][:2])
                    break
            if fake.sockets.get(client_id) is conn:
                fake.sockets.pop(client_id, None)
            self.close_connection = True

    return Handler


RECORDED = __import__("pathlib").Path(__file__).parent / "data" / "comfyui_recorded" / "v0.3.64.json"


def load_recorded() -> dict[str, Any]:
    return json.loads(RECORDED.read_text())


def recorded_scenario(session: dict[str, Any]) -> Scenario:
    """Replay a session recorded from the real ComfyUI frame by frame, with the
    recorded prompt_id replaced by the posted one, and its /history entry written
    between execution_success and the final `executing {node: null}`, as ComfyUI does."""
    old_pid = session["prompt_id"]
    hist = session["history"][old_pid]
    frames = [f for f in session["frames"] if not f.get("binary")]

    def swap(obj: Any, pid: str) -> Any:
        return json.loads(json.dumps(obj).replace(old_pid, pid))

    def run(job: FakeJob) -> None:
        for f in frames:
            f = swap(f, job.prompt_id)
            if f["type"] == "status" and "sid" in f["data"]:
                continue  # the connect-time status was sent when the socket opened
            if f["type"] == "executing" and f["data"].get("node") is None:
                entry = swap(hist, job.prompt_id)
                for node_out in entry["outputs"].values():
                    for items in node_out.values():
                        for it in items:
                            job.server.files[(it["type"], it["subfolder"], it["filename"])] = (
                                b"recorded " + it["filename"].encode()
                            )
                job.outputs = entry["outputs"]
                job.messages = entry["status"]["messages"]
                job.finish(entry["status"]["status_str"], notify=False)
            if f["type"] == "executing" and f["data"].get("node") is not None:
                job.server.last_node_id = f["data"]["node"]
            job.send(f["type"], f["data"])

    return run
