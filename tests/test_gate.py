"""The humanoid gate before rigging (core/rig/gate.py, run inside the rig job by blender_cli/_gate.py).

Pictures of things that are not humanoids are made here (Pillow: a chair, a table, a dog, a house, a car)
and turned into meshes the way a user's picture would be (silhouette inflation); the humanoids are the
repository's example picture, the tests' primitive figure and real Blender renders of it, and the
same render from the side or at three quarters stands in for a wrong "front" picture. Plain tests check
the verdicts; the Blender ones check that the rig node's path refuses with the reason and the fix, and
that warn mode rigs anyway and says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from _rig_helpers import humanoid_mesh
from _turnaround_helpers import (
    building_picture,
    chair_picture,
    quadruped_picture,
    rgba,
    shared_turnaround,
    table_picture,
    vehicle_picture,
)

from comfy_avatar_nodes.core.errors import AvatarError
from comfy_avatar_nodes.core.images import load_image
from comfy_avatar_nodes.core.mesh.silhouette import image_to_mesh, silhouette_mesh
from comfy_avatar_nodes.core.rig.cpu import budget_text, rig_to_vrm_sync
from comfy_avatar_nodes.core.rig.gate import assess_humanoid
from comfy_avatar_nodes.core.vrm.meta import VrmMeta
from comfy_avatar_nodes.core.vrm.validate import validate_vrm

PICTURES = {
    "chair": chair_picture,
    "table": table_picture,
    "quadruped": quadruped_picture,
    "building": building_picture,
    "vehicle": vehicle_picture,
}


def _verdict_of_picture(path: Path):
    mesh, _ = silhouette_mesh(load_image(path))
    return assess_humanoid(mesh.vertices, mesh.faces)


@pytest.mark.parametrize("kind", sorted(PICTURES))
def test_things_that_are_not_humanoids_are_told_apart(tmp_path, kind):
    verdict = _verdict_of_picture(PICTURES[kind](tmp_path / f"{kind}.png"))
    assert not verdict.ok and verdict.kind == kind, verdict.reasons
    assert "measured: height/width" in verdict.problem()
    if kind == "quadruped":
        assert verdict.fix().startswith("VRM is a humanoid-only format")
    else:
        assert "Export Asset" in verdict.fix()


@pytest.mark.parametrize("pose", ["A", "T"])
def test_the_primitive_humanoid_passes_in_both_poses(pose):
    mesh = humanoid_mesh(pose=pose)
    verdict = assess_humanoid(mesh.vertices, mesh.faces)
    assert verdict.ok and verdict.kind == "humanoid", verdict.reasons
    assert verdict.confidence["overall"] > 0.9


def test_the_example_picture_passes(example_image):
    verdict = _verdict_of_picture(example_image)
    assert verdict.ok, verdict.reasons


def test_a_figure_turned_sideways_is_a_side_view():
    """The primitive humanoid turned 90 degrees: its front outline is its profile."""
    mesh = humanoid_mesh()
    mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    verdict = assess_humanoid(mesh.vertices, mesh.faces)
    assert verdict.kind == "side_view", verdict.reasons
    assert "turnaround" in verdict.fix() and "front view" in verdict.fix()


# ---------------------------------------------------------------- real renders, real rig jobs


@pytest.fixture(scope="module")
def renders(blender_runtime):
    return shared_turnaround()["images"]


@pytest.mark.blender
@pytest.mark.parametrize("view", ["front", "back"])
def test_rendered_front_and_back_pass(renders, view):
    mesh, _ = silhouette_mesh(rgba(Path(renders[view])))
    assert assess_humanoid(mesh.vertices, mesh.faces).ok


@pytest.mark.blender
@pytest.mark.parametrize("view", ["side", "right", "three_quarter"])
def test_rendered_side_and_three_quarter_views_as_the_front_are_side_views(renders, view):
    mesh, _ = silhouette_mesh(rgba(Path(renders[view])))
    verdict = assess_humanoid(mesh.vertices, mesh.faces)
    assert verdict.kind == "side_view", verdict.reasons


def _meta() -> VrmMeta:
    return VrmMeta(name="Gate", authors=["gate tests"])


@pytest.mark.blender
def test_rig_refuses_a_side_view_as_the_front_with_the_fix(renders, tmp_path):
    mesh = tmp_path / "side.glb"
    image_to_mesh(rgba(Path(renders["side"])), mesh)
    with pytest.raises(AvatarError) as err:
        rig_to_vrm_sync(mesh, tmp_path / "side.vrm", _meta())
    text = str(err.value)
    assert text.startswith("mesh (side.glb): is not a standing humanoid seen from the front (side_view)")
    assert "Fix: give a front view" in text and "turnaround" in text
    assert err.value.verdict["kind"] == "side_view" and not (tmp_path / "side.vrm").exists()


@pytest.mark.blender
@pytest.mark.parametrize("kind", ["chair", "table", "quadruped"])
def test_rig_refuses_the_pictures_of_non_humanoids(tmp_path, kind):
    mesh = tmp_path / f"{kind}.glb"
    image_to_mesh(load_image(PICTURES[kind](tmp_path / f"{kind}.png")), mesh)
    with pytest.raises(AvatarError) as err:
        rig_to_vrm_sync(mesh, tmp_path / f"{kind}.vrm", _meta())
    text = str(err.value)
    assert f"is not a standing humanoid seen from the front ({kind})" in text
    if kind == "quadruped":
        assert "VRM is a humanoid-only format" in text
    else:
        assert "Export Asset" in text and "humanoid_check to warn or off" in text
    assert not (tmp_path / f"{kind}.vrm").exists()


@pytest.mark.blender
def test_warn_mode_rigs_anyway_and_says_so(tmp_path):
    mesh = tmp_path / "chair.glb"
    image_to_mesh(load_image(chair_picture(tmp_path / "chair.png")), mesh)
    asset = rig_to_vrm_sync(mesh, tmp_path / "chair.vrm", _meta(), humanoid_check="warn")
    assert asset.meta["humanoid"]["kind"] == "chair" and asset.meta["humanoid"]["mode"] == "warn"
    assert "NOT a standing humanoid" in budget_text(asset.meta)
    report = validate_vrm(asset.path)
    assert report.facts["quality"]["humanoid_kind"] == "chair"


@pytest.mark.blender
def test_the_rendered_front_rigs_with_a_quality_section(renders, tmp_path):
    mesh = tmp_path / "front.glb"
    image_to_mesh(rgba(Path(renders["front"])), mesh)
    asset = rig_to_vrm_sync(mesh, tmp_path / "front.vrm", _meta())
    assert asset.meta["humanoid"]["ok"]
    q = validate_vrm(asset.path).facts["quality"]
    assert q["landmark_confidence"]["overall"] > 0.9 and q["humanoid_kind"] == "humanoid"
    assert q["stretch"]["measured"] and 1.0 <= q["stretch"]["mean"] < 1.2 and q["stretch"]["max"] < 6
    assert q["symmetry"] > 0.8 and q["pieces"] == 1 and q["loose_bits"] == 0 and q["thin_parts"] == {}


@pytest.mark.blender
def test_a_side_view_rigged_anyway_shows_in_the_quality_section(renders, tmp_path):
    """What the check prevents, measured: the profile read as a front tears triangles in the T-pose and its
    landmarks are guesses, where the front view's stay within 2.5x and are all seen."""
    mesh = tmp_path / "side.glb"
    image_to_mesh(rgba(Path(renders["side"])), mesh)
    asset = rig_to_vrm_sync(mesh, tmp_path / "side.vrm", _meta(), humanoid_check="warn")
    report = validate_vrm(asset.path)
    q = report.facts["quality"]
    assert q["humanoid_kind"] == "side_view" and q["stretch"]["max"] > 6 and q["landmark_confidence"]["overall"] < 0.7
    assert any(w.startswith("quality: the T-pose stretched triangles up to") for w in report.warnings)
    assert any(w.startswith("quality: landmark confidence") for w in report.warnings)
