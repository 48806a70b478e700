"""GLB container helpers for VRM tests: edit the JSON chunk of a .vrm/.glb in place, through the
pack's own container reader/writer (comfy_avatar_nodes/core/vrm/glb.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from comfy_avatar_nodes.core.vrm.glb import pack_glb, read_glb


def rewrite_json(path: Path, edit: Callable[[dict], None], out: Path | None = None) -> Path:
    """Edit the JSON chunk of a .vrm/.glb in place (or into ``out``), keeping the binary chunk."""
    doc, blob = read_glb(path.read_bytes())
    edit(doc)
    out = out or path
    out.write_bytes(pack_glb(doc, blob))
    return out
