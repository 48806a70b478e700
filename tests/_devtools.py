"""One way to start headless Chromium with a DevTools port and attach to its tab.

The editor oracle (tests/_editor_oracle.py), the editor page of the viewer tests
(tests/_web_helpers.py) and the fleet job page tests (tests/_fleet_helpers.py) all drive a real
Chromium over the DevTools protocol; each passes the flags its pages need (WebGL on SwiftShader,
window size) and keeps its own way of calling into the page. Needs Debian's `chromium`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Self

import requests
import websocket

# Offline, unattended, as root: no sandbox (root), no GPU here, no calls home.
BASE_FLAGS = ("--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking")
WEBGL_FLAGS = ("--use-angle=swiftshader", "--enable-unsafe-swiftshader")  # three.js on the CPU


def chromium_path() -> str | None:
    for cand in (os.environ.get("CHROMIUM", ""), "/usr/bin/chromium", "chromium", "chromium-browser"):
        if cand and (path := shutil.which(cand)):
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Tab:
    """A Chromium process and the websocket to its first page."""

    proc: subprocess.Popen
    ws: websocket.WebSocket
    profile: tempfile.TemporaryDirectory

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.profile.cleanup()


def open_tab(*flags: str, headless: str = "--headless=new", start_s: float = 60.0, ws_timeout_s: float = 120.0) -> Tab:
    """Start Chromium on about:blank with BASE_FLAGS + `flags` and attach to its page."""
    exe = chromium_path()
    if not exe:
        raise RuntimeError("chromium not found: apt-get install -y chromium")
    profile = tempfile.TemporaryDirectory(prefix="tests-chromium-", ignore_cleanup_errors=True)
    port = _free_port()
    proc = subprocess.Popen(
        [
            exe,
            headless,
            *BASE_FLAGS,
            *flags,
            f"--remote-debugging-port={port}",
            f"--user-data-dir={profile.name}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline, ws_url = time.monotonic() + start_s, None
    while ws_url is None and time.monotonic() < deadline:
        try:
            tabs = requests.get(f"http://127.0.0.1:{port}/json", timeout=2).json()
            ws_url = next(t["webSocketDebuggerUrl"] for t in tabs if t["type"] == "page")
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.3)
    if ws_url is None:
        proc.kill()
        proc.wait(10)
        profile.cleanup()
        raise RuntimeError("chromium did not open its debugging port")
    return Tab(proc, websocket.create_connection(ws_url, timeout=ws_timeout_s, suppress_origin=True), profile)


class Page:
    """DevTools commands into a Tab's page: `_call` (events that arrive meanwhile go to
    `on_event`) and `evaluate` (a JS expression's value; a thrown error is a RuntimeError)."""

    def __init__(self, tab: Tab) -> None:
        self._tab, self._ws, self._ids = tab, tab.ws, itertools.count(1)

    def on_event(self, msg: dict) -> None:
        """A DevTools event (no id) read while waiting for a reply."""

    def _call(self, method: str, **params: Any) -> dict:
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._ws.recv())
            if "method" in reply:
                self.on_event(reply)
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str) -> Any:
        res = self._call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(json.dumps(res["exceptionDetails"])[:2000])
        return res.get("result", {}).get("value")

    def close(self) -> None:
        self._tab.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
