"""Turnaround sheets -> visual hull (core/mesh/hull.py).

Plain tests on drawn outlines (alignment, facing, refusals), and the acceptance check on a real
turnaround: a 3D humanoid whose front and back differ in colour, rendered by real Blender from the
front, the side and the back (tests/_turnaround_helpers.py). The hull's depth at every height must follow
the source model's (the side view's outline), and its back must carry the back view's colours, where
silhouette inflation of the front alone gives a flat figure whose back mirrors the front.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from _turnaround_helpers import (
    BACK_SHIRT,
    BACK_TROUSERS,
    FRONT_SHIRT,
    FRONT_TROUSERS,
    rgba,
    shared_turnaround,
    two_tone_humanoid,
)
from PIL import Image, ImageDraw

from comfy_avatar_nodes.core.errors import AvatarError
from comfy_avatar_nodes.core.mesh.hull import hull_mesh, side_facing, views_to_mesh
from comfy_avatar_nodes.core.mesh.silhouette import silhouette_mesh


def _figure(kind: str, w: int = 400, h: int = 600) -> np.ndarray:
    """Outlines on transparency: a front (body + arms apart + legs), a profile (narrow, feet forward)."""
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    c = (90, 120, 200, 255)
    if kind == "front":
        d.ellipse((170, 40, 230, 110), fill=c)
        d.rectangle((140, 110, 260, 330), fill=c)
        d.rectangle((80, 120, 140, 150), fill=c)
        d.rectangle((260, 120, 320, 150), fill=c)
        d.rectangle((145, 330, 190, 560), fill=c)
        d.rectangle((210, 330, 255, 560), fill=c)
    elif kind == "side_left":  # faces picture-left: feet reach left
        d.ellipse((175, 40, 235, 110), fill=c)
        d.rectangle((180, 110, 230, 330), fill=c)
        d.rectangle((185, 330, 225, 540), fill=c)
        d.rectangle((150, 540, 225, 560), fill=c)
    return np.array(img)


def test_side_view_facing_is_read_off_the_feet():
    left = _figure("side_left")
    right = left[:, ::-1]
    mask = lambda a: a[..., 3] > 128  # noqa: E731
    assert side_facing(mask(left))[0] == "left" and side_facing(mask(right))[0] == "right"
    assert side_facing(mask(left))[1] > 0.02


def test_drawn_turnaround_gets_the_side_views_depth():
    front, side = _figure("front"), _figure("side_left")
    mesh, closed, det = hull_mesh({"front": front, "side": side}, height_m=1.7, resolution=96)
    assert closed.is_watertight and closed.volume > 0
    lo, hi = closed.bounds
    # the side outline is 75 px deep over a 520 px tall figure: 0.245 m; feet forward, so asymmetric in z
    assert hi[1] - lo[1] == pytest.approx(1.7, abs=0.04)
    assert hi[2] - lo[2] == pytest.approx(75 / 520 * 1.7, abs=0.04)
    assert det["facing"].startswith("left (auto")
    # the front's legs and arms stay apart: the hull keeps the front outline
    front_proj = closed.vertices[:, 0]
    assert front_proj.max() - front_proj.min() == pytest.approx(240 / 520 * 1.7, abs=0.05)
    assert det["sources"]["back"].startswith("front view projected through the body")


def test_a_back_view_of_another_pose_is_refused():
    front, side = _figure("front"), _figure("side_left")
    other = np.array(_figure("front"))
    other[330:] = 0  # no legs: not the same figure
    other[:110] = 0
    with pytest.raises(
        AvatarError,
        match=r"back: its outline matches the front view's mirror image only .*Fix: use a "
        r"back view of the same figure",
    ):
        hull_mesh({"front": front, "side": side, "back": other}, resolution=64)


def test_one_view_or_a_back_alone_is_not_a_hull():
    with pytest.raises(AvatarError, match="side: is missing: a back view alone adds no depth"):
        hull_mesh({"front": _figure("front"), "back": _figure("front")})
    with pytest.raises(AvatarError, match="unknown view names"):
        hull_mesh({"front": _figure("front"), "top": _figure("front")})


# ---------------------------------------------------------------- rendered turnarounds (real Blender)


@pytest.fixture(scope="module")
def turnaround(blender_runtime):
    return shared_turnaround()  # one Blender render per test process, shared with test_gate.py


def _row_depth(points: np.ndarray, ys: np.ndarray, band: float = 0.02) -> np.ndarray:
    """z extent of the points in horizontal bands around each height."""
    out = []
    for y in ys:
        sel = np.abs(points[:, 1] - y) < band
        out.append(np.ptp(points[sel, 2]) if sel.sum() > 3 else 0.0)
    return np.array(out)


def _surface_colour(mesh: trimesh.Trimesh, normal: np.ndarray, y_lo: float, y_hi: float) -> np.ndarray:
    """Mean texture colour of the faces facing ``normal`` between two heights (sampled at face centres)."""
    tex = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"), float)
    fn = mesh.face_normals
    centres = mesh.triangles_center
    sel = (fn @ normal > 0.8) & (centres[:, 1] > y_lo) & (centres[:, 1] < y_hi)
    uv = mesh.visual.uv[mesh.faces[sel]].mean(1)
    h, w = tex.shape[:2]
    px = tex[np.clip(((1 - uv[:, 1]) * h).astype(int), 0, h - 1), np.clip((uv[:, 0] * w).astype(int), 0, w - 1)]
    return np.median(px, axis=0)


@pytest.mark.blender
def test_rendered_turnaround_hull_follows_the_source_models_depth_and_back(turnaround, tmp_path):
    views = {k: rgba(Path(turnaround["images"][k])) for k in ("front", "side", "back")}
    out = tmp_path / "hull.glb"
    info = views_to_mesh(views, out, height_m=1.7, resolution=192)
    assert info.method == "visual-hull" and info.views == ["front", "side", "back"]
    assert info.texture_sources == {
        "front": "front view",
        "back": "back view",
        "left": "side view",
        "right": "side view projected through the body (no right view)",
    }
    assert info.side_facing.startswith("left") and info.mirror_iou["back"] > 0.95
    mesh = trimesh.load(out, force="mesh")
    src = two_tone_humanoid()
    src_pts = trimesh.sample.sample_surface(src, 200_000, seed=0)[0]
    # depth follows the model at every height: within the range of the model's depth over +-2 voxels
    # (the smoothing moves a step in depth, e.g. the top of the torso, by a voxel or two)
    ys = np.linspace(0.1, 1.6, 31)
    fine = np.arange(0.05, 1.66, 0.005)
    model = _row_depth(src_pts, fine, band=0.005)
    got = _row_depth(mesh.vertices, ys, band=0.005)
    lo = np.array([model[np.abs(fine - y) <= 0.02].min() for y in ys])
    hi = np.array([model[np.abs(fine - y) <= 0.02].max() for y in ys])
    assert np.all(got > lo - 0.02) and np.all(got < hi + 0.02), np.c_[ys, lo, hi, got]
    mid = np.array([model[np.abs(fine - y) <= 0.0025].mean() for y in ys])
    assert np.median(np.abs(got - mid)) < 0.01
    # the feet reach forward as in the model (toes at z = +0.175, heels at -0.075; both meshes are centred
    # on their bounding box, which the toes and the back of the head span)
    shift = 0.5 * (src.bounds[0, 2] + src.bounds[1, 2])
    feet = mesh.vertices[mesh.vertices[:, 1] < 0.06]
    assert feet[:, 2].max() == pytest.approx(0.175 - shift, abs=0.015)
    assert feet[:, 2].min() == pytest.approx(-0.075 - shift, abs=0.015)
    # textured from the back view on the back, from the front on the front
    back = np.array([0.0, 0.0, -1.0])
    front = np.array([0.0, 0.0, 1.0])
    assert np.abs(_surface_colour(mesh, back, 1.0, 1.3) - BACK_SHIRT).max() < 30
    assert np.abs(_surface_colour(mesh, back, 0.3, 0.7) - BACK_TROUSERS).max() < 30
    assert np.abs(_surface_colour(mesh, front, 1.0, 1.3) - FRONT_SHIRT).max() < 30
    assert np.abs(_surface_colour(mesh, front, 0.3, 0.7) - FRONT_TROUSERS).max() < 30


@pytest.mark.blender
def test_without_a_back_view_the_back_mirrors_the_front_and_says_so(turnaround, tmp_path):
    views = {k: rgba(Path(turnaround["images"][k])) for k in ("front", "side")}
    info = views_to_mesh(views, tmp_path / "hull.glb", resolution=128)
    assert info.texture_sources["back"] == "front view projected through the body (no back view)"
    mesh = trimesh.load(tmp_path / "hull.glb", force="mesh")
    assert np.abs(_surface_colour(mesh, np.array([0.0, 0.0, -1.0]), 1.0, 1.3) - FRONT_SHIRT).max() < 30


@pytest.mark.blender
def test_silhouette_inflation_of_the_same_front_is_a_cookie(turnaround):
    """What the hull fixes: inflation gives the torso the depth its width suggests and no forward feet."""
    mesh, _ = silhouette_mesh(rgba(Path(turnaround["images"]["front"])), height_m=1.7)
    feet = mesh.vertices[mesh.vertices[:, 1] < 0.06]
    assert feet[:, 2].max() + feet[:, 2].min() == pytest.approx(0.0, abs=0.01)  # symmetric: no toes forward
