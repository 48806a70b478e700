"""The node layer's shared helpers (issue 7): progress over ComfyUI's API, typed ui, the workflow
embedded in written GLB/VRM files, masks that do not fit their image, and error text as a user
reads it. Plain tests here; the ones marked comfyui run in ComfyUI's own Python or a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from conftest import comfyui_dir, comfyui_version, need

from comfy_avatar_nodes.core.assets import Asset, sha256_file
from comfy_avatar_nodes.core.errors import AvatarError, BlenderError, ConfigError
from comfy_avatar_nodes.core.vrm.glb import read_glb
from comfy_avatar_nodes.nodes import _metadata
from comfy_avatar_nodes.nodes._metadata import embed_in_glb, with_workflow, workflow_extras
from comfy_avatar_nodes.nodes._progress import NodeProgress

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-value-0123456789"


def _glb(path: Path) -> Path:
    import trimesh

    mesh = trimesh.creation.box(extents=(1.0, 2.0, 0.5))
    path.write_bytes(mesh.export(file_type="glb"))
    return path


# ---------------------------------------------------------------- error text


def _comfy_type_name(cls: type) -> str:
    """ComfyUI's execution.full_type_name (the same in 0.3.64 and 0.8.0)."""
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def test_pack_errors_have_their_short_name_wherever_they_are_defined():
    from comfy_avatar_nodes.core.executor.agent import AgentError
    from comfy_avatar_nodes.core.llm.client import LLMError
    from comfy_avatar_nodes.core.runtime.workers import WorkerError

    for cls in (AvatarError, ConfigError, BlenderError, WorkerError, LLMError, AgentError):
        assert _comfy_type_name(cls) == cls.__name__
    try:
        raise ConfigError("blender.binary", "/nope does not exist", "set BLENDER_BIN")
    except ConfigError as e:
        assert isinstance(e, AvatarError)
        last = traceback.format_exc().strip().splitlines()[-1]
    assert last == "ConfigError: blender.binary: /nope does not exist. Fix: set BLENDER_BIN"


def _job_failed(exception_type: str, message: str):
    from driver.errors import JobFailed
    from driver.results import JobResult

    result = JobResult(prompt_id="p1", status="error", outputs=[], timings={}, messages=[])
    return JobFailed(
        result,
        {
            "node_id": "2",
            "node_type": "AvatarImageToMeshCPU",
            "exception_type": exception_type,
            "exception_message": message + "\n",
        },
    )


def test_driver_shows_the_errors_own_fix_once():
    err = _job_failed("ConfigError", "blender.binary: /nope does not exist. Fix: set BLENDER_BIN")
    assert str(err) == (
        "prompt p1 node 2 (AvatarImageToMeshCPU): ConfigError: blender.binary: /nope does not exist. "
        "Fix: set BLENDER_BIN"
    )


def test_driver_adds_its_generic_hint_only_when_the_error_has_none():
    err = _job_failed("ValueError", "steps must be positive")
    assert str(err).startswith("prompt p1 node 2 (AvatarImageToMeshCPU): ValueError: steps must be positive. Fix: ")
    assert str(err).count("Fix:") == 1 and "full traceback" in str(err)


# ---------------------------------------------------------------- workflow in the file


def _hidden():
    prompt = {
        "1": {"class_type": "AvatarLLMEndpoint", "inputs": {"api_key": "typed-by-mistake", "model": "m"}},
        "2": {"class_type": "AvatarIntent", "inputs": {"prompt": f"a stool {SECRET}"}},
    }
    workflow = {"nodes": [{"id": 2, "type": "AvatarIntent", "widgets_values": [f"a stool {SECRET}", 2]}]}
    return SimpleNamespace(prompt=prompt, extra_pnginfo={"workflow": workflow, "auth_token": "t0ken"})


def test_workflow_extras_are_json_text_like_saveglb_without_secrets(monkeypatch):
    monkeypatch.setenv("COMFY_AVATAR_TEST_API_KEY", SECRET)
    extras = workflow_extras(_hidden())
    assert sorted(extras) == ["prompt", "workflow"]  # a secret-looking pnginfo entry is left out
    prompt, workflow = json.loads(extras["prompt"]), json.loads(extras["workflow"])
    assert prompt["1"]["inputs"] == {"api_key": "***", "model": "m"}
    assert prompt["2"]["inputs"]["prompt"] == "a stool ***"
    assert workflow["nodes"][0]["widgets_values"] == ["a stool ***", 2]
    assert SECRET not in json.dumps(extras) and "typed-by-mistake" not in json.dumps(extras)


