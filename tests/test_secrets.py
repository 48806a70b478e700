"""core/secrets.py: the one rule for secret-looking names (params, metadata keys, rclone.conf
entries, environment variables), the child-env policy built on it, and redaction."""

from __future__ import annotations

import pytest

from comfy_avatar_nodes.core.config import load_settings
from comfy_avatar_nodes.core.secrets import is_secret_env, is_secret_name, redact, secret_env_names, secret_values

SECRET_NAMES = [
    "api_key",
    "apikey",
    "hfToken",
    "hf_token",
    "Password",
    "db_pwd",
    "pass",
    "client_secret",
    "key",
    "ssh_key",
    "sshKey",
    "ssh_keys",
    "key_id",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "private_key",
    "credentials",
    "Authorization",
    "cookie",
    "api_key_env",
    "OPENAI_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "RCLONE_CONFIG_S3_PASS",
    "SMTP_PASS",
    "DB_PASSWORD",
    "GITHUB_TOKEN",
    "MY_KEY",
    "SSH_AUTH_SOCK",
]
PLAIN_NAMES = [
    "keywords",
    "keyframes",
    "key_prefix",
    "key_mode",
    "storage.key_mode",
    "monkey",
    "passive",
    "authors",
    "prompt",
    "tags",
    "vrm.sha256",
    "remote",
    "bucket",
    "endpoint",
    "PATH",
    "HOME",
    "LANG",
    "PWD",
    "OLDPWD",
    "CUDA_VISIBLE_DEVICES",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_plain_names(name):
    assert not is_secret_name(name)


def test_child_env_drops_secrets_and_credential_families():
    assert all(
        is_secret_env(n)
        for n in (
            "OPENAI_API_KEY",
            "SMTP_PASS",
            "AWS_REGION",
            "HF_HUB_CACHE",
            "RCLONE_CONFIG_X_TYPE",
            "COMFY_AVATAR__BLENDER__BINARY",
            "GITHUB_SHA",
        )
    )
    assert not any(is_secret_env(n) for n in ("PATH", "LANG", "CUDA_VISIBLE_DEVICES", "PWD", "TORCH_HOME"))


def test_secret_values_come_from_settings_and_the_environment():
    env = {
        "COMFY_AVATAR__LLM__CODER__API_KEY_ENV": "VLLM_KEY",
        "VLLM_KEY": "vllm-secret-1",
        "COMFY_AVATAR__TRACKING__SECRET_ENVS": "PIPELINE_SETTING",
        "PIPELINE_SETTING": "pipeline-secret",
        "SOME_TOKEN": "token-value-123",
        "PWD": "/work/main",
        "SHORT_KEY": "abc",
    }
    settings = load_settings(env)
    names = secret_env_names(settings, env)
    assert {"VLLM_KEY", "PIPELINE_SETTING", "SOME_TOKEN", "COMFY_AVATAR_LLM_API_KEY"} <= names and "PWD" not in names
    values = secret_values(settings, env)
    assert {"vllm-secret-1", "pipeline-secret", "token-value-123"} <= set(values) and "abc" not in values  # too short
    assert redact("key vllm-secret-1 in /work/main", values) == "key *** in /work/main"
    assert redact("abcd", ["abcd"]) == "abcd" and redact("key abcd", ["abcd"], min_len=4) == "key ***"
