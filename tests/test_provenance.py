"""Model provenance: the TRELLIS and UniRig workers hash every checkpoint file and refuse a
mismatch or an unpinned file BEFORE loading it (workers/_provenance.py). The real worker
scripts run with .venv's Python (the check is stdlib only); the model load itself is replaced
by a tripwire where the startup path is exercised."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from comfy_avatar_nodes.core.runtime.workers import WORKERS_DIR

TRELLIS_MODELS = {
    "sparse_structure_decoder": "ckpts/ss_dec_conv3d_16l8_fp16",
    "slat_flow_model": "ckpts/slat_flow_img_dit_L_64l8p2_fp16",
}
SKELETON = "skeleton/articulation-xl_quantization_256/model.ckpt"
SKIN = "skin/articulation-xl/model.ckpt"
FAKE_UNIRIG = Path(__file__).parent / "data" / "workers" / "fake_unirig"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"_prov_{name}", WORKERS_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    sys.path.insert(0, str(WORKERS_DIR))
    spec.loader.exec_module(mod)
    return mod


def trellis_dir(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    w = tmp_path / "TRELLIS-image-large"
    (w / "ckpts").mkdir(parents=True)
    files = {
        "pipeline.json": json.dumps(
            {"args": {"models": TRELLIS_MODELS, "image_cond_model": "dinov2_vitl14_reg"}}
        ).encode()
    }
    for i, rel in enumerate(TRELLIS_MODELS.values()):
        files[f"{rel}.json"] = b'{"name": "m%d"}' % i
        files[f"{rel}.safetensors"] = bytes([i]) * 4096
    for rel, data in files.items():
        (w / rel).write_bytes(data)
    th = tmp_path / "torch"
    (th / "hub" / "checkpoints").mkdir(parents=True)
    (th / "hub" / "checkpoints" / "dinov2_vitl14_reg4_pretrain.pth").write_bytes(b"pickle!")
    files["dinov2/dinov2_vitl14_reg4_pretrain.pth"] = b"pickle!"
    return w, th, files


def trellis_cli(w: Path, th: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(WORKERS_DIR / "trellis_worker.py"), "--weights-dir", str(w), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "TORCH_HOME": str(th), "U2NET_HOME": str(th / "none")},
    )


def test_shipped_list_holds_no_invented_hashes():
    prov = load("_provenance")
    data = json.loads(prov.SHIPPED.read_text())
    for model in ("trellis", "unirig"):
        pins, source = prov.load_pins(model)
        assert source == str(prov.SHIPPED)
        assert data[model]["source"]  # says where its entries come from
        # every entry, if any, is a sha256 (load_pins refuses anything else)
        assert all(len(v) == 64 for v in pins.values())


def test_trellis_refuses_unpinned_and_mismatched_checkpoints_with_both_hashes(tmp_path):
    w, th, files = trellis_dir(tmp_path)
    # the shipped list has no TRELLIS entry filled in: every file is refused as unpinned
    r = trellis_cli(w, th, "--verify-checkpoints")
    assert r.returncode == 1
    for rel, data in files.items():
        path = th / "hub/checkpoints/dinov2_vitl14_reg4_pretrain.pth" if rel.startswith("dinov2/") else w / rel
        assert f"{path} ({rel}) is not in the pinned checkpoint list" in r.stderr
        assert f"its sha256 is {sha(data)}, pinned: none" in r.stderr
    # pin the files as they are, then the check passes
    pins = tmp_path / "pins.json"
    r = trellis_cli(w, th, "--pin", str(pins))
    assert r.returncode == 0, r.stderr
    assert json.loads(pins.read_text())["trellis"]["files"] == {rel: sha(d) for rel, d in files.items()}
    assert "no Hugging Face record to compare with" in r.stdout
    r = trellis_cli(w, th, "--checkpoint-pins", str(pins), "--verify-checkpoints")
    assert r.returncode == 0 and "every TRELLIS checkpoint file matches" in r.stdout
    # a replaced checkpoint: refused with its path, its hash and the pinned one
    bad = w / "ckpts/slat_flow_img_dit_L_64l8p2_fp16.safetensors"
    bad.write_bytes(b"evil" * 1024)
    r = trellis_cli(w, th, "--checkpoint-pins", str(pins), "--verify-checkpoints")
    assert r.returncode == 1
    assert (
        f"{bad} (ckpts/slat_flow_img_dit_L_64l8p2_fp16.safetensors) has sha256 {sha(b'evil' * 1024)}, but the "
        f"pinned checkpoint list {pins} says {sha(files['ckpts/slat_flow_img_dit_L_64l8p2_fp16.safetensors'])}"
    ) in r.stderr
    assert r.stderr.count("\n") == 1  # only that file
    # a file the list does not name (here: pipeline.json dropped from it) is refused too
    data = json.loads(pins.read_text())
    bad.write_bytes(files["ckpts/slat_flow_img_dit_L_64l8p2_fp16.safetensors"])
    del data["trellis"]["files"]["pipeline.json"]
    pins.write_text(json.dumps(data))
    r = trellis_cli(w, th, "--checkpoint-pins", str(pins), "--verify-checkpoints")
    assert r.returncode == 1 and f"{w / 'pipeline.json'} (pipeline.json) is not in the pinned" in r.stderr
    # a broken pin file is an error, not an empty list
    pins.write_text(json.dumps({"trellis": {"files": {"pipeline.json": "not-a-hash"}}}))
    r = trellis_cli(w, th, "--checkpoint-pins", str(pins), "--verify-checkpoints")
    assert r.returncode == 1 and "not sha256 hex digests" in r.stderr


def test_pin_compares_with_the_hash_the_hub_download_recorded(tmp_path):
    w, th, files = trellis_dir(tmp_path)
    meta = w / ".cache" / "huggingface" / "download" / "ckpts"
    meta.mkdir(parents=True)
    good = "ckpts/ss_dec_conv3d_16l8_fp16.safetensors"
    (meta / "ss_dec_conv3d_16l8_fp16.safetensors.metadata").write_text(f"abc123\n{sha(files[good])}\n1700000000\n")
    r = trellis_cli(w, th, "--pin", str(tmp_path / "p.json"))
    assert r.returncode == 0 and f"{sha(files[good])}  {good}" in r.stdout
    assert "= the hash its Hugging Face download recorded" in r.stdout
    (meta / "ss_dec_conv3d_16l8_fp16.safetensors.metadata").write_text(f"abc123\n{'0' * 64}\n1700000000\n")
    r = trellis_cli(w, th, "--pin", str(tmp_path / "p.json"))
    assert r.returncode == 1 and "DIFFERS from the hash its Hugging Face download recorded" in r.stdout
    # a hub cache snapshot: LFS files are blobs named by their sha256
    prov = load("_provenance")
    blob = tmp_path / "hub" / "blobs" / sha(b"weights")
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"weights")
    snap = tmp_path / "hub" / "snapshots" / "rev" / "model.ckpt"
    snap.parent.mkdir(parents=True)
    snap.symlink_to(blob)
    assert prov.hub_sha256(snap, None, "model.ckpt") == sha(b"weights")


def test_trellis_startup_verifies_before_loading(tmp_path, monkeypatch, capsys):
    """The worker's startup: preflight, then the provenance check, and only then the load (here a tripwire)."""
    tw = load("trellis_worker")
    w, th, files = trellis_dir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(th))
    monkeypatch.setenv("U2NET_HOME", str(th / "none"))
    loaded = []

    def preflight(self):
        self.cfg = json.loads((w / "pipeline.json").read_text())
        return {"model": "TRELLIS-image-large"}

    monkeypatch.setattr(tw.TrellisWorker, "preflight", preflight)
    monkeypatch.setattr(tw.TrellisWorker, "load", lambda self, info: loaded.append(1) or 0.0)
    monkeypatch.setattr(tw, "serve", lambda startup: startup())
    with pytest.raises(tw.Preflight) as ei:
        tw.main(["--weights-dir", str(w)])
    assert {p["kind"] for p in ei.value.problems} == {"unpinned_checkpoint"} and loaded == []
    assert {p["name"] for p in ei.value.problems} == set(files)
    pins = tmp_path / "pins.json"
    pins.write_text(json.dumps({"trellis": {"files": {rel: sha(d) for rel, d in files.items()}}}))
    info, handlers = tw.main(["--weights-dir", str(w), "--checkpoint-pins", str(pins)])
    assert loaded == [1] and "image_to_mesh" in handlers
    assert info["checkpoint_sha256"]["sha256"] == {rel: sha(d) for rel, d in files.items()}


