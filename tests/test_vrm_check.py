"""core.vrm.validate on hand-built VRM 1.0 files: a valid one, and one broken thing at a time.

The files are written here byte by byte (JSON chunk + BIN chunk), so these tests need no
Blender; test_rig_vrm.py runs the same validator on VRMs that Blender made.
"""

from __future__ import annotations

import copy
import json
import struct
from collections.abc import Callable
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from _vrm_helpers import rewrite_json

from comfy_avatar_nodes.core.vrm.glb import pack_glb
from comfy_avatar_nodes.core.vrm.spec import REQUIRED_BONES
from comfy_avatar_nodes.core.vrm.validate import validate_vrm

SCHEMA = Path(__file__).resolve().parents[1] / "comfy_avatar_nodes" / "schemas" / "vrm_report.schema.json"

# bone -> (parent, world position) of a 1.6 m figure facing +Z, left arm on +X
SKELETON: dict[str, tuple[str | None, tuple[float, float, float]]] = {
    "hips": (None, (0.0, 0.9, 0.0)),
    "spine": ("hips", (0.0, 1.05, 0.0)),
    "head": ("spine", (0.0, 1.45, 0.0)),
    "leftUpperLeg": ("hips", (0.1, 0.85, 0.0)),
    "leftLowerLeg": ("leftUpperLeg", (0.1, 0.47, 0.0)),
    "leftFoot": ("leftLowerLeg", (0.1, 0.07, 0.0)),
    "rightUpperLeg": ("hips", (-0.1, 0.85, 0.0)),
    "rightLowerLeg": ("rightUpperLeg", (-0.1, 0.47, 0.0)),
    "rightFoot": ("rightLowerLeg", (-0.1, 0.07, 0.0)),
    "leftUpperArm": ("spine", (0.18, 1.35, 0.0)),
    "leftLowerArm": ("leftUpperArm", (0.45, 1.35, 0.0)),
    "leftHand": ("leftLowerArm", (0.7, 1.35, 0.0)),
    "rightUpperArm": ("spine", (-0.18, 1.35, 0.0)),
    "rightLowerArm": ("rightUpperArm", (-0.45, 1.35, 0.0)),
    "rightHand": ("rightLowerArm", (-0.7, 1.35, 0.0)),
}


