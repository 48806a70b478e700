"""A local OpenAI-compatible chat-completions server for tests (127.0.0.1, real HTTP).

It checks the wire format a real server would reject (model, messages, content parts,
image_url data URIs that decode to real images, response_format), checks the bearer key
when one is configured, and answers from scripted queues per model name, so tests drive
the flow: each queued item is the assistant's text, or a dict {"status": 500, "body": ...}
for an HTTP error, or a callable(request_json) -> str | dict.

    with FakeLLM(api_key="sk-test") as llm:
        llm.script("coder-model", ["print('hi')"])
        url = llm.base_url   # http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    """One request the server received (parsed JSON body + facts about it)."""

    model: str
    body: dict[str, Any]
    headers: dict[str, str]
    images: list[tuple[str, tuple[int, int]]] = field(default_factory=list)  # (mime, size)
    json_mode: bool = False


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, fmt: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": None}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.server.fake.queues]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        fake = self.server.fake
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, f"no route {self.path}")
        if fake.api_key is not None:
            auth = self.headers.get("Authorization", "")
            if auth != f"Bearer {fake.api_key}":
                # Real servers echo a masked key; echo it whole to prove the client redacts it.
                shown = auth.removeprefix("Bearer ")
                return self._error(401, f"Incorrect API key provided: {shown}", "invalid_api_key")
        if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
            return self._error(400, "Content-Type must be application/json")
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error(400, "body is not JSON")
        problem, seen = fake.check(body, dict(self.headers))
        if problem:
            return self._error(400, problem)
        fake.seen.append(seen)
        reply = fake.next_reply(seen.model, body)
        if isinstance(reply, dict):
            if reply.get("delay_s"):
                time.sleep(float(reply["delay_s"]))
            if "status" in reply:
                return self._send(int(reply["status"]), reply.get("body", {"error": {"message": "scripted error"}}))
            reply = reply["content"]
        content = str(reply)
        self._send(
            200,
            {
                "id": f"chatcmpl-{len(fake.seen)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": seen.model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {
                    "prompt_tokens": len(raw) // 4,
                    "completion_tokens": len(content) // 4,
                    "total_tokens": (len(raw) + len(content)) // 4,
                },
            },
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeLLM


class FakeLLM:
    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.queues: dict[str, deque] = defaultdict(deque)
        self.fallback: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None

    # -- scripting -------------------------------------------------------------------------
    def script(self, model: str, replies: list[Any]) -> None:
        with self._lock:
            self.queues[model].extend(replies)

    def always(self, model: str, reply: Callable[[dict[str, Any]], Any] | str) -> None:
        """Answer every request for ``model`` once its queue is empty."""
        self.fallback[model] = reply if callable(reply) else (lambda _b, r=reply: r)

    def next_reply(self, model: str, body: dict[str, Any]) -> Any:
        with self._lock:
            q = self.queues.get(model)
            item = q.popleft() if q else None
        if item is None:
            if model in self.fallback:
                item = self.fallback[model]
            else:
                return {
                    "status": 404,
                    "body": {
                        "error": {"message": f"The model `{model}` does not exist.", "type": "invalid_request_error"}
                    },
                }
        return item(body) if callable(item) else item

    def requests_for(self, model: str) -> list[Seen]:
        return [s for s in self.seen if s.model == model]

    # -- wire-format checks ----------------------------------------------------------------
    def check(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[str, Seen | None]:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return "you must provide a model parameter", None
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            return "messages must be a non-empty array", None
        seen = Seen(model=model, body=body, headers={k.lower(): v for k, v in headers.items()})
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
                return f"messages[{i}].role is invalid", None
            content = m.get("content")
            if isinstance(content, str):
                continue
            if not isinstance(content, list) or m["role"] != "user":
                return f"messages[{i}].content must be a string (or a parts array for user messages)", None
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    continue
                if kind != "image_url":
                    return f"messages[{i}].content[{j}].type must be text or image_url", None
                url = (part.get("image_url") or {}).get("url", "")
                if not url.startswith("data:image/") or ";base64," not in url:
                    return f"messages[{i}].content[{j}].image_url.url must be a data:image/...;base64 URI", None
                mime, b64 = url[5:].split(";base64,", 1)
                try:
                    from PIL import Image

                    with Image.open(io.BytesIO(base64.b64decode(b64, validate=True))) as im:
                        im.load()
                        seen.images.append((mime, im.size))
                except Exception as e:  # noqa: BLE001 - any decode problem is a 400 like a real server
                    return f"messages[{i}].content[{j}] is not a valid image ({e})", None
        rf = body.get("response_format")
        if rf is not None:
            if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
                return "response_format.type must be text, json_object or json_schema", None
            if rf["type"] == "json_object":
                seen.json_mode = True
                if not any("json" in json.dumps(m.get("content", "")).lower() for m in msgs):
                    # OpenAI's own rule for JSON mode
                    return (
                        "'messages' must contain the word 'json' in some form to use response_format json_object",
                        None,
                    )
        return "", seen

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeLLM:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def llm_env(
    monkeypatch: Any, fake: FakeLLM, *, key_env: str = "COMFY_AVATAR_TEST_LLM_KEY", models: dict[str, str] | None = None
) -> dict[str, str]:
    """Point every role's config at ``fake`` via COMFY_AVATAR__LLM__* variables; fast backoff."""
    models = models or {"intent": "intent-model", "vision": "vision-model", "coder": "coder-model"}
    for role, model in models.items():
        monkeypatch.setenv(f"COMFY_AVATAR__LLM__{role.upper()}__BASE_URL", fake.base_url)
        monkeypatch.setenv(f"COMFY_AVATAR__LLM__{role.upper()}__MODEL", model)
        monkeypatch.setenv(f"COMFY_AVATAR__LLM__{role.upper()}__API_KEY_ENV", key_env)
    monkeypatch.setenv("COMFY_AVATAR__LLM__BACKOFF_S", "0.01")
    monkeypatch.setenv("COMFY_AVATAR__LLM__TIMEOUT_S", "10")
    if fake.api_key is not None:
        monkeypatch.setenv(key_env, fake.api_key)
    return models


def png_bytes(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (32, 24)) -> bytes:
    """A small real PNG (a stand-in sketch)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()
