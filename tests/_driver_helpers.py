"""Helpers shared by the driver tests (convert, batch, real-server scenarios).

- ``shared_comfy()``: one real ComfyUI (COMFYUI_DIR, this pack loaded) per test process,
  started on first use and stopped at exit, so several test files share the ~40 s start.
- ``python tests/_driver_helpers.py record-object-info``: re-record
  tests/data/convert/object_info_pack.json from a real ComfyUI with this pack loaded.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_lock = threading.Lock()
_comfy = None


def comfyui_python() -> str | None:
    """ComfyUI's interpreter, found as `--local` finds it: COMFYUI_PYTHON, else COMFYUI_DIR's
    venv/ or .venv/; None when COMFYUI_DIR is unset or has no venv."""
    if os.environ.get("COMFYUI_PYTHON"):
        return os.environ["COMFYUI_PYTHON"]
    root = os.environ.get("COMFYUI_DIR")
    for venv in ("venv", ".venv") if root else ():
        cand = Path(root, venv, "bin", "python")
        if cand.exists():
            return str(cand)
    return None


def shared_comfy():
    """A started driver.local.LocalComfy (COMFYUI_DIR must be set; caller checks)."""
    global _comfy
    from driver.local import LocalComfy

    with _lock:
        if _comfy is None:
            comfy = LocalComfy(os.environ["COMFYUI_DIR"], python=comfyui_python(), start_timeout=300)
            comfy.start()
            atexit.register(comfy.stop)
            _comfy = comfy
        return _comfy


def record_object_info(url: str, out: Path = DATA / "convert" / "object_info_pack.json") -> set[str]:
    import requests

    from driver.convert import required_node_types

    info = requests.get(url.rstrip("/") + "/object_info", timeout=60).json()
    types: set[str] = set()
    for wf in sorted((ROOT / "workflows").glob("*.json")):
        if not wf.name.endswith(".api.json"):
            types |= required_node_types(json.loads(wf.read_text()))
    missing = sorted(t for t in types if t not in info)
    if missing:
        raise SystemExit(f"the server at {url} lacks {missing}: is the pack loaded?")
    doc = {
        "_source": {
            "comfyui": "recorded by tests/_driver_helpers.py record-object-info",
            "how": "GET /object_info from a ComfyUI with this pack loaded, trimmed to the "
            "node types workflows/*.json use",
        },
        "nodes": {k: info[k] for k in sorted(types)},
    }
    out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return types


if __name__ == "__main__":
    if sys.argv[1:2] == ["record-object-info"]:
        if len(sys.argv) > 2:
            print(sorted(record_object_info(sys.argv[2])))
        else:
            print(sorted(record_object_info(shared_comfy().url)))
    else:
        raise SystemExit("usage: python tests/_driver_helpers.py record-object-info [SERVER_URL]")