def build_vrm(
    path: Path,
    *,
    weights: str = "float",
    weight_scale: float = 1.0,
    unweighted: int = 0,
    offset: tuple[float, float, float] = (0, 0, 0),
    scale: float = 1.0,
    mirror_x: bool = False,
    feet_back: bool = False,
) -> Path:
    """A tiny skinned VRM 1.0: one triangle per bone, each vertex fully weighted to its bone,
    plus two foot triangles touching Y=0 that reach forward (+Z) past the ankles."""
    names = list(SKELETON)
    sx = -1.0 if mirror_x else 1.0

    def world(name: str) -> np.ndarray:
        x, y, z = SKELETON[name][1]
        return (np.array([x * sx, y, z]) * scale) + np.array(offset)

    nodes = []
    for name in names:
        parent = SKELETON[name][0]
        local = world(name) - (world(parent) if parent else 0)
        nodes.append({"name": name, "translation": local.tolist()})
    for i, name in enumerate(names):
        kids = [j for j, n in enumerate(names) if SKELETON[n][0] == name]
        if kids:
            nodes[i]["children"] = kids
    verts, joints = [], []
    for bi, name in enumerate(names):
        p = world(name)
        for d in ((0.02, 0, 0), (-0.02, 0, 0), (0, 0.03, 0.01)):
            verts.append(p + np.array(d) * scale)
            joints.append(bi)
    toe = -0.12 if feet_back else 0.12
    for foot in ("leftFoot", "rightFoot"):
        a = world(foot)
        for d in ((0.03 * sx, -0.07, 0), (-0.03 * sx, -0.07, 0), (0, -0.07, toe)):
            verts.append(a + np.array(d) * scale)
            joints.append(names.index(foot))
    pos = np.array(verts, dtype=np.float32)
    n = len(pos)
    idx = np.arange(n, dtype=np.uint16)
    j = np.zeros((n, 4), dtype=np.uint8)
    j[:, 0] = joints
    w = np.zeros((n, 4), dtype=np.float32)
    w[:, 0] = weight_scale
    if unweighted:
        w[:unweighted] = 0
    if weights == "ubyte":
        w_bytes, w_type = np.round(w * 255).astype(np.uint8), 5121
    elif weights == "ushort":
        w_bytes, w_type = np.round(w * 65535).astype(np.uint16), 5123
    else:
        w_bytes, w_type = w, 5126
    ibm = np.stack([np.eye(4) for _ in names]).astype(np.float32)
    for i, name in enumerate(names):
        ibm[i, :3, 3] = -world(name)
    ibm_bytes = ibm.transpose(0, 2, 1).copy()  # glTF stores column-major

    parts = [pos.tobytes(), idx.tobytes(), j.tobytes(), w_bytes.tobytes(), ibm_bytes.tobytes()]
    views, blob = [], b""
    for part in parts:
        blob += b"\0" * (-len(blob) % 4)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(part)})
        blob += part
    accessors = [
        {
            "bufferView": 0,
            "componentType": 5126,
            "count": n,
            "type": "VEC3",
            "min": pos.min(axis=0).tolist(),
            "max": pos.max(axis=0).tolist(),
        },
        {"bufferView": 1, "componentType": 5123, "count": n, "type": "SCALAR"},
        {"bufferView": 2, "componentType": 5121, "count": n, "type": "VEC4"},
        {
            "bufferView": 3,
            "componentType": w_type,
            "count": n,
            "type": "VEC4",
            **({"normalized": True} if w_type != 5126 else {}),
        },
        {"bufferView": 4, "componentType": 5126, "count": len(names), "type": "MAT4"},
    ]
    body = len(nodes)
    nodes.append({"name": "Body", "mesh": 0, "skin": 0})
    doc = {
        "asset": {"version": "2.0", "generator": "test_vrm_check"},
        "extensionsUsed": ["VRMC_vrm"],
        "scene": 0,
        "scenes": [{"nodes": [0, body]}],
        "nodes": nodes,
        "meshes": [
            {
                "name": "Body",
                "primitives": [{"attributes": {"POSITION": 0, "JOINTS_0": 2, "WEIGHTS_0": 3}, "indices": 1}],
            }
        ],
        "skins": [{"joints": list(range(len(names))), "inverseBindMatrices": 4, "skeleton": 0}],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": len(blob)}],
        "extensions": {
            "VRMC_vrm": {
                "specVersion": "1.0",
                "meta": {
                    "name": "Synthetic",
                    "version": "1",
                    "authors": ["tests"],
                    "licenseUrl": "https://vrm.dev/licenses/1.0/",
                    "avatarPermission": "onlyAuthor",
                    "commercialUsage": "personalNonProfit",
                    "modification": "prohibited",
                },
                "humanoid": {"humanBones": {name: {"node": i} for i, name in enumerate(names)}},
            }
        },
    }
    path.write_bytes(pack_glb(doc, blob))
    return path


@pytest.fixture
def good(tmp_path) -> Path:
    return build_vrm(tmp_path / "good.vrm")


def _edit(path: Path, fn: Callable[[dict], None]) -> Path:
    return rewrite_json(path, fn, path.with_name("edited.vrm"))


def test_valid_vrm_passes_with_facts(good):
    report = validate_vrm(good)
    assert report.ok, report.summary()
    f = report.facts
    assert f["spec_version"] == "1.0" and f["meta_name"] == "Synthetic" and f["authors"] == ["tests"]
    assert f["missing_required_bones"] == [] and set(f["humanoid_bones"]) == set(REQUIRED_BONES)
    assert f["faces_plus_z"] and f["left_arm_at_plus_x"] and f["head_above_hips"]
    assert f["min_y_m"] == pytest.approx(0.0, abs=1e-4)
    assert f["height_m"] == pytest.approx(1.48, abs=0.01)
    assert f["bad_weight_vertices"] == 0 and f["skinned_vertices"] == f["vertices"] == 51
    assert f["triangles"] == 17 and f["joints"] == 15 and f["file_size"] == good.stat().st_size
    assert f["toes_forward_m"] > 0.05
    assert "OK" in report.summary().splitlines()[0]


def test_report_is_json_and_matches_the_schema(good, tmp_path):
    schema = json.loads(SCHEMA.read_text())
    for path in (good, build_vrm(tmp_path / "bad.vrm", mirror_x=True), tmp_path / "missing.vrm"):
        data = json.loads(json.dumps(validate_vrm(path).to_dict()))
        jsonschema.validate(data, schema)