def test_unirig_checks_at_start_and_again_when_a_checkpoint_changes(tmp_path, monkeypatch):
    uw = load("unirig_worker")
    wd = tmp_path / "weights"
    for rel, data in ((SKELETON, b"skeleton-ckpt"), (SKIN, b"skin-ckpt")):
        (wd / rel).parent.mkdir(parents=True, exist_ok=True)
        (wd / rel).write_bytes(data)
    hf = tmp_path / "hf" / "hub" / "models--facebook--opt-350m"
    (hf / "refs").mkdir(parents=True)
    (hf / "refs" / "main").write_text("r1")
    (hf / "snapshots" / "r1").mkdir(parents=True)
    (hf / "snapshots" / "r1" / "config.json").write_text("{}")
    env = {"PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf")}
    cmd = [
        sys.executable,
        str(WORKERS_DIR / "unirig_worker.py"),
        "--repo-dir",
        str(FAKE_UNIRIG),
        "--weights-dir",
        str(wd),
    ]
    r = subprocess.run([*cmd, "--verify-checkpoints"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and f"{wd / SKELETON} ({SKELETON}) is not in the pinned checkpoint list" in r.stderr
    assert f"its sha256 is {sha(b'skeleton-ckpt')}" in r.stderr and "facebook/opt-350m/config.json" in r.stderr
    pins = tmp_path / "pins.json"
    assert subprocess.run([*cmd, "--pin", str(pins)], capture_output=True, text=True, env=env).returncode == 0
    assert set(json.loads(pins.read_text())["unirig"]["files"]) == {SKELETON, SKIN, "facebook/opt-350m/config.json"}
    r = subprocess.run(
        [*cmd, "--checkpoint-pins", str(pins), "--verify-checkpoints"], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr
    # in the worker: verified at start; a checkpoint replaced afterwards is caught before the next request
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    opts = uw.argparse.Namespace(
        repo_dir=str(FAKE_UNIRIG), weights_dir=str(wd), min_vram_gb=8.0, checkpoint_pins=str(pins)
    )
    worker = uw.UniRigWorker(opts)
    for task in (uw.SKELETON_TASK, uw.SKIN_TASK):
        worker.checkpoints[task] = uw.resolve_checkpoint(task, worker.repo_dir, worker.weights_dir)
    worker.verify_checkpoints({})
    worker.reverify()  # unchanged: no error
    (wd / SKIN).write_bytes(b"replaced after the start")
    with pytest.raises(uw.WorkerFailure) as ei:
        worker.rig({"work_dir": str(tmp_path / "w"), "input": "x.glb", "output": str(tmp_path / "o.glb")}, None)
    assert ei.value.kind == "checkpoint_mismatch" and str(wd / SKIN) in str(ei.value)
    assert sha(b"replaced after the start") in str(ei.value) and sha(b"skin-ckpt") in str(ei.value)
    assert not (tmp_path / "w").exists()  # refused before any step ran


def test_specs_pass_the_pinned_list_and_the_network_isolation(tmp_path, clean_env):
    from comfy_avatar_nodes.core.config import load_settings
    from comfy_avatar_nodes.core.mesh.trellis import trellis_spec
    from comfy_avatar_nodes.core.rig.unirig import unirig_spec

    w, _, _ = trellis_dir(tmp_path)
    pins = tmp_path / "pins.json"
    pins.write_text("{}")
    env = {
        "COMFY_AVATAR__TRELLIS__PYTHON": sys.executable,
        "COMFY_AVATAR__TRELLIS__WEIGHTS_DIR": str(w),
        "COMFY_AVATAR__TRELLIS__CHECKPOINT_SHA256": str(pins),
        "COMFY_AVATAR__UNIRIG__PYTHON": sys.executable,
        "COMFY_AVATAR__UNIRIG__REPO_DIR": str(FAKE_UNIRIG),
        "COMFY_AVATAR__UNIRIG__CHECKPOINT_SHA256": str(pins),
    }
    for spec in (trellis_spec(load_settings(env)), unirig_spec(load_settings(env))):
        assert spec.args[spec.args.index("--checkpoint-pins") + 1] == str(pins) and spec.isolation == "auto"
    env["COMFY_AVATAR__WORKERS__ISOLATION"] = "none"
    assert trellis_spec(load_settings(env)).isolation == "none"
    assert trellis_spec(load_settings(env)).command()[0] == sys.executable  # not wrapped
