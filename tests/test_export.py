"""Export stage (blender_cli/export_asset.py through core.export.asset): formats, LODs, skins, previews,
metadata, validator, and bad inputs that leave nothing behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from _js import check_with_node
from _rig_helpers import write_faceless_glb, write_humanoid_glb
from conftest import comfyui_dir
from PIL import Image

from comfy_avatar_nodes.core.assets import next_free_stem, next_output_path
from comfy_avatar_nodes.core.errors import AvatarError
from comfy_avatar_nodes.core.export.asset import check_lods, check_metadata, export_asset_sync
from comfy_avatar_nodes.core.jsontext import parse_object
from comfy_avatar_nodes.core.rig.cpu import rig_to_vrm_sync
from comfy_avatar_nodes.core.vrm.gltf import accessor, load_glb
from comfy_avatar_nodes.core.vrm.meta import VrmMeta

LODS = [1.0, 0.5, 0.25]
VIEWS = ["front", "side", "three_quarter"]
META = {"title": "Export test", "author": "tests", "tags": ["a", "b"], "version": 3, "nested": {"x": 1.5}}


def _glb(path: str | Path) -> dict:
    """Triangles, skins, and per-primitive joint/weight arrays of a GLB, read with pygltflib."""
    gltf, blob = load_glb(Path(path))
    tris, prims = 0, []
    for mesh in gltf.meshes:
        for p in mesh.primitives:
            assert p.mode in (None, 4), "export wrote a non-triangle primitive"
            n = (
                gltf.accessors[p.indices].count
                if p.indices is not None
                else gltf.accessors[p.attributes.POSITION].count
            )
            tris += n // 3
            a = p.attributes
            prims.append(
                {
                    "joints": None if a.JOINTS_0 is None else accessor(gltf, blob, a.JOINTS_0),
                    "weights": None if a.WEIGHTS_0 is None else accessor(gltf, blob, a.WEIGHTS_0),
                }
            )
    return {"gltf": gltf, "triangles": tris, "skins": gltf.skins, "prims": prims}


def _alpha_box(path: Path) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    alpha = np.asarray(Image.open(path).convert("RGBA"))[..., 3]
    ys, xs = np.nonzero(alpha > 16)
    assert len(xs), f"{path.name} is fully transparent: the model is not in frame"
    return alpha, (xs.min(), ys.min(), xs.max(), ys.max())


# ---------------------------------------------------------------- no Blender needed


def test_lod_ratio_parsing():
    assert check_lods("0.25, 1 ,0.5,0.5") == [1.0, 0.5, 0.25]
    assert check_lods([1]) == [1.0]
    for bad, msg in (
        ("0", "ratio 0 is outside"),
        ("1.5", "ratio 1.5 is outside"),
        ("-0.5", "outside"),
        ("half", "'half' is not a number"),
        ("", "no ratio given"),
        ("nan", "outside"),
    ):
        with pytest.raises(AvatarError, match=msg):
            check_lods(bad)


def test_metadata_checks_name_the_key():
    assert check_metadata({"keywords": ["x"], "keyframes": 1, "tags": []}) == {
        "keywords": ["x"],
        "keyframes": 1,
        "tags": [],
    }
    secret_keys = {
        "api_key": "metadata.api_key",
        "hfToken": "metadata.hfToken",
        "Password": "metadata.Password",
        "client_secret": "metadata.client_secret",
        "key": "metadata.key",
    }
    for key, where in secret_keys.items():
        with pytest.raises(AvatarError, match=rf"^{where}: looks like a secret"):
            check_metadata({"ok": 1, key: "x"})
    with pytest.raises(AvatarError, match=r"^metadata.deep\[0\].ssh_key: looks like a secret"):
        check_metadata({"deep": [{"ssh_key": "x"}]})
    for bad, msg in (
        ({"s": {1, 2}}, r"metadata.s: a set is not JSON-safe"),
        ({"f": float("nan")}, r"metadata.f: nan is not valid JSON"),
        ({"k" * 70: 1}, "longer than 63 bytes"),
    ):
        with pytest.raises(AvatarError, match=msg):
            check_metadata(bad)


def test_metadata_with_a_configured_secret_value_is_refused_without_echoing_it(clean_env):
    clean_env.setenv("SOME_SERVICE_TOKEN", "s3cr3t-value-123456")
    with pytest.raises(AvatarError) as err:
        check_metadata({"notes": "pasted s3cr3t-value-123456 by mistake"})
    assert "metadata.notes" in str(err.value) and "s3cr3t-value-123456" not in str(err.value)


def test_widget_json_and_free_stems(tmp_path):
    parse = lambda text: parse_object(text, "metadata", '{"title": "My avatar"}')  # noqa: E731
    assert parse("") == {} and parse('{"a": 1}') == {"a": 1}
    with pytest.raises(
        AvatarError,
        match=r"^metadata: is not valid JSON \(Expecting property name .* line 1, column 2\)"
        r"\. Fix: write a JSON object such as \{\"title\"",
    ):
        parse("{title: x}")
    with pytest.raises(AvatarError, match="metadata: must be a JSON object, got list"):
        parse("[1]")
    assert next_free_stem(tmp_path / "none", "export") == "export_00001"
    (tmp_path / "export_00001_lod0.glb").write_bytes(b"x")
    (tmp_path / "export_00003.fbx").write_bytes(b"x")
    (tmp_path / "export_000099.glb").write_bytes(b"x")  # not a counter name
    assert next_free_stem(tmp_path, "export") == "export_00004"
    # one counter for every writer: a .vrm after export_00004_lod0.glb is export_00005.vrm, so companions never collide
    (tmp_path / "export_00004_lod0.glb").write_bytes(b"x")
    assert next_output_path(tmp_path, "export", "vrm").name == "export_00005.vrm"


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "extension",
        "empty_file",
        "formats",
        "bad_format",
        "lod_zero",
        "lod_above_one",
        "secret_key",
        "not_json",
        "stem",
        "preview_size",
        "view",
    ],
)
def test_bad_inputs_fail_before_blender_and_write_nothing(tmp_path, case):
    src = write_humanoid_glb(tmp_path / "in.glb")
    kw = dict(stem="a", formats=["glb"], lods=[1.0], preview=None, metadata={})
    expect = {
        "missing": ("src: file .*nope.glb does not exist", dict(src=tmp_path / "nope.glb")),
        "extension": ("src: in.stl is not a supported format", dict(src=tmp_path / "in.stl")),
        "empty_file": (r"src: empty.glb is empty \(0 bytes\)", dict(src=tmp_path / "empty.glb")),
        "formats": ("formats: no format chosen", dict(formats=[])),
        "bad_format": ("formats: 'usdz' not supported", dict(formats=["glb", "usdz"])),
        "lod_zero": (r"lods: ratio 0 is outside \(0, 1\]", dict(lods=[1.0, 0.0])),
        "lod_above_one": (r"lods: ratio 2 is outside \(0, 1\]", dict(lods="2")),
        "secret_key": ("metadata.access_token: looks like a secret", dict(metadata={"access_token": "abc"})),
        "not_json": ("metadata.when: a bytes is not JSON-safe", dict(metadata={"when": b"x"})),
        "stem": ("stem: '../up' is not a plain file name", dict(stem="../up")),
        "preview_size": ("preview.size: 4 px is outside", dict(preview={"size": 4})),
        "view": ("preview.views: unknown view", dict(preview={"views": ["left"]})),
    }[case]
    (tmp_path / "in.stl").write_bytes(b"solid x\nendsolid x\n")
    (tmp_path / "empty.glb").write_bytes(b"")
    message, change = expect
    kw.update(change)
    out = tmp_path / "out"
    with pytest.raises(AvatarError, match=message):
        export_asset_sync(kw.pop("src", src), out, **kw)
    assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------- real Blender


@pytest.fixture(scope="module")
def sources(tmp_path_factory, blender_runtime) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("export_src")
    glb = write_humanoid_glb(d / "figure.glb")
    vrm = rig_to_vrm_sync(glb, d / "figure.vrm", VrmMeta(name="Export Test", authors=["tests"]))
    return {"glb": glb, "vrm": Path(vrm.path), "vrm_joints": vrm.meta["bone_count"]}


@pytest.fixture(scope="module")
def vrm_export(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("export_vrm")
    assets = export_asset_sync(
        sources["vrm"],
        out,
        stem="avatar",
        formats=["glb", "fbx", "obj", "blend"],
        lods=LODS,
        preview={"size": 160, "views": VIEWS},
        metadata=META,
    )
    return out, assets


def _files(assets, kind: str) -> list:
    return sorted((a for a in assets if a.kind == kind), key=lambda a: a.meta["lod"])


@pytest.mark.blender
def test_every_format_and_lod_is_written(vrm_export):
    out, assets = vrm_export
    names = sorted(p.name for p in out.iterdir())
    expected = {f"avatar_lod{i}.{ext}" for i in range(3) for ext in ("glb", "fbx", "obj", "blend", "mtl")}
    expected |= {f"avatar_{v}.png" for v in VIEWS}
    assert expected <= set(names), names
    assert not [n for n in names if n.startswith(".")], f"staging or temp files left: {names}"
    for a in assets:
        assert a.path.startswith(str(out)) and os.path.getsize(a.path) > 0
        assert os.path.getsize(a.path) == a.meta["bytes"]
    for a in _files(assets, "blend"):
        head = Path(a.path).read_bytes()[:7]
        assert head == b"BLENDER" or head[:4] == b"\x28\xb5\x2f\xfd", head  # plain or zstd-compressed
    for a in _files(assets, "fbx"):
        assert Path(a.path).read_bytes()[:20] == b"Kaydara FBX Binary  "
    for a in _files(assets, "obj"):
        mtl, *textures = a.meta["companions"]
        assert textures and all(Path(t).is_file() for t in textures)
        assert any(
            line.split()[-1] == Path(textures[0]).name
            for line in Path(mtl).read_text().splitlines()
            if line.startswith("map_Kd")
        ), "the .mtl does not name the texture written beside it"
        assert f"mtllib {Path(mtl).name}" in Path(a.path).read_text()[:2000]


@pytest.mark.blender
def test_lods_halve_the_triangles_and_keep_the_skin(vrm_export, sources):
    _out, assets = vrm_export
    glbs = [_glb(a.path) for a in _files(assets, "glb")]
    full = glbs[0]["triangles"]
    assert full == _files(assets, "glb")[0].meta["triangles"] > 5000
    for g, ratio in zip(glbs, LODS):
        assert g["triangles"] == pytest.approx(full * ratio, rel=0.05), (ratio, g["triangles"], full)
        assert len(g["skins"]) == 1 and len(g["skins"][0].joints) == sources["vrm_joints"]
        for p in g["prims"]:
            assert p["joints"] is not None and p["weights"] is not None, "LOD lost JOINTS_0/WEIGHTS_0"
            sums = p["weights"].sum(axis=1)
            assert np.allclose(sums, 1.0, atol=0.01), f"weights not normalised at ratio {ratio}"
            assert p["joints"].max() < sources["vrm_joints"]
            # the skin still moves different parts with different bones
            assert len(np.unique(p["joints"][np.arange(len(sums)), p["weights"].argmax(axis=1)])) > 10
    for a in _files(assets, "fbx") + _files(assets, "obj") + _files(assets, "blend"):
        same_lod = next(x for x in _files(assets, "glb") if x.meta["lod"] == a.meta["lod"])
        assert a.meta["triangles"] == same_lod.meta["triangles"]


@pytest.mark.blender
@pytest.mark.js
def test_every_glb_passes_the_khronos_validator_and_carries_the_metadata(vrm_export):
    _out, assets = vrm_export
    for a in _files(assets, "glb"):
        report = check_with_node(a.path, "check_gltf.mjs")
        assert report["ok"] and report["validator"]["numErrors"] == 0, report["errors"]
        assert report["validator"]["info"]["hasSkins"] is True
    for a in _files(assets, "glb"):
        gltf = _glb(a.path)["gltf"]
        assert gltf.asset.extras == META


@pytest.mark.blender
def test_previews_frame_the_model(vrm_export):
    _out, assets = vrm_export
    previews = {a.meta["view"]: Path(a.path) for a in assets if a.kind == "image"}
    assert list(previews) == VIEWS
    widths = {}
    for view, path in previews.items():
        img = Image.open(path)
        assert img.format == "PNG" and img.size == (160, 160) and img.mode == "RGBA"
        alpha, (x0, y0, x1, y1) = _alpha_box(path)
        assert alpha[0, 0] == 0 and alpha[-1, -1] == 0, "background is not transparent"
        assert x0 > 0 and y0 > 0 and x1 < 159 and y1 < 159, f"{view}: the model touches the border (cut off)"
        assert max(x1 - x0, y1 - y0) > 0.8 * 160, f"{view}: the model fills too little of the frame"
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        assert abs(cx - 80) < 4 and abs(cy - 80) < 4, f"{view}: not centred ({cx}, {cy})"
        widths[view] = x1 - x0
        assert len(np.unique(np.asarray(img)[alpha > 16][:, :3], axis=0)) > 50, "flat render: no shading or texture"
    # T-posed arms: wide from the front, narrow from the side
    assert widths["front"] > 2.5 * widths["side"]


@pytest.mark.blender
def test_fbx_and_blend_keep_the_armature_and_skin(vrm_export, sources, tmp_path):
    """Read the FBX and the .blend back (each as an export source): skin, texture and metadata kept."""
    _out, assets = vrm_export
    fbx = next(a for a in _files(assets, "fbx") if a.meta["lod"] == 1)
    blend = next(a for a in _files(assets, "blend") if a.meta["lod"] == 2)
    for src in (fbx, blend):
        back = export_asset_sync(Path(src.path), tmp_path / src.kind, stem="back", formats=["glb"], lods=[1.0])
        assert [Path(a.path).name for a in back] == ["back.glb"]
        g = _glb(back[0].path)
        assert len(g["skins"]) == 1 and len(g["skins"][0].joints) == sources["vrm_joints"], src.kind
        assert all(p["weights"] is not None for p in g["prims"])
        assert back[0].meta["export"]["input"]["armatures"], src.kind
        assert g["triangles"] == pytest.approx(src.meta["triangles"], rel=0.02)
        assert g["gltf"].images, f"the {src.kind} lost its texture"
        # the metadata went in as custom properties: scene (.blend) and the root object (both)
        props = back[0].meta["export"]["input"]["custom_properties"]
        flat = {k: (json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v) for k, v in META.items()}
        holders = [p for p in props["objects"].values() if p.get("title") == META["title"]]
        assert holders and all(holders[0].get(k) == v for k, v in flat.items()), props
        if src.kind == "blend":
            assert all(props["scene"].get(k) == v for k, v in flat.items()), props["scene"]


@pytest.mark.blender
def test_plain_mesh_single_lod_keeps_names_and_texture(sources, tmp_path):
    assets = export_asset_sync(
        sources["glb"],
        tmp_path,
        stem="mesh",
        formats=["glb", "obj"],
        lods="1",
        preview={"size": 64, "views": ["front"]},
    )
    obj = next(a for a in assets if a.kind == "obj")
    mtl, texture = obj.meta["companions"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["mesh.glb", "mesh.obj", "mesh.mtl", "mesh_front.png", Path(texture).name]
    )
    assert f"map_Kd {Path(texture).name}" in Path(mtl).read_text()
    src_gltf, src_blob = load_glb(sources["glb"])
    view = src_gltf.bufferViews[src_gltf.images[0].bufferView]
    original = src_blob[view.byteOffset or 0 : (view.byteOffset or 0) + view.byteLength]
    assert Path(texture).read_bytes() == original, "the OBJ's texture is not the source's image"
    g = _glb(tmp_path / "mesh.glb")
    assert g["skins"] == [] and g["gltf"].images and g["triangles"] == assets[0].meta["export"]["input"]["triangles"]
    assert g["gltf"].asset.extras in (None, {})


@pytest.mark.blender
@pytest.mark.parametrize("case", ["no_faces", "not_a_mesh"])
def test_unreadable_sources_give_clear_errors_and_no_files(tmp_path, blender_runtime, case):
    src = tmp_path / "bad.glb"
    if case == "no_faces":
        write_faceless_glb(src)
    else:
        src.write_bytes(b"glTF this is not a binary glTF at all" * 4)
    out = tmp_path / "out"
    with pytest.raises(AvatarError) as err:
        export_asset_sync(src, out, stem="x", formats=["glb", "fbx"], lods=[1.0, 0.5], preview={"size": 64})
    msg = str(err.value)
    assert msg.startswith("src (bad.glb): "), msg
    assert ("no mesh with faces" if case == "no_faces" else "could not be read as GLB") in msg
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


@pytest.mark.blender
def test_a_job_killed_mid_export_leaves_no_files(sources, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(AvatarError, match="timed out"):
        export_asset_sync(
            sources["vrm"],
            out,
            stem="x",
            formats=["glb", "fbx", "obj", "blend"],
            lods=LODS,
            preview={"size": 256, "views": VIEWS},
            timeout_s=2.5,
        )
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


@pytest.mark.comfyui
@pytest.mark.blender
def test_export_node_in_a_real_comfyui_takes_a_mesh_or_a_vrm(tmp_path, example_image, blender_runtime):
    """LoadImage -> mesh -> VRM; one Export node gets the VRM, another the mesh (the two input types)."""
    import subprocess
    import sys

    from _driver_helpers import ROOT, shared_comfy

    comfyui_dir()
    comfy = shared_comfy()
    export = {
        "glb": True,
        "fbx": True,
        "obj": False,
        "blend": False,
        "lods": "1.0, 0.5",
        "preview_size": 128,
        "metadata": '{"title": "node test"}',
    }
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "character_apose.png"}, "_meta": {"title": "image"}},
        "2": {
            "class_type": "AvatarImageToMeshCPU",
            "inputs": {
                "image": ["1", 0],
                "mask": ["1", 1],
                "height_m": 1.7,
                "thickness": 0.5,
                "resolution": 128,
                "filename_prefix": "exporttest/mesh",
            },
        },
        "3": {
            "class_type": "AvatarRigVRMCPU",
            "inputs": {
                "mesh": ["2", 0],
                "name": "Node Test",
                "version": "1.0",
                "authors": "tests",
                "avatar_permission": "onlyAuthor",
                "commercial_usage": "personalNonProfit",
                "modification": "prohibited",
                "remesh_voxel": 0.0,
                "filename_prefix": "exporttest/avatar",
            },
        },
        "4": {
            "class_type": "AvatarExportAsset",
            "inputs": {"asset": ["3", 0], **export, "filename_prefix": "exporttest/vrm_export"},
        },
        "5": {
            "class_type": "AvatarExportAsset",
            "inputs": {"asset": ["2", 0], **export, "obj": True, "filename_prefix": "exporttest/mesh_export"},
        },
    }
    wf = tmp_path / "export.api.json"
    wf.write_text(json.dumps(prompt))
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "driver",
            "run",
            str(wf),
            "--input",
            f"image={example_image}",
            "--out",
            str(out),
            "--server",
            comfy.url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr + comfy.log_tail()
    names = {p.name: p for p in out.rglob("*") if p.is_file()}
    for prefix, formats in (("vrm_export", ("glb", "fbx")), ("mesh_export", ("glb", "fbx", "obj", "mtl"))):
        for i in (0, 1):
            for ext in formats:
                assert f"{prefix}_00001_lod{i}.{ext}" in names, sorted(names)
        for view in VIEWS:
            assert Image.open(names[f"{prefix}_00001_{view}.png"]).size == (128, 128)
    vrm_lods = [_glb(names[f"vrm_export_00001_lod{i}.glb"]) for i in (0, 1)]
    assert all(len(g["skins"]) == 1 for g in vrm_lods)
    assert vrm_lods[1]["triangles"] == pytest.approx(vrm_lods[0]["triangles"] / 2, rel=0.05)
    # the node's metadata widget, plus the API prompt that made the file (as core SaveGLB embeds it)
    extras = vrm_lods[0]["gltf"].asset.extras
    assert set(extras) == {"title", "prompt"} and extras["title"] == "node test"
    assert {n["class_type"] for n in json.loads(extras["prompt"]).values()} >= {"AvatarRigVRMCPU", "AvatarExportAsset"}
    assert _glb(names["mesh_export_00001_lod0.glb"])["skins"] == []
