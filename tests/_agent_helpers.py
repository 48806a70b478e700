"""Helpers for the LLM/sandbox/agent tests: glTF validation and canary checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def validate_glb(path: str | Path) -> dict[str, Any]:
    """Khronos glTF-Validator report for a plain .glb (tests/_js.py, check_gltf.mjs):
    {"ok": bool, "errors": [...], "validator": {"numErrors": ..., ...}}."""
    from _js import check_with_node

    return check_with_node(path, "check_gltf.mjs")


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def contains_bytes(paths: list[Path], needle: str) -> list[Path]:
    raw = needle.encode()
    return [p for p in paths if raw in p.read_bytes()]
