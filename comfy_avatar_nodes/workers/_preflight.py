"""Startup checks shared by the model workers (stdlib only; torch imported only if installed)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def missing_modules(wanted: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(import name, how to install) pairs whose module cannot be found in this Python.

    Uses importlib.util.find_spec, so nothing is imported (no CUDA init, no side effects).
    """
    missing = []
    for name, hint in wanted:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append((name, hint))
    return missing


def missing_problem(kind: str, env_what: str, missing: list[tuple[str, str]]) -> dict:
    names = ", ".join(n for n, _ in missing)
    hints = "; ".join(f"{n}: {h}" for n, h in missing)
    return {
        "kind": kind,
        "message": f"{env_what} lacks the Python package(s) {names} ({hints})",
        "missing": [n for n, _ in missing],
    }


def nvidia_driver() -> str | None:
    """The NVIDIA kernel driver version line, or None when no driver is loaded (Linux)."""
    try:
        return Path("/proc/driver/nvidia/version").read_text(encoding="utf-8", errors="replace").splitlines()[0].strip()
    except (OSError, IndexError):
        return None


def cuda_probe() -> dict[str, Any]:
    """What this Python can use: {"cuda": bool, "reason", "torch", "torch_cuda", "name", "vram_gb", ...}."""
    dev: dict[str, Any] = {
        "cuda": False,
        "reason": "",
        "torch": None,
        "torch_cuda": None,
        "driver": nvidia_driver(),
        "name": None,
        "vram_gb": None,
        "capability": None,
        "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    no_driver = "" if dev["driver"] else " and no NVIDIA driver is loaded (/proc/driver/nvidia/version is missing)"
    if importlib.util.find_spec("torch") is None:
        dev["reason"] = "torch is not installed in this Python" + no_driver
        return dev
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - a broken torch install is a reason, not a crash
        dev["reason"] = f"import torch failed: {type(e).__name__}: {e}"
        return dev
    dev["torch"] = torch.__version__
    dev["torch_cuda"] = torch.version.cuda
    if torch.version.cuda is None:
        dev["reason"] = f"torch {torch.__version__} is a build without CUDA (CPU-only wheel)" + no_driver
        return dev
    try:
        available = torch.cuda.is_available()
    except Exception as e:  # noqa: BLE001
        available, no_driver = False, f" ({type(e).__name__}: {e})"
    if not available:
        dev["reason"] = (
            f"torch.cuda.is_available() is False (torch {torch.__version__}, CUDA {torch.version.cuda})" + no_driver
        )
        return dev
    props = torch.cuda.get_device_properties(0)
    dev.update(
        cuda=True,
        name=props.name,
        vram_gb=round(props.total_memory / 2**30, 2),
        capability=f"{props.major}.{props.minor}",
        count=torch.cuda.device_count(),
    )
    return dev


def gpu_problem(dev: dict[str, Any], min_vram_gb: float) -> dict | None:
    if not dev["cuda"]:
        return {"kind": "no_cuda", "message": f"no usable CUDA GPU: {dev['reason']}"}
    if dev["vram_gb"] is not None and dev["vram_gb"] < min_vram_gb:
        return {
            "kind": "low_vram",
            "message": f"{dev['name']} has {dev['vram_gb']} GB; at least {min_vram_gb:g} GB is needed",
        }
    return None


def module_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed distribution versions (importlib.metadata; nothing is imported)."""
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
