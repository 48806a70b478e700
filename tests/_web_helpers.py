"""Drive the real ComfyUI editor in headless Chromium (Chrome DevTools Protocol over websocket-client),
with WebGL on SwiftShader so three.js renders without a GPU. Used by tests/test_web_viewer.py.

    with EditorPage(server_url) as page:
        page.evaluate("app.graph.nodes.length")
        png = page.screenshot(clip={"x": 0, "y": 0, "width": 100, "height": 100})

Like tests/_editor_oracle.py, which converts workflows through the editor, but with the flags WebGL
needs (--use-angle=swiftshader --enable-unsafe-swiftshader), a fixed window size, screenshots and mouse
input. Needs Debian's `chromium` (/usr/bin/chromium).
"""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

from _devtools import WEBGL_FLAGS, Page, open_tab

# Old headless mode, as the pixel tests were recorded with; the fixed window is set below too.
VIEWER_FLAGS = (*WEBGL_FLAGS, "--hide-scrollbars", "--mute-audio")
WIDTH, HEIGHT = 1600, 1000


class EditorPage(Page):
    """One headless Chromium tab with the ComfyUI editor of `server` loaded."""

    def __init__(self, server: str, timeout_s: float = 180.0):
        self.server = server.rstrip("/")
        self.console: list[str] = []
        super().__init__(
            open_tab(*VIEWER_FLAGS, f"--window-size={WIDTH},{HEIGHT}", headless="--headless", ws_timeout_s=timeout_s)
        )
        self._call("Runtime.enable")
        self._call("Page.enable")
        self._call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)
        self._call("Page.navigate", url=self.server + "/")
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            try:
                if self.evaluate(
                    "!!(window.app && window.app.graph && window.LiteGraph && window.app.canvas"
                    " && Object.keys(LiteGraph.registered_node_types).length > 10)"
                ):
                    break
            except RuntimeError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("the ComfyUI editor did not finish loading")

    def on_event(self, msg: dict) -> None:
        if msg.get("method") == "Runtime.consoleAPICalled":
            args = msg["params"].get("args", [])
            self.console.append(
                f"{msg['params'].get('type')}: " + " ".join(str(a.get("value", a.get("description", ""))) for a in args)
            )
        elif msg.get("method") == "Runtime.exceptionThrown":
            self.console.append("exception: " + json.dumps(msg["params"].get("exceptionDetails", {}))[:1500])

    def wait_for(self, expression: str, timeout_s: float = 60.0, what: str = "") -> Any:
        """Poll a JS expression until it is truthy; returns its value."""
        end = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < end:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(
            f"timed out after {timeout_s:g} s waiting for {what or expression} (last: {value!r});"
            f" console:\n" + "\n".join(self.console[-30:])
        )

    def screenshot(self, clip: dict | None = None) -> bytes:
        params: dict[str, Any] = {"format": "png"}
        if clip:
            params["clip"] = {**clip, "scale": 1}
        return base64.b64decode(self._call("Page.captureScreenshot", **params)["data"])

    def mouse(self, kind: str, x: float, y: float, buttons: int = 0, button: str = "none") -> None:
        self._call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button, buttons=buttons, clickCount=1)

    def drag(self, x0: float, y0: float, x1: float, y1: float, steps: int = 8) -> None:
        self.mouse("mouseMoved", x0, y0)
        self.mouse("mousePressed", x0, y0, buttons=1, button="left")
        for i in range(1, steps + 1):
            self.mouse("mouseMoved", x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps, buttons=1, button="left")
        self.mouse("mouseReleased", x1, y1, button="left")


def png_stats(png: bytes, box: tuple[float, float, float, float] | None = None) -> dict[str, float]:
    """Pixel statistics of a screenshot (optionally a sub-box as fractions x0, y0, x1, y1)."""
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    if box:
        h, w = img.shape[:2]
        img = img[int(box[1] * h) : int(box[3] * h), int(box[0] * w) : int(box[2] * w)]
    flat = img.reshape(-1, 3)
    colors, counts = np.unique(flat, axis=0, return_counts=True)
    bg = colors[counts.argmax()]
    off_bg = (np.abs(flat - bg).sum(axis=1) > 30).mean()
    return {"std": float(flat.std()), "off_background": float(off_bg), "colors": int(len(colors))}


def png_diff(a: bytes, b: bytes) -> dict[str, Any]:
    """Where two same-sized screenshots differ: the changed fraction and the changed pixels' bounding box
    (fractions of width/height), or None when nothing changed."""
    import numpy as np
    from PIL import Image

    x = np.asarray(Image.open(io.BytesIO(a)).convert("RGB")).astype(np.int16)
    y = np.asarray(Image.open(io.BytesIO(b)).convert("RGB")).astype(np.int16)
    assert x.shape == y.shape, (x.shape, y.shape)
    changed = np.abs(x - y).sum(axis=2) > 24
    frac = float(changed.mean())
    if not changed.any():
        return {"changed": 0.0, "bbox": None}
    ys, xs = np.nonzero(changed)
    h, w = changed.shape
    return {"changed": frac, "bbox": (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)}
