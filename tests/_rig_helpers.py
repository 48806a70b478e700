"""Test inputs for the rig/VRM tests: primitive humanoid meshes written with trimesh.

The figure follows the mesh convention the image->mesh stage produces: Y-up, metres,
feet at Y=0, facing +Z, the model's left arm on +X, one front-projected texture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from PIL import Image


def _limb(a: tuple[float, float, float], b: tuple[float, float, float], radius: float) -> trimesh.Trimesh:
    return trimesh.creation.cylinder(radius=radius, segment=np.array([a, b], dtype=float), sections=16)


def _sphere(center: tuple[float, float, float], radius: float) -> trimesh.Trimesh:
    s = trimesh.creation.icosphere(subdivisions=2, radius=radius)
    s.apply_translation(center)
    return s


def _box(center: tuple[float, float, float], extents: tuple[float, float, float]) -> trimesh.Trimesh:
    b = trimesh.creation.box(extents=extents)
    b.apply_translation(center)
    return b


def humanoid_parts(height: float = 1.7, pose: str = "A") -> list[trimesh.Trimesh]:
    """Overlapping primitives of a ~`height` m humanoid (A- or T-pose), glTF axes."""
    s = height / 1.7
    parts = [
        _sphere((0, 1.57 * s, 0.0), 0.11 * s),  # head
        _sphere((0, 1.56 * s, 0.10 * s), 0.025 * s),  # nose (+Z = front)
        _limb((0, 1.38 * s, 0), (0, 1.50 * s, 0), 0.05 * s),  # neck
        _box((0, 1.17 * s, 0), (0.36 * s, 0.52 * s, 0.20 * s)),  # torso
        _box((0, 0.87 * s, 0), (0.34 * s, 0.16 * s, 0.19 * s)),  # pelvis
    ]
    for side in (1, -1):  # +1 = model's left (+X)
        x = 0.10 * s * side
        parts += [
            _limb((x, 0.90 * s, 0), (x, 0.48 * s, 0), 0.075 * s),  # thigh
            _limb((x, 0.50 * s, 0), (x, 0.08 * s, 0), 0.06 * s),  # shin
            _box((x, 0.04 * s, 0.05 * s), (0.10 * s, 0.08 * s, 0.25 * s)),  # foot, toes to +Z
        ]
        sh = np.array([0.17 * s * side, 1.39 * s, 0.0])
        if pose == "T":
            d = np.array([side, 0.0, 0.0])
        else:
            d = np.array([side * np.cos(np.radians(45)), -np.sin(np.radians(45)), 0.0])
        elbow = sh + d * 0.28 * s
        wrist = elbow + d * 0.25 * s
        parts += [
            _limb(tuple(sh), tuple(elbow), 0.05 * s),
            _limb(tuple(elbow), tuple(wrist), 0.04 * s),
            _sphere(tuple(wrist + d * 0.07 * s), 0.055 * s),  # hand
        ]
    return parts


def _front_texture(size: int = 128) -> Image.Image:
    """Coloured bands (hair, skin, shirt, trousers, shoes) so a lost texture is visible."""
    img = np.zeros((size, size, 3), dtype=np.uint8)
    bands = [
        (0.0, 0.08, (60, 40, 20)),
        (0.08, 0.2, (240, 200, 170)),
        (0.2, 0.5, (40, 90, 200)),
        (0.5, 0.95, (50, 50, 60)),
        (0.95, 1.0, (120, 20, 20)),
    ]
    for top, bottom, color in bands:
        img[int(top * size) : int(bottom * size) + 1] = color
    return Image.fromarray(img)


def humanoid_mesh(height: float = 1.7, pose: str = "A", textured: bool = True) -> trimesh.Trimesh:
    mesh = trimesh.util.concatenate(humanoid_parts(height, pose))
    if textured:
        v = mesh.vertices
        lo, hi = v.min(axis=0), v.max(axis=0)
        uv = np.stack([(v[:, 0] - lo[0]) / (hi[0] - lo[0]), (v[:, 1] - lo[1]) / (hi[1] - lo[1])], axis=1)
        material = trimesh.visual.material.PBRMaterial(
            baseColorTexture=_front_texture(), metallicFactor=0.0, roughnessFactor=1.0
        )
        mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return mesh


def write_humanoid_glb(path: str | Path, height: float = 1.7, pose: str = "A", textured: bool = True) -> Path:
    path = Path(path)
    humanoid_mesh(height, pose, textured).export(path)
    return path


def write_subdivided_humanoid_glb(path: str | Path, min_faces: int = 20000, pose: str = "A") -> Path:
    """The same figure with enough triangles for timing runs (20-40k)."""
    mesh = humanoid_mesh(pose=pose)
    while len(mesh.faces) < min_faces:
        mesh = mesh.subdivide()
    path = Path(path)
    mesh.export(path)
    return path


def write_faceless_glb(path: str | Path) -> Path:
    """A glTF with a point cloud only: a 'mesh' input that has no faces."""
    path = Path(path)
    trimesh.PointCloud(np.random.default_rng(0).random((50, 3))).export(path)
    return path