@pytest.mark.parametrize("kind", ["ubyte", "ushort"])
def test_normalized_integer_weights_are_read(tmp_path, kind):
    report = validate_vrm(build_vrm(tmp_path / f"{kind}.vrm", weights=kind))
    assert report.ok, report.summary()
    assert report.facts["max_weight_sum_error"] < 0.001


@pytest.mark.parametrize("kind", ["float", "ubyte"])
def test_weights_not_summing_to_one_are_reported(tmp_path, kind):
    report = validate_vrm(build_vrm(tmp_path / "w.vrm", weights=kind, weight_scale=0.8))
    assert not report.ok
    assert report.facts["bad_weight_vertices"] == 51
    assert any("51 of 51 vertices have skin weights not summing to 1" in e for e in report.errors)


def test_unweighted_vertices_are_reported(tmp_path):
    report = validate_vrm(build_vrm(tmp_path / "w.vrm", unweighted=5))
    assert not report.ok
    assert any("5 of 51" in e and "5 with no weight at all" in e for e in report.errors), report.errors


def test_missing_required_bone(good):
    def drop(doc):
        del doc["extensions"]["VRMC_vrm"]["humanoid"]["humanBones"]["leftHand"]

    report = validate_vrm(_edit(good, drop))
    assert not report.ok
    assert report.facts["missing_required_bones"] == ["leftHand"]
    assert "required humanoid bones missing: leftHand" in report.errors


def test_two_bones_on_one_node(good):
    def dup(doc):
        bones = doc["extensions"]["VRMC_vrm"]["humanoid"]["humanBones"]
        bones["rightHand"]["node"] = bones["leftHand"]["node"]

    report = validate_vrm(_edit(good, dup))
    assert any("'leftHand' and 'rightHand' share node" in e for e in report.errors), report.errors


def test_bone_node_out_of_range_and_unknown_bone_name(good):
    def bad(doc):
        bones = doc["extensions"]["VRMC_vrm"]["humanoid"]["humanBones"]
        bones["head"]["node"] = 999
        bones["tail"] = {"node": 0}

    report = validate_vrm(_edit(good, bad))
    assert any("'head' points at node 999" in e for e in report.errors), report.errors
    assert any("'tail' is not a VRM 1.0 bone name" in w for w in report.warnings)


def test_bone_outside_its_chain(good):
    def move(doc):  # hang leftHand under hips instead of leftLowerArm
        nodes = doc["nodes"]
        hand = SKELETON_INDEX["leftHand"]
        for n in nodes:
            if hand in n.get("children", []):
                n["children"].remove(hand)
        nodes[SKELETON_INDEX["hips"]]["children"].append(hand)

    report = validate_vrm(_edit(good, move))
    assert "humanoid bone 'leftHand' is not below 'leftLowerArm' in the node hierarchy" in report.errors


SKELETON_INDEX = {name: i for i, name in enumerate(SKELETON)}


def test_model_facing_minus_z_is_an_error(tmp_path):
    report = validate_vrm(build_vrm(tmp_path / "mirrored.vrm", mirror_x=True))
    assert not report.ok
    assert report.facts["faces_plus_z"] is False and report.facts["left_arm_at_plus_x"] is False
    assert any("leftUpperArm is not on +X" in e for e in report.errors)


def test_feet_pointing_back_is_a_warning(tmp_path):
    report = validate_vrm(build_vrm(tmp_path / "back.vrm", feet_back=True))
    assert report.ok
    assert report.facts["toes_forward_m"] < 0
    assert any("feet reach further back" in w for w in report.warnings)


def test_floating_model_and_wrong_units(tmp_path):
    floating = validate_vrm(build_vrm(tmp_path / "float.vrm", offset=(0, 0.3, 0)))
    assert any("the feet are at Y=+0.300 m" in e for e in floating.errors), floating.errors
    cm = validate_vrm(build_vrm(tmp_path / "cm.vrm", scale=100.0))
    assert any("148.000 units tall" in e and "wrong units" in e for e in cm.errors), cm.errors


def test_spec_version_meta_and_license(good):
    def bad(doc):
        vrm = doc["extensions"]["VRMC_vrm"]
        vrm["specVersion"] = "0.0"
        vrm["meta"].update(name="", authors=[], licenseUrl="https://example.com/my-license", avatarPermission="anyone")

    report = validate_vrm(_edit(good, bad))
    assert "VRMC_vrm.specVersion is '0.0', expected '1.0'" in report.errors
    assert "meta.name is missing or empty" in report.errors
    assert "meta.authors must list at least one author" in report.errors
    assert any("meta.avatarPermission is 'anyone'" in e for e in report.errors)
    assert any("three-vrm refuses it" in w for w in report.warnings)


