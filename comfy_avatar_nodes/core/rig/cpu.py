"""CPU humanoid rig + VRM 1.0 export: one Blender job (blender_cli/rig_vrm.py) per avatar.

    meta = VrmMeta(name="Avatar", authors=["me"])
    asset = await rig_to_vrm(Path("figure.glb"), Path("out/avatar.vrm"), meta)
    asset.meta["bone_count"], asset.meta["timings_s"], ...

The Blender script fits a VRM humanoid template skeleton to the mesh's silhouette, makes
the mesh watertight when needed (voxel remesh, texture kept), skins it with automatic
weights (every vertex weighted, <= 4 influences, normalised), poses it into the VRM
T-pose and exports VRM 1.0 facing +Z on Y=0. See blender_cli/rig_vrm.py.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..assets import Asset, require_input_file
from ..config import Settings, load_settings
from ..vrm.export import check_vrm_out, run_vrm_job
from ..vrm.face_inputs import FaceOptions, log_face
from ..vrm.meta import VrmMeta

log = logging.getLogger("comfy_avatar.rig")

SCRIPT = "rig_vrm.py"
MESH_EXTENSIONS = (".glb", ".gltf", ".obj", ".fbx")


def _check_inputs(mesh: Path, out: Path, meta: Any) -> None:
    require_input_file(mesh, "mesh", MESH_EXTENSIONS, "mesh format", "connect the output of an image-to-mesh "
                       "node or give the path of an existing .glb/.obj/.fbx")
    check_vrm_out(out, meta)


_INPUT_FIXES = {
    "mesh": "give a mesh with faces (a .glb/.obj/.fbx of one standing figure), e.g. the image-to-mesh node's output",
    "meta": "fix the VRM meta inputs",
    "out": "name the output file <name>.vrm",
}


async def rig_to_vrm(mesh: Path, out: Path, meta: VrmMeta, *, settings: Settings | None = None,
                     work_dir: Path | None = None, remesh_voxel: float = 0.0, decimate_faces: int = 0,
                     timeout_s: float | None = None, face: FaceOptions | None = None) -> Asset:
    """Rig ``mesh`` and write a VRM 1.0 avatar to ``out`` (atomically); returns the "vrm" Asset.

    remesh_voxel: 0 = remesh only when the mesh is not one closed surface (voxel = height/110),
    > 0 = always remesh at this size (m), < 0 = never. decimate_faces: > 0 caps the triangle count.
    face: expressions, material and landmark overrides (default: the ``face`` settings).
    Asset.meta holds the script's result: bone_count, bone_names, vertices, faces, triangles,
    unweighted_before_fix, dimensions_m, skeleton, timings_s, blender_s.
    """
    mesh, out = Path(mesh).absolute(), Path(out).absolute()
    _check_inputs(mesh, out, meta)
    settings = settings or load_settings()
    blender = settings.blender
    args = {"mesh": str(mesh), "out": str(out), "meta": meta.to_args(), "remesh_voxel": float(remesh_voxel),
            "decimate_faces": int(decimate_faces or 0),
            "face": (face or FaceOptions.from_inputs(settings.face)).to_args()}
    result = await run_vrm_job(SCRIPT, args, out, fixes=_INPUT_FIXES, file_input="mesh", file=mesh,
                               blender=blender, work_dir=work_dir, timeout_s=timeout_s, prefix="comfy-avatar-rig-")
    log.info("rigged %s -> %s: %s bones, %s faces in %.2f s", mesh.name, out.name, result.get("bone_count"),
             result.get("faces"), result["blender_s"])
    log_face(log, mesh.name, result)
    return Asset.from_file(out, "vrm", source_mesh=str(mesh), vrm_meta=meta.to_args(), **result)


def rig_to_vrm_sync(mesh: Path, out: Path, meta: VrmMeta, **kwargs: Any) -> Asset:
    """Blocking wrapper (scripts, tests, bench); safe to call while an event loop runs."""
    from ..runtime.blender import run_sync

    return run_sync(lambda: rig_to_vrm(mesh, out, meta, **kwargs), "rig-vrm")


__all__ = ["rig_to_vrm", "rig_to_vrm_sync", "MESH_EXTENSIONS"]
