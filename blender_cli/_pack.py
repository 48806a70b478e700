"""The pack's stdlib-only modules that the Blender scripts share, loaded by file path.

Scripts here run INSIDE Blender (bpy + stdlib + numpy) and are started by path: they cannot
import comfy_avatar_nodes as a package (its package files and dependencies belong to
ComfyUI's Python, not Blender's). The few facts both sides need - the VRM 1.0 names and the
GLB container format - live in stdlib-only modules of the pack, and this module loads those
very files, so there is one definition and no copy here. The runner already requires
blender_cli/ to sit beside comfy_avatar_nodes/ (core/runtime/blender.py, SCRIPTS_DIR).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

CORE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "comfy_avatar_nodes", "core")


def load(name: str, relpath: str) -> ModuleType:
    """Load ``comfy_avatar_nodes/core/<relpath>`` as module ``name`` (once per process)."""
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(CORE_DIR, *relpath.split("/"))
    if not os.path.isfile(path):
        raise ImportError(f"{path} is missing: blender_cli/ must sit beside comfy_avatar_nodes/ (reinstall the pack)")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and annotations resolve through sys.modules
    spec.loader.exec_module(module)
    return module


vrm_spec = load("comfy_avatar_vrm_spec", "vrm/spec.py")
"""VRM 1.0 names: REQUIRED_BONES, HUMAN_BONES, REQUIRED_ANCESTOR, META_ENUMS, META_FLAGS ..."""
glb = load("comfy_avatar_glb", "vrm/glb.py")
"""The GLB container: read_glb(data) -> (doc, blob), pack_glb(doc, blob), GltfError."""
