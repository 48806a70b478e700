"""TRELLIS and UniRig integration up to the model call (no GPU, no weights here).

The REAL worker scripts (comfy_avatar_nodes/workers/) are started through the real worker
manager with .venv's Python (no torch/trellis/bpy) and must fail their handshake with the
precise problems; the UniRig step commands are checked against UniRig's documented
launch scripts (and against a real checkout when COMFY_AVATAR_TEST_UNIRIG_REPO points at
one); the UniRig step runner runs against a stand-in checkout with the same CLI
(tests/data/workers/fake_unirig); the bone-name heuristic runs on shuffled synthetic skeletons.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import need

from comfy_avatar_nodes.core.config import load_settings
from comfy_avatar_nodes.core.errors import AvatarError, ConfigError
from comfy_avatar_nodes.core.mesh import trellis as core_trellis
from comfy_avatar_nodes.core.rig import unirig as core_unirig
from comfy_avatar_nodes.core.rig.humanoid import humanoid_map
from comfy_avatar_nodes.core.runtime.workers import WORKERS_DIR, WorkerError, get_worker, shutdown_all
from comfy_avatar_nodes.core.vrm.gltf import Skeleton, read_skeleton
from comfy_avatar_nodes.core.vrm.spec import REQUIRED_BONES

ROOT = Path(__file__).resolve().parents[1]
VENV_PY = Path(sys.executable)  # the dev venv: no torch, trellis, bpy
# ComfyUI's venv has a CPU-capable torch (tests/run.sh makes one per ComfyUI version)
COMFY_PY = Path(os.environ.get("COMFYUI_DIR") or ROOT / ".runtime" / "ComfyUI", "venv", "bin", "python")
FAKE_UNIRIG = Path(__file__).parent / "data" / "workers" / "fake_unirig"
TRELLIS_MODELS = {
    "sparse_structure_decoder": "ckpts/ss_dec_conv3d_16l8_fp16",
    "sparse_structure_flow_model": "ckpts/ss_flow_img_dit_L_16l8_fp16",
    "slat_decoder_gs": "ckpts/slat_dec_gs_swin8_B_64l8gs32_fp16",
    "slat_decoder_rf": "ckpts/slat_dec_rf_swin8_B_64l8r16_fp16",
    "slat_decoder_mesh": "ckpts/slat_dec_mesh_swin8_B_64l8m256c_fp16",
    "slat_flow_model": "ckpts/slat_flow_img_dit_L_64l8p2_fp16",
}


def load_worker_module(name: str):
    spec = importlib.util.spec_from_file_location(f"_test_{name}", WORKERS_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _no_workers_left():
    yield
    shutdown_all()


def cfg_with(tmp_path, **values):
    env = {"COMFY_AVATAR__WORKERS__LOG_DIR": str(tmp_path / "workers")}
    env.update({"COMFY_AVATAR__" + k.upper().replace(".", "__"): str(v) for k, v in values.items()})
    return load_settings(env)


def trellis_weights(tmp_path, complete: bool = False) -> Path:
    w = tmp_path / "TRELLIS-image-large"
    (w / "ckpts").mkdir(parents=True)
    (w / "pipeline.json").write_text(
        json.dumps(
            {
                "name": "TrellisImageTo3DPipeline",
                "args": {"models": TRELLIS_MODELS, "image_cond_model": "dinov2_vitl14_reg"},
            }
        )
    )
    if complete:
        for rel in TRELLIS_MODELS.values():
            for ext in (".json", ".safetensors"):
                (w / f"{rel}{ext}").write_text("{}")
    return w


def torch_home(tmp_path, complete: bool) -> Path:
    th = tmp_path / "torch"
    if complete:
        (th / "hub" / "facebookresearch_dinov2_main").mkdir(parents=True)
        (th / "hub" / "facebookresearch_dinov2_main" / "hubconf.py").write_text("")
        (th / "hub" / "checkpoints").mkdir()
        (th / "hub" / "checkpoints" / "dinov2_vitl14_reg4_pretrain.pth").write_bytes(b"0")
    return th


def handshake_error(spec) -> WorkerError:
    with pytest.raises(WorkerError) as ei:
        asyncio.run(get_worker(spec).start())
    assert ei.value.kind == "preflight", ei.value
    return ei.value


def problems_of(err: WorkerError) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for p in err.problems:
        out.setdefault(p["kind"], []).append(p)
    return out


# ====================================================================== TRELLIS


def test_trellis_config_errors_name_the_key_and_the_fix(tmp_path, clean_env, example_image):
    out = tmp_path / "o.glb"
    with pytest.raises(ConfigError) as ei:
        asyncio.run(core_trellis.image_to_mesh_trellis(example_image, out, settings=cfg_with(tmp_path)))
    msg = str(ei.value)
    assert msg.startswith("trellis.python (COMFY_AVATAR__TRELLIS__PYTHON): is not set")
    assert "setup.sh --new-env --basic" in msg and "trellis.repo_dir" in msg
    with pytest.raises(ConfigError, match=r"trellis.python .*nope/python does not exist"):
        core_trellis.trellis_spec(cfg_with(tmp_path, **{"trellis.python": tmp_path / "nope" / "python"}))
    with pytest.raises(ConfigError) as ei:
        core_trellis.trellis_spec(cfg_with(tmp_path, **{"trellis.python": VENV_PY}))
    msg = str(ei.value)
    assert "trellis.weights_dir (COMFY_AVATAR__TRELLIS__WEIGHTS_DIR): is not set" in msg
    assert "pipeline.json + ckpts/" in msg and "huggingface-cli download microsoft/TRELLIS-image-large" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no pipeline.json"):
        core_trellis.trellis_spec(
            cfg_with(tmp_path, **{"trellis.python": VENV_PY, "trellis.weights_dir": tmp_path / "empty"})
        )
    w = trellis_weights(tmp_path)
    with pytest.raises(ConfigError, match="'flash-attn' is not a TRELLIS attention backend"):
        core_trellis.trellis_spec(
            cfg_with(
                tmp_path, **{"trellis.python": VENV_PY, "trellis.weights_dir": w, "trellis.attn_backend": "flash-attn"}
            )
        )
    assert not out.exists()


def test_trellis_spec_from_config(tmp_path, clean_env):
    w = trellis_weights(tmp_path)
    spec = core_trellis.trellis_spec(
        cfg_with(
            tmp_path,
            **{
                "trellis.python": VENV_PY,
                "trellis.weights_dir": w,
                "trellis.attn_backend": "xformers",
                "trellis.torch_home": tmp_path / "th",
                "trellis.min_vram_gb": 24,
                "workers.idle_timeout_s": 60,
            },
        )
    )
    assert spec.script == str(WORKERS_DIR / "trellis_worker.py") and spec.python == str(VENV_PY)
    assert spec.args == ("--weights-dir", str(w.resolve()), "--min-vram-gb", "24")
    env = dict(spec.env)
    assert env == {
        "ATTN_BACKEND": "xformers",
        "SPARSE_BACKEND": "spconv",
        "SPCONV_ALGO": "native",
        "TORCH_HOME": str(tmp_path / "th"),
    }
    assert spec.idle_timeout_s == 60


def test_real_trellis_worker_without_torch_reports_every_problem(tmp_path, clean_env, example_image):
    """The real worker under .venv's Python: no GPU, no torch/trellis, weights incomplete."""
    w = trellis_weights(tmp_path)
    (w / "ckpts" / "ss_dec_conv3d_16l8_fp16.json").write_text("{}")
    cfg = cfg_with(
        tmp_path, **{"trellis.python": VENV_PY, "trellis.weights_dir": w, "trellis.torch_home": tmp_path / "th"}
    )
    err = handshake_error(core_trellis.trellis_spec(cfg))
    kinds = problems_of(err)
    assert list(kinds) == ["no_cuda", "missing_package", "missing_weights"]
    assert "torch is not installed in this Python" in kinds["no_cuda"][0]["message"]
    missing = kinds["missing_package"][0]["missing"]
    assert {
        "torch",
        "torchvision",
        "trellis",
        "rembg",
        "nvdiffrast",
        "diff_gaussian_rasterization",
        "flash_attn",
        "spconv",
    } <= set(missing)
    assert "PIL" not in missing and "numpy" not in missing  # .venv has these
    weights, hub = kinds["missing_weights"]
    expected = [f"{rel}{ext}" for rel in TRELLIS_MODELS.values() for ext in (".json", ".safetensors")]
    expected.remove("ckpts/ss_dec_conv3d_16l8_fp16.json")
    assert weights["missing"] == expected
    assert hub["missing"] == [
        str(tmp_path / "th/hub/facebookresearch_dinov2_main/hubconf.py"),
        str(tmp_path / "th/hub/checkpoints/dinov2_vitl14_reg4_pretrain.pth"),
    ]
    assert err.info["backends"] == {"attn": "flash_attn", "sparse": "spconv", "spconv_algo": "native"}
    # what the node shows: the GPU comes first, everything else is listed below it
    with pytest.raises(AvatarError) as ei:
        asyncio.run(core_trellis.image_to_mesh_trellis(example_image, tmp_path / "o.glb", settings=cfg))
    msg = str(ei.value)
    assert msg.startswith("Image to 3D (TRELLIS): TRELLIS needs an NVIDIA GPU with >= 16 GB (no usable CUDA GPU: ")
    assert "Fix: use the CPU silhouette node (Image to Mesh (CPU silhouette inflation))" in msg
    assert "[missing_package]" in msg and "trellis: set trellis.repo_dir" in msg
    assert not (tmp_path / "o.glb").exists()
    assert get_worker(core_trellis.trellis_spec(cfg)).pid is None


