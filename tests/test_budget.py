"""The triangle budget of the CPU rig (blender_cli/_budget.py through core.rig.cpu), in real Blender.

The budget is met before weighting: a Decimate when the mesh is a little over, a voxel remesh sized to
the budget (then a Decimate) when it is far over; the texture must survive either (the VRM's colours on
the shirt and the trousers are compared with the picture's own), and the rig node says what was done.
The time against size is bench/mesh_budget.py's job; here one mid-size mesh keeps the run short.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from comfy_avatar_nodes.core.images import load_image
from comfy_avatar_nodes.core.mesh.silhouette import image_to_mesh
from comfy_avatar_nodes.core.rig.cpu import budget_text, rig_to_vrm_sync
from comfy_avatar_nodes.core.vrm.meta import VrmMeta
from comfy_avatar_nodes.core.vrm.validate import validate_vrm

pytestmark = pytest.mark.blender
# Regions of the example picture (rows, cols) and where they land on the 1.7 m mesh (y, x in metres):
# the figure spans rows 23-696 and cols 48-591 (centre 320), 1.7 m / 674 px.
SHIRT = ((180, 260, 325, 375), (1.12, 1.28, 0.03, 0.12))  # right of the highlight stripe
TROUSERS = ((560, 640, 250, 290), (0.16, 0.33, -0.16, -0.09))  # the model's right shin, below the stripe


@pytest.fixture(scope="module")
def big_mesh(tmp_path_factory, blender_runtime, example_image) -> tuple[Path, int]:
    """The example picture's silhouette at a fine grid: ~115k faces, one closed textured surface."""
    out = tmp_path_factory.mktemp("budget") / "example_fine.glb"
    info = image_to_mesh(load_image(example_image), out, resolution=620)
    return out, info.faces


@pytest.fixture(scope="module")
def picture(example_image) -> np.ndarray:
    return load_image(example_image)[..., :3].astype(float)


def _picture_colour(img: np.ndarray, region) -> np.ndarray:
    r0, r1, c0, c1 = region[0]
    return np.median(img[r0:r1, c0:c1].reshape(-1, 3), 0)


def _vrm_colour(vrm: Path, region) -> np.ndarray:
    """Median texture colour of the VRM's front-facing faces in the region's box of heights and X."""
    y_lo, y_hi, x_lo, x_hi = region[1]
    with open(vrm, "rb") as f:
        mesh = trimesh.load(f, file_type="glb", force="mesh")
    tex = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"), float)
    c = mesh.triangles_center
    sel = (mesh.face_normals[:, 2] > 0.7) & (c[:, 1] > y_lo) & (c[:, 1] < y_hi) & (c[:, 0] > x_lo) & (c[:, 0] < x_hi)
    assert sel.sum() > 5
    uv = mesh.visual.uv[mesh.faces[sel]].mean(1)
    h, w = tex.shape[:2]
    px = tex[np.clip(((1 - uv[:, 1]) * h).astype(int), 0, h - 1), np.clip((uv[:, 0] * w).astype(int), 0, w - 1)]
    return np.median(px, axis=0)


def _meta() -> VrmMeta:
    return VrmMeta(name="Budget", authors=["budget tests"])


def _texture_kept(vrm: Path, img: np.ndarray) -> None:
    for region in (SHIRT, TROUSERS):
        got, want = _vrm_colour(vrm, region), _picture_colour(img, region)
        assert np.abs(got - want).max() < 35, (region, got, want)


def test_far_over_budget_is_remeshed_to_size_and_keeps_its_texture(big_mesh, picture, tmp_path):
    mesh, faces = big_mesh
    assert faces > 100_000
    asset = rig_to_vrm_sync(mesh, tmp_path / "b.vrm", _meta(), max_triangles=15_000)
    b = asset.meta["budget"]
    assert b["triangles_in"] == faces and b["remeshed"] and b["actions"][0].startswith("voxel-remeshed")
    assert "more than 4x the budget" in b["reasons"][0]
    assert asset.meta["triangles"] <= 15_000 and b["triangles_out"] == asset.meta["triangles"] > 9_000
    assert budget_text(asset.meta).startswith(f"{faces} -> {b['triangles_out']} triangles (voxel-remeshed at")
    report = validate_vrm(asset.path)
    assert report.ok, report.summary()
    assert report.facts["triangles"] == asset.meta["triangles"] and report.facts["textures"] >= 1
    _texture_kept(Path(asset.path), picture)


def test_a_little_over_budget_is_decimated_and_under_it_kept(big_mesh, picture, example_image, tmp_path):
    mesh, faces = big_mesh
    asset = rig_to_vrm_sync(mesh, tmp_path / "d.vrm", _meta(), max_triangles=faces // 2)
    b = asset.meta["budget"]
    assert b["actions"] == ["decimated"] and not b["remeshed"]
    assert faces // 2 * 0.9 < asset.meta["triangles"] <= faces // 2
    _texture_kept(Path(asset.path), picture)
    small = tmp_path / "small.glb"
    info = image_to_mesh(load_image(example_image), small, resolution=128)
    kept = rig_to_vrm_sync(small, tmp_path / "k.vrm", _meta(), max_triangles=30_000)
    assert kept.meta["budget"]["actions"] == [] and kept.meta["triangles"] == info.faces
    assert "within the budget of 30000: kept as is" in budget_text(kept.meta)
