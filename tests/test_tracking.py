"""MLflow run logging against a real sqlite tracking store and file artifact root."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets as pysecrets
import sys
import time
from pathlib import Path

import pytest
from _s3_server import free_port
from conftest import need

from comfy_avatar_nodes.core.config import load_settings
from comfy_avatar_nodes.core.errors import AvatarError
from comfy_avatar_nodes.core.publish.tracking import asset_record, log_run, tracking_target

HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
LLM_KEY = "sk-test-" + pysecrets.token_hex(12)  # in llm.*.api_key_env (COMFY_AVATAR_LLM_API_KEY)
PIPE_PASS = "pipe-pass-" + pysecrets.token_hex(8)  # named by tracking.secret_envs


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFY_AVATAR", "MLFLOW_"))}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the module (creating its tables costs ~2 s)."""
    need(HAS_MLFLOW, "mlflow is not installed (pip install -e .[test])")
    root = tmp_path_factory.mktemp("mlflow")
    env = base_env(
        COMFY_AVATAR__TRACKING__URI=f"sqlite:///{(root / 'mlflow.db').as_posix()}",
        COMFY_AVATAR__TRACKING__ARTIFACT_ROOT=str(root / "artifacts"),
        COMFY_AVATAR__TRACKING__SECRET_ENVS="PIPELINE_SETTING",
        COMFY_AVATAR_LLM_API_KEY=LLM_KEY,
        PIPELINE_SETTING=PIPE_PASS,
    )
    return root, env


def client(env):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=env["COMFY_AVATAR__TRACKING__URI"])


@pytest.fixture
def vrm(tmp_path) -> Path:
    p = tmp_path / "avatar_00001.vrm"
    p.write_bytes(b"glTF" + os.urandom(50_000))
    return p


