"""Export a mesh or VRM to GLB/FBX/OBJ/.blend with levels of detail, previews and metadata (one Blender run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from comfy_api.latest import io

from ..core.config import load_settings
from ._common import MESH_KINDS, file_ref, output_path, ui_files
from ._mesh_inputs import mesh_input, to_asset
from ._metadata import with_workflow

SOURCE_KINDS = (*MESH_KINDS, "vrm", "glb", "fbx", "obj", "blend")


def _previews_tensor(paths: list[str]):
    """RGBA PNGs -> IMAGE batch [B, H, W, 3] in 0..1, composited over white."""
    import numpy as np
    import torch
    from PIL import Image

    frames = []
    for p in paths:
        with Image.open(p) as im:
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:4]
        frames.append(rgba[..., :3] * alpha + (1.0 - alpha))
    return torch.from_numpy(np.stack(frames))


class AvatarExportAsset(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AvatarExportAsset",
            display_name="Export Asset (GLB/FBX/OBJ/.blend + LODs + previews)",
            category="avatar/export",
            description=(
                "Writes the asset in the chosen formats at each level of detail (Blender's Decimate: skin weights and "
                "the armature of a VRM are kept in GLB/FBX), renders preview images (Workbench, transparent background) "
                "and embeds the metadata (GLB asset.extras, custom properties in FBX/.blend). One headless Blender run; "
                "files appear together or not at all."
            ),
            is_output_node=True,
            inputs=[
                mesh_input(
                    "asset",
                    "A mesh (image-to-mesh, Blender executor) or a VRM (rig node) handle, ComfyUI's own "
                    "MESH or 3D file, or a .glb/.obj/.fbx/.vrm path.",
                    vrm=True,
                ),
                io.Boolean.Input(
                    "glb", default=True, tooltip="Binary glTF 2.0 (web, three.js, Unity/Unreal importers)."
                ),
                io.Boolean.Input("fbx", default=True, tooltip="FBX with armature and skin, textures embedded."),
                io.Boolean.Input("obj", default=False, tooltip="Wavefront OBJ + .mtl + texture files (no skin)."),
                io.Boolean.Input("blend", default=False, tooltip="Blender file with textures packed."),
                io.String.Input(
                    "lods",
                    default="1.0, 0.5, 0.25",
                    tooltip="Level-of-detail ratios, comma separated, each in (0, 1]; 0.5 keeps about half the triangles.",
                ),
                io.Int.Input(
                    "preview_size",
                    default=256,
                    min=64,
                    max=1024,
                    step=32,
                    tooltip="Pixel size of the square front/side/three-quarter previews.",
                ),
                io.String.Input(
                    "metadata",
                    default="",
                    multiline=True,
                    tooltip='JSON object embedded in the files, e.g. {"title": "My avatar"}. Keys that look like '
                    "keys, tokens, secrets or passwords are refused.",
                ),
                io.String.Input(
                    "filename_prefix",
                    default="avatar/export",
                    tooltip="Output name under ComfyUI's output folder (comfy-avatar/<prefix>_00001_lod0.glb ...).",
                ),
            ],
            outputs=[
                io.String.Output(
                    "files_json",
                    tooltip="JSON list of the written files: filename, subfolder, type, "
                    "kind, lod_ratio, triangles, bytes, sha256.",
                ),
                io.Image.Output("previews", tooltip="The preview renders as an image batch (over white)."),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],  # the workflow goes into the GLBs, like SaveGLB
        )

    @classmethod
    async def execute(
        cls,
        asset,
        glb: bool,
        fbx: bool,
        obj: bool,
        blend: bool,
        lods: str,
        preview_size: int,
        metadata: str,
        filename_prefix: str,
    ) -> io.NodeOutput:
        from ..core.assets import next_free_stem
        from ..core.export.asset import DEFAULT_VIEWS, export_asset
        from ..core.jsontext import parse_object

        settings = load_settings()
        src = to_asset(asset, "asset", settings, vrm=True).require(SOURCE_KINDS, "asset")
        formats = [name for name, on in (("glb", glb), ("fbx", fbx), ("obj", obj), ("blend", blend)) if on]
        folder = output_path(filename_prefix, "glb", settings).parent
        stem = next_free_stem(folder, filename_prefix.strip("/").rpartition("/")[2] or "export")
        assets = await export_asset(
            Path(src.path),
            folder,
            stem=stem,
            formats=formats,
            lods=lods,
            preview={"size": preview_size, "views": list(DEFAULT_VIEWS)},
            metadata=parse_object(metadata, "metadata", '{"title": "My avatar"}'),
            settings=settings,
        )
        assets = [with_workflow(a, cls.hidden) if a.kind == "glb" else a for a in assets]
        files = [a for a in assets if a.kind != "image"]
        previews = [a for a in assets if a.kind == "image"]
        listing: list[dict[str, Any]] = []
        for a in assets:
            entry = {**file_ref(a.path), "kind": a.kind, "sha256": a.sha256, "bytes": a.meta.get("bytes")}
            for key in ("lod", "lod_ratio", "triangles", "vertices", "skins", "view", "size"):
                if key in a.meta:
                    entry[key] = a.meta[key]
            if a.meta.get("companions"):
                entry["companions"] = [file_ref(p) for p in a.meta["companions"]]
            listing.append(entry)
        every_file = [p for a in files for p in (a.path, *a.meta.get("companions", []))]
        summary = ", ".join(f"{Path(a.path).name} ({a.meta.get('triangles')} tris)" for a in files)
        ui = ui_files(
            *every_file, text=summary, images=tuple(a.path for a in previews)
        )  # previews shown like SaveImage's
        return io.NodeOutput(json.dumps(listing, indent=1), _previews_tensor([a.path for a in previews]), ui=ui)


NODES = [AvatarExportAsset]