def test_disable_metadata_or_no_prompt_embeds_nothing(monkeypatch):
    comfy, cli_args = ModuleType("comfy"), ModuleType("comfy.cli_args")
    cli_args.args = SimpleNamespace(disable_metadata=True)
    comfy.cli_args = cli_args
    monkeypatch.setitem(sys.modules, "comfy", comfy)
    monkeypatch.setitem(sys.modules, "comfy.cli_args", cli_args)
    assert workflow_extras(_hidden()) == {}
    cli_args.args.disable_metadata = False
    assert sorted(workflow_extras(_hidden())) == ["prompt", "workflow"]
    assert workflow_extras(None) == {}  # execute() called outside a prompt


def test_embed_in_glb_merges_asset_extras_and_keeps_the_buffer(tmp_path):
    import trimesh

    path = _glb(tmp_path / "box.glb")
    doc0, blob0 = read_glb(path.read_bytes())
    embed_in_glb(path, {"prompt": '{"1": {}}'})
    embed_in_glb(path, {"workflow": '{"nodes": []}'})
    doc, blob = read_glb(path.read_bytes())
    assert blob == blob0
    assert doc["asset"]["extras"] == {"prompt": '{"1": {}}', "workflow": '{"nodes": []}'}
    assert doc["asset"]["version"] == doc0["asset"]["version"] and doc["meshes"] == doc0["meshes"]
    assert len(trimesh.load(path, force="mesh").vertices) == 8
    assert not list(tmp_path.glob(".*")), "no temp file may stay behind"


def test_with_workflow_refreshes_the_handle(tmp_path, caplog):
    path = _glb(tmp_path / "box.glb")
    before = Asset.from_file(path, "mesh", bytes=path.stat().st_size, source="test")
    after = with_workflow(before, _hidden())
    assert after.sha256 == sha256_file(path) != before.sha256
    assert after.meta == {**before.meta, "bytes": path.stat().st_size} and after.meta["bytes"] > before.meta["bytes"]
    fbx = tmp_path / "a.fbx"
    fbx.write_bytes(b"Kaydara FBX Binary")
    assert with_workflow(Asset.from_file(fbx, "fbx"), _hidden()).sha256 == sha256_file(fbx)
    broken = tmp_path / "broken.glb"
    broken.write_bytes(b"not a glb at all, not at all")
    handle = Asset.from_file(broken, "mesh")
    assert with_workflow(handle, _hidden()) == handle
    assert "left the workflow out of" in caplog.text and broken.read_bytes().startswith(b"not a glb")


def test_progress_outside_comfyui_is_silent():
    progress = NodeProgress(3)
    progress.set(2)
    progress.fraction(0.5, "half")
    assert _metadata.metadata_disabled() is False


# ---------------------------------------------------------------- in ComfyUI's own Python

