"""Plain, typed logic of comfy-avatar. Nothing here imports ComfyUI."""