def test_real_trellis_worker_accepts_a_complete_weights_folder(tmp_path, clean_env):
    w = trellis_weights(tmp_path, complete=True)
    cfg = cfg_with(
        tmp_path,
        **{
            "trellis.python": VENV_PY,
            "trellis.weights_dir": w,
            "trellis.torch_home": torch_home(tmp_path, True),
            "trellis.attn_backend": "sdpa",
        },
    )
    err = handshake_error(core_trellis.trellis_spec(cfg))
    kinds = problems_of(err)
    assert list(kinds) == ["no_cuda", "missing_package"]
    assert "flash_attn" not in kinds["missing_package"][0]["missing"]  # sdpa needs no extra package


@pytest.mark.comfyui
def test_real_trellis_worker_with_a_cpu_torch(tmp_path, clean_env):
    need(COMFY_PY.is_file(), f"{COMFY_PY} (ComfyUI's venv, a Python with torch) is not set up")
    w = trellis_weights(tmp_path, complete=True)
    cfg = cfg_with(
        tmp_path,
        **{"trellis.python": COMFY_PY, "trellis.weights_dir": w, "trellis.torch_home": torch_home(tmp_path, True)},
    )
    err = handshake_error(core_trellis.trellis_spec(cfg))
    kinds = problems_of(err)
    dev = err.info["device"]
    assert dev["cuda"] is False and dev["torch"]
    assert ("torch.cuda.is_available() is False" in dev["reason"]) or ("without CUDA" in dev["reason"])
    assert "torch" not in kinds["missing_package"][0]["missing"]
    assert "missing_weights" not in kinds


