"""A mesh that already has a skeleton and skin (UniRig's merged GLB/FBX) -> VRM 1.0
(blender_cli/rigged_to_vrm.py through core.vrm.export), checked with core.vrm.validate, the Khronos
glTF-Validator and @pixiv/three-vrm.

Test inputs are made like UniRig's output: the CPU rig's VRM of the primitive figure, re-imported
in Blender as plain glTF, its bones renamed bone_0..bone_N in shuffled order (arms posed down
40 degrees and made the rest pose, so the T-pose step has work to do), exported as a plain GLB or
FBX; the humanoid map is written in UniRig's <name>.humanoid.json format.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from _js import check_with_node
from _rig_helpers import write_humanoid_glb
from conftest import comfyui_dir, need

from comfy_avatar_nodes.core.errors import AvatarError
from comfy_avatar_nodes.core.rig.cpu import rig_to_vrm_sync
from comfy_avatar_nodes.core.rig.humanoid import humanoid_map
from comfy_avatar_nodes.core.vrm.export import load_mapping, rigged_to_vrm_sync
from comfy_avatar_nodes.core.vrm.gltf import read_skeleton
from comfy_avatar_nodes.core.vrm.meta import VrmMeta
from comfy_avatar_nodes.core.vrm.spec import REQUIRED_BONES
from comfy_avatar_nodes.core.vrm.validate import validate_vrm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "blender_cli"))
from _rig_fit import BONES  # noqa: E402

ALL_BONES = [b[0] for b in BONES]  # the 19 bones of the CPU template rig

MAKE_RIGGED = r'''
"""Inside Blender: a VRM -> a plain rigged GLB/FBX with bones bone_0..bone_N (shuffled), like UniRig's output."""
import math, os, shutil, sys
sys.path.insert(0, BLENDER_CLI)
import bpy, mathutils
import numpy as np
from _job import run_job


def bake_pose(arm, body):
    bpy.ops.object.select_all(action="DESELECT")
    body.select_set(True)
    bpy.context.view_layer.objects.active = body
    if body.data.shape_keys:  # the source VRM's expression morphs: UniRig's output has none
        body.shape_key_clear()
    bpy.ops.object.modifier_apply(modifier=next(m.name for m in body.modifiers if m.type == "ARMATURE"))
    bpy.ops.object.select_all(action="DESELECT")
    arm.select_set(True)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="POSE")
    bpy.ops.pose.armature_apply(selected=False)
    bpy.ops.object.mode_set(mode="OBJECT")
    body.modifiers.new("Armature", "ARMATURE").object = arm


def main(args, work_dir):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    src = os.path.join(work_dir, "src.glb")
    shutil.copy(args["vrm"], src)
    bpy.ops.import_scene.gltf(filepath=src)
    scene = set(bpy.context.scene.objects)
    arm = next(o for o in scene if o.type == "ARMATURE")
    body = next(o for o in scene if o.type == "MESH" and o.parent is arm)
    for o in list(bpy.data.objects):
        if o not in (arm, body):
            bpy.data.objects.remove(o, do_unlink=True)
    if args.get("arm_down_deg"):
        for side, sign in (("left", 1), ("right", -1)):
            pb = arm.pose.bones[side + "UpperArm"]
            rot = mathutils.Matrix.Rotation(math.radians(args["arm_down_deg"] * sign), 4, "Y")
            head = pb.head.copy()
            pb.matrix = mathutils.Matrix.Translation(head) @ rot @ mathutils.Matrix.Translation(-head) @ pb.matrix
            bpy.context.view_layer.update()
        bake_pose(arm, body)
    names = [b.name for b in arm.data.bones]
    mapping = {}
    for k, name in zip(np.random.default_rng(args["seed"]).permutation(len(names)), names):
        arm.data.bones[name].name = "bone_%d" % k
        mapping[name] = "bone_%d" % k
    if args.get("unit_cube"):  # TRELLIS/UniRig-like: fits a unit cube around the origin, turned
        v = np.array([tuple(body.matrix_world @ x.co) for x in body.data.vertices])
        lo, hi = v.min(axis=0), v.max(axis=0)
        arm.matrix_world = (mathutils.Matrix.Rotation(math.radians(args.get("yaw_deg", 0)), 4, "Z")
                            @ mathutils.Matrix.Scale(1.0 / float((hi - lo).max()), 4)
                            @ mathutils.Matrix.Translation(-mathutils.Vector((lo + hi) / 2)) @ arm.matrix_world)
    out = args["out"]
    if out.endswith(".fbx"):
        bpy.ops.export_scene.fbx(filepath=out, add_leaf_bones=False, path_mode="COPY", embed_textures=True)
    else:
        bpy.ops.export_scene.gltf(filepath=out, export_format="GLB", export_yup=args.get("yup", True),
                                  export_animations=False)
    return {"mapping": mapping}


