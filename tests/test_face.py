"""The face stage (issue 9): the finder on drawn characters, the expressions every VRM gets, the validator's
face checks (including VRMs broken on purpose), and a real browser (headless Chromium + three-vrm + its
MToon plugin) seeing aa, blink and happy change only the face.

Characters (tests/_face_helpers.py): the example picture, big anime eyes, a beard, a helmet with a
visor (the finder must say it found no face there, and the avatar still gets all 17 expressions).
COMFY_AVATAR_WRITE_DOCS=1 also writes the example's sheet to docs/face_expressions.png (the README picture).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from _face_helpers import KINDS, character, head_crop
from _vrm_helpers import rewrite_json

from comfy_avatar_nodes.core.errors import AvatarError
from comfy_avatar_nodes.core.vrm.expressions import PRESETS
from comfy_avatar_nodes.core.vrm.face import find_face
from comfy_avatar_nodes.core.vrm.face_inputs import FaceOptions, parse_landmarks
from comfy_avatar_nodes.core.vrm.validate import validate_vrm

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the finder (no Blender)


@pytest.mark.parametrize("kind", KINDS)
def test_finder_on_drawn_characters(kind):
    rgb, mask = head_crop(character(kind))
    res = find_face(rgb, mask)
    lm = res["landmarks"]
    if kind == "helmet":
        assert not res["found"] and res["confidence"] == 0.0
        assert "visor" in res["reason"] and "no face found" in res["warnings"][0]
        assert all(v["source"] == "proportions" for v in lm.values())
        return
    assert res["found"] and res["confidence"] >= 0.6, res
    # the avatar's left eye is on the picture's right, mirrored about the axis, in the upper-middle of the head
    assert lm["left_eye"]["x"] > 0.55 > 0.45 > lm["right_eye"]["x"]
    assert abs(lm["left_eye"]["x"] + lm["right_eye"]["x"] - 1.0) < 0.05
    assert 0.45 < lm["left_eye"]["y"] < 0.65 and abs(lm["left_eye"]["y"] - lm["right_eye"]["y"]) < 0.02
    assert lm["mouth"]["y"] > lm["left_eye"]["y"] + 0.15 and abs(lm["mouth"]["x"] - 0.5) < 0.05
    if kind == "beard":  # the mouth is hidden in the beard: placed under the beard's upper edge, and said so
        assert lm["mouth"]["source"] == "beard" and any("mouth: under a beard" in w for w in res["warnings"])
    else:
        assert lm["mouth"]["source"] == "found" and 0.72 < lm["mouth"]["y"] < 0.86
    if kind == "big_eyes":
        assert lm["left_brow"]["source"] == "found" and lm["left_brow"]["y"] < lm["left_eye"]["y"] - 0.1
        assert lm["left_eye"]["w"] > 0.15  # big eyes measured as big
    else:  # no brows drawn: above the eyes by proportions, with a warning
        assert lm["left_brow"]["source"] == "proportions" and any("brows" in w for w in res["warnings"])


def test_overrides_replace_landmarks_and_bad_ones_say_what_to_write():
    rgb, mask = head_crop(character("helmet"))
    res = find_face(rgb, mask, parse_landmarks("left_eye=0.66,0.5; right_eye=0.34,0.5; mouth=0.5 0.82"))
    assert res["landmarks"]["mouth"] == {**res["landmarks"]["mouth"], "x": 0.5, "y": 0.82, "source": "override"}
    assert parse_landmarks('{"mouth": [0.5, 0.8]}') == {"mouth": [0.5, 0.8]}
    for text, message in (
        ("nose=0.5,0.5", "'nose' is not a landmark"),
        ("mouth=0.5", "needs two numbers"),
        ("mouth=1.5,0.2", "outside the head box"),
        ("mouth", "is not name=x,y"),
        ('{"mouth": [true, 0.8]}', "needs two numbers"),  # JSON true is no coordinate
        ('{"mouth": "0.5,0.8"}', "needs two numbers"),
    ):
        with pytest.raises(AvatarError, match=message) as info:
            parse_landmarks(text)
        assert "Fix:" in str(info.value)
    with pytest.raises(AvatarError, match="material"):
        FaceOptions(material="toon")


# ---------------------------------------------------------------- real Blender: every character's avatar


@pytest.fixture(scope="module")
def avatars(tmp_path_factory, blender_runtime):
    """Each character through the CPU path (picture -> silhouette mesh -> rig -> VRM with the face stage)."""
    from comfy_avatar_nodes.core.pipeline import image_to_vrm_cpu
    from comfy_avatar_nodes.core.vrm.meta import VrmMeta

    root = tmp_path_factory.mktemp("face")
    out = {}
    for kind in KINDS:
        src = ROOT / "workflows" / "examples" / "character_apose.png" if kind == "example" else root / f"{kind}.png"
        if kind != "example":
            character(kind).save(src)
        res = asyncio.run(image_to_vrm_cpu(src, root / kind, VrmMeta(name=f"Face {kind}", authors=["face tests"])))
        out[kind] = res
    return out


@pytest.mark.blender
@pytest.mark.parametrize("kind", KINDS)
def test_every_avatar_has_the_17_presets_bound_and_checked(avatars, kind):
    res = avatars[kind]
    report, face = res.report, res.vrm.meta["face"]
    assert report.ok, report.summary()
    f = report.facts
    assert f["expressions_bound"] == len(PRESETS) == 17 and f["expressions_unbound"] == []
    for name in PRESETS:
        e = f["expressions"][name]
        assert e["bound"] and e["problems"] == [] and e["vertices_moved"] > 5, (name, e)
    assert f["look_at"] == "expression" and f["first_person_annotations"] == 1 and f["mtoon_materials"] == 1
    assert face["finder"]["source"] == "texture"  # the CPU path reads the source picture, no render
    assert sorted(face["generated"]) == sorted(PRESETS) and face["existing"] == {}
    # left/right and up/down as VRM apps expect them
    assert f["expressions"]["blinkLeft"]["centre"][0] > 0.05 > -0.05 > f["expressions"]["blinkRight"]["centre"][0]
    assert f["expressions"]["aa"]["centre"][1] < f["expressions"]["blink"]["centre"][1] - 0.2
    if kind == "helmet":
        assert not f["face_found"] and any("found no face" in w for w in report.warnings)
        assert not face["finder"]["found"] and "visor" in face["finder"]["reason"]
    else:
        assert f["face_found"] and f["face_confidence"] >= 0.6, face["finder"]


@pytest.mark.blender
def test_vrm_json_has_override_flags_and_sparse_targets(avatars):
    from comfy_avatar_nodes.core.vrm.glb import read_glb

    doc, _blob = read_glb(Path(avatars["example"].vrm.path).read_bytes())
    preset = doc["extensions"]["VRMC_vrm"]["expressions"]["preset"]
    assert preset["surprised"]["overrideMouth"] == "block" and preset["surprised"]["overrideBlink"] == "block"
    assert preset["happy"]["overrideBlink"] == "blend" and preset["aa"]["overrideMouth"] == "none"
    assert "VRMC_materials_mtoon" in doc["extensionsUsed"]
    mtoon = doc["materials"][0]["extensions"]["VRMC_materials_mtoon"]
    assert mtoon["outlineWidthMode"] == "none" and "shadeMultiplyTexture" in mtoon
    assert max(mtoon["shadeColorFactor"]) < 0.9
    mesh = next(m for m in doc["meshes"] if m["primitives"][0].get("targets"))
    assert mesh["extras"]["targetNames"] == list(PRESETS)
    for t in mesh["primitives"][0]["targets"]:
        acc = doc["accessors"][t["POSITION"]]
        assert "sparse" in acc and acc["sparse"]["count"] < 0.05 * acc["count"]  # only face vertices stored


@pytest.mark.blender
@pytest.mark.js
def test_every_avatar_passes_gltf_validator_and_three_vrm(avatars):
    from _js import check_with_node

    for kind, res in avatars.items():
        r = check_with_node(res.vrm.path)
        assert r["ok"] and r["validator"]["numErrors"] == 0 and r["validator"]["numWarnings"] == 0, (kind, r)


@pytest.mark.blender
@pytest.mark.js
@pytest.mark.parametrize("kind", KINDS)
def test_browser_sees_aa_blink_happy_change_only_the_face(avatars, kind, tmp_path):
    from _browser import render_faces

    res = render_faces(avatars[kind].vrm.path, tmp_path)
    assert res["mtoon"] >= 1, "three-vrm's MToon plugin did not make an MToon material"
    assert all(res["expressions"][p] >= 1 for p in PRESETS), res["expressions"]
    rect = res["faceRect"]
    face_px = (rect["x1"] - rect["x0"]) * (rect["y1"] - rect["y0"])
    for state in ("aa", "blink", "happy"):
        s = res["states"][state]
        assert s["changed"] > 0.004 * face_px, (state, s)  # visibly changed
        assert s["outside"] == 0, (state, s, rect)  # ... and only inside the face
    mid = (rect["y0"] + rect["y1"]) / 2
    assert res["states"]["aa"]["bbox"]["y0"] > res["states"]["blink"]["bbox"]["y0"]  # the mouth is below the eyes
    assert res["states"]["blink"]["bbox"]["y1"] < res["states"]["aa"]["bbox"]["y1"] and mid > 0
    if kind == "example" and os.environ.get("COMFY_AVATAR_WRITE_DOCS"):
        shutil.copy(tmp_path / f"{Path(avatars[kind].vrm.path).stem}_faces.png", ROOT / "docs" / "face_expressions.png")


# ---------------------------------------------------------------- the validator stays honest


def _broken(path: Path, out: Path, edit) -> Path:
    return rewrite_json(path, edit, out)


@pytest.mark.blender
def test_validator_catches_misbound_empty_and_missing_expressions(avatars, tmp_path):
    src = Path(avatars["example"].vrm.path)

    def swap(doc):  # blink bound to the mouth's morph, blinkLeft to blinkRight's
        p = doc["extensions"]["VRMC_vrm"]["expressions"]["preset"]
        p["blink"]["morphTargetBinds"] = p["aa"]["morphTargetBinds"]
        p["blinkLeft"]["morphTargetBinds"] = p["blinkRight"]["morphTargetBinds"]

    r = validate_vrm(_broken(src, tmp_path / "swap.vrm", swap))
    assert not r.ok
    assert any("expression blink: moves the wrong part" in e and "the eyes" in e for e in r.errors), r.errors
    assert any("expression blinkLeft" in e and "swapped" in e for e in r.errors), r.errors

    def unbind(doc):
        p = doc["extensions"]["VRMC_vrm"]["expressions"]["preset"]
        for name in ("aa", "happy"):
            p[name].pop("morphTargetBinds")
        doc["extensions"]["VRMC_vrm"]["lookAt"]["type"] = "bone"
        doc["extensions"]["VRMC_vrm"].pop("firstPerson", None)
        doc["materials"][0].pop("extensions")

    r = validate_vrm(_broken(src, tmp_path / "unbound.vrm", unbind))
    assert r.facts["expressions_unbound"] == ["aa", "happy"] and r.facts["mtoon_materials"] == 0
    text = " ".join(r.warnings)
    assert "2 of 17" in text and "no eye bones" in text and "firstPerson" in text and "MToon" in text

    def zero(doc):  # ih bound with weight 0: bound, but moves nothing
        for bind in doc["extensions"]["VRMC_vrm"]["expressions"]["preset"]["ih"]["morphTargetBinds"]:
            bind["weight"] = 0.0

    r = validate_vrm(_broken(src, tmp_path / "zero.vrm", zero))
    assert any("expression ih: moves nothing visible" in e for e in r.errors), r.errors


@pytest.mark.blender
def test_validator_flags_a_morph_that_moves_the_body(avatars, tmp_path):
    """A target that moves the feet (written over the aa morph's values) is below the neck."""
    from comfy_avatar_nodes.core.vrm.glb import pack_glb, read_glb

    src = Path(avatars["example"].vrm.path)
    doc, blob = read_glb(src.read_bytes())
    mesh = next(m for m in doc["meshes"] if m["primitives"][0].get("targets"))
    k = mesh["extras"]["targetNames"].index("aa")
    prim = mesh["primitives"][0]
    acc = doc["accessors"][prim["targets"][k]["POSITION"]]
    view = doc["bufferViews"][acc["sparse"]["indices"]["bufferView"]]
    pos_acc = doc["accessors"][prim["attributes"]["POSITION"]]
    pview = doc["bufferViews"][pos_acc["bufferView"]]
    pos = np.frombuffer(blob, np.float32, pos_acc["count"] * 3, pview.get("byteOffset", 0)).reshape(-1, 3)
    feet = np.argsort(pos[:, 1])[: acc["sparse"]["count"]]
    itype = np.uint32 if acc["sparse"]["indices"]["componentType"] == 5125 else np.uint16
    raw = bytearray(blob)
    start = view.get("byteOffset", 0)
    raw[start : start + view["byteLength"]] = np.sort(feet).astype(itype).tobytes()[: view["byteLength"]]
    out = tmp_path / "feet.vrm"
    out.write_bytes(pack_glb(doc, bytes(raw)))
    r = validate_vrm(out)
    assert any("expression aa: moves vertices below the neck" in e for e in r.errors), r.errors


# ---------------------------------------------------------------- rigged path: existing keys win, render


@pytest.mark.blender
def test_rigged_mesh_keeps_arkit_keys_and_gets_the_rest_from_a_front_render(avatars, tmp_path):
    """A rigged GLB with three ARKit face keys (made from the example VRM: its aa/blink morphs renamed
    jawOpen/eyeBlinkLeft/eyeBlinkRight, every other morph removed) through Export VRM (rigged mesh)."""
    from comfy_avatar_nodes.core.vrm.export import rigged_to_vrm_sync
    from comfy_avatar_nodes.core.vrm.meta import VrmMeta

    src = Path(avatars["example"].vrm.path)
    keep = {"aa": "jawOpen", "blinkLeft": "eyeBlinkLeft", "blinkRight": "eyeBlinkRight"}

    def to_arkit(doc):
        ext = doc["extensions"]
        ext.pop("VRMC_vrm")
        doc["extensionsUsed"] = [e for e in doc.get("extensionsUsed", []) if e != "VRMC_vrm"]
        for mesh in doc["meshes"]:
            names = (mesh.get("extras") or {}).get("targetNames")
            if not names:
                continue
            idx = [i for i, n in enumerate(names) if n in keep]
            for prim in mesh["primitives"]:
                prim["targets"] = [prim["targets"][i] for i in idx]
            mesh["weights"] = [0.0] * len(idx)
            mesh["extras"]["targetNames"] = [keep[names[i]] for i in idx]

    rigged = rewrite_json(src, to_arkit, tmp_path / "arkit.glb")
    bones = {b: b for b in validate_vrm(src).facts["humanoid_bones"]}
    asset = rigged_to_vrm_sync(
        rigged,
        bones,
        tmp_path / "rigged.vrm",
        VrmMeta(name="ARKit", authors=["t"]),
        target_height_m=0.0,
        face=FaceOptions(picture="render"),
    )
    face = asset.meta["face"]
    assert face["existing"] == {
        "aa": ["jawOpen"],
        "blink": ["eyeBlinkLeft", "eyeBlinkRight"],
        "blinkLeft": ["eyeBlinkLeft"],
        "blinkRight": ["eyeBlinkRight"],
    }
    assert sorted(face["generated"]) == sorted(set(PRESETS) - set(face["existing"]))
    assert face["binds"]["aa"] == [{"key": "jawOpen", "weight": 0.5}]  # the VRM add-on's ARKit table
    assert face["finder"]["source"] == "render" and face["finder"]["found"], face["finder"]
    report = validate_vrm(asset.path)
    assert report.ok, report.summary()
    assert report.facts["expressions_bound"] == 17
    assert report.facts["expressions"]["blink"]["targets"] == ["eyeBlinkLeft", "eyeBlinkRight"]
