"""Model worker scripts, started BY PATH with a model's own Python (core/runtime/workers.py does that).

They use the standard library and their model's dependencies only and never import
comfy_avatar_nodes: the model env (torch, trellis, bpy==4.2 ...) is not ComfyUI's env.
This file only makes the folder ship with the package; nothing imports these modules.
"""
