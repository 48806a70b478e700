"""Record ComfyUI websocket + HTTP exchanges into tests/data/recorded/*.json.

    python tests/_record_sessions.py --server http://127.0.0.1:8188   # a running ComfyUI
    python tests/_record_sessions.py                                  # starts one (COMFYUI_DIR)

Sessions use core nodes only and the format tests/_fake_comfy.recorded_scenario
replays ({client_id, prompt_id, prompt, post_status, post_body, frames, history}):
- preview_image: EmptyImage -> PreviewImage (a "temp" output)
- interrupt: a slow blur interrupted with POST /interrupt {prompt_id} while it runs
- queue_delete: two prompts queued; the pending one removed with POST /queue delete
  (+ /queue before and after)
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests
import websocket

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "recorded"
SLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 3072, "height": 3072, "batch_size": 4, "color": 1}},
    "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 9.0}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "rec/slow"}},
}


class Recorder:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self.frames: list[dict[str, Any]] = []
        self.ws = websocket.create_connection(
            self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}", suppress_origin=True
        )
        self._stop = False
        self._t = threading.Thread(target=self._rx, daemon=True)
        self._t.start()

    def _rx(self) -> None:
        while not self._stop:
            try:
                op, data = self.ws.recv_data()
            except Exception:  # noqa: BLE001
                return
            if op == websocket.ABNF.OPCODE_TEXT:
                self.frames.append(json.loads(data))
            elif op == websocket.ABNF.OPCODE_BINARY:
                self.frames.append({"binary": True, "size": len(data), "head": data[:8].hex()})

    def post(self, prompt: dict) -> tuple[str, int, dict]:
        pid = str(uuid.uuid4())
        r = requests.post(
            self.url + "/prompt", json={"prompt": prompt, "client_id": self.client_id, "prompt_id": pid}, timeout=30
        )
        return pid, r.status_code, r.json()

    def wait_end(self, pid: str, timeout: float = 300) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(
                f.get("type") == "executing" and f["data"].get("node") is None and f["data"].get("prompt_id") == pid
                for f in self.frames
                if not f.get("binary")
            ):
                return
            time.sleep(0.05)
        raise TimeoutError(pid)

    def wait_node(self, pid: str, node: str, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(
                f.get("type") == "executing" and f["data"].get("node") == node and f["data"].get("prompt_id") == pid
                for f in self.frames
                if not f.get("binary")
            ):
                return
            time.sleep(0.02)
        raise TimeoutError(f"{pid} node {node}")

    def session(self, pid: str, prompt: dict, status: int, body: dict, **extra: Any) -> dict:
        time.sleep(0.3)
        hist = requests.get(f"{self.url}/history/{pid}", timeout=30).json()
        return {
            "client_id": self.client_id,
            "prompt_id": pid,
            "prompt": prompt,
            "post_status": status,
            "post_body": body,
            "frames": list(self.frames),
            "history": hist,
            **extra,
        }

    def close(self) -> None:
        self._stop = True
        self.ws.close()


def record(url: str) -> dict[str, Any]:
    version = requests.get(url + "/system_stats", timeout=30).json()["system"].get("comfyui_version")
    sessions: dict[str, Any] = {}

    r = Recorder(url)
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": int(time.time()) % 65536},
        },
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    pid, st, body = r.post(prompt)
    r.wait_end(pid)
    sessions["preview_image"] = r.session(pid, prompt, st, body)
    r.close()

    r = Recorder(url)
    slow = json.loads(json.dumps(SLOW))
    slow["1"]["inputs"]["color"] = int(time.time()) % 65536
    pid, st, body = r.post(slow)
    r.wait_node(pid, "2")
    time.sleep(0.5)
    requests.post(url + "/interrupt", json={"prompt_id": pid}, timeout=30)
    r.wait_end(pid)
    sessions["interrupt"] = r.session(pid, slow, st, body)
    r.close()

    r = Recorder(url)
    first = json.loads(json.dumps(SLOW))
    first["1"]["inputs"]["color"] = (int(time.time()) + 1) % 65536
    second = json.loads(json.dumps(SLOW))
    second["1"]["inputs"]["color"] = (int(time.time()) + 2) % 65536
    pid1, st, body = r.post(first)
    pid2, st2, body2 = r.post(second)
    r.wait_node(pid1, "1")
    q_before = requests.get(url + "/queue", timeout=30).json()
    requests.post(url + "/queue", json={"delete": [pid2]}, timeout=30)
    q_after = requests.get(url + "/queue", timeout=30).json()
    requests.post(url + "/interrupt", json={"prompt_id": pid1}, timeout=30)  # keep the recording short
    r.wait_end(pid1)
    strip = lambda q: {k: [[it[0], it[1]] for it in v] for k, v in q.items()}  # noqa: E731
    sessions["queue_delete"] = r.session(
        pid1,
        first,
        st,
        body,
        deleted_prompt_id=pid2,
        deleted_history=requests.get(f"{url}/history/{pid2}", timeout=30).json(),
        queue_before=strip(q_before),
        queue_after=strip(q_after),
    )
    r.close()
    return {
        "comfyui_version": version,
        "recorded_with": "tests/_record_sessions.py (websocket-client)",
        "sessions": sessions,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server")
    args = ap.parse_args()
    if args.server:
        data = record(args.server)
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from _driver_helpers import shared_comfy

        data = record(shared_comfy().url)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"sessions_{data['comfyui_version']}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