def test_trellis_start_failure_mapping():
    class S:
        python = "/envs/trellis/bin/python"

    def err(*kinds):
        return WorkerError(
            "TRELLIS worker",
            "is not usable",
            kind="preflight",
            problems=[{"kind": k, "message": f"{k} message"} for k in kinds],
        )

    e = core_trellis.explain_start_failure(err("missing_package"), S)
    assert str(e).startswith(
        "trellis.python (COMFY_AVATAR__TRELLIS__PYTHON) = /envs/trellis/bin/python: missing_package message"
    )
    assert "setup.sh" in str(e)
    e = core_trellis.explain_start_failure(err("missing_weights"), S)
    assert str(e).startswith("trellis.weights_dir (COMFY_AVATAR__TRELLIS__WEIGHTS_DIR): missing_weights message")
    assert "huggingface-cli download microsoft/TRELLIS-image-large" in str(e)
    e = core_trellis.explain_start_failure(err("low_vram", "missing_weights"), S)
    assert "TRELLIS needs an NVIDIA GPU with >= 16 GB (low_vram message)" in str(e)
    assert "TRELLIS model load" in str(core_trellis.explain_start_failure(err("load_error"), S))


def test_trellis_bad_inputs_fail_before_any_worker(tmp_path, clean_env):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(AvatarError, match="^image .*bad.png.: is not a picture"):
        asyncio.run(core_trellis.image_to_mesh_trellis(bad, tmp_path / "o.glb", settings=cfg_with(tmp_path)))
    with pytest.raises(AvatarError, match="TRELLIS writes GLB files"):
        asyncio.run(core_trellis.image_to_mesh_trellis(bad, tmp_path / "o.obj", settings=cfg_with(tmp_path)))
    with pytest.raises(AvatarError, match="^ss_steps: 0 is outside 1..100"):
        core_trellis.TrellisParams(ss_steps=0).check()


def test_trellis_worker_helpers(tmp_path, monkeypatch):
    from PIL import Image

    tw = load_worker_module("trellis_worker")
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    assert tw.needs_background_removal(rgba) is True  # opaque RGBA goes through rembg too
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    assert tw.needs_background_removal(rgba) is False
    assert tw.needs_background_removal(Image.new("RGB", (8, 8))) is True
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert [p.name for p in tw.dinov2_files("dinov2_vitl14_reg")] == ["hubconf.py", "dinov2_vitl14_reg4_pretrain.pth"]
    assert tw.dinov2_files("dinov2_vitb14")[1].name == "dinov2_vitb14_pretrain.pth"
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "u2"))
    assert tw.u2net_path() == tmp_path / "u2" / "u2net.onnx"
    missing, _ = tw.check_weights(tmp_path / "absent")
    assert missing == [f"{tmp_path / 'absent'} itself (the folder does not exist)"]


