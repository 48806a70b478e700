"""Helpers for the LLM/sandbox/agent tests: glTF validation and canary checks."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from conftest import ROOT, need

JS_DIR = ROOT / "tests" / "js"


def validate_glb(path: str | Path) -> dict[str, Any]:
    """Khronos glTF-Validator report for ``path`` (via tests/_js.py when present, else node directly)."""
    try:
        from _js import check_with_node  # type: ignore[import-not-found]
    except ImportError:
        check_with_node = None
    if check_with_node is not None:
        return check_with_node(path)
    node = shutil.which("node")
    need(node is not None and (JS_DIR / "node_modules" / "gltf-validator").is_dir(),
         "node + tests/js/node_modules (npm ci in tests/js) are needed for the glTF-Validator")
    proc = subprocess.run([node, str(JS_DIR / "check_gltf.mjs"), str(path)], capture_output=True, text=True,
                          timeout=120, cwd=JS_DIR)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sandbox_dirs() -> set[str]:
    """Sandbox work dirs currently in the temp folder (each run must remove its own)."""
    return {p.name for p in Path(tempfile.gettempdir()).glob("comfy-avatar-sandbox-*")}


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def contains_bytes(paths: list[Path], needle: str) -> list[Path]:
    raw = needle.encode()
    return [p for p in paths if raw in p.read_bytes()]