NODE_SCRIPT = r"""
import asyncio, json, sys, threading, traceback
from types import SimpleNamespace
sys.path[:0] = [COMFYUI_DIR, ROOT]
import folder_paths
folder_paths.set_output_directory(OUTPUT)
import torch
from PIL import Image
import numpy as np
from comfy.cli_args import args
args.cpu = True  # before comfy.model_management (via execution) looks for a GPU
from comfy_execution.utils import CurrentNodeContext
from comfy_execution.progress import get_progress_state
import execution
from comfy_avatar_nodes.core.errors import AvatarError, ConfigError
from comfy_avatar_nodes.core.vrm.glb import read_glb
from comfy_avatar_nodes.nodes._common import ui_files
from comfy_avatar_nodes.nodes._progress import NodeProgress
from comfy_avatar_nodes.nodes.mesh import AvatarImageToMeshCPU
from comfy_avatar_nodes.nodes.trellis import AvatarImageTo3DTrellis

out = {"type_name": execution.full_type_name(ConfigError)}
rgba = np.asarray(Image.open(PICTURE).convert("RGBA"), dtype=np.float32) / 255.0
image = torch.from_numpy(rgba[..., :3])[None]
alpha_mask = torch.from_numpy(1.0 - rgba[..., 3])[None]
h, w = rgba.shape[:2]
wrong = torch.ones((1, h // 2, w // 2))
mesh_args = dict(height_m=1.7, thickness=0.5, resolution=64, filename_prefix="avatar/mesh")
trellis_args = dict(seed=1, ss_steps=1, ss_cfg=7.5, slat_steps=1, slat_cfg=3.0, simplify=0.95, texture_size=256,
                    filename_prefix="avatar/trellis")

def error_of(coro):
    try:
        asyncio.run(coro)
    except AvatarError as e:
        return str(e)
    return None

out["mesh_wrong_mask"] = error_of(AvatarImageToMeshCPU.execute(image, mask=wrong, **mesh_args))
out["trellis_wrong_mask"] = error_of(AvatarImageTo3DTrellis.execute(image, mask=wrong, **trellis_args))

node = type("Clone", (AvatarImageToMeshCPU,), {})
node.hidden = SimpleNamespace(prompt={"2": {"class_type": "AvatarImageToMeshCPU", "inputs": {"token": "x"}}},
                              extra_pnginfo={"workflow": {"nodes": [{"id": 2}]}})
for label, mask in (("dummy_mask", torch.zeros((1, 64, 64))), ("alpha_mask", alpha_mask)):
    res = asyncio.run(node.execute(image, mask=mask, **mesh_args))
    doc, _ = read_glb(open(res.result[0]["path"], "rb").read())
    out[label] = {"handle": res.result[0], "ui": json.loads(json.dumps(res.ui)),
                  "extras": doc["asset"].get("extras")}
args.disable_metadata = True
res = asyncio.run(node.execute(image, mask=None, **mesh_args))
out["disabled"] = read_glb(open(res.result[0]["path"], "rb").read())[0]["asset"].get("extras")
args.disable_metadata = False
out["ui_text"] = json.loads(json.dumps(ui_files(res.result[0]["path"], text="3 bones")))

import comfy.utils
from comfy_api.latest import ComfyAPISync
calls = []  # what ComfyUI's ProgressBar hook (the fallback) receives
comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, prompt_id=None, node_id=None:
                                         calls.append([value, total, node_id]))
out["v3_progress"] = hasattr(ComfyAPISync(), "execution")  # 0.3.64: its sync API lacks it
out["progress_outside"] = NodeProgress(4)._report is None
with CurrentNodeContext("p1", "7"):
    progress = NodeProgress(4)
    progress.set(1)
    t = threading.Thread(target=progress.fraction, args=(0.75, "from a worker thread"))
    t.start(); t.join()
entry = get_progress_state().nodes.get("7")
out["progress_registry"] = [entry["value"], entry["max"]] if entry else None
out["progress_hook"] = calls
print(json.dumps(out, default=str))
"""


@pytest.mark.comfyui
def test_nodes_in_comfyuis_python(tmp_path, example_image):
    """Mesh and TRELLIS nodes refuse a mask of another size (LoadImage's all-zero 64x64 dummy is still
    ignored); the workflow lands in the GLB unless --disable-metadata; typed ui; V3 progress; short names."""
    from _driver_helpers import comfyui_python

    comfyui_dir()
    need(bool(comfyui_python()), "COMFYUI_DIR has no venv/ (or set COMFYUI_PYTHON): cannot load the nodes")
    consts = {
        "COMFYUI_DIR": os.environ["COMFYUI_DIR"],
        "ROOT": str(ROOT),
        "OUTPUT": str(tmp_path / "output"),
        "PICTURE": str(example_image),
    }
    script = tmp_path / "nodes.py"
    script.write_text("".join(f"{k} = {v!r}\n" for k, v in consts.items()) + NODE_SCRIPT)
    proc = subprocess.run([comfyui_python(), str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    assert out["type_name"] == "ConfigError"
    for key in ("mesh_wrong_mask", "trellis_wrong_mask"):
        assert out[key] and out[key].startswith("mask: is "), out[key]
        assert "but the image is" in out[key] and "Fix: use the MASK that came with the same image" in out[key]
    for label in ("dummy_mask", "alpha_mask"):
        res = out[label]
        path = Path(res["handle"]["path"])
        assert res["handle"]["sha256"] == sha256_file(path)
        assert res["ui"] == {
            "avatar_files": [{"filename": path.name, "subfolder": "comfy-avatar/avatar", "type": "output"}]
        }
        extras = res["extras"]
        assert json.loads(extras["prompt"]) == {"2": {"class_type": "AvatarImageToMeshCPU", "inputs": {"token": "***"}}}
        assert json.loads(extras["workflow"]) == {"nodes": [{"id": 2}]}
    assert out["disabled"] is None or not ({"prompt", "workflow"} & set(out["disabled"]))
    assert out["ui_text"]["text"] == ["3 bones"] and len(out["ui_text"]["avatar_files"]) == 1
    if out["v3_progress"]:  # ComfyAPISync().execution.set_progress: straight into the progress registry
        assert out["progress_registry"] == [3.0, 4.0] and out["progress_hook"] == []
        assert out["progress_outside"] is True  # no running node: nothing to report to
    else:  # the ProgressBar fallback, with the node id taken on the node's thread
        assert out["progress_hook"] == [[1.0, 4.0, "7"], [3.0, 4.0, "7"]]
    assert out["v3_progress"] or comfyui_version() < (0, 8, 0), "ComfyUI 0.8.0 has the V3 progress API"


# ---------------------------------------------------------------- through the driver, real server

MESH_ONLY = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "character_apose.png"}, "_meta": {"title": "image"}},
    "2": {
        "class_type": "AvatarImageToMeshCPU",
        "inputs": {
            "image": ["1", 0],
            "mask": ["1", 1],
            "height_m": 1.7,
            "thickness": 0.5,
            "resolution": 64,
            "filename_prefix": "avatar/mesh",
        },
    },
    "3": {"class_type": "Preview3D", "inputs": {"model_file": ["2", 1]}},
}


