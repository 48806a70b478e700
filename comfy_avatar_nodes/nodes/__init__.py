"""V3 io.ComfyNode classes, one module per stage. The only place that imports comfy_api."""
