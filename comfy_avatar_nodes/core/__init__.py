"""Plain, typed logic of comfy-avatar. Nothing here imports ComfyUI (comfy_api) or nodes/.

Layers, lowest first; a module imports only from its own layer or below, so there are no
import cycles (lazy imports included):

- top-level helpers: errors, config (typed settings), assets (handles, atomic files, output
  names), secrets, images, jsontext (JSON typed into widgets);
- runtime/: the Blender runner, model workers, process helpers;
- one folder per stage: mesh/, vrm/, rig/ (rig uses vrm's export job), llm/, executor/ (runs
  the coder model's scripts, so it sits above llm/), export/, publish/;
- pipeline.py: the CPU image -> VRM path composed from the stages (tests, bench).

Package ``__init__`` files re-export nothing: importing a stage's module must not import
the other modules of that stage (a missing optional dependency breaks one node, not all).
"""
