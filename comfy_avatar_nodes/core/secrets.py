"""Which strings are secrets, and how to keep them out of logs, errors and run records.

Secrets live only in environment variables (config names them, e.g. ``llm.*.api_key_env``)
or in tool config files such as rclone.conf. Anything that leaves the process (an error
message, an rclone stderr tail, MLflow params) goes through :func:`redact` with the
values from :func:`secret_values` first.
"""
from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping

from .config import Config, load_config

REDACTED = "***"
MIN_SECRET_LEN = 6
"""Shorter values ("1", "true") are too common to treat as secrets when redacting text."""

# Environment variable names that hold secrets (AWS_SECRET_ACCESS_KEY, RCLONE_CONFIG_X_PASS, ...).
_SECRET_ENV = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|(^|_)PASS($|_)", re.I)
# Parameter / field names that look secret: api_key, access-key, token, password, credentials ...
# ("key_prefix", "keyframes" and "authors" are not secrets; "*_key" and "*key" are).
_SECRET_NAME = re.compile(
    r"secret|token|passw|pwd|credential|cookie|bearer|authorization|"
    r"(api|access|private|auth)[_.\- ]?key|key$",
    re.I)


# Environment variables a child process (sandboxed script, model worker) must not inherit:
# anything secret-looking by name, and whole families of credentials/config by prefix.
_CHILD_SECRET_ENV = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|CERT", re.I)
_CHILD_DENY_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "GCP_", "OPENAI", "DASHSCOPE", "ANTHROPIC", "HF_", "HUGGING",
                        "RCLONE_", "MLFLOW_", "COMFY_AVATAR", "GITHUB_", "GH_", "NPM_", "PYPI_", "DOCKER_")


def is_secret_env(name: str) -> bool:
    """True for an environment variable a child process must not inherit (strict: by name and prefix)."""
    return bool(_CHILD_SECRET_ENV.search(name)) or name.startswith(_CHILD_DENY_PREFIXES)


def is_secret_name(name: str) -> bool:
    """True for a key name that suggests a secret value (``api_key``, ``hf_token``, ``password``)."""
    return bool(_SECRET_NAME.search(name.strip()))


def _config_key_envs(node: Any) -> set[str]:
    """Every ``*_env`` value that names a key variable anywhere in the config (api_key_env ...)."""
    found: set[str] = set()
    if isinstance(node, Mapping):
        for k, v in node.items():
            if isinstance(v, str) and str(k).endswith("_env") and is_secret_name(str(k)[:-4]) and v.strip():
                found.add(v.strip())
            else:
                found |= _config_key_envs(v)
    return found


def secret_env_names(cfg: Config | None = None, env: Mapping[str, str] | None = None) -> set[str]:
    """Names of environment variables whose values must never leave the process."""
    env = os.environ if env is None else env
    cfg = cfg or load_config(env)
    names = _config_key_envs(cfg.as_dict())
    names |= {n.strip() for n in str(cfg.get("tracking.secret_envs", "") or "").split(",") if n.strip()}
    names |= {n for n in env if _SECRET_ENV.search(n)}
    return names


def secret_values(cfg: Config | None = None, env: Mapping[str, str] | None = None,
                  extra: Iterable[str] = ()) -> list[str]:
    """The secret values present now (longest first, so overlapping ones redact cleanly)."""
    env = os.environ if env is None else env
    values = {env.get(n, "") for n in secret_env_names(cfg, env)} | set(extra)
    return sorted((v for v in values if v and len(v) >= MIN_SECRET_LEN), key=len, reverse=True)


def redact(text: str, values: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret value replaced by ``***``."""
    for v in values:
        if v and len(v) >= MIN_SECRET_LEN:
            text = text.replace(v, REDACTED)
    return text


def contains_secret(text: str, values: Iterable[str]) -> bool:
    return any(v and len(v) >= MIN_SECRET_LEN and v in text for v in values)
