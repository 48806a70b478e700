"""What a GPU model worker needs from the settings, checked before it starts: its env's Python,
its folders, and the worker spec built from them. Shared by TRELLIS (mesh/trellis.py) and UniRig
(rig/unirig.py), so both name a wrong setting the same way: the key, its environment variable
and how to fix it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..config import WorkersSettings, setting_name
from ..errors import ConfigError
from .workers import WORKERS_DIR, WorkerSpec


def model_python(value: str, key: str, label: str, build: str) -> str:
    """The model env's interpreter from setting ``key``, or an error naming the key and how to build it."""
    value = value.strip()
    if not value:
        raise ConfigError(setting_name(key), f"is not set: no {label} Python env is configured", build)
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(setting_name(key), f"{path} does not exist", build)
    return str(path.absolute())


def model_dir(value: str, key: str, *, required: bool, problem: str = "", fix: str) -> str:
    """An existing folder from setting ``key`` (resolved), "" when empty and not ``required``."""
    value = value.strip()
    if not value:
        if required:
            raise ConfigError(setting_name(key), problem, fix)
        return ""
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(setting_name(key), f"{path} is not a folder", fix)
    return str(path.resolve())


def worker_spec(
    name: str, label: str, python: str, args: Sequence[str], env: Mapping[str, str], cwd: str, workers: WorkersSettings
) -> WorkerSpec:
    """The spec of workers/<name>_worker.py under ``python``; empty env values are left out, the
    timeouts, log folder and network isolation come from the workers section."""
    return WorkerSpec(
        name=name,
        python=python,
        script=str(WORKERS_DIR / f"{name}_worker.py"),
        args=tuple(args),
        env=tuple(sorted((k, v) for k, v in env.items() if v)),
        cwd=cwd,
        start_timeout_s=workers.start_timeout_s,
        idle_timeout_s=workers.idle_timeout_s,
        log_dir=workers.log_dir,
        label=label,
        isolation=workers.isolation,
    )