def test_plain_glb_and_vrm0_are_told_apart(good):
    def plain(doc):
        del doc["extensions"]
        doc["extensionsUsed"] = []

    def vrm0(doc):
        doc["extensions"] = {"VRM": {"exporterVersion": "x", "humanoid": {"humanBones": []}}}
        doc["extensionsUsed"] = ["VRM"]

    assert (
        "no VRMC_vrm extension: this is a plain glTF/GLB, not a VRM 1.0 avatar"
        in validate_vrm(_edit(good, plain)).errors
    )
    assert any("VRM 0.x" in e for e in validate_vrm(_edit(good, vrm0)).errors)


def test_corrupt_files(tmp_path, good):
    data = good.read_bytes()
    cases = {
        "text.vrm": b"this is not a VRM file at all, just text",
        "short.vrm": b"glTF",
        "truncated.vrm": data[: len(data) // 2],
        "badjson.vrm": pack_glb({}, b"")[:12] + struct.pack("<II", 8, 0x4E4F534A) + b"{not js}",
        "version1.vrm": struct.pack("<4sIIII", b"glTF", 1, 20, 0, 0),
    }
    expected = {
        "text.vrm": "not a glTF binary (.vrm/.glb): the file starts with b'this'",
        "short.vrm": "not a glTF binary: only 4 bytes",
        "truncated.vrm": f"header says {len(data)} bytes but the file has {len(data) // 2}",
        "badjson.vrm": "the JSON chunk is not valid JSON",
        "version1.vrm": "glTF binary version 1, expected 2",
    }
    for name, payload in cases.items():
        p = tmp_path / name
        if name == "badjson.vrm":
            payload = struct.pack("<4sII", b"glTF", 2, len(payload)) + payload[12:]
        p.write_bytes(payload)
        report = validate_vrm(p)
        assert not report.ok
        assert any(expected[name] in e for e in report.errors), (name, report.errors)
    missing = validate_vrm(tmp_path / "nope.vrm")
    assert missing.errors == [f"{tmp_path / 'nope.vrm'} does not exist"]


def test_accessor_past_the_buffer_is_an_error_not_a_crash(good):
    def lie(doc):
        doc["accessors"][0]["count"] = 10_000

    report = validate_vrm(_edit(good, lie))
    assert not report.ok
    assert any("reads past the end" in e for e in report.errors), report.errors


def test_summary_lists_every_error(good):
    def bad(doc):
        doc["extensions"]["VRMC_vrm"]["specVersion"] = "2.0"
        del doc["extensions"]["VRMC_vrm"]["humanoid"]["humanBones"]["hips"]

    report = validate_vrm(_edit(good, bad))
    text = report.summary()
    assert text.splitlines()[0].startswith("edited.vrm: INVALID (")
    for e in report.errors:
        assert f"ERROR: {e}" in text
    assert copy.deepcopy(report.to_dict())["ok"] is False


# ---------------------------------------------------------------- the Node checks agree


@pytest.mark.js
def test_node_checks_agree_with_the_python_validator(good, tmp_path):
    from _js import check_with_node

    res = check_with_node(good)
    assert res["ok"] and res["exit_code"] == 0, res["errors"]
    assert res["validator"]["numErrors"] == 0 and res["validator"]["numWarnings"] == 0
    assert res["vrm"]["missingRequired"] == [] and set(res["vrm"]["bonesResolved"]) == set(REQUIRED_BONES)
    assert res["vrm"]["metaName"] == "Synthetic" and res["vrm"]["leftArmAtPlusX"] is True

    mirrored = check_with_node(build_vrm(tmp_path / "mirrored.vrm", mirror_x=True))
    assert not mirrored["ok"] and mirrored["exit_code"] == 1
    assert "leftUpperArm is not on +X (VRM 1.0 models face +Z)" in mirrored["errors"]

    def plain(doc):
        del doc["extensions"]
        del doc["extensionsUsed"]

    glb = rewrite_json(good, plain, tmp_path / "plain.glb")
    assert check_with_node(glb)["errors"] == ["no VRMC_vrm extension"]
    assert check_with_node(glb, "check_gltf.mjs")["ok"] is True

    junk = tmp_path / "junk.vrm"
    junk.write_bytes(b"not a model")
    res = check_with_node(junk)
    assert not res["ok"] and any("glTF-Validator could not read the file" in e for e in res["errors"])
