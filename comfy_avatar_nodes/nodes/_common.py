"""Shared bits of the node layer: custom IO types, output-folder handling, ui and input conversion."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from comfy_api.latest import io, ui

from ..core.assets import next_output_path
from ..core.config import Settings
from ..core.errors import AvatarError

# File-backed handles (core.assets.Asset.to_dict()) travel between our nodes.
AvatarMesh = io.Custom("AVATAR_MESH")
AvatarVRM = io.Custom("AVATAR_VRM")
# Handle kinds an AVATAR_MESH can carry: a plain mesh, or a skinned one from an auto-rigger (UniRig).
MESH_KINDS = ("mesh", "rigged_mesh")


def output_root() -> Path:
    """ComfyUI's output folder; outputs must live under it so /view can serve them."""
    import folder_paths  # ComfyUI module, only present inside ComfyUI

    return Path(folder_paths.get_output_directory())


def output_path(prefix: str, ext: str, settings: Settings) -> Path:
    """A fresh file under <output>/<output.subfolder>/<prefix's folder>/ (prefix like 'avatar/mesh');
    ``settings``: the ones the node loaded for this run."""
    sub = settings.output.subfolder
    folder, _, stem = prefix.strip("/").rpartition("/")
    base = output_root() / sub / folder
    resolved = base.resolve()
    if output_root().resolve() not in (resolved, *resolved.parents):
        raise AvatarError(
            "filename_prefix", f"{prefix!r} leaves the output folder", "use a relative name like 'avatar/mesh'"
        )
    return next_output_path(base, stem or "asset", ext)


def file_ref(path: str | os.PathLike[str]) -> dict[str, str]:
    """The {filename, subfolder, type} triple ComfyUI's /view and the driver understand
    (comfy_api's SavedResult, a dict)."""
    rel = Path(path).resolve().relative_to(output_root().resolve())
    return ui.SavedResult(rel.name, rel.parent.as_posix() if str(rel.parent) != "." else "", io.FolderType.output)


def model_file(path: str | os.PathLike[str]) -> str:
    """Path relative to the output folder, as core Preview3D's model_file expects."""
    return Path(path).resolve().relative_to(output_root().resolve()).as_posix()


def ui_files(
    *paths: str | os.PathLike[str], text: str | None = None, images: tuple[str | os.PathLike[str], ...] = ()
) -> dict[str, Any]:
    """A node's ui: ``avatar_files`` (every file it wrote; the driver downloads each entry) plus
    what ComfyUI's editor shows, built with comfy_api's typed helpers: PreviewText for ``text``,
    SavedImages for ``images``. One dict, because NodeOutput takes a single ui."""
    out: dict[str, Any] = {"avatar_files": [file_ref(p) for p in paths]}
    if text is not None:
        out.update(ui.PreviewText(text).as_dict())
    if images:
        out.update(ui.SavedImages([file_ref(p) for p in images]).as_dict())
    return out


def comfy_rgba(image: Any, mask: Any = None):
    """The first picture of an IMAGE batch (+ its MASK) -> (H, W, 4) uint8 RGBA via core.images.

    The mask goes to core as it is: core ignores LoadImage's all-zero 64x64 dummy and refuses
    any other mask whose size differs from the image (naming the mask input and the fix)."""
    from ..core.images import from_comfy

    msk = None if mask is None else (mask[0] if mask.ndim == 3 else mask).cpu().numpy()
    return from_comfy(image[0].cpu().numpy(), msk)
