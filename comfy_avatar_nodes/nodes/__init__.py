"""V3 io.ComfyNode classes, one module per stage. The only place that imports comfy_api.

Importing this package imports no ComfyUI: each stage's module (and comfy_api) is imported when
ComfyUI asks for the node list, so the pack can be imported, tested and driven without ComfyUI.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger("comfy_avatar")

# One module per stage; each exposes NODES: list[type[io.ComfyNode]].
NODE_MODULES = ("mesh", "rig", "vrm", "llm", "agent", "promote", "track", "export", "trellis", "unirig")


def node_classes() -> list[type]:
    """Import every node module; a module that fails to import is logged and skipped,
    so one broken stage never hides the rest of the pack."""
    found: list[type] = []
    for name in NODE_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except Exception:  # noqa: BLE001 - report and keep loading the other stages
            log.exception("comfy-avatar: node module %r failed to import; its nodes are unavailable", name)
            continue
        found.extend(mod.NODES)
    return found


async def comfy_entrypoint():
    """ComfyUI's V3 entry point: an extension listing every node class that imported."""
    from comfy_api.latest import ComfyExtension

    class AvatarExtension(ComfyExtension):
        async def get_node_list(self):
            return node_classes()

    return AvatarExtension()
