"""Issue 10 against a real ComfyUI (COMFYUI_DIR; tests/run.sh runs this on 0.8.0 and 0.3.64).

- The shipped turnaround workflow through the driver CLI (`--input front=F --input side=S --input back=B`,
  the repository's rendered turnaround of the two-tone test humanoid) gives a valid VRM whose depth
  follows the side view and whose back carries the back view's colours.
- ComfyUI's own core MESH, made inside the server by a test-only node (tests/comfy_nodes/avatar_test_mesh:
  no model weights), becomes a valid VRM through our rig node; core SaveGLB takes the same MESH.
- A file path (PrimitiveString, as Load3D's mesh_path would give) reaches the rig node too.
- Our mesh outputs show in core Preview3D: its ui names our GLB and /view serves it, as the editor asks.
- The node-side detection of every 3D input kind, File3D included (no server here has it yet), in
  ComfyUI's own Python.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import trimesh
from _js import check_with_node
from _rig_helpers import write_humanoid_glb
from _turnaround_helpers import BACK_SHIRT, BACK_TROUSERS, FRONT_SHIRT, two_tone_humanoid
from conftest import comfyui_dir

from comfy_avatar_nodes.core.vrm.spec import REQUIRED_BONES
from comfy_avatar_nodes.core.vrm.validate import validate_vrm

ROOT = Path(__file__).resolve().parents[1]
TEST_NODES = ROOT / "tests" / "comfy_nodes" / "avatar_test_mesh"
EXAMPLES = ROOT / "workflows" / "examples"
pytestmark = [pytest.mark.comfyui, pytest.mark.blender]


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, blender_runtime):
    comfyui_dir()
    from _driver_helpers import comfyui_python

    from driver.local import LocalComfy

    log = tmp_path_factory.mktemp("comfyui3d") / "comfyui.log"
    with LocalComfy(python=comfyui_python(), extra_custom_nodes=[ROOT, TEST_NODES], log_path=log) as server:
        yield server


def _run(comfy, prompt: dict, tmp: Path):
    from driver.client import ComfyClient

    client = ComfyClient(comfy.url)
    result = client.run(prompt)
    files = client.download(result, tmp)
    history = requests.get(f"{comfy.url}/history/{result.prompt_id}", timeout=30).json()[result.prompt_id]
    return result, files, history


def _rig(mesh_link, prefix: str) -> dict:
    return {
        "class_type": "AvatarRigVRMCPU",
        "inputs": {
            "mesh": mesh_link,
            "name": "Core",
            "version": "1.0",
            "authors": "tests",
            "avatar_permission": "onlyAuthor",
            "commercial_usage": "personalNonProfit",
            "modification": "prohibited",
            "remesh_voxel": 0.0,
            "filename_prefix": prefix,
            "max_triangles": 30000,
            "humanoid_check": "refuse",
        },
    }


def _check_vrm(path: Path) -> None:
    report = validate_vrm(path)
    assert report.ok, report.summary()
    node = check_with_node(path)
    assert node["validator"]["numErrors"] == 0 and set(REQUIRED_BONES) <= set(node["vrm"]["bonesResolved"])


def test_core_mesh_made_inside_comfyui_becomes_a_valid_vrm(comfy, tmp_path):
    prompt = {
        "1": {"class_type": "AvatarTestHumanoidMesh", "inputs": {"pose": "A", "scale": 1.2}},
        "2": _rig(["1", 0], "tests/core_mesh"),
        "3": {"class_type": "AvatarValidateVRM", "inputs": {"vrm": ["2", 0], "fail_on_error": True}},
        "4": {"class_type": "SaveGLB", "inputs": {"mesh": ["1", 0], "filename_prefix": "tests/core_mesh_saved"}},
    }
    _result, files, history = _run(comfy, prompt, tmp_path / "out")
    vrms = [f for f in files if f.suffix == ".vrm"]
    assert len(vrms) == 1, files
    _check_vrm(vrms[0])
    f = validate_vrm(vrms[0]).facts
    assert f["height_m"] == pytest.approx(1.7, abs=0.05)  # the MESH's model units scaled to metres
    saved = history["outputs"]["4"]
    assert any(v["filename"].endswith(".glb") for v in saved.get("3d", saved.get("result", [])) if isinstance(v, dict))


def test_a_mesh_path_reaches_the_rig_node(comfy, tmp_path):
    glb = write_humanoid_glb(tmp_path / "figure.glb")
    prompt = {
        "1": {"class_type": "PrimitiveString", "inputs": {"value": str(glb)}},
        "2": _rig(["1", 0], "tests/from_path"),
    }
    _result, files, _history = _run(comfy, prompt, tmp_path / "out")
    vrm = next(f for f in files if f.suffix == ".vrm")
    _check_vrm(vrm)


def _median_colour(mesh: trimesh.Trimesh, normal: np.ndarray, y_lo: float, y_hi: float) -> np.ndarray:
    tex = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"), float)
    c = mesh.triangles_center
    sel = (mesh.face_normals @ normal > 0.8) & (c[:, 1] > y_lo) & (c[:, 1] < y_hi) & (np.abs(c[:, 0]) < 0.12)
    uv = mesh.visual.uv[mesh.faces[sel]].mean(1)
    h, w = tex.shape[:2]
    px = tex[np.clip(((1 - uv[:, 1]) * h).astype(int), 0, h - 1), np.clip((uv[:, 0] * w).astype(int), 0, w - 1)]
    return np.median(px, axis=0)


def test_turnaround_workflow_through_the_driver(comfy, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "driver",
            "run",
            str(ROOT / "workflows" / "turnaround_to_vrm_cpu.json"),
            "--input",
            f"front={EXAMPLES / 'turnaround_front.png'}",
            "--input",
            f"side={EXAMPLES / 'turnaround_side.png'}",
            "--input",
            f"back={EXAMPLES / 'turnaround_back.png'}",
            "--out",
            str(out),
            "--server",
            comfy.url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + comfy.log_path.read_text()[-3000:]
    files = [p for p in out.rglob("*") if p.is_file()]
    vrm = next(p for p in files if p.suffix == ".vrm")
    glb = next(p for p in files if p.suffix == ".glb")
    _check_vrm(vrm)
    # depth follows the side view: the VRM's torso and legs are as deep as the source model's, feet forward
    src = trimesh.sample.sample_surface(two_tone_humanoid(), 100_000, seed=0)[0]
    with open(vrm, "rb") as f:
        body = trimesh.load(f, file_type="glb", force="mesh")
    for y in (0.3, 0.6, 0.9, 1.1, 1.3):
        want = np.ptp(src[np.abs(src[:, 1] - y) < 0.02, 2])
        near = body.vertices[(np.abs(body.vertices[:, 1] - y) < 0.02) & (np.abs(body.vertices[:, 0]) < 0.25)]
        assert np.ptp(near[:, 2]) == pytest.approx(want, abs=0.05), y
    feet = body.vertices[body.vertices[:, 1] < 0.05]
    assert feet[:, 2].max() > 0.13  # toes reach forward as in the side view (source: 0.175)
    # textured from the back view on the back (red shirt, green trousers), from the front on the front
    back, front = np.array([0.0, 0.0, -1.0]), np.array([0.0, 0.0, 1.0])
    assert np.abs(_median_colour(body, back, 1.0, 1.3) - BACK_SHIRT).max() < 40
    assert np.abs(_median_colour(body, back, 0.35, 0.7) - BACK_TROUSERS).max() < 40
    assert np.abs(_median_colour(body, front, 1.0, 1.3) - FRONT_SHIRT).max() < 40
    assert trimesh.load(glb, force="mesh").is_winding_consistent  # the carved mesh came back too


def test_our_mesh_outputs_show_in_core_preview3d(comfy, tmp_path):
    front = EXAMPLES / "character_apose.png"
    from driver.client import ComfyClient

    client = ComfyClient(comfy.url)
    ref = client.upload(front, subfolder="comfy-avatar").ref
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": ref}},
        "2": {
            "class_type": "AvatarImageToMeshCPU",
            "inputs": {
                "image": ["1", 0],
                "mask": ["1", 1],
                "height_m": 1.7,
                "thickness": 0.5,
                "resolution": 128,
                "filename_prefix": "tests/preview",
                "side_facing": "auto",
            },
        },
        "3": {"class_type": "Preview3D", "inputs": {"model_file": ["2", 1], "image": ""}},
    }
    _result, _files, history = _run(comfy, prompt, tmp_path / "out")
    shown = history["outputs"]["3"]["result"][0]
    assert shown.startswith("comfy-avatar/tests/preview_") and shown.endswith(".glb")
    folder, _, name = shown.rpartition("/")
    r = requests.get(f"{comfy.url}/view", params={"filename": name, "subfolder": folder, "type": "output"}, timeout=30)
    assert r.status_code == 200 and r.content[:4] == b"glTF"


def test_every_3d_input_kind_is_detected_in_comfyuis_python(tmp_path):
    """our handle, a core MESH (the server's own class), File3D-like objects of both comfy_api designs
    (memory-backed with .data + .format, and disk/stream-backed with save_to), and paths."""
    comfy_dir = comfyui_dir()
    from _driver_helpers import comfyui_python

    from driver.local import find_python

    glb = write_humanoid_glb(tmp_path / "figure.glb")
    code = f"""
import io, json, sys
sys.argv = ["t", "--cpu"]
sys.path[:0] = [{str(comfy_dir)!r}, {str(ROOT)!r}]
import comfy.options
comfy.options.enable_args_parsing()  # --cpu: 0.3.64's MESH lives in a module that asks for a device
import folder_paths
folder_paths.set_output_directory({str(tmp_path / "output")!r})
import torch, trimesh
from comfy_avatar_nodes.nodes._mesh_inputs import to_asset, core_3d_types
from comfy_avatar_nodes.core.config import load_settings
try:
    from comfy_api.latest import Types
    MESH = Types.MESH
except (ImportError, AttributeError):
    from comfy_extras.nodes_hunyuan3d import MESH
s = load_settings()
m = trimesh.load({str(glb)!r}, force="mesh")
core = MESH(torch.tensor(m.vertices, dtype=torch.float32)[None] * 3, torch.tensor(m.faces)[None])
class MemoryFile3D:  # comfy_api's first File3D: BytesIO + format
    def __init__(self, data, fmt): self._data, self.format = data, fmt
    @property
    def data(self): self._data.seek(0); return self._data
class StreamFile3D:  # the later one: a source plus save_to
    def __init__(self, path): self._source, self._format = path, "glb"
    def save_to(self, dest): open(dest, "wb").write(open(self._source, "rb").read())
raw = open({str(glb)!r}, "rb").read()
out = {{}}
for name, value in [("core", core), ("memory", MemoryFile3D(io.BytesIO(raw), "glb")),
                    ("stream", StreamFile3D({str(glb)!r})), ("path", {str(glb)!r}),
                    ("handle", {{"path": {str(glb)!r}, "kind": "mesh"}})]:
    a = to_asset(value, "mesh", s)
    out[name] = [a.kind, a.meta.get("source"), open(a.path, "rb").read(4).decode()]
try:
    to_asset(42, "mesh", s)
except Exception as e:
    out["bad"] = str(e)
out["types"] = [t.io_type for t in core_3d_types()]
print(json.dumps(out))
"""
    proc = subprocess.run(
        [str(comfyui_python() or find_python(comfy_dir)), "-c", code], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["core"] == ["mesh", "comfyui-core-mesh", "glTF"]
    assert out["memory"] == ["mesh", "comfyui-file3d", "glTF"] and out["stream"] == ["mesh", "comfyui-file3d", "glTF"]
    assert out["path"] == ["mesh", "path", "glTF"] and out["handle"][0] == "mesh"
    assert "got a int, which is not a 3D input this node reads" in out["bad"] and "Fix:" in out["bad"]
    assert "MESH" in out["types"]
