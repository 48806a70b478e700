"""Config layering (defaults -> YAML -> env) and atomic output files."""
from __future__ import annotations

import os

import pytest

from comfy_avatar_nodes.core.assets import Asset, atomic_path, next_output_path, safe_name, write_json_atomic
from comfy_avatar_nodes.core.config import load_config, secret
from comfy_avatar_nodes.core.errors import AvatarError, ConfigError


def test_defaults_then_yaml_then_env(tmp_path, clean_env):
    cfg = load_config({})
    assert cfg.get("blender.timeout_s") == 600.0
    y = tmp_path / "c.yaml"
    y.write_text("blender:\n  timeout_s: 120\noutput:\n  subfolder: mine\n")
    cfg = load_config({"COMFY_AVATAR_CONFIG": str(y)})
    assert cfg.get("blender.timeout_s") == 120
    assert cfg.get("output.subfolder") == "mine"
    assert cfg.get("llm.coder.model")  # untouched defaults survive a partial file
    cfg = load_config({"COMFY_AVATAR_CONFIG": str(y), "COMFY_AVATAR__BLENDER__TIMEOUT_S": "30",
                       "BLENDER_BIN": "/opt/blender/blender"})
    assert cfg.get("blender.timeout_s") == 30.0
    assert cfg.get("blender.binary") == "/opt/blender/blender"
    assert "COMFY_AVATAR__BLENDER__TIMEOUT_S" in cfg.source


def test_bad_config_names_the_file_and_fix(tmp_path):
    with pytest.raises(ConfigError, match="COMFY_AVATAR_CONFIG.*does not exist"):
        load_config({"COMFY_AVATAR_CONFIG": str(tmp_path / "nope.yaml")})
    bad = tmp_path / "bad.yaml"
    bad.write_text("blender: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: is not valid YAML"):
        load_config({"COMFY_AVATAR_CONFIG": str(bad)})
    with pytest.raises(ConfigError, match="COMFY_AVATAR__BLENDER__TIMEOUT_S.*not a number"):
        load_config({"COMFY_AVATAR__BLENDER__TIMEOUT_S": "soon"})


def test_secret_comes_from_env_only(clean_env):
    clean_env.delenv("MY_KEY", raising=False)
    with pytest.raises(ConfigError, match="MY_KEY is not set") as err:
        secret("MY_KEY", "llm.coder")
    assert "llm.coder" in str(err.value)
    clean_env.setenv("MY_KEY", "s3cr3t-value")
    assert secret("MY_KEY", "llm.coder") == "s3cr3t-value"
    assert "s3cr3t-value" not in str(load_config().as_dict())


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out" / "model.glb"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            assert tmp.suffix == ".glb" and tmp.parent == final.parent
            tmp.write_bytes(b"half")
            raise RuntimeError("exporter crashed")
    assert list(final.parent.iterdir()) == []
    with pytest.raises(AvatarError, match="nothing was written"):
        with atomic_path(final):
            pass
    assert list(final.parent.iterdir()) == []
    write_json_atomic(final.with_suffix(".json"), {"a": 1})
    assert [p.name for p in final.parent.iterdir()] == ["model.json"]


def test_output_naming_and_asset_handles(tmp_path):
    assert safe_name("My Avatar!/../x") == "My_Avatar_.._x"  # no separators survive
    assert safe_name("../..") == "asset"
    first = next_output_path(tmp_path, "avatar", "vrm")
    assert first.name == "avatar_00001.vrm"
    first.write_bytes(b"x")
    assert next_output_path(tmp_path, "avatar", ".vrm").name == "avatar_00002.vrm"
    asset = Asset.from_file(first, "vrm", bones=17)
    back = Asset.from_dict(asset.to_dict())
    assert back == asset and len(back.sha256) == 64
    with pytest.raises(AvatarError, match="expected a mesh asset, got 'vrm'"):
        back.require("mesh", "mesh")
    os.remove(first)
    with pytest.raises(AvatarError, match="is gone"):
        back.require("vrm", "vrm")
