"""Shared bits of the node layer: custom IO types and output-folder handling."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from comfy_api.latest import io

from ..core.assets import next_output_path
from ..core.config import load_config

# File-backed handles (core.assets.Asset.to_dict()) travel between our nodes.
AvatarMesh = io.Custom("AVATAR_MESH")
AvatarVRM = io.Custom("AVATAR_VRM")
# Handle kinds an AVATAR_MESH can carry: a plain mesh, or a skinned one from an auto-rigger (UniRig).
MESH_KINDS = ("mesh", "rigged_mesh")


def output_root() -> Path:
    """ComfyUI's output folder; outputs must live under it so /view can serve them."""
    import folder_paths  # ComfyUI module, only present inside ComfyUI

    return Path(folder_paths.get_output_directory())


def output_path(prefix: str, ext: str) -> Path:
    """A fresh file under <output>/<output.subfolder>/<prefix's folder>/ (prefix like 'avatar/mesh')."""
    sub = load_config().get("output.subfolder", "comfy-avatar")
    folder, _, stem = prefix.strip("/").rpartition("/")
    base = output_root() / sub / folder
    resolved = base.resolve()
    if output_root().resolve() not in (resolved, *resolved.parents):
        raise ValueError(f"filename_prefix {prefix!r} leaves the output folder; use a relative name like 'avatar/mesh'")
    return next_output_path(base, stem or "asset", ext)


def file_ref(path: str | os.PathLike[str]) -> dict[str, str]:
    """The {filename, subfolder, type} triple ComfyUI's /view and the driver understand."""
    rel = Path(path).resolve().relative_to(output_root().resolve())
    return {"filename": rel.name, "subfolder": rel.parent.as_posix() if str(rel.parent) != "." else "", "type": "output"}


def model_file(path: str | os.PathLike[str]) -> str:
    """Path relative to the output folder, as core Preview3D's model_file expects."""
    return Path(path).resolve().relative_to(output_root().resolve()).as_posix()


def ui_files(*paths: str | os.PathLike[str], text: str | None = None) -> dict[str, Any]:
    ui: dict[str, Any] = {"avatar_files": [file_ref(p) for p in paths]}
    if text is not None:
        ui["text"] = [text]
    return ui