run_job(main)
'''


def _meta(**kw) -> VrmMeta:
    return VrmMeta(name=kw.pop("name", "Rigged Figure"), authors=kw.pop("authors", ["rigged tests"]), **kw)


def unirig_style_map(mapping: dict[str, str], path: Path) -> Path:
    """A humanoid map file in the format core.rig.unirig writes beside UniRig's output."""
    doc = {
        "heuristic": True,
        "method": "test truth",
        "bone_count": len(mapping),
        "humanBones": mapping,
        "warnings": [],
        "missing_required": [],
        "complete": True,
    }
    path.write_text(json.dumps(doc, indent=1))
    return path


def make_rigged(vrm: Path, out: Path, work: Path, **kw) -> dict[str, str]:
    from comfy_avatar_nodes.core.runtime.blender import run_blender_sync

    script = work / "make_rigged.py"
    script.write_text(f"BLENDER_CLI = {str(ROOT / 'blender_cli')!r}\n" + MAKE_RIGGED)
    res = run_blender_sync(script, {"vrm": str(vrm), "out": str(out), "seed": kw.pop("seed", 7), **kw}, work_dir=work)
    return res.result["mapping"]


# ---------------------------------------------------------------- reading skins back (pygltflib + numpy)


def _read(gltf, blob: bytes, index: int) -> np.ndarray:
    acc = gltf.accessors[index]
    n = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}[acc.type]
    dtype = np.dtype({5121: np.uint8, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}[acc.componentType])
    view = gltf.bufferViews[acc.bufferView]
    stride = view.byteStride or dtype.itemsize * n
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    raw = np.ndarray((acc.count, n), dtype=dtype, buffer=blob, offset=start, strides=(stride, dtype.itemsize))
    out = raw.astype(np.float64)
    if acc.normalized:
        out /= np.iinfo(dtype).max
    return out


def _trs(node) -> np.ndarray:
    if node.matrix:
        return np.array(node.matrix, float).reshape(4, 4).T
    x, y, z, w = node.rotation or (0, 0, 0, 1)
    r = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    m = np.eye(4)
    m[:3, :3] = r * np.array(node.scale or (1, 1, 1), float)
    m[:3, 3] = node.translation or (0, 0, 0)
    return m


def skin_samples(path: Path) -> dict:
    """Skinned rest positions, per-vertex joint names and weights, and joint world positions by name."""
    import pygltflib

    gltf = pygltflib.GLTF2().load_binary(str(path))
    blob = gltf.binary_blob()
    parent = {c: i for i, n in enumerate(gltf.nodes) for c in (n.children or [])}
    world: dict[int, np.ndarray] = {}

    def w(i: int) -> np.ndarray:
        if i not in world:
            world[i] = (w(parent[i]) if i in parent else np.eye(4)) @ _trs(gltf.nodes[i])
        return world[i]

    node = next(n for n in gltf.nodes if n.skin is not None and n.mesh is not None)
    skin = gltf.skins[node.skin]
    names = np.array([gltf.nodes[j].name for j in skin.joints])
    ibm = _read(gltf, blob, skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
    mats = np.stack([w(j) @ ibm[k] for k, j in enumerate(skin.joints)])
    pos, joints, weights = [], [], []
    for prim in gltf.meshes[node.mesh].primitives:
        p = _read(gltf, blob, prim.attributes.POSITION)
        j = _read(gltf, blob, prim.attributes.JOINTS_0).astype(int)
        wt = _read(gltf, blob, prim.attributes.WEIGHTS_0)
        ph = np.c_[p, np.ones(len(p))]
        skinned = np.einsum("vk,vkij,vj->vi", wt, mats[j], ph)[:, :3] / wt.sum(1, keepdims=True)
        pos.append(skinned), joints.append(j), weights.append(wt)
    return {
        "positions": np.concatenate(pos),
        "joints": np.concatenate(joints),
        "weights": np.concatenate(weights),
        "names": names,
        "joint_world": {names[k]: w(j)[:3, 3] for k, j in enumerate(skin.joints)},
    }


def dominant(s: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per vertex: name of the joint with the largest weight, that weight, and the margin to the second."""
    order = np.argsort(-s["weights"], axis=1)
    rows = np.arange(len(order))
    top, second = s["weights"][rows, order[:, 0]], s["weights"][rows, order[:, 1]]
    return s["names"][s["joints"][rows, order[:, 0]]], top, top - second


# ---------------------------------------------------------------- no Blender needed


def test_mapping_formats_and_what_a_bad_map_says(tmp_path):
    truth = {b: f"bone_{i}" for i, b in enumerate(reversed(ALL_BONES))}
    from_file = load_mapping(unirig_style_map(truth, tmp_path / "a.humanoid.json"))
    assert from_file == truth and list(from_file)[:3] == ["hips", "spine", "head"]  # VRM order, required first
    assert load_mapping(truth) == truth and load_mapping(json.dumps(truth)) == truth
    assert load_mapping({"humanBones": {k: f" {v} " for k, v in truth.items()}}) == truth

    def error(mapping) -> str:
        with pytest.raises(AvatarError) as info:
            load_mapping(mapping)
        assert str(info.value).startswith("mapping: ") and "Fix: " in str(info.value)
        return str(info.value)

    short = {k: v for k, v in truth.items() if k not in ("leftLowerArm", "rightFoot", "neck")}
    assert "misses the required VRM bones rightFoot, leftLowerArm." in error(short)
    assert "'leftElbow' are not VRM 1.0 humanoid bone names" in error({**truth, "leftElbow": "bone_99"})
    assert "bone_3 for leftHand and rightHand. Fix" in error({**truth, "leftHand": "bone_3", "rightHand": "bone_3"})
    assert "hips must each name a bone" in error({**truth, "hips": ""})
    assert "is not valid JSON" in error("{not json")
    assert "must be a JSON object, got list" in error(["hips"])
    assert "does not exist" in error(tmp_path / "nowhere.json")
    incomplete = {"humanBones": {"hips": "bone_0"}, "complete": False, "missing_required": ["spine"]}
    assert "misses the required VRM bones spine, head" in error(incomplete)


@pytest.mark.parametrize("case", ["missing", "wrong_extension", "empty", "bad_out", "height"])
def test_bad_inputs_fail_before_blender_starts(tmp_path, case, monkeypatch):
    import comfy_avatar_nodes.core.runtime.blender as blender

    monkeypatch.setattr(blender, "find_runtime", lambda cfg=None: pytest.fail("Blender must not be looked for"))
    src, out, kw = tmp_path / "rig.glb", tmp_path / "out" / "a.vrm", {}
    src.write_bytes(b"glTF....")
    mapping = {b: b for b in REQUIRED_BONES}
    expected = {
        "missing": "rigged: file",
        "wrong_extension": "rigged: rig.obj is not a supported rigged format",
        "empty": "rigged: rig.glb is empty",
        "bad_out": "out: ",
        "height": "target_height_m: 25 m",
    }[case]
    if case == "missing":
        src = tmp_path / "nowhere.glb"
    elif case == "wrong_extension":
        src = src.rename(tmp_path / "rig.obj")
    elif case == "empty":
        src.write_bytes(b"")
    elif case == "bad_out":
        out = tmp_path / "out" / "a.glb"
    else:
        kw["target_height_m"] = 25
    with pytest.raises(AvatarError, match=expected):
        rigged_to_vrm_sync(src, mapping, out, _meta(), **kw)
    assert not out.parent.exists()


# ---------------------------------------------------------------- real Blender


@pytest.fixture(scope="module")
def rigged(tmp_path_factory, blender_runtime):
    """UniRig-like inputs made once: {name: (path, truth mapping)} plus the source VRM."""
    root = tmp_path_factory.mktemp("rigged")
    vrm = rig_to_vrm_sync(
        write_humanoid_glb(root / "figure.glb", pose="A"), root / "figure.vrm", _meta(name="Template")
    ).path
    made = {"source_vrm": Path(vrm)}
    for name, kw in {
        "a_pose.glb": {"arm_down_deg": 40, "seed": 7},
        "cube.glb": {"arm_down_deg": 40, "seed": 11, "unit_cube": True, "yaw_deg": 90, "yup": False},
        "a_pose.fbx": {"arm_down_deg": 40, "seed": 5},
    }.items():
        path = root / name
        made[name] = (path, make_rigged(Path(vrm), path, root, **kw))
    return made


@pytest.fixture(scope="module")
def converted(rigged, tmp_path_factory):
    """a_pose.glb with its UniRig-style map file -> VRM (scaled to 1.7 m)."""
    root = tmp_path_factory.mktemp("converted")
    path, truth = rigged["a_pose.glb"]
    asset = rigged_to_vrm_sync(
        path,
        unirig_style_map(truth, root / "a_pose.humanoid.json"),
        root / "a_pose.vrm",
        _meta(name="From UniRig", version="0.2", commercial_usage="corporation"),
    )
    return asset, truth


@pytest.mark.blender
def test_rigged_glb_becomes_a_valid_vrm_with_vrm_bone_names(converted):
    asset, truth = converted
    m = asset.meta
    assert asset.kind == "vrm" and Path(asset.path).is_file() and m["source_rigged"].endswith("a_pose.glb")
    assert m["humanoid"] == {b: b for b in ALL_BONES if b in m["humanoid"]} and set(m["humanoid"]) == set(ALL_BONES)
    assert m["humanoid_source"] == truth and m["dropped_optional_bones"] == {}
    assert m["unweighted_before_fix"] == 0, "UniRig-style skins are complete: nothing to fill in"
    assert m["meshes_in"] == 1 and m["vertices_in"] == m["vertices"], "the importer's bone-shape mesh must be left out"
    assert not any(n.startswith("bone_") for n in m["bone_names"]) and m["bone_count"] == m["bones_in"] == 19
    report = validate_vrm(asset.path)
    assert report.ok, report.summary()
    f = report.facts
    assert f["meta_name"] == "From UniRig" and f["version"] == "0.2" and f["commercialUsage"] == "corporation"
    assert set(f["humanoid_bones"]) == set(ALL_BONES) and f["missing_required_bones"] == []
    assert f["bad_weight_vertices"] == 0 and f["unskinned_vertices"] == 0
    assert f["faces_plus_z"] and f["toes_forward_m"] > 0.05
    assert abs(f["min_y_m"]) < 0.005 and f["height_m"] == pytest.approx(1.7, abs=0.02)
    assert f["textures"] == 1


@pytest.mark.blender
@pytest.mark.js
def test_vrm_passes_gltf_validator_and_three_vrm_in_t_pose(converted):
    asset, _truth = converted
    res = check_with_node(asset.path)
    assert res["ok"] and res["exit_code"] == 0, res["errors"]
    assert res["validator"]["numErrors"] == 0
    vrm = res["vrm"]
    assert vrm["specVersion"] == "1.0" and vrm["metaName"] == "From UniRig"
    assert vrm["missingRequired"] == [] and set(REQUIRED_BONES) <= set(vrm["bonesResolved"])
    assert vrm["leftArmAtPlusX"] and vrm["skinnedMeshes"] == 1
    bones = vrm["bones"]
    for side, sign in (("left", 1), ("right", -1)):  # the input had its arms 40 degrees down
        assert abs(bones[f"{side}Hand"]["world"][1] - bones[f"{side}UpperArm"]["world"][1]) < 0.02
        assert bones[f"{side}Hand"]["world"][0] * sign > 0.5
    assert vrm["bounds"]["min"][1] == pytest.approx(0.0, abs=0.005)


@pytest.mark.blender
def test_skin_weights_are_the_ones_of_the_input(rigged, tmp_path):
    """Kept at the file's size (target 0): torso, legs and head do not move in the T-pose, so their
    vertices are found again at the same place (within 0.1 mm, after the shift that puts the hips over
    the origin) and must carry the same dominant bone with the same weight; over all vertices (arms
    included) the share of vertices per dominant bone must match."""
    path, truth = rigged["a_pose.glb"]
    asset = rigged_to_vrm_sync(path, truth, tmp_path / "kept.vrm", _meta(), target_height_m=0)
    assert asset.meta["placement"]["scale"] == 1.0 and asset.meta["placement"]["rotated"] is False
    src, out = skin_samples(path), skin_samples(Path(asset.path))
    to_vrm = {bone: vrm for vrm, bone in truth.items()}
    src_dom, src_top, src_margin = dominant(src)
    src_dom = np.array([to_vrm[n] for n in src_dom])
    out_dom, out_top, _ = dominant(out)
    # the head bone sits at the same place relative to the mesh before and after
    shift = out["joint_world"]["head"] - src["joint_world"][truth["head"]]
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(src["positions"] + shift).query(out["positions"])
    still = (dist < 1e-4) & (src_margin[idx] > 0.05)
    assert still.sum() > 0.4 * len(out_dom), f"only {still.sum()} of {len(out_dom)} vertices found again"
    agree = out_dom[still] == src_dom[idx[still]]
    assert agree.all(), f"{(~agree).sum()} vertices changed their dominant bone"
    assert np.abs(out_top[still] - src_top[idx[still]]).max() < 1e-3
    assert set(out_dom[still]) >= {"hips", "spine", "chest", "head", "leftUpperLeg", "rightLowerLeg", "leftFoot"}
    share = lambda names: {b: float(np.mean(names == b)) for b in ALL_BONES}  # noqa: E731
    s_in, s_out = share(src_dom), share(out_dom)
    assert max(abs(s_in[b] - s_out[b]) for b in ALL_BONES) < 0.02, (s_in, s_out)
    assert s_out["leftLowerArm"] > 0.01 and s_out["rightHand"] > 0.01


@pytest.mark.blender
@pytest.mark.js
def test_unit_cube_z_up_input_turned_to_face_z_and_scaled(rigged, tmp_path):
    """UniRig-like: the figure fits a unit cube around the origin, is turned 90 degrees and was written
    Z-up without axis conversion (lying along glTF Z)."""
    path, truth = rigged["cube.glb"]
    src = read_skeleton(path)
    assert np.ptp(src.positions[:, 2]) > 1.2 * np.ptp(src.positions[:, 1]), "the test input must lie along Z"
    asset = rigged_to_vrm_sync(path, truth, tmp_path / "cube.vrm", _meta(), target_height_m=1.6)
    p = asset.meta["placement"]
    assert p["rotated"] and p["snapped_to_axes"] and p["height_in"] == pytest.approx(1.0, abs=0.01)
    assert p["scale"] == pytest.approx(1.6, rel=0.01)
    report = validate_vrm(asset.path)
    assert report.ok, report.summary()
    f = report.facts
    assert f["faces_plus_z"] and f["toes_forward_m"] > 0.05 and f["height_m"] == pytest.approx(1.6, abs=0.02)
    assert abs(f["min_y_m"]) < 0.005
    res = check_with_node(asset.path)
    assert res["ok"] and res["validator"]["numErrors"] == 0 and res["vrm"]["leftArmAtPlusX"], res["errors"]
    bones = res["vrm"]["bones"]
    assert abs(bones["hips"]["world"][0]) < 0.01 and abs(bones["hips"]["world"][2]) < 0.01  # hips over the origin


@pytest.mark.blender
def test_fbx_input_and_the_real_heuristic_map(rigged, tmp_path):
    """UniRig's FBX output; and its GLB with the map core.unirig.humanoid_map guesses from the skeleton."""
    path, truth = rigged["a_pose.fbx"]
    asset = rigged_to_vrm_sync(path, truth, tmp_path / "fbx.vrm", _meta())
    report = validate_vrm(asset.path)
    assert report.ok, report.summary()
    assert report.facts["textures"] == 1 and report.facts["faces_plus_z"]
    glb, truth_glb = rigged["a_pose.glb"]
    guessed = humanoid_map(read_skeleton(glb))
    assert guessed["complete"] and guessed["humanBones"] == {k: truth_glb[k] for k in guessed["humanBones"]}
    map_file = tmp_path / "guess.humanoid.json"
    map_file.write_text(json.dumps(guessed))
    asset = rigged_to_vrm_sync(glb, map_file, tmp_path / "guess.vrm", _meta())
    assert validate_vrm(asset.path).ok and set(asset.meta["humanoid"]) == set(guessed["humanBones"])


@pytest.mark.blender
def test_an_optional_bone_the_add_on_refuses_is_dropped_and_reported(rigged, tmp_path):
    path, truth = rigged["a_pose.glb"]
    mapping = {k: v for k, v in truth.items() if k != "chest"}
    mapping["upperChest"] = truth["chest"]  # VRM needs chest before upperChest
    asset = rigged_to_vrm_sync(path, mapping, tmp_path / "drop.vrm", _meta())
    assert list(asset.meta["dropped_optional_bones"]) == ["upperChest"]
    assert "upperChest" not in asset.meta["humanoid"] and truth["chest"] in asset.meta["bone_names"]
    assert "upperChest" not in asset.meta["bone_names"]
    report = validate_vrm(asset.path)
    assert report.ok and "upperChest" not in report.facts["humanoid_bones"], report.summary()
    assert report.facts["bad_weight_vertices"] == 0 and report.facts["unskinned_vertices"] == 0


@pytest.mark.blender
@pytest.mark.parametrize("case", ["unknown_bone", "not_chained", "no_armature", "not_a_file"])
def test_bad_rigs_and_maps_give_clear_errors_and_no_file(rigged, tmp_path, case):
    path, truth = rigged["a_pose.glb"]
    mapping = dict(truth)
    if case == "unknown_bone":
        mapping["leftHand"] = "bone_99"
        expected = "mapping: names bones that are not in the armature of a_pose.glb: leftHand -> bone_99"
    elif case == "not_chained":
        mapping["leftHand"], mapping["rightHand"] = truth["rightHand"], truth["leftHand"]
        expected = (
            f"mapping: the bones are not chained like a VRM humanoid: leftHand ({truth['rightHand']}) "
            f"is not below leftLowerArm ({truth['leftLowerArm']})"
        )
    elif case == "no_armature":
        path = write_humanoid_glb(tmp_path / "bare.glb")
        expected = "rigged (bare.glb): bare.glb contains no armature"
    else:
        path = tmp_path / "notes.glb"
        path.write_text("not a glTF file at all")
        expected = "rigged (notes.glb): notes.glb could not be read as GLB"
    out_dir = tmp_path / "out"
    with pytest.raises(AvatarError) as info:
        rigged_to_vrm_sync(path, mapping, out_dir / "bad.vrm", _meta())
    message = str(info.value)
    assert message.startswith(expected), message
    assert "Fix: " in message and "Traceback" not in message.split("\n")[0]
    assert not out_dir.exists() or list(out_dir.iterdir()) == [], "no (partial) output may be left behind"


NODE_CALL = r"""
import asyncio, json, sys
sys.path[:0] = [COMFYUI_DIR, ROOT]
import folder_paths
folder_paths.set_output_directory(OUTPUT)
from comfy_avatar_nodes.core.assets import Asset
from comfy_avatar_nodes.nodes.rig import AvatarExportVRMRigged

handle = Asset.from_file(RIGGED, "rigged_mesh", humanoid_map=MAP).to_dict()
widgets = dict(name="Node Rigged", version="1.0", authors="a, b", avatar_permission="everyone",
               commercial_usage="personalNonProfit", modification="prohibited", target_height_m=1.5,
               filename_prefix="avatar/rigged")
out = {}
for label, mapping in (("from_handle", ""), ("pasted", PASTED)):
    res = asyncio.run(AvatarExportVRMRigged.execute(handle, mapping, **widgets))
    out[label] = {"vrm": res.result[0], "model_file": res.result[1], "ui": res.ui}
try:
    asyncio.run(AvatarExportVRMRigged.execute({**handle, "meta": {}}, "  ", **widgets))
except Exception as e:
    out["error"] = str(e)
print(json.dumps(out))
"""


@pytest.mark.comfyui
@pytest.mark.blender
def test_export_vrm_node_in_comfyuis_python(rigged, tmp_path):
    """The node class with ComfyUI's real comfy_api and folder_paths: the map from the UniRig handle or
    pasted into the widget; no map at all is a clear error."""
    import os
    import subprocess

    from _driver_helpers import comfyui_python

    comfyui_dir()
    need(
        bool(comfyui_python()),
        "COMFYUI_DIR has no venv/ (or set COMFYUI_PYTHON): cannot load the node in ComfyUI's Python",
    )
    path, truth = rigged["a_pose.glb"]
    map_file = unirig_style_map(truth, tmp_path / "a_pose.humanoid.json")
    consts = {
        "COMFYUI_DIR": os.environ["COMFYUI_DIR"],
        "ROOT": str(ROOT),
        "OUTPUT": str(tmp_path / "output"),
        "RIGGED": str(path),
        "MAP": str(map_file),
        "PASTED": json.dumps(truth, indent=1),
    }
    script = tmp_path / "node_call.py"
    script.write_text("".join(f"{k} = {v!r}\n" for k, v in consts.items()) + NODE_CALL)
    proc = subprocess.run([comfyui_python(), str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for label, n in (("from_handle", 1), ("pasted", 2)):
        res = out[label]
        assert res["model_file"] == f"comfy-avatar/avatar/rigged_{n:05d}.vrm"
        assert res["vrm"]["kind"] == "vrm" and res["vrm"]["meta"]["humanoid_source"] == truth
        assert res["ui"]["avatar_files"] == [
            {"filename": f"rigged_{n:05d}.vrm", "subfolder": "comfy-avatar/avatar", "type": "output"}
        ]
        assert res["ui"]["text"][0].startswith("19 humanoid bones of 19, 1.50 m tall")
        report = validate_vrm(tmp_path / "output" / res["model_file"])
        assert report.ok and report.facts["meta_name"] == "Node Rigged", report.summary()
        assert report.facts["height_m"] == pytest.approx(1.5, abs=0.02)
    assert out["error"].startswith("humanoid_map: is empty and the rigged handle carries no humanoid map. Fix:")
