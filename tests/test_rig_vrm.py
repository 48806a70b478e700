"""CPU humanoid rig + VRM 1.0 export (blender_cli/rig_vrm.py through core.rig.cpu), checked three ways:
core.vrm.validate, the Khronos glTF-Validator and @pixiv/three-vrm in Node (tests/js)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from _js import check_with_node
from _rig_helpers import humanoid_mesh, write_faceless_glb, write_humanoid_glb
from _vrm_helpers import rewrite_json

from comfy_avatar_nodes.core.errors import AvatarError
from comfy_avatar_nodes.core.rig.cpu import rig_to_vrm_sync
from comfy_avatar_nodes.core.vrm.meta import VrmMeta
from comfy_avatar_nodes.core.vrm.spec import REQUIRED_BONES, VRM_LICENSE_URL
from comfy_avatar_nodes.core.vrm.validate import validate_vrm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "blender_cli"))
from _rig_fit import BONES, fit_skeleton  # noqa: E402

ALL_BONES = [b[0] for b in BONES]
SHOE, SHIRT, TROUSERS = (120, 20, 20), (40, 90, 200), (50, 50, 60)  # colours in _rig_helpers' texture


def _meta(**kw) -> VrmMeta:
    return VrmMeta(name=kw.pop("name", "Test Figure"), authors=kw.pop("authors", ["rig tests"]), **kw)


def _to_blender(v: np.ndarray) -> np.ndarray:
    """glTF (Y up, front +Z) -> Blender (Z up, front -Y)."""
    return np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)


# ---------------------------------------------------------------- no Blender needed


def test_vrm_meta_validation():
    assert _meta(authors="a, b ,").authors == ["a", "b"]
    assert _meta(license_url="https://vrm.dev/licenses/1.0").license_url == VRM_LICENSE_URL
    cases = [
        (dict(name="  "), "meta.name: is empty"),
        (dict(authors=[" "]), "meta.authors: no author given"),
        (dict(avatar_permission="anyone"), "meta.avatar_permission: 'anyone' is not a VRM 1.0 value"),
        (dict(commercial_usage="free"), "meta.commercial_usage"),
        (dict(modification="sure"), "meta.modification"),
        (dict(license_url="https://creativecommons.org/licenses/by/4.0/"), "other_license_url"),
        (dict(other_license_url="cc-by"), "meta.other_license_url: 'cc-by' is not a URL"),
    ]
    for kwargs, message in cases:
        with pytest.raises(AvatarError, match=message.replace("(", r"\(").replace(")", r"\)")):
            _meta(**kwargs)


@pytest.mark.parametrize("pose", ["A", "T"])
def test_skeleton_fit_finds_the_joints_of_a_known_figure(pose):
    mesh = humanoid_mesh(pose=pose)
    sk = fit_skeleton(_to_blender(mesh.vertices), mesh.faces)
    assert sk.fallbacks == []
    b = {k: (h, t) for k, (h, t) in sk.bones.items()}
    assert set(b) == set(ALL_BONES)
    # The figure (see _rig_helpers): legs at x = +-0.10, thighs from 0.90 to 0.48 m, shoulders at
    # (+-0.17, 1.39), elbows 0.28 m and wrists 0.53 m along the arm (45 degrees down or horizontal).
    assert abs(b["leftUpperLeg"][0][0] - 0.10) < 0.02 and abs(b["rightUpperLeg"][0][0] + 0.10) < 0.02
    assert 0.8 < b["hips"][0][2] < 0.95 and 0.42 < b["leftLowerLeg"][0][2] < 0.55
    assert b["head"][0][2] > 1.45 and b["head"][1][2] == pytest.approx(1.68, abs=0.01)
    d = np.array([1.0, -1.0]) / np.sqrt(2) if pose == "A" else np.array([1.0, 0.0])
    shoulder = np.array([0.17, 1.39])
    for name, along in (("leftLowerArm", 0.28), ("leftHand", 0.53)):
        head = b[name][0][[0, 2]]
        assert np.linalg.norm(head - (shoulder + d * along)) < 0.05, (name, head)
        mirrored = b[name.replace("left", "right")][0][[0, 2]] * [-1, 1]
        assert np.linalg.norm(head - mirrored) < 0.03
    assert b["leftFoot"][1][1] < b["leftFoot"][0][1] - 0.05  # toes point to the front (-Y in Blender)


def test_skeleton_fit_falls_back_to_proportions_and_says_so():
    """A plain block (no legs apart, no neck, no arms): every bone still gets a place and a length."""
    block = trimesh.creation.box(extents=(0.4, 0.2, 1.7))
    block.apply_translation((0, 0, 0.85))
    sk = fit_skeleton(block.vertices, block.faces)
    assert any(f.startswith("crotch") for f in sk.fallbacks) and any(f.startswith("neck") for f in sk.fallbacks)
    assert any(f.startswith("left arm") for f in sk.fallbacks)
    assert set(sk.bones) == set(ALL_BONES)
    assert all(np.linalg.norm(t - h) > 0.01 for h, t in sk.bones.values())
    assert sk.bones["hips"][0][2] == pytest.approx(0.47 * 1.7 + 0.06 * 1.7, abs=0.02)


# ---------------------------------------------------------------- real Blender


@pytest.fixture(scope="module")
def built(tmp_path_factory, blender_runtime):
    """The A-pose primitive figure rigged once for the module: (asset, input glb, out dir)."""
    root = tmp_path_factory.mktemp("rig")
    src = write_humanoid_glb(root / "figure.glb", pose="A")
    asset = rig_to_vrm_sync(
        src,
        root / "out" / "figure.vrm",
        _meta(
            name="Primitive A",
            version="0.1",
            avatar_permission="everyone",
            commercial_usage="corporation",
            modification="allowModification",
        ),
    )
    return asset, src, root


@pytest.mark.blender
def test_rig_result_reports_bones_weights_and_sizes(built):
    asset, _src, _root = built
    m = asset.meta
    assert asset.kind == "vrm" and Path(asset.path).is_file() and len(asset.sha256) == 64
    assert m["bone_count"] == len(ALL_BONES) and sorted(m["bone_names"]) == sorted(ALL_BONES)
    assert m["input"]["pieces"] > 1 and m["remeshed"], "overlapping primitives must be remeshed into one skin"
    assert m["weight_sum_min"] == pytest.approx(1.0, abs=1e-3) and m["weight_sum_max"] == pytest.approx(1.0, abs=1e-3)
    assert 5_000 < m["faces"] < 60_000
    assert m["dimensions_m"]["y"] == pytest.approx(1.68, abs=0.03)
    assert m["dimensions_m"]["x"] > 1.2  # T-pose: arm span wider than the A-pose input (1.30 m)
    assert {"import", "watertight", "fit_skeleton", "weights", "t_pose", "export"} <= set(m["timings_s"])
    assert m["vrm_meta"]["name"] == "Primitive A" and m["source_mesh"].endswith("figure.glb")


@pytest.mark.blender
def test_vrm_passes_the_python_validator(built):
    asset, _src, _root = built
    report = validate_vrm(asset.path)
    assert report.ok, report.summary()
    f = report.facts
    assert f["spec_version"] == "1.0" and f["meta_name"] == "Primitive A" and f["authors"] == ["rig tests"]
    assert f["version"] == "0.1" and f["license_url"] == VRM_LICENSE_URL
    assert (f["avatarPermission"], f["commercialUsage"], f["modification"]) == (
        "everyone",
        "corporation",
        "allowModification",
    )
    assert f["missing_required_bones"] == [] and set(f["humanoid_bones"]) == set(ALL_BONES)
    assert f["bad_weight_vertices"] == 0 and f["unskinned_vertices"] == 0 and f["skinned_vertices"] > 5000
    assert f["faces_plus_z"] and f["toes_forward_m"] > 0.05
    assert abs(f["min_y_m"]) < 0.005 and f["height_m"] == pytest.approx(1.68, abs=0.03)
    assert f["textures"] == 1 and f["joints"] == len(ALL_BONES)
    # Smooth shading: the exporter must not split every vertex per face (3x the size, faceted look).
    assert f["vertices"] == asset.meta["vertices"]


@pytest.mark.blender
@pytest.mark.js
def test_vrm_passes_gltf_validator_and_loads_in_three_vrm(built):
    asset, _src, _root = built
    res = check_with_node(asset.path)
    assert res["ok"] and res["exit_code"] == 0, res["errors"]
    assert res["validator"]["numErrors"] == 0
    vrm = res["vrm"]
    assert vrm["specVersion"] == "1.0" and vrm["metaName"] == "Primitive A" and vrm["metaVersion"] == "1"
    assert vrm["missingRequired"] == [] and set(REQUIRED_BONES) <= set(vrm["bonesResolved"])
    assert set(vrm["bonesResolved"]) == set(ALL_BONES)
    assert vrm["leftArmAtPlusX"] and vrm["skinnedMeshes"] == 1 and vrm["texturedMaterials"] == 1
    bones = vrm["bones"]
    # Exported in the VRM T-pose: arms horizontal, hands far out on +X (left) and -X (right).
    for side, sign in (("left", 1), ("right", -1)):
        assert abs(bones[f"{side}Hand"]["world"][1] - bones[f"{side}UpperArm"]["world"][1]) < 0.02
        assert bones[f"{side}Hand"]["world"][0] * sign > 0.5
    assert bones["head"]["world"][1] > bones["hips"]["world"][1] > bones["leftFoot"]["world"][1]
    assert vrm["bounds"]["min"][1] == pytest.approx(0.0, abs=0.005)


@pytest.mark.blender
def test_vrm_keeps_the_texture_where_it_was(built):
    """Colours seen on the VRM: shoes at the feet, shirt on the chest, trousers on the legs."""
    asset, _src, _root = built
    mesh = trimesh.load(asset.path, file_type="glb", force="mesh")
    colors = mesh.visual.to_color().vertex_colors[:, :3].astype(float)
    v = mesh.vertices
    regions = {
        SHOE: v[:, 1] < 0.03,
        SHIRT: (np.abs(v[:, 0]) < 0.1) & (v[:, 1] > 1.1) & (v[:, 1] < 1.3),
        TROUSERS: (v[:, 1] > 0.3) & (v[:, 1] < 0.6),
    }
    for color, sel in regions.items():
        assert sel.sum() > 50
        assert np.abs(np.median(colors[sel], axis=0) - color).max() < 20, (color, np.median(colors[sel], axis=0))


@pytest.mark.blender
def test_t_pose_obj_input_decimated(tmp_path, blender_runtime):
    src = humanoid_mesh(pose="T")
    obj = tmp_path / "figure_t.obj"
    src.export(obj)
    asset = rig_to_vrm_sync(obj, tmp_path / "t.vrm", _meta(name="From OBJ"), decimate_faces=6000)
    assert asset.meta["remeshed"] and 5000 < asset.meta["triangles"] <= 6000
    report = validate_vrm(asset.path)
    assert report.ok, report.summary()
    assert report.facts["faces_plus_z"] and report.facts["height_m"] == pytest.approx(1.68, abs=0.03)
    assert report.facts["bounds_max"][0] > 0.7 and report.facts["bounds_min"][0] < -0.7  # arms out, both sides


@pytest.mark.blender
def test_mesh_in_centimetres_is_scaled_to_metres(tmp_path, blender_runtime):
    src = write_humanoid_glb(tmp_path / "cm.glb", height=170.0, textured=False)
    asset = rig_to_vrm_sync(src, tmp_path / "cm.vrm", _meta(), remesh_voxel=0.0)
    assert asset.meta["placement"]["rescaled_from_height_m"] == pytest.approx(168.0, rel=0.01)
    report = validate_vrm(asset.path)
    assert report.ok, report.summary()
    assert report.facts["height_m"] == pytest.approx(1.6, abs=0.05)


@pytest.mark.blender
@pytest.mark.js
def test_removing_a_bone_from_the_json_is_caught_by_both_validators(built, tmp_path):
    asset, _src, _root = built
    broken = rewrite_json(
        Path(asset.path),
        lambda doc: doc["extensions"]["VRMC_vrm"]["humanoid"]["humanBones"].pop("leftLowerLeg"),
        tmp_path / "no_lower_leg.vrm",
    )
    report = validate_vrm(broken)
    assert not report.ok and report.facts["missing_required_bones"] == ["leftLowerLeg"]
    res = check_with_node(broken)
    assert not res["ok"] and res["exit_code"] == 1
    assert res["validator"]["numErrors"] == 0  # still valid glTF: only the VRM layer is broken
    assert any("leftLowerLeg" in e for e in res["errors"]), res["errors"]


@pytest.mark.blender
@pytest.mark.parametrize("case", ["not_a_mesh", "no_faces", "missing", "wrong_extension"])
def test_bad_mesh_inputs_give_clear_errors_and_no_vrm(tmp_path, blender_runtime, case):
    out_dir = tmp_path / "out"
    if case == "not_a_mesh":
        src = tmp_path / "notes.glb"
        src.write_text("these are my notes, not a mesh")
        expected = "could not be read as GLB"
    elif case == "no_faces":
        src = write_faceless_glb(tmp_path / "points.glb")
        expected = "contains no mesh with faces"
    elif case == "missing":
        src = tmp_path / "nowhere.glb"
        expected = "does not exist"
    else:
        src = tmp_path / "figure.png"
        src.write_bytes(b"\x89PNG\r\n\x1a\n")
        expected = "is not a supported mesh format"
    with pytest.raises(AvatarError) as info:
        rig_to_vrm_sync(src, out_dir / "avatar.vrm", _meta())
    message = str(info.value)
    assert message.startswith("mesh"), message
    assert expected in message and "Fix:" in message
    assert "Traceback" not in message
    assert not out_dir.exists() or list(out_dir.iterdir()) == [], "no (partial) output may be left behind"


@pytest.mark.blender
def test_z_up_mesh_is_stood_upright(tmp_path, blender_runtime):
    """A figure authored Z-up (front -Y) and written to glTF without axis conversion."""
    mesh = humanoid_mesh(textured=False)
    v = mesh.vertices.copy()
    mesh.vertices = np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)
    src = tmp_path / "z_up.glb"
    mesh.export(src)
    asset = rig_to_vrm_sync(src, tmp_path / "z_up.vrm", _meta())
    assert asset.meta["placement"].get("rotated_upright") is True
    report = validate_vrm(asset.path)
    assert report.ok, report.summary()
    assert report.facts["height_m"] == pytest.approx(1.68, abs=0.03)
    assert report.facts["toes_forward_m"] > 0.05  # the feet point to +Z: it faces the right way
