"""Render a VRM's face in a real browser: headless Chromium loads tests/js/face_page.html (three.js +
@pixiv/three-vrm + its MToon plugin), which renders neutral, aa, blink and happy and posts the
pixel comparison back here.

    res = render_faces(path, out_dir)   # {"ok", "states": {name: {changed, outside, bbox}}, "faceRect", ...}
                                        # PNGs: out_dir/<stem>_<state>.png and <stem>_faces.png (the sheet)

Skips the calling test (fails under CI=true) when chromium or tests/js/node_modules is missing.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

from _js import JS_DIR
from conftest import need

log = logging.getLogger("tests.browser")

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-extensions",
    "--window-size=800,600",
]
PACKAGES = ("three", "@pixiv/three-vrm", "@pixiv/three-vrm-materials-mtoon")


def chromium() -> str:
    for name in (os.environ.get("CHROMIUM", ""), "/usr/bin/chromium", "chromium", "chromium-browser"):
        if name and (path := shutil.which(name)):
            return path
    return ""


def browser_ready() -> tuple[bool, str]:
    if not chromium():
        return False, "chromium is not installed (apt-get install chromium) for the browser face test"
    missing = [p for p in PACKAGES if not (JS_DIR / "node_modules" / p / "package.json").is_file()]
    if missing:
        return False, f"tests/js/node_modules lacks {', '.join(missing)} (run `npm ci --prefix tests/js`)"
    return True, ""


def _server(vrm: Path, box: dict):
    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(JS_DIR), **kw)

        def log_message(self, *_a):  # quiet
            pass

        def do_GET(self):  # noqa: N802
            if self.path.startswith("/vrm/"):
                data = vrm.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "model/gltf-binary")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            super().do_GET()

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            box["result"] = json.loads(self.rfile.read(length))
            self.send_response(204)
            self.end_headers()
            box["done"].set()

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def render_faces(vrm: str | Path, out_dir: str | Path, size: int = 384, timeout_s: float = 120) -> dict:
    ready, reason = browser_ready()
    need(ready, reason)
    vrm, out_dir = Path(vrm), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    box: dict = {"done": threading.Event()}
    server = _server(vrm, box)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/face_page.html?vrm=/vrm/{quote(vrm.name)}&size={size}"
    with tempfile.TemporaryDirectory(prefix="comfy-avatar-chromium-") as profile:
        proc = subprocess.Popen(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        t0 = time.monotonic()
        try:
            finished = box["done"].wait(timeout_s)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            stderr = proc.communicate(timeout=30)[1].decode(errors="replace")
            server.shutdown()
            server.server_close()
    if not finished:
        raise AssertionError(f"the face page posted no result within {timeout_s:.0f} s\n{stderr[-3000:]}")
    res = box["result"]
    res["seconds"] = round(time.monotonic() - t0, 2)
    if not res.get("ok"):
        raise AssertionError(f"the face page failed: {res.get('error')}\n{stderr[-2000:]}")
    for name, state in res["states"].items():
        (out_dir / f"{vrm.stem}_{name}.png").write_bytes(base64.b64decode(state.pop("png").split(",", 1)[1]))
    (out_dir / f"{vrm.stem}_faces.png").write_bytes(base64.b64decode(res.pop("sheet").split(",", 1)[1]))
    return res
