"""The workflow inside the GLB/VRM files our nodes write, the way core SaveGLB does it.

SaveGLB (comfy_extras/nodes_hunyuan3d.py) puts ``prompt`` and each ``extra_pnginfo`` entry
(the editor's ``workflow``) as JSON text into the file's glTF ``asset.extras``, unless ComfyUI
runs with --disable-metadata; the editor reads a workflow back from there. We do the same
after core wrote the file, so one patch covers every writer (trimesh, Blender jobs, model
workers) and core stays free of ComfyUI's hidden inputs. Secrets never go in: values under
secret-looking names (core/secrets.py's rule) and the values of secret variables are replaced.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.assets import Asset, write_bytes_atomic
from ..core.secrets import REDACTED, is_secret_name, redact, secret_values

log = logging.getLogger("comfy_avatar.nodes")

GLB_SUFFIXES = (".glb", ".vrm")  # a .vrm is a GLB


def metadata_disabled() -> bool:
    """ComfyUI's --disable-metadata (False outside ComfyUI)."""
    try:
        from comfy.cli_args import args
    except ImportError:
        return False
    return bool(getattr(args, "disable_metadata", False))


def workflow_extras(hidden: Any) -> dict[str, str]:
    """``{"prompt": "<json>", "workflow": "<json>", ...}`` from a node's hidden inputs, secrets
    replaced; empty with --disable-metadata or when the node was called outside a prompt."""
    if hidden is None or metadata_disabled():
        return {}
    secrets = secret_values()
    extras: dict[str, str] = {}
    prompt = getattr(hidden, "prompt", None)
    if prompt is not None:
        extras["prompt"] = json.dumps(_scrub(prompt, secrets), default=str)
    pnginfo = getattr(hidden, "extra_pnginfo", None)
    if isinstance(pnginfo, Mapping):
        for key, value in pnginfo.items():
            if not is_secret_name(str(key)):
                extras[str(key)] = json.dumps(_scrub(value, secrets), default=str)
    return extras


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, Mapping):
        return {str(k): REDACTED if is_secret_name(str(k)) else _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, str):
        return redact(value, secrets)
    return value


def embed_in_glb(path: str | Path, extras: Mapping[str, str]) -> None:
    """Merge ``extras`` into the GLB's asset.extras (the BIN chunk is kept byte for byte; the file
    is replaced atomically). GltfError when the file is not a readable glTF binary."""
    from ..core.vrm.glb import pack_glb, read_glb

    path = Path(path)
    doc, blob = read_glb(path.read_bytes())
    asset = doc.setdefault("asset", {"version": "2.0"})
    old = asset.get("extras")
    asset["extras"] = {**(old if isinstance(old, dict) else {}), **extras}
    write_bytes_atomic(path, pack_glb(doc, blob))


def with_workflow(asset: Asset, hidden: Any) -> Asset:
    """``asset`` with the workflow embedded in its file (GLB/VRM only) and its handle's sha256 and
    bytes brought up to date; unchanged when there is nothing to embed. A file that cannot take it
    keeps its content and logs why: the asset itself is fine, only its provenance is missing."""
    extras = workflow_extras(hidden)
    if not extras or Path(asset.path).suffix.lower() not in GLB_SUFFIXES:
        return asset
    from ..core.vrm.glb import GltfError

    try:
        embed_in_glb(asset.path, extras)
    except (OSError, GltfError) as e:
        log.warning("comfy-avatar: left the workflow out of %s: %s", asset.path, e)
        return asset
    meta = dict(asset.meta)
    if "bytes" in meta:
        meta["bytes"] = Path(asset.path).stat().st_size
    return Asset.from_file(asset.path, asset.kind, **meta)
