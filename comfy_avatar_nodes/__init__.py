"""comfy-avatar custom nodes (ComfyUI V3 schema). Importing this package imports no ComfyUI:
comfy_api is imported only in nodes/, and only when ComfyUI asks for the node list."""

from __future__ import annotations

from .nodes import NODE_MODULES, comfy_entrypoint, node_classes

__all__ = ["NODE_MODULES", "comfy_entrypoint", "node_classes"]
