"""ComfyUI loads this folder as a custom-node pack: the V3 entry point lives in comfy_avatar_nodes."""
from .comfy_avatar_nodes import comfy_entrypoint

__all__ = ["comfy_entrypoint"]
