"""The CPU image -> VRM path as one call, built from the same stage functions the nodes use
(load/from_comfy -> image_to_mesh -> rig_to_vrm -> validate_vrm). Used by tests and bench/."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from .assets import Asset, next_output_path
from .config import Settings
from .images import load_image
from .mesh.silhouette import image_to_mesh
from .rig.cpu import rig_to_vrm
from .vrm.meta import VrmMeta
from .vrm.validate import VrmReport, validate_vrm


@dataclass
class CpuPathResult:
    mesh: Asset
    vrm: Asset
    report: VrmReport
    timings_s: dict[str, float] = field(default_factory=dict)


async def image_to_vrm_cpu(
    image: str | Path,
    out_dir: str | Path,
    meta: VrmMeta | None = None,
    *,
    height_m: float = 1.7,
    thickness: float = 0.5,
    resolution: int = 256,
    remesh_voxel: float = 0.0,
    settings: Settings | None = None,
) -> CpuPathResult:
    """Image file -> textured GLB -> rigged VRM 1.0 -> validation report, all under ``out_dir``."""
    out_dir = Path(out_dir)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    rgba = load_image(image, what=f"image {Path(image).name}")
    mesh_path = next_output_path(out_dir, "mesh", "glb")
    info = await asyncio.to_thread(
        image_to_mesh,
        rgba,
        mesh_path,
        height_m=height_m,
        thickness=thickness,
        resolution=resolution,
        what=f"image {Path(image).name}",
    )
    mesh = Asset.from_file(mesh_path, "mesh", source="silhouette-inflation-cpu", **info.to_dict())
    timings["mesh"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    vrm = await rig_to_vrm(
        mesh_path,
        next_output_path(out_dir, "avatar", "vrm"),
        meta or VrmMeta(name="Avatar"),
        settings=settings,
        remesh_voxel=remesh_voxel,
    )
    timings["rig_export"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = await asyncio.to_thread(validate_vrm, vrm.path)
    timings["validate"] = time.perf_counter() - t0
    return CpuPathResult(mesh=mesh, vrm=vrm, report=report, timings_s=timings)
