"""Config layering (defaults -> YAML -> env) and atomic output files."""

from __future__ import annotations

import os

import pytest

from comfy_avatar_nodes.core.assets import Asset, atomic_path, next_output_path, safe_name, write_json_atomic
from comfy_avatar_nodes.core.config import (
    BlenderSettings,
    EndpointSettings,
    LLMSettings,
    Settings,
    env_var,
    load_settings,
    setting_name,
)
from comfy_avatar_nodes.core.errors import AvatarError, ConfigError
from comfy_avatar_nodes.core.secrets import secret


def test_defaults_then_yaml_then_env(tmp_path, clean_env):
    s = load_settings({})
    assert s == Settings() and s.blender.timeout_s == 600.0 and isinstance(s.llm.coder, EndpointSettings)
    y = tmp_path / "c.yaml"
    y.write_text("blender:\n  timeout_s: 120\noutput:\n  subfolder: mine\nllm:\n  coder: {model: big-coder}\n")
    s = load_settings({"COMFY_AVATAR_CONFIG": str(y)})
    assert s.blender.timeout_s == 120.0 and isinstance(s.blender.timeout_s, float)  # an int widens to the float
    assert s.output.subfolder == "mine"
    assert s.llm.coder.model == "big-coder" and s.llm.coder.base_url == Settings().llm.coder.base_url  # partial section
    assert s.llm.intent == Settings().llm.intent  # untouched defaults survive a partial file
    s = load_settings(
        {
            "COMFY_AVATAR_CONFIG": str(y),
            "COMFY_AVATAR__BLENDER__TIMEOUT_S": "30",
            "BLENDER_BIN": "/opt/blender/blender",
            "COMFY_AVATAR__LLM__INTENT__MODEL": "router",
            "COMFY_AVATAR__TRACKING__TELEMETRY": "yes",
            "COMFY_AVATAR__SANDBOX__CPU_S": "9",
        }
    )
    assert s.blender == BlenderSettings(binary="/opt/blender/blender", timeout_s=30.0)
    assert s.llm.intent.model == "router" and s.tracking.telemetry is True and s.sandbox.cpu_s == 9
    assert "COMFY_AVATAR__BLENDER__TIMEOUT_S" in s.source and str(y) in s.source
    assert env_var("llm.coder.model") == "COMFY_AVATAR__LLM__CODER__MODEL"
    assert setting_name("trellis.python") == "trellis.python (COMFY_AVATAR__TRELLIS__PYTHON)"


def test_settings_are_frozen_and_typed():
    s = Settings()
    with pytest.raises(AttributeError):
        s.blender.timeout_s = 1  # type: ignore[misc]
    assert LLMSettings().role("vision").model and s.tracking.secret_env_names == ()
    assert Settings(tracking=Settings().tracking.__class__(secret_envs=" A, ,B")).tracking.secret_env_names == (
        "A",
        "B",
    )


