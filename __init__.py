"""ComfyUI loads this folder as a custom-node pack: the V3 entry point lives in comfy_avatar_nodes."""

from .comfy_avatar_nodes import comfy_entrypoint

# The editor extension (VRM viewer inside the node, Validate VRM's report): ComfyUI 0.3.x and 0.8.x read a
# pack module's WEB_DIRECTORY for V1 and V3 (comfy_entrypoint) packs alike and serve it at /extensions/<folder>/.
WEB_DIRECTORY = "./comfy_avatar_nodes/web"

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
