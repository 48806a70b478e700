"""VRM 1.0: the spec's names (spec.py, stdlib only, also read by blender_cli/), meta (meta.py),
glTF reading (gltf.py), the VRM-writing Blender job (export.py) and the validator (validate.py)."""
