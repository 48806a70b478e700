"""Which strings are secrets, and how to keep them out of logs, errors and run records.

Secrets live only in environment variables (config names them, e.g. ``llm.*.api_key_env``)
or in tool config files such as rclone.conf. Anything that leaves the process (an error
message, an rclone stderr tail, MLflow params) goes through :func:`redact` with the
values from :func:`secret_values` first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from .config import Settings, load_settings
from .errors import ConfigError

REDACTED = "***"
MIN_SECRET_LEN = 6
"""Shorter values ("1", "true") are too common to treat as secrets when redacting text."""

# The ONE rule for "this name holds a secret", for every kind of name: environment variables
# (OPENAI_API_KEY, RCLONE_CONFIG_X_PASS), config keys, rclone.conf entries (secret_access_key),
# MLflow params, export metadata keys (hfToken, ssh_key). Names are split into words
# (snake_case, camelCase, UPPER_CASE) so that a word decides, not a substring: "key_prefix",
# "key_mode", "keyframes", "monkey", "passive" and "authors" are not secrets; "api_key",
# "sshKey", "key", "key_id", "ssh_keys", "db_pass" and "auth_token" are.
_SECRET_PARTS = re.compile(
    r"secret|token|passw|credential|cookie|bearer|authori[sz]ation|"
    r"(api|access|private|auth)[_.\- ]?key",
    re.I,
)
_SECRET_WORDS = frozenset({"pass", "pwd", "apikey", "auth", "private"})
_KEY_WORDS = frozenset({"key", "keys"})
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_NOT_SECRET = frozenset({"PWD", "OLDPWD"})  # the shell's working directories, not passwords

# Families of credentials and tool config a child process (sandboxed script, model worker) never
# inherits, whatever the variable is called (AWS_REGION is not secret, but the family goes).
_CHILD_DENY_PREFIXES = (
    "AWS_",
    "AZURE_",
    "GOOGLE_",
    "GCP_",
    "OPENAI",
    "DASHSCOPE",
    "ANTHROPIC",
    "HF_",
    "HUGGING",
    "RCLONE_",
    "MLFLOW_",
    "COMFY_AVATAR",
    "GITHUB_",
    "GH_",
    "NPM_",
    "PYPI_",
    "DOCKER_",
)


def is_secret_name(name: str) -> bool:
    """True for a name that suggests a secret value (``api_key``, ``hf_token``, ``password``,
    ``AWS_SECRET_ACCESS_KEY``): the one rule the pack uses for names of every kind."""
    name = name.strip()
    if name in _NOT_SECRET:
        return False
    if _SECRET_PARTS.search(name):
        return True
    words = [w.lower() for w in _WORDS.findall(name)]
    if _SECRET_WORDS.intersection(words):
        return True
    # "key" as the last word (api_key, sshKey, key) or as "key id" (access_key_id); not key_prefix.
    return any(w in _KEY_WORDS and (i == len(words) - 1 or words[i + 1] == "id") for i, w in enumerate(words))


def is_secret_env(name: str) -> bool:
    """True for an environment variable a child process must not inherit: a secret-looking name
    (:func:`is_secret_name`) or one of the credential families in ``_CHILD_DENY_PREFIXES``."""
    return is_secret_name(name) or name.upper().startswith(_CHILD_DENY_PREFIXES)


def secret_env_names(settings: Settings | None = None, env: Mapping[str, str] | None = None) -> set[str]:
    """Names of environment variables whose values must never leave the process: every role's
    ``llm.<role>.api_key_env``, ``tracking.secret_envs`` and every secret-looking variable name."""
    env = os.environ if env is None else env
    settings = settings or load_settings(env)
    llm = settings.llm
    names = {ep.api_key_env.strip() for ep in (llm.intent, llm.vision, llm.coder) if ep.api_key_env.strip()}
    names |= set(settings.tracking.secret_env_names)
    names |= {n for n in env if is_secret_name(n)}
    return names


def secret_values(
    settings: Settings | None = None, env: Mapping[str, str] | None = None, extra: Iterable[str] = ()
) -> list[str]:
    """The secret values present now (longest first, so overlapping ones redact cleanly)."""
    env = os.environ if env is None else env
    values = {env.get(n, "") for n in secret_env_names(settings, env)} | set(extra)
    return sorted((v for v in values if v and len(v) >= MIN_SECRET_LEN), key=len, reverse=True)


def redact(text: str, values: Iterable[str], min_len: int = MIN_SECRET_LEN) -> str:
    """``text`` with every occurrence of each secret value replaced by ``***``. ``min_len``: values
    known to be secrets (the key just sent) may be shorter than the general threshold."""
    for v in values:
        if v and len(v) >= min_len:
            text = text.replace(v, REDACTED)
    return text


def contains_secret(text: str, values: Iterable[str]) -> bool:
    return any(v and len(v) >= MIN_SECRET_LEN and v in text for v in values)


def secret(env_var: str, what: str) -> str:
    """Read a secret from the environment at the moment of use; never store it in settings."""
    value = os.environ.get(env_var, "")
    if not value:
        raise ConfigError(
            what,
            f"environment variable {env_var} is not set",
            f"export {env_var}=... (or name another variable in the config's api_key_env)",
        )
    return value