def _driver(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = ROOT / ".venv" / "bin" / "comfy-avatar"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "driver"]
    return subprocess.run(
        [*cmd, "run", *args], cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})}
    )


@pytest.mark.comfyui
def test_a_bad_input_reads_well_through_the_driver(tmp_path):
    """A picture too small for the mesh node, through `comfy-avatar run --local`: the user reads the
    short exception name, the message and the pack's own fix, once; no module path, no second fix."""
    from PIL import Image

    comfyui_dir()
    tiny = tmp_path / "tiny.png"
    Image.new("RGBA", (16, 16), (200, 50, 50, 255)).save(tiny)
    proc = _driver(
        str(ROOT / "workflows" / "image_to_vrm_cpu.api.json"),
        "--input",
        f"image={tiny}",
        "--out",
        str(tmp_path / "out"),
        "--local",
        "--progress",
        "none",
    )
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = [ln for ln in proc.stderr.splitlines() if "AvatarImageToMeshCPU" in ln and "Error" in ln]
    assert lines, proc.stderr[-4000:]
    line = lines[-1]
    assert (
        "AvatarImageToMeshCPU): AvatarError: image: is only 16x16 pixels, smaller than the 32 px minimum. "
        "Fix: use a larger picture"
    ) in line, line
    assert line.count("Fix:") == 1 and "custom_nodes" not in proc.stderr and "comfy_avatar_nodes." not in line
    assert "fix the node's input named in the message" not in proc.stderr


@pytest.mark.comfyui
def test_the_prompt_lands_in_the_glb_a_real_server_writes(tmp_path, example_image):
    """Hidden.prompt reaches the node through a real ComfyUI: the downloaded GLB carries it in asset.extras."""
    from _driver_helpers import shared_comfy

    comfyui_dir()
    wf = tmp_path / "mesh_only.api.json"
    wf.write_text(json.dumps(MESH_ONLY))
    server = shared_comfy()
    proc = _driver(
        str(wf),
        "--input",
        f"image={example_image}",
        "--out",
        str(tmp_path / "out"),
        "--server",
        server.url,
        "--json",
        "--progress",
        "none",
    )
    assert proc.returncode == 0, proc.stderr[-4000:] + server.log_path.read_text(errors="replace")[-3000:]
    result = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith('{"type": "result"')][-1])
    glbs = [Path(p) for p in result["files"] if p.endswith(".glb")]
    assert glbs, result
    doc, _ = read_glb(glbs[0].read_bytes())
    prompt = json.loads(doc["asset"]["extras"]["prompt"])
    assert prompt["2"]["class_type"] == "AvatarImageToMeshCPU" and prompt["2"]["inputs"]["resolution"] == 64
    assert doc["asset"]["version"] == "2.0"
