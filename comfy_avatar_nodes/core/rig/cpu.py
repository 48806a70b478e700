"""CPU humanoid rig + VRM 1.0 export: one Blender job (blender_cli/rig_vrm.py) per avatar.

    meta = VrmMeta(name="Avatar", authors=["me"])
    asset = await rig_to_vrm(Path("figure.glb"), Path("out/avatar.vrm"), meta)
    asset.meta["bone_count"], asset.meta["timings_s"], ...

The Blender script first asks whether the figure is a standing humanoid seen from the front
(core/rig/gate.py: a chair, a building, a quadruped or a profile is refused with what was
measured and the fix), then makes the mesh watertight and meets the triangle budget before
any weighting (blender_cli/_budget.py: Decimate, or a voxel remesh sized to the budget when the
mesh is far over it; texture kept), fits a VRM humanoid template skeleton to the mesh's
silhouette, skins it with automatic weights (every vertex weighted, <= 4 influences,
normalised), poses it into the VRM T-pose, exports VRM 1.0 facing +Z on Y=0 and writes the
quality facts only it can measure into the file (blender_cli/_quality.py). See
blender_cli/rig_vrm.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..assets import Asset, require_input_file
from ..config import Settings, load_settings
from ..errors import AvatarError, BlenderError
from ..vrm.export import check_vrm_out, run_vrm_job
from ..vrm.face_inputs import FaceOptions, log_face
from ..vrm.meta import VrmMeta

log = logging.getLogger("comfy_avatar.rig")

SCRIPT = "rig_vrm.py"
MESH_EXTENSIONS = (".glb", ".gltf", ".obj", ".fbx")


def _check_inputs(mesh: Path, out: Path, meta: Any) -> None:
    require_input_file(
        mesh,
        "mesh",
        MESH_EXTENSIONS,
        "mesh format",
        "connect the output of an image-to-mesh node or give the path of an existing .glb/.obj/.fbx",
    )
    check_vrm_out(out, meta)


_INPUT_FIXES = {
    "mesh": "give a mesh with faces (a .glb/.obj/.fbx of one standing figure), e.g. the image-to-mesh node's output",
    "meta": "fix the VRM meta inputs",
    "out": "name the output file <name>.vrm",
}
GATE_PREFIX = "humanoid_check: {"


def _gate_refusal(err: BlenderError, mesh: Path) -> AvatarError | None:
    """The job's humanoid-gate refusal (blender_cli/_gate.py sends it as JSON) as the AvatarError a user
    reads: what the figure looks like instead, what was measured, and the fix for that kind."""
    if not err.problem.startswith(GATE_PREFIX):
        return None
    try:
        data = json.loads(err.problem[len("humanoid_check: ") :])
    except ValueError:
        return None
    refusal = AvatarError(f"mesh ({mesh.name})", data["problem"], data["fix"])
    refusal.verdict = data.get("verdict", {})  # type: ignore[attr-defined]  # for tests and callers
    return refusal


def _budget_args(
    settings: Settings, max_triangles: int | None, decimate_faces: int, humanoid_check: str | None
) -> dict[str, Any]:
    """The job arguments of the triangle budget and the humanoid gate (settings.rig fills what is None)."""
    if max_triangles is None:
        max_triangles = int(decimate_faces) if decimate_faces else settings.rig.max_triangles
    if int(max_triangles) < 0:
        raise AvatarError("max_triangles", f"{max_triangles} is negative", "give a triangle budget, or 0 for none")
    check = humanoid_check or settings.rig.humanoid_check
    if check not in ("refuse", "warn", "off"):
        raise AvatarError(
            "humanoid_check",
            f"{check!r} is not refuse, warn or off",
            "refuse stops a figure that is not a standing humanoid seen from the front, warn only says "
            "so, off skips the check",
        )
    return {"max_triangles": int(max_triangles), "humanoid_check": check}


def budget_text(meta: dict[str, Any]) -> str:
    """One line for the node's message: what the triangle budget step did, and the gate's verdict."""
    b = meta.get("budget") or {}
    text = b.get("summary", "")
    h = meta.get("humanoid")
    if h and not h.get("ok", True):
        text += f"; humanoid check ({h.get('mode')}): NOT a standing humanoid seen from the front ({h.get('kind')})"
    return text


async def rig_to_vrm(
    mesh: Path,
    out: Path,
    meta: VrmMeta,
    *,
    settings: Settings | None = None,
    work_dir: Path | None = None,
    remesh_voxel: float = 0.0,
    decimate_faces: int = 0,
    max_triangles: int | None = None,
    humanoid_check: str | None = None,
    timeout_s: float | None = None,
    face: FaceOptions | None = None,
) -> Asset:
    """Rig ``mesh`` and write a VRM 1.0 avatar to ``out`` (atomically); returns the "vrm" Asset.

    remesh_voxel: 0 = remesh only when the mesh is not one closed surface (voxel = height/110),
    > 0 = always remesh at this size (m), < 0 = never. decimate_faces: > 0 caps the triangle count.
    max_triangles: the triangle budget met before weighting (None: settings.rig.max_triangles, or
    decimate_faces when given; 0: none); far over it the mesh is voxel-remeshed to size first.
    humanoid_check: refuse | warn | off (None: settings.rig.humanoid_check); a refusal is an
    AvatarError saying what the figure looks like and the fix. Asset.meta also holds budget
    (what was done), humanoid (the gate's verdict) and quality (written into the file too).
    face: expressions, material and landmark overrides (default: the ``face`` settings).
    Asset.meta holds the script's result: bone_count, bone_names, vertices, faces, triangles,
    unweighted_before_fix, dimensions_m, skeleton, timings_s, blender_s.
    """
    mesh, out = Path(mesh).absolute(), Path(out).absolute()
    _check_inputs(mesh, out, meta)
    settings = settings or load_settings()
    blender = settings.blender
    args = {
        "mesh": str(mesh),
        "out": str(out),
        "meta": meta.to_args(),
        "remesh_voxel": float(remesh_voxel),
        "decimate_faces": int(decimate_faces or 0),
        "face": (face or FaceOptions.from_inputs(settings.face)).to_args(),
    }
    args.update(_budget_args(settings or load_settings(), max_triangles, decimate_faces, humanoid_check))
    try:
        result = await run_vrm_job(
            SCRIPT,
            args,
            out,
            fixes=_INPUT_FIXES,
            file_input="mesh",
            file=mesh,
            blender=blender,
            work_dir=work_dir,
            timeout_s=timeout_s,
            prefix="comfy-avatar-rig-",
        )
    except BlenderError as e:
        raise (_gate_refusal(e, mesh) or e) from None
    log.info(
        "rigged %s -> %s: %s bones, %s faces in %.2f s",
        mesh.name,
        out.name,
        result.get("bone_count"),
        result.get("faces"),
        result["blender_s"],
    )
    log_face(log, mesh.name, result)
    return Asset.from_file(out, "vrm", source_mesh=str(mesh), vrm_meta=meta.to_args(), **result)


def rig_to_vrm_sync(mesh: Path, out: Path, meta: VrmMeta, **kwargs: Any) -> Asset:
    """Blocking wrapper (scripts, tests, bench); safe to call while an event loop runs."""
    from ..runtime.blender import run_sync

    return run_sync(lambda: rig_to_vrm(mesh, out, meta, **kwargs), "rig-vrm")


__all__ = ["rig_to_vrm", "rig_to_vrm_sync", "budget_text", "MESH_EXTENSIONS"]