def test_trellis_repository_not_found_is_explained(tmp_path, monkeypatch):
    """TRELLIS's bare except turns a local load error into a Hub error; the worker finds the real one."""
    pkg = tmp_path / "fakepkgs" / "trellis"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(
        "def from_pretrained(path):\n"
        "    if path.endswith('slat_dec_mesh_swin8_B_64l8m256c_fp16'):\n"
        "        raise ModuleNotFoundError(\"No module named 'flash_attn'\")\n"
        "    return object()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "fakepkgs"))
    monkeypatch.delitem(sys.modules, "trellis", raising=False)
    monkeypatch.delitem(sys.modules, "trellis.models", raising=False)
    tw = load_worker_module("trellis_worker")

    class RepositoryNotFoundError(Exception):
        pass

    cfg = {"args": {"models": TRELLIS_MODELS}}
    hub = RepositoryNotFoundError(
        "404 Client Error. Repository Not Found for url: https://huggingface.co/api/models/ckpts/slat_dec_mesh"
    )
    msg = tw.explain_load_error(hub, tmp_path / "w", cfg)
    assert (
        "loading component 'slat_decoder_mesh' (ckpts/slat_dec_mesh_swin8_B_64l8m256c_fp16) failed with "
        "ModuleNotFoundError: No module named 'flash_attn'" in msg
    )
    assert "retried it as a Hugging Face repo id" in msg
    assert (
        tw.explain_load_error(RuntimeError("CUDA out of memory"), tmp_path / "w", cfg)
        == "RuntimeError: CUDA out of memory"
    )


# ====================================================================== UniRig commands


def test_unirig_step_commands_match_the_launch_scripts():
    uw = load_worker_module("unirig_worker")
    mesh, npz, py = Path("/w/input/mesh.glb"), Path("/w/npz"), "/envs/unirig/bin/python"
    assert uw.extract_argv(py, mesh, npz, force_override=False, faces_target_count=50000, time_tag="T") == [
        py,
        "-m",
        "src.data.extract",
        "--config=configs/data/quick_inference.yaml",
        "--require_suffix=obj,fbx,FBX,dae,glb,gltf,vrm",
        "--force_override=false",
        "--num_runs=1",
        "--id=0",
        "--time=T",
        "--faces_target_count=50000",
        "--input=/w/input/mesh.glb",
        "--output_dir=/w/npz",
    ]
    assert uw.skeleton_argv(py, uw.SKELETON_TASK, 12345, mesh, Path("/w/skeleton.fbx"), npz) == [
        py,
        "run.py",
        "--task=configs/task/quick_inference_skeleton_articulationxl_ar_256.yaml",
        "--seed=12345",
        "--input=/w/input/mesh.glb",
        "--output=/w/skeleton.fbx",
        "--npz_dir=/w/npz",
    ]
    assert uw.skin_argv(py, uw.SKIN_TASK, 7, Path("/w/skeleton.fbx"), Path("/w/skin.fbx"), npz) == [
        py,
        "run.py",
        "--task=configs/task/quick_inference_unirig_skin.yaml",
        "--seed=7",
        "--input=/w/skeleton.fbx",
        "--output=/w/skin.fbx",
        "--npz_dir=/w/npz",
        "--data_name=raw_data.npz",
    ]
    assert uw.merge_argv(py, Path("/w/skin.fbx"), mesh, Path("/w/rigged.glb")) == [
        py,
        "-m",
        "src.inference.merge",
        "--require_suffix=obj,fbx,FBX,dae,glb,gltf,vrm",
        "--num_runs=1",
        "--id=0",
        "--source=/w/skin.fbx",
        "--target=/w/input/mesh.glb",
        "--output=/w/rigged.glb",
    ]
    # get_files() in extract.py joins the npz dir with the input path minus its suffix
    assert uw.npz_dir_for(mesh, npz) == Path("/w/input/mesh")
    assert uw.npz_dir_for(Path("rel/a.b.glb"), npz) == Path("/w/npz/rel/a.b")


def _declared_flags(path: Path) -> tuple[set[str], set[str]]:
    """--flags a script's argparse declares, and the required ones."""
    flags, required = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" and node.args:
            name = getattr(node.args[0], "value", None)
            if isinstance(name, str) and name.startswith("--"):
                flags.add(name)
                if any(k.arg == "required" and getattr(k.value, "value", False) is True for k in node.keywords):
                    required.add(name)
    return flags, required


def _used_flags(argv: list[str]) -> set[str]:
    return {a.split("=", 1)[0] for a in argv if a.startswith("--")}


def test_unirig_commands_against_a_real_checkout():
    repo = os.environ.get("COMFY_AVATAR_TEST_UNIRIG_REPO")
    if not repo:
        pytest.skip(
            "not applicable: no UniRig checkout here (GitHub is out of reach of these machines); set "
            "COMFY_AVATAR_TEST_UNIRIG_REPO to a checkout of github.com/VAST-AI-Research/UniRig"
        )
    repo = Path(repo)
    uw = load_worker_module("unirig_worker")
    for rel in uw.REPO_FILES:
        assert (repo / rel).is_file(), rel
    p = Path("/x.glb")
    for script, argv in (
        ("src/data/extract.py", uw.extract_argv("py", p, p, force_override=True, faces_target_count=1, time_tag="t")),
        ("run.py", uw.skeleton_argv("py", uw.SKELETON_TASK, 1, p, p, p)),
        ("run.py", uw.skin_argv("py", uw.SKIN_TASK, 1, p, p, p)),
        ("src/inference/merge.py", uw.merge_argv("py", p, p, p)),
    ):
        declared, required = _declared_flags(repo / script)
        assert _used_flags(argv) <= declared, f"{script} does not accept {_used_flags(argv) - declared}"
        assert required <= _used_flags(argv), f"{script} also requires {required - _used_flags(argv)}"
    launch = {
        n: (repo / "launch" / "inference" / f"{n}.sh").read_text() for n in ("generate_skeleton", "generate_skin")
    }
    assert f'skeleton_task="{uw.SKELETON_TASK}"' in launch["generate_skeleton"]
    assert f'skin_task="{uw.SKIN_TASK}"' in launch["generate_skin"]
    assert "seed=12345" in launch["generate_skeleton"] and "faces_target_count=50000" in launch["generate_skeleton"]
    assert 'data_name="raw_data.npz"' in launch["generate_skin"]
    download = (repo / "src" / "inference" / "download.py").read_text()
    for task, (in_repo, in_hf) in uw.CHECKPOINTS.items():
        assert f"resume_from_checkpoint: {in_repo}" in (repo / task).read_text()
        assert f"'{in_repo}': '{in_hf}'" in download
    assert "facebook/opt-350m" in (repo / "configs/model/unirig_ar_350m_1024_81920_float32.yaml").read_text()
    assert "assert args.output.endswith('.fbx')" in (repo / "run.py").read_text()
    assert uw.BAD_SAMPLE in (repo / "src/tokenizer/tokenizer_part.py").read_text()


# ====================================================================== UniRig worker


def test_unirig_config_errors(tmp_path, clean_env):
    with pytest.raises(ConfigError) as ei:
        core_unirig.unirig_spec(cfg_with(tmp_path))
    assert str(ei.value).startswith("unirig.python (COMFY_AVATAR__UNIRIG__PYTHON): is not set")
    assert "pip install -r requirements.txt" in str(ei.value)
    with pytest.raises(ConfigError, match=r"unirig.repo_dir \(COMFY_AVATAR__UNIRIG__REPO_DIR\): is not set"):
        core_unirig.unirig_spec(cfg_with(tmp_path, **{"unirig.python": VENV_PY}))
    (tmp_path / "notunirig").mkdir()
    with pytest.raises(ConfigError, match="has no run.py"):
        core_unirig.unirig_spec(
            cfg_with(tmp_path, **{"unirig.python": VENV_PY, "unirig.repo_dir": tmp_path / "notunirig"})
        )


def hf_cache(root: Path, repo_id: str, files: dict[str, bytes]) -> None:
    base = root / "hub" / f"models--{repo_id.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text("abc123")
    for rel, data in files.items():
        p = base / "snapshots" / "abc123" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def test_real_unirig_worker_without_torch_reports_every_problem(tmp_path, clean_env):
    cfg = cfg_with(tmp_path, **{"unirig.python": VENV_PY, "unirig.repo_dir": FAKE_UNIRIG, "unirig.hf_home": tmp_path})
    spec = core_unirig.unirig_spec(cfg)
    assert dict(spec.env) == {"HF_HOME": str(tmp_path.resolve())} and spec.cwd == str(FAKE_UNIRIG.resolve())
    err = handshake_error(spec)
    kinds = problems_of(err)
    assert list(kinds) == ["no_cuda", "missing_package", "missing_weights"]
    assert {
        "torch",
        "bpy",
        "lightning",
        "transformers",
        "flash_attn",
        "spconv",
        "torch_scatter",
        "torch_cluster",
        "box",
        "pyrender",
    } <= set(kinds["missing_package"][0]["missing"])
    ckpt, llm = kinds["missing_weights"]
    assert "skeleton/articulation-xl_quantization_256/model.ckpt" in ckpt["message"]
    assert "skin/articulation-xl/model.ckpt" in ckpt["message"]
    assert "facebook/opt-350m" in llm["message"] and str(tmp_path.resolve() / "hub") in llm["message"]
    with pytest.raises(AvatarError) as ei:
        asyncio.run(core_unirig.rig_unirig(FAKE_UNIRIG / "run.py", tmp_path / "o.glb", settings=cfg))
    assert "UniRig here reads .glb, .obj, .fbx, .vrm" in str(ei.value)  # input checked before the worker
    mesh = tmp_path / "m.glb"
    mesh.write_bytes(b"glTF")
    with pytest.raises(AvatarError) as ei:
        asyncio.run(core_unirig.rig_unirig(mesh, tmp_path / "o.glb", settings=cfg))
    assert str(ei.value).startswith("Auto-rig (UniRig): UniRig needs an NVIDIA GPU with >= 8 GB")
    assert "CPU template rig" in str(ei.value) and not (tmp_path / "o.glb").exists()


def test_real_unirig_worker_finds_weights_in_the_hf_cache_or_weights_dir(tmp_path, clean_env):
    hf = tmp_path / "hf"
    hf_cache(
        hf,
        "VAST-AI/UniRig",
        {"skeleton/articulation-xl_quantization_256/model.ckpt": b"0", "skin/articulation-xl/model.ckpt": b"0"},
    )
    hf_cache(hf, "facebook/opt-350m", {"config.json": b"{}"})
    err = handshake_error(
        core_unirig.unirig_spec(
            cfg_with(tmp_path, **{"unirig.python": VENV_PY, "unirig.repo_dir": FAKE_UNIRIG, "unirig.hf_home": hf})
        )
    )
    assert list(problems_of(err)) == ["no_cuda", "missing_package"]
    assert {v["source"] for v in err.info["checkpoints"].values()} == {"hf_cache"}
    wd = tmp_path / "weights"
    (wd / "skeleton/articulation-xl_quantization_256").mkdir(parents=True)
    (wd / "skeleton/articulation-xl_quantization_256/model.ckpt").write_bytes(b"0")
    err = handshake_error(
        core_unirig.unirig_spec(
            cfg_with(
                tmp_path,
                **{
                    "unirig.python": VENV_PY,
                    "unirig.repo_dir": FAKE_UNIRIG,
                    "unirig.hf_home": hf,
                    "unirig.weights_dir": wd,
                },
            )
        )
    )
    kinds = problems_of(err)
    assert kinds["missing_weights"][0]["missing"] == [str(wd.resolve() / "skin/articulation-xl/model.ckpt")]
    assert err.info["checkpoints"][load_worker_module("unirig_worker").SKELETON_TASK]["source"] == "weights_dir"


def test_real_unirig_worker_names_missing_checkout_files(tmp_path, clean_env):
    repo = tmp_path / "UniRig"
    repo.mkdir()
    (repo / "run.py").write_text("")
    err = handshake_error(
        core_unirig.unirig_spec(cfg_with(tmp_path, **{"unirig.python": VENV_PY, "unirig.repo_dir": repo}))
    )
    missing = problems_of(err)["missing_repo"][0]["missing"]
    assert "src/data/extract.py" in missing and "configs/task/quick_inference_unirig_skin.yaml" in missing
    assert "run.py" not in missing


# ====================================================================== UniRig steps (stand-in checkout)


def synthetic_humanoid(fingers: bool = True, toes: bool = True, extra_head_leaf: bool = True):
    """(name, parent name, position) of a VRM-like skeleton: metres, Y up, facing +Z, A-pose."""
    joints = []

    def add(n, p, pos):
        joints.append((n, p, np.array(pos, float)))

    add("hips", None, (0, 1.0, 0))
    add("spine", "hips", (0, 1.1, 0))
    add("chest", "spine", (0, 1.25, 0))
    add("upperChest", "chest", (0, 1.38, 0))
    add("neck", "upperChest", (0, 1.5, 0))
    add("head", "neck", (0, 1.58, 0.01))
    add("head_end", "head", (0, 1.78, 0.01))
    if extra_head_leaf:
        add("ear", "head", (0.08, 1.65, 0))
    for side, s in (("left", 1), ("right", -1)):
        add(f"{side}Shoulder", "upperChest", (0.05 * s, 1.45, 0))
        add(f"{side}UpperArm", f"{side}Shoulder", (0.17 * s, 1.45, 0))
        add(f"{side}LowerArm", f"{side}UpperArm", (0.42 * s, 1.30, -0.01))
        add(f"{side}Hand", f"{side}LowerArm", (0.65 * s, 1.15, 0))
        if fingers:
            add(f"{side}Index1", f"{side}Hand", (0.73 * s, 1.11, 0.03))
            add(f"{side}Index2", f"{side}Index1", (0.77 * s, 1.09, 0.03))
            add(f"{side}Index3", f"{side}Index2", (0.80 * s, 1.07, 0.03))
            add(f"{side}Thumb1", f"{side}Hand", (0.69 * s, 1.12, 0.05))
            add(f"{side}Thumb2", f"{side}Thumb1", (0.72 * s, 1.10, 0.07))
        add(f"{side}UpperLeg", "hips", (0.1 * s, 0.95, 0))
        add(f"{side}LowerLeg", f"{side}UpperLeg", (0.1 * s, 0.52, 0.01))
        add(f"{side}Foot", f"{side}LowerLeg", (0.1 * s, 0.08, 0))
        if toes:
            add(f"{side}Toes", f"{side}Foot", (0.1 * s, 0.0, 0.12))
    return joints


def as_unirig(joints, seed=0, yaw_deg=0.0, scale=1.0, shift=(0, 0, 0)):
    """Shuffle the joint order and rename to bone_0..bone_N like UniRig's checkpoint does.
    Returns (Skeleton, {true name: bone_k})."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(joints))
    index = {n: i for i, (n, _, _) in enumerate(joints)}
    new_of = {int(old): new for new, old in enumerate(perm)}
    a = np.radians(yaw_deg)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    names = [f"bone_{k}" for k in range(len(joints))]
    parents, pos, truth = [None] * len(joints), np.zeros((len(joints), 3)), {}
    for new, old in enumerate(perm):
        n, p, x = joints[old]
        parents[new] = None if p is None else new_of[index[p]]
        pos[new] = rot @ x * scale + np.asarray(shift)
        truth[n] = names[new]
    return Skeleton(names, parents, pos), truth


def test_unirig_pipeline_retries_bad_samples_and_merges(tmp_path, monkeypatch):
    uw = load_worker_module("unirig_worker")
    sk, _ = as_unirig(synthetic_humanoid())
    skel_json = tmp_path / "skeleton.json"
    skel_json.write_text(json.dumps({"names": sk.names, "parents": sk.parents, "positions": sk.positions.tolist()}))
    monkeypatch.setenv("FAKE_UNIRIG_SKELETON", str(skel_json))
    src = tmp_path / "in" / "character.glb"
    src.parent.mkdir()
    src.write_bytes(b"glTF mesh")
    work, out = tmp_path / "work", tmp_path / "out" / "rigged_00001.glb"
    progress = []
    pipe = uw.Pipeline(
        python=sys.executable, repo_dir=FAKE_UNIRIG, work_dir=work, progress=lambda f, m: progress.append(m)
    )
    res = pipe.run(src, out, seed=12345, seed_retries=3)
    assert res["seed"] == 12346 and res["seeds_tried"] == [12345, 12346]
    assert [s["name"] for s in res["steps"]] == ["extract", "skeleton", "skeleton", "extract-skeleton", "skin", "merge"]
    assert [s["returncode"] for s in res["steps"]] == [0] * 6
    assert progress == ["extract", "skeleton", "skeleton", "extract-skeleton", "skin", "merge"]
    assert "unexpected token found" in Path(res["steps"][1]["log"]).read_text()
    assert res["steps"][2]["argv"][3] == "--seed=12346" and res["steps"][4]["argv"][3] == "--seed=12346"
    assert (work / "input" / "mesh" / "raw_data.npz").is_file()  # where UniRig's get_files puts it
    assert out.is_file() and res["skeleton_glb"] == str(work / "rigged.glb")
    assert sorted(p.name for p in out.parent.iterdir()) == ["rigged_00001.glb"]  # no temp files left
    back = read_skeleton(out)
    assert back.names == sk.names and back.parents == sk.parents
    assert np.allclose(back.positions, sk.positions, atol=1e-6)


def test_unirig_pipeline_fbx_output_and_local_checkpoints(tmp_path, monkeypatch):
    uw = load_worker_module("unirig_worker")
    sk, _ = as_unirig(synthetic_humanoid())
    (tmp_path / "s.json").write_text(
        json.dumps({"names": sk.names, "parents": sk.parents, "positions": sk.positions.tolist()})
    )
    monkeypatch.setenv("FAKE_UNIRIG_SKELETON", str(tmp_path / "s.json"))
    src = tmp_path / "m.obj"
    src.write_text("v 0 0 0\n")
    work = tmp_path / "work"
    work.mkdir()
    ckpt = tmp_path / "weights" / "skeleton" / "model.ckpt"
    task = uw.task_with_checkpoint(FAKE_UNIRIG, uw.SKELETON_TASK, ckpt, work)
    assert Path(task).parent == work and f'resume_from_checkpoint: "{ckpt}"' in Path(task).read_text()
    pipe = uw.Pipeline(python=sys.executable, repo_dir=FAKE_UNIRIG, work_dir=work, skeleton_task=task)
    res = pipe.run(src, tmp_path / "r.fbx", seed=2, seed_retries=0)
    assert [s["name"] for s in res["steps"]][-2:] == ["merge", "merge-fbx"]
    assert (tmp_path / "r.fbx").read_text() == "fake fbx\n" and Path(res["skeleton_glb"]).is_file()
    assert f"checkpoint: {ckpt}" in Path(res["steps"][1]["log"]).read_text()


def test_unirig_pipeline_failures_carry_the_step_log(tmp_path, monkeypatch):
    uw = load_worker_module("unirig_worker")
    monkeypatch.setenv("FAKE_UNIRIG_SKELETON", str(tmp_path / "unused.json"))
    src = tmp_path / "m.glb"
    src.write_bytes(b"glTF")
    pipe = uw.Pipeline(python=sys.executable, repo_dir=FAKE_UNIRIG, work_dir=tmp_path / "w2")
    with pytest.raises(uw.WorkerFailure) as ei:
        pipe.run(src, tmp_path / "o.glb", seed=11, seed_retries=0)
    e = ei.value
    assert e.kind == "bad_sample" and "seeds [11]" in str(e) and "unexpected token found" in e.extra["log_tail"]
    pipe = uw.Pipeline(
        python=sys.executable, repo_dir=FAKE_UNIRIG, work_dir=tmp_path / "w3", skeleton_task="configs/none.yaml"
    )
    with pytest.raises(uw.WorkerFailure) as ei:
        pipe.run(src, tmp_path / "o.glb", seed=2, seed_retries=0)
    e = ei.value
    assert e.kind == "step_failed" and "UniRig step skeleton exited with code 1" in str(e)
    assert "FileNotFoundError" in e.extra["log_tail"] and e.extra["step"] == "skeleton"
    for bad, why in ((tmp_path / "m.gltf", "reads"), (tmp_path / "a,b.glb", "comma")):
        bad.write_bytes(b"x")
        with pytest.raises(uw.WorkerFailure, match=why):
            uw.Pipeline(python=sys.executable, repo_dir=FAKE_UNIRIG, work_dir=tmp_path / "w4").run(
                bad, tmp_path / "o.glb" if "," not in bad.name else tmp_path / "o,x.glb", 1, 0
            )
    assert not (tmp_path / "o.glb").exists()


class _InProcessUniRig:
    """Stands in for the warm worker: runs the real worker's Pipeline here (the real worker
    cannot pass its preflight without CUDA), translating failures like the protocol does."""

    info = {"device": {"name": "stand-in"}}

    def __init__(self, uw):
        self.uw = uw

    async def call(self, op, args, *, timeout_s=None, progress=None):
        assert op == "rig" and timeout_s == 1800.0
        pipe = self.uw.Pipeline(
            python=sys.executable,
            repo_dir=FAKE_UNIRIG,
            work_dir=Path(args["work_dir"]),
            faces_target_count=args["faces_target_count"],
        )
        try:
            return pipe.run(Path(args["input"]), Path(args["output"]), args["seed"], args["seed_retries"])
        except self.uw.WorkerFailure as e:
            raise WorkerError(
                "UniRig rig",
                str(e),
                kind="request",
                response={"ok": False, "error": str(e), "error_kind": e.kind, **e.extra},
            ) from None


def test_rig_unirig_writes_the_rig_and_a_heuristic_humanoid_map(tmp_path, clean_env, monkeypatch):
    uw = load_worker_module("unirig_worker")
    sk, truth = as_unirig(synthetic_humanoid(), seed=4)
    (tmp_path / "s.json").write_text(
        json.dumps({"names": sk.names, "parents": sk.parents, "positions": sk.positions.tolist()})
    )
    monkeypatch.setenv("FAKE_UNIRIG_SKELETON", str(tmp_path / "s.json"))
    monkeypatch.setattr(core_unirig, "get_worker", lambda spec: _InProcessUniRig(uw))
    cfg = cfg_with(tmp_path, **{"unirig.python": VENV_PY, "unirig.repo_dir": FAKE_UNIRIG})
    mesh = tmp_path / "mesh.glb"
    mesh.write_bytes(b"glTF")
    out = tmp_path / "out" / "avatar_00001.glb"
    asset = asyncio.run(core_unirig.rig_unirig(mesh, out, core_unirig.UniRigParams(seed=12345), cfg))
    assert asset.kind == "rigged_mesh" and asset.path == str(out) and asset.meta["seed_used"] == 12346
    assert asset.meta["bone_count"] == len(sk.names) and asset.meta["humanoid_complete"] is True
    mapping = json.loads(Path(asset.meta["humanoid_map"]).read_text())
    assert Path(asset.meta["humanoid_map"]) == out.with_name("avatar_00001.humanoid.json")
    assert mapping["heuristic"] is True and "check before use" in mapping["method"]
    assert mapping["humanBones"] == {b: truth[b] for b in mapping["humanBones"]}
    assert set(REQUIRED_BONES) <= set(mapping["humanBones"])
    jobs = tmp_path / "workers" / "jobs"
    assert list(jobs.iterdir()) == []  # a finished job leaves no scratch folder
    # a model that never samples a valid skeleton: the error names the seed input
    with pytest.raises(AvatarError) as ei:
        asyncio.run(
            core_unirig.rig_unirig(
                mesh, tmp_path / "out" / "b.glb", core_unirig.UniRigParams(seed=11, seed_retries=0), cfg
            )
        )
    assert str(ei.value).startswith("seed: UniRig made no valid skeleton with seeds [11]")
    assert "unexpected token found" in str(ei.value)
    kept = list(jobs.iterdir())
    assert len(kept) == 1 and (kept[0] / "logs").is_dir()  # a failed job keeps its step logs
    with pytest.raises(AvatarError, match="does not end in .fbx"):
        asyncio.run(
            core_unirig.rig_unirig(mesh, tmp_path / "x.glb", core_unirig.UniRigParams(output_format="fbx"), cfg)
        )


# ====================================================================== humanoid map heuristic


@pytest.mark.parametrize(
    "layout,pose",
    [
        ({}, {}),
        ({}, {"yaw_deg": 180, "seed": 1}),  # facing -Z: the toes tell front from back
        ({}, {"yaw_deg": 90, "seed": 2}),
        ({}, {"scale": 0.45, "shift": (0.02, -0.5, 0.1), "seed": 3}),  # TRELLIS-style unit cube, centred
        ({"fingers": False, "toes": False, "extra_head_leaf": False}, {"seed": 5}),
    ],
)
def test_humanoid_map_recovers_vrm_names_from_shuffled_bones(layout, pose):
    sk, truth = as_unirig(synthetic_humanoid(**layout), **pose)
    m = humanoid_map(sk)
    assert m["complete"], m
    assert m["humanBones"] == {b: truth[b] for b in m["humanBones"]}, "a bone got the wrong VRM name"
    expected = {
        n
        for n in truth
        if n in {"hips", "spine", "chest", "upperChest", "neck", "head"}
        or any(
            n.endswith(x) for x in ("Shoulder", "UpperArm", "LowerArm", "Hand", "UpperLeg", "LowerLeg", "Foot", "Toes")
        )
    }
    assert set(m["humanBones"]) == expected
    assert len(set(m["humanBones"].values())) == len(m["humanBones"])
    if layout.get("toes") is False:
        assert m["front_source"].startswith("assumed +Z")
    else:
        assert m["front_source"] == "toe direction"


def test_humanoid_map_says_what_it_cannot_find():
    # a quadruped-like chain: no arms off a vertical spine
    names = [f"bone_{i}" for i in range(12)]
    parents = [None, 0, 1, 2, 0, 4, 0, 6, 2, 8, 2, 10]
    pos = np.array(
        [
            [0, 1, 0],
            [0, 1, 0.5],
            [0, 1, 1.0],
            [0, 1.3, 1.4],
            [0.2, 0.5, 0],
            [0.2, 0, 0],
            [-0.2, 0.5, 0],
            [-0.2, 0, 0],
            [0.2, 0.5, 1.0],
            [0.2, 0, 1.0],
            [-0.2, 0.5, 1.0],
            [-0.2, 0, 1.0],
        ],
        float,
    )
    m = humanoid_map(Skeleton(names, parents, pos))
    assert m["complete"] is False and m["heuristic"] is True
    assert m["missing_required"] and set(m["missing_required"]) <= set(REQUIRED_BONES)
    tiny = humanoid_map(Skeleton(["a", "b"], [None, 0], np.zeros((2, 3))))
    assert tiny["complete"] is False and "too few" in tiny["warnings"][0]


def test_read_gltf_skeleton_applies_node_transforms(tmp_path):
    import pygltflib

    nodes = [
        pygltflib.Node(name="root", translation=[0, 1, 0], rotation=[0, 0.7071068, 0, 0.7071068], children=[1]),
        pygltflib.Node(name="child", translation=[1, 0, 0], scale=[2, 2, 2], children=[2]),
        pygltflib.Node(name="grandchild", translation=[0, 0.5, 0]),
    ]
    g = pygltflib.GLTF2(
        scene=0, scenes=[pygltflib.Scene(nodes=[0])], nodes=nodes, skins=[pygltflib.Skin(joints=[2, 0, 1])]
    )
    path = tmp_path / "s.glb"
    g.save_binary(str(path))
    sk = read_skeleton(path)
    assert sk.names == ["grandchild", "root", "child"] and sk.parents == [2, None, 1]
    # 90 degrees about +Y maps +X to -Z; the child's scale doubles the grandchild's offset
    assert np.allclose(sk.positions, [[0, 2, -1], [0, 1, 0], [0, 1, -1]], atol=1e-5)
    bad = tmp_path / "noskin.glb"
    pygltflib.GLTF2(scene=0, scenes=[pygltflib.Scene(nodes=[0])], nodes=[pygltflib.Node(name="n")]).save_binary(
        str(bad)
    )
    with pytest.raises(AvatarError, match="has no skinned skeleton"):
        read_skeleton(bad)
