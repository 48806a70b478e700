"""Helpers for the LLM/sandbox/agent tests: glTF validation and canary checks."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any



def validate_glb(path: str | Path) -> dict[str, Any]:
    """Khronos glTF-Validator report for a plain .glb (tests/_js.py, check_gltf.mjs):
    {"ok": bool, "errors": [...], "validator": {"numErrors": ..., ...}}."""
    from _js import check_with_node

    return check_with_node(path, "check_gltf.mjs")


def sandbox_dirs() -> set[str]:
    """Sandbox work dirs currently in the temp folder (each run must remove its own)."""
    return {p.name for p in Path(tempfile.gettempdir()).glob("comfy-avatar-sandbox-*")}


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def contains_bytes(paths: list[Path], needle: str) -> list[Path]:
    raw = needle.encode()
    return [p for p in paths if raw in p.read_bytes()]
