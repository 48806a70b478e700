"""One way to start headless Chromium with a DevTools port and attach to its tab.

The editor oracle (tests/_editor_oracle.py), the editor page of the viewer tests
(tests/_web_helpers.py) and the fleet job page tests (tests/_fleet_helpers.py) all drive a real
Chromium over the DevTools protocol; each passes the flags its pages need (WebGL on SwiftShader,
window size) and keeps its own way of calling into the page. Needs Debian's `chromium`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

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
