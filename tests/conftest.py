"""Shared fixtures. Tests that need an external runtime skip with a reason locally, but
fail under CI (CI=true) where tests/run.sh has installed everything they need."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) when a required runtime is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI installs it through tests/run.sh; this is a broken setup)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def blender_runtime():
    from comfy_avatar_nodes.core.blender import find_runtime
    from comfy_avatar_nodes.core.errors import AvatarError

    try:
        return find_runtime()
    except AvatarError as e:
        need(False, f"no Blender runtime: {e}")


@pytest.fixture(scope="session")
def example_image() -> Path:
    path = ROOT / "workflows" / "examples" / "character_apose.png"
    assert path.is_file(), f"{path} is missing from the repository"
    return path


@pytest.fixture
def clean_env(monkeypatch):
    """An environment without any COMFY_AVATAR settings from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("COMFY_AVATAR") or name == "BLENDER_BIN":
            monkeypatch.delenv(name, raising=False)
    return monkeypatch