def test_run_has_params_metrics_tags_and_files(store, vrm, tmp_path):
    root, env = store
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"ok": True}))
    info = log_run(
        "avatars",
        "alice v2",
        {"bone_count": 17, "name": "Alice", "dims": [0.5, 1.7, 0.3]},
        {"blender_s": 2.9, "triangles": 14000},
        [vrm, report],
        {"stage": "rig"},
        env=env,
    )
    run = client(env).get_run(info.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "alice v2"
    assert run.data.params == {"bone_count": "17", "name": "Alice", "dims": "[0.5, 1.7, 0.3]"}
    assert run.data.metrics == {"blender_s": 2.9, "triangles": 14000.0}
    assert run.data.tags["stage"] == "rig"
    assert sorted(a.path for a in client(env).list_artifacts(info.run_id)) == ["avatar_00001.vrm", "report.json"]
    assert info.artifact_uri.startswith((root / "artifacts" / "avatars").as_uri())
    local = Path(client(env).download_artifacts(info.run_id, "avatar_00001.vrm", str(tmp_path / "dl")))
    assert local.read_bytes() == vrm.read_bytes()
    assert info.redacted == ()


def test_secrets_are_redacted_and_nowhere_in_the_store(store, vrm, caplog):
    root, env = store
    named_secret = "not-in-env-" + pysecrets.token_hex(6)
    params = {
        "api_key": named_secret,
        "prompt": f"use the key {LLM_KEY} please",
        "setting": PIPE_PASS,
        "hf_token": "hf_" + pysecrets.token_hex(6),
        "note": "fine",
        f"k_{LLM_KEY}": 1,
    }
    info = log_run("secret-check", f"run-{PIPE_PASS}", params, {"ok": 1}, [vrm], {"who": LLM_KEY}, env=env)
    run = client(env).get_run(info.run_id)
    p = run.data.params
    assert p["note"] == "fine"
    for k in ("api_key", "prompt", "setting", "hf_token"):
        assert p[k] == "[redacted]", k
    assert run.data.tags["who"] == "[redacted]"
    assert not any(LLM_KEY in k for k in p)
    assert {"api_key", "prompt", "setting", "hf_token", "who", "run_name"} <= set(info.redacted)
    # byte-level: not in the sqlite file (+ WAL/journal) nor under the artifact root, nor in logs
    blobs = [f.read_bytes() for f in root.rglob("*") if f.is_file()]
    assert blobs and len(blobs) >= 2
    for value in (LLM_KEY, PIPE_PASS, named_secret):
        assert not any(value.encode() in b for b in blobs), value
        assert value not in caplog.text


def test_artifact_holding_a_secret_is_refused_before_the_run(store, tmp_path):
    _, env = store
    leaky = tmp_path / "job.log"
    leaky.write_text("x" * (1 << 20) + f"Authorization: Bearer {LLM_KEY}\n")  # straddles the 1 MiB chunk
    with pytest.raises(AvatarError, match="job.log contains the value of a secret"):
        log_run("refused", "r", {"a": 1}, {}, [leaky], env=env)
    assert client(env).get_experiment_by_name("refused") is None


def test_bad_metrics_and_missing_files_are_refused(store, tmp_path):
    _, env = store
    with pytest.raises(AvatarError, match=r"metrics.size: str is not a number"):
        log_run("bad", "r", {}, {"size": "big"}, env=env)
    with pytest.raises(AvatarError, match="not a finite number"):
        log_run("bad", "r", {}, {"x": float("nan")}, env=env)
    with pytest.raises(AvatarError, match="is not a file"):
        log_run("bad", "r", {}, {}, [tmp_path / "gone.vrm"], env=env)
    with pytest.raises(AvatarError, match="experiment: is empty"):
        log_run("  ", "r", env=env)


def test_missing_mlflow_says_how_to_install_it(monkeypatch, tmp_path):
    for name in ("mlflow", "mlflow.entities", "mlflow.exceptions", "mlflow.tracking"):
        monkeypatch.setitem(sys.modules, name, None)
    env = base_env(COMFY_AVATAR__BLENDER__RUNTIME_DIR=str(tmp_path))
    with pytest.raises(AvatarError, match="mlflow: is not installed.*pip install mlflow"):
        log_run("avatars", "r", {"a": 1}, env=env)


def test_unreachable_tracking_server_is_a_clear_error(monkeypatch):
    need(HAS_MLFLOW, "mlflow is not installed")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    port = free_port()
    url_pass = "url-pass-" + pysecrets.token_hex(4)  # a password in the URI itself, in no env var
    env = base_env(MLFLOW_TRACKING_URI=f"http://ci-user:{url_pass}@127.0.0.1:{port}")
    t0 = time.perf_counter()
    with pytest.raises(AvatarError, match=rf"cannot start a run at http://127.0.0.1:{port}") as ei:
        log_run("avatars", "r", {"a": 1}, env=env)
    assert time.perf_counter() - t0 < 30
    assert url_pass not in str(ei.value) and "ci-user" not in str(ei.value)
    assert "Connection refused" in str(ei.value)


def test_default_store_is_sqlite_under_the_runtime_dir(tmp_path):
    env = base_env(COMFY_AVATAR__BLENDER__RUNTIME_DIR=str(tmp_path / "rt"))
    uri, root = tracking_target(load_settings(env), env)
    assert uri == f"sqlite:///{(tmp_path / 'rt' / 'mlflow' / 'mlflow.db').as_posix()}"
    assert root == (tmp_path / "rt" / "mlflow" / "artifacts").as_uri()
    assert (tmp_path / "rt" / "mlflow").is_dir()
    # MLFLOW_TRACKING_URI is used when the config names none; the config wins over it
    env2 = {**env, "MLFLOW_TRACKING_URI": "http://mlflow.example:5000"}
    assert tracking_target(load_settings(env2), env2) == ("http://mlflow.example:5000", None)
    env3 = {**env2, "COMFY_AVATAR__TRACKING__URI": "http://team:5000"}
    assert tracking_target(load_settings(env3), env3)[0] == "http://team:5000"


def test_asset_record_turns_handle_meta_into_params_and_metrics(vrm):
    handle = {
        "path": str(vrm),
        "kind": "vrm",
        "sha256": "ab" * 32,
        "meta": {
            "bone_count": 17,
            "triangles": 14000,
            "watertight": True,
            "source_mesh": "/x/mesh.glb",
            "timings_s": {"remesh": 0.26, "export": 0.85},
            "dimensions_m": [0.5, 1.7, 0.3],
            "bone_names": [f"bone_{i:03d}" for i in range(60)],
            "skeleton": {"bones": {"hips": {"head": [0, 1, 0]}}},
        },
    }
    params, metrics = asset_record(handle, "vrm")
    assert params["vrm.bone_count"] == 17 and params["vrm.triangles"] == 14000
    assert params["vrm.timings_s.export"] == 0.85 and params["vrm.file"] == "avatar_00001.vrm"
    assert params["vrm.sha256"] == "ab" * 32 and params["vrm.dimensions_m"] == "[0.5, 1.7, 0.3]"
    assert "vrm.bone_names" not in params, "long lists stay out of params"
    assert not any(k.startswith("vrm.skeleton.bones.") for k in params)
    assert metrics == {
        "vrm.size_bytes": float(vrm.stat().st_size),
        "vrm.bone_count": 17.0,
        "vrm.triangles": 14000.0,
        "vrm.timings_s.remesh": 0.26,
        "vrm.timings_s.export": 0.85,
    }
