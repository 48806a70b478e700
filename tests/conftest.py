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


# A skip whose reason starts with this is fine under CI too: the test does not apply to this
# set-up (e.g. a feature of ComfyUI 0.8.0 while the suite runs against 0.3.64, or a GPU test).
NOT_APPLICABLE = "not applicable:"
# Tests that need an outside runtime: under CI=true any other skip of theirs is a failure.
RUNTIME_MARKERS = ("blender", "comfyui", "js")


def _unexplained_skip(rep) -> str | None:
    """The reason of a skip that CI must not accept (None when it says NOT_APPLICABLE)."""
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    return None if reason.removeprefix("Skipped: ").startswith(NOT_APPLICABLE) else reason


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI a Blender, ComfyUI or browser test that skips (for any reason but NOT_APPLICABLE)
    fails: CI installs every runtime, so a skip there means a broken set-up that would hide bugs."""
    outcome = yield
    rep = outcome.get_result()
    if not (IN_CI and rep.skipped) or hasattr(rep, "wasxfail"):
        return
    if not any(item.get_closest_marker(m) for m in RUNTIME_MARKERS):
        return
    reason = _unexplained_skip(rep)
    if reason is None:
        return
    rep.outcome = "failed"
    rep.longrepr = f"skipped under CI=true, where every runtime is installed: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same rule for a whole module skipped while collecting (pytest.skip(allow_module_level=True))."""
    outcome = yield
    rep = outcome.get_result()
    if IN_CI and rep.skipped:
        reason = _unexplained_skip(rep)
        if reason is not None:
            rep.outcome = "failed"
            rep.longrepr = f"{collector.nodeid} skipped under CI=true, where every runtime is installed: {reason}"


def need(condition: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) when a required runtime is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI installs it through tests/run.sh; this is a broken setup)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def blender_runtime():
    from comfy_avatar_nodes.core.errors import AvatarError
    from comfy_avatar_nodes.core.runtime.blender import find_runtime

    try:
        return find_runtime()
    except AvatarError as e:
        need(False, f"no Blender runtime: {e}")


def comfyui_dir() -> Path:
    """The ComfyUI the end-to-end tests run against (COMFYUI_DIR, set by tests/run.sh for each
    version); skips locally, fails under CI, when there is none."""
    raw = os.environ.get("COMFYUI_DIR", "")
    need(
        bool(raw) and Path(raw, "main.py").is_file(),
        "COMFYUI_DIR is not set to a ComfyUI checkout: run `bash tests/run.sh` (sets one up from "
        "../shared/comfyui or COMFYUI_REPO) or point COMFYUI_DIR at one",
    )
    return Path(raw)


def comfyui_version() -> tuple[int, ...]:
    """The version of the ComfyUI in COMFYUI_DIR, from its comfyui_version.py (0.3.64 and 0.8.0 have it)."""
    import re

    text = (comfyui_dir() / "comfyui_version.py").read_text(encoding="utf-8")
    m = re.search(r"__version__\s*=\s*['\"]([0-9.]+)", text)
    assert m, f"no __version__ in {comfyui_dir() / 'comfyui_version.py'}"
    return tuple(int(x) for x in m.group(1).split("."))


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