def test_bad_config_names_the_file_and_fix(tmp_path):
    with pytest.raises(ConfigError, match="COMFY_AVATAR_CONFIG.*does not exist"):
        load_settings({"COMFY_AVATAR_CONFIG": str(tmp_path / "nope.yaml")})
    bad = tmp_path / "bad.yaml"
    bad.write_text("blender: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: is not valid YAML"):
        load_settings({"COMFY_AVATAR_CONFIG": str(bad)})
    with pytest.raises(ConfigError, match="COMFY_AVATAR__BLENDER__TIMEOUT_S.*not a number"):
        load_settings({"COMFY_AVATAR__BLENDER__TIMEOUT_S": "soon"})


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        # a typo'd key: the file, the key, the section and every valid key of it
        (
            "blender:\n  timeout: 300\n",
            r"^(?P<file>.*c\.yaml): blender\.timeout is not a setting \(no key 'timeout' in section 'blender'\)\. "
            r"Fix: valid keys in section 'blender': binary, python, runtime_dir, timeout_s",
        ),
        (
            "blendr:\n  timeout_s: 300\n",
            r"c\.yaml: blendr is not a setting \(no key 'blendr' at the top level\).*"
            r"valid keys at the top level: blender, output, llm, sandbox",
        ),
        (
            "llm:\n  coder:\n    modle: x\n",
            r"c\.yaml: llm\.coder\.modle is not a setting.*base_url, model, api_key_env",
        ),
        ("llm:\n  painter: {model: x}\n", r"llm\.painter is not a setting.*intent, vision, coder, timeout_s"),
        # a wrong type: the file, the key, what was given and what is wanted
        (
            "blender:\n  timeout_s: soon\n",
            r"^.*c\.yaml: blender\.timeout_s: 'soon' is a str, not a number\. Fix: give a number",
        ),
        ("sandbox:\n  cpu_s: 2.5\n", r"c\.yaml: sandbox\.cpu_s: 2\.5 is a float, not a whole number"),
        ("sandbox:\n  cpu_s: true\n", r"c\.yaml: sandbox\.cpu_s: True is a bool, not a whole number"),
        ("tracking:\n  telemetry: 1\n", r"c\.yaml: tracking\.telemetry: 1 is a int, not true or false"),
        ("llm:\n  coder:\n    model: 7\n", r"c\.yaml: llm\.coder\.model: 7 is a int, not text \(quote it\)"),
        (
            "llm:\n  coder: qwen\n",
            r"c\.yaml: llm\.coder: is a section, but the file gives 'qwen'.*base_url, model, api_key_env",
        ),
    ],
)
def test_yaml_typos_and_wrong_types_fail_at_load(tmp_path, yaml_text, message):
    y = tmp_path / "c.yaml"
    y.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_settings({"COMFY_AVATAR_CONFIG": str(y)})


@pytest.mark.parametrize(
    "name, value, message",
    [
        (
            "COMFY_AVATAR__BLENDER__TIMEOUT",
            "300",
            r"^COMFY_AVATAR__BLENDER__TIMEOUT: blender\.timeout is not a setting "
            r"\(no key 'timeout' in section 'blender'\)\. Fix: valid keys in section 'blender': binary, python, runtime_dir, timeout_s",
        ),
        (
            "COMFY_AVATAR__BLENDR__TIMEOUT_S",
            "300",
            r"^COMFY_AVATAR__BLENDR__TIMEOUT_S: blendr is not a setting.*blender, output",
        ),
        (
            "COMFY_AVATAR__LLM__CODER__MODLE",
            "x",
            r"^COMFY_AVATAR__LLM__CODER__MODLE: llm\.coder\.modle is not a setting",
        ),
        (
            "COMFY_AVATAR__LLM__CODER",
            "x",
            r"^COMFY_AVATAR__LLM__CODER: names the section llm\.coder, not a setting\. "
            r"Fix: add the key: COMFY_AVATAR__LLM__CODER__<KEY> with one of base_url, model, api_key_env",
        ),
        (
            "COMFY_AVATAR__BLENDER__TIMEOUT_S__X",
            "1",
            r"^COMFY_AVATAR__BLENDER__TIMEOUT_S__X: blender\.timeout_s is a setting",
        ),
        (
            "COMFY_AVATAR__SANDBOX__CPU_S",
            "2.5",
            r"^COMFY_AVATAR__SANDBOX__CPU_S: '2\.5' is not an integer \(sandbox\.cpu_s\)",
        ),
        ("COMFY_AVATAR__TRACKING__TELEMETRY", "maybe", r"^COMFY_AVATAR__TRACKING__TELEMETRY: 'maybe' is not a boolean"),
    ],
)
def test_env_typos_and_wrong_types_fail_at_load(name, value, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({name: value})


def test_secret_comes_from_env_only(clean_env):
    clean_env.delenv("MY_KEY", raising=False)
    with pytest.raises(ConfigError, match="MY_KEY is not set") as err:
        secret("MY_KEY", "llm.coder")
    assert "llm.coder" in str(err.value)
    clean_env.setenv("MY_KEY", "s3cr3t-value")
    assert secret("MY_KEY", "llm.coder") == "s3cr3t-value"
    assert "s3cr3t-value" not in str(load_settings().as_dict())


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out" / "model.glb"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        assert tmp.suffix == ".glb" and tmp.parent == final.parent
        tmp.write_bytes(b"half")
        raise RuntimeError("exporter crashed")
    assert list(final.parent.iterdir()) == []
    with pytest.raises(AvatarError, match="nothing was written"), atomic_path(final):
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
