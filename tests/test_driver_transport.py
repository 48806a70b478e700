"""HTTP under the driver (driver/transport.py through ComfyClient): what requests did
for us before and a user relies on: redirects, proxies and basic auth from the
environment or the URL, clear errors for refused / silent / failing servers."""

from __future__ import annotations

import base64
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from driver.client import ComfyClient  # noqa: E402
from driver.errors import ServerError, ServerUnreachable  # noqa: E402


class Server:
    """A stdlib HTTP server whose answers come from ``handle(handler) -> (status, headers, body)``."""

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]) -> None:
        self.seen: list[tuple[str, str, Any]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(n) if n else b""
                outer.seen.append((self.command, self.path, self.headers))
                status, headers, body = handle(self)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _any

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _json(status: int, data: object, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(data).encode()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("HOME", "/nonexistent")  # no ~/.netrc


def test_redirects_are_followed_to_another_path_and_host(no_proxy_env: None) -> None:
    other = Server(lambda h: _json(200, {"exec_info": {"queue_remaining": 7}}))
    first = Server(
        lambda h: (
            (307, {"Location": other.url + "/prompt"}, b"")
            if h.path == "/prompt"
            else (302, {"Location": "/prompt"}, b"")
        )
    )
    try:
        with ComfyClient(first.url) as c:
            assert c.queue_remaining() == 7  # 307 to another host
            assert c._json("GET", "/old-place")["exec_info"]["queue_remaining"] == 7  # 302 -> 307 -> other
        assert [p for _, p, _ in other.seen] == ["/prompt", "/prompt"]
    finally:
        first.close()
        other.close()


def test_5xx_with_retry_after_is_a_transient_server_error_not_retried(no_proxy_env: None) -> None:
    srv = Server(lambda h: (503, {"Retry-After": "1"}, b"busy"))
    try:
        with ComfyClient(srv.url) as c, pytest.raises(ServerError) as info:
            c.queue()
        assert info.value.status_code == 503 and info.value.transient and "busy" in str(info.value)
        assert len(srv.seen) == 1
    finally:
        srv.close()


def test_refused_and_silent_servers_are_unreachable_with_the_reason(no_proxy_env: None) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with ComfyClient(f"http://127.0.0.1:{port}") as c, pytest.raises(ServerUnreachable) as info:
        c.queue()
    assert "connection refused" in str(info.value) and info.value.transient

    release = threading.Event()
    srv = Server(lambda h: (release.wait(5), _json(200, {}))[1])
    try:
        t0 = time.monotonic()
        with ComfyClient(srv.url, timeout=0.5) as c, pytest.raises(ServerUnreachable) as info:
            c.queue()
        assert "no answer to GET /queue within 0.5 s" in str(info.value) and time.monotonic() - t0 < 3
    finally:
        release.set()
        srv.close()


def test_basic_auth_from_the_url_and_a_path_prefix(no_proxy_env: None) -> None:
    srv = Server(lambda h: _json(200, {"queue_running": [], "queue_pending": []}))
    try:
        url = srv.url.replace("http://", "http://me:s%40cret@") + "/comfy"
        with ComfyClient(url) as c:
            assert c.queue_ids() == ([], [])
        method, path, headers = srv.seen[0]
        assert (method, path) == ("GET", "/comfy/queue")
        assert headers["Authorization"] == "Basic " + base64.b64encode(b"me:s@cret").decode()
    finally:
        srv.close()


def test_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch, no_proxy_env: None) -> None:
    proxy = Server(lambda h: _json(200, {"exec_info": {"queue_remaining": 3}}))
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        with ComfyClient("http://comfy.invalid:8188") as c:
            assert c.queue_remaining() == 3
        assert proxy.seen[0][1] == "http://comfy.invalid:8188/prompt"  # absolute URI: a proxy request
        monkeypatch.setenv("NO_PROXY", "comfy.invalid")
        with ComfyClient("http://comfy.invalid:8188") as c, pytest.raises(ServerUnreachable):
            c.queue_remaining()  # bypassed: DNS fails
        assert len(proxy.seen) == 1
    finally:
        proxy.close()
