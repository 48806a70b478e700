"""Plain vertex + face arrays (ComfyUI's core MESH, anything else that hands over raw geometry) -> a GLB.

ComfyUI 0.8.0's native 3D nodes (Hunyuan3D's VAE decode, VoxelToMesh) pass a MESH: a batch of vertex
and face tensors, in glTF axes (Y up; SaveGLB writes them as they are) and in the model's own units
(VoxelToMesh centres the grid in [-1, 1]). Our nodes pass files, because Blender runs in another
process, so a MESH is written to a GLB first. Its height is scaled to ``height_m`` (metres are what
a VRM needs; the units of a MESH mean nothing) and it is stood on Y=0, centred in X and Z, so it reads
like every other mesh the rig gets. It has no UVs or texture: the VRM gets a plain material.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..assets import atomic_path
from ..errors import AvatarError

log = logging.getLogger("comfy_avatar.mesh_arrays")


def arrays_to_glb(
    vertices: Any, faces: Any, out: str | Path, *, height_m: float = 1.7, what: str = "mesh"
) -> dict[str, Any]:
    """Write one mesh of (n, 3) vertices and (m, 3) triangle indices as a GLB; returns what was done."""
    import trimesh

    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) < 3:
        raise AvatarError(
            what,
            f"has vertices of shape {tuple(v.shape)}, expected (n, 3) with n >= 3",
            "connect a mesh with geometry (e.g. VoxelToMesh's or a Hunyuan3D decode's MESH)",
        )
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise AvatarError(
            what,
            f"has faces of shape {tuple(f.shape)}, expected (m, 3) triangles",
            "connect a triangle mesh (a point cloud cannot be rigged)",
        )
    if not np.isfinite(v).all():
        raise AvatarError(what, "has NaN or infinite vertex positions", "check the node that made the mesh")
    f = f.astype(np.int64)
    if f.min() < 0 or f.max() >= len(v):
        raise AvatarError(what, f"has face indices outside 0..{len(v) - 1}", "check the node that made the mesh")
    lo, hi = v.min(0), v.max(0)
    height = float(hi[1] - lo[1])
    if height <= 0:
        raise AvatarError(what, "is flat: all vertices at one height (Y)", "connect a mesh that stands along Y")
    scale = float(height_m) / height
    v = (v - np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2])) * scale
    mesh = trimesh.Trimesh(vertices=v, faces=f, process=True)
    buf = io.BytesIO()
    mesh.export(buf, file_type="glb")
    with atomic_path(out) as tmp:
        tmp.write_bytes(buf.getvalue())
    log.info(
        "wrote %s: %d vertices, %d faces, scaled x%.4g to %.2f m",
        out,
        len(mesh.vertices),
        len(mesh.faces),
        scale,
        height_m,
    )
    return {
        "vertices": int(len(mesh.vertices)),
        "faces": int(len(mesh.faces)),
        "scaled_from_height": round(height, 6),
        "scale": round(scale, 6),
        "height_m": float(height_m),
    }
