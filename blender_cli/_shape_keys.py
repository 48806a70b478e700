"""Shape keys through a modifier apply, inside Blender (bpy + numpy; imports nothing else of blender_cli/).

Blender refuses to apply a modifier to a mesh with shape keys, and the VRM T-pose is made the rest
pose by applying the armature modifier (_vrm_common.apply_t_pose). A rigged input's ARKit or VRoid
face keys must survive that (they win over generated ones, _expressions.py), so each key's shape is
evaluated through the pose first and put back, posed, once the modifier is applied.
"""

from __future__ import annotations

import bpy
import numpy as np


def carry_shape_keys(body: bpy.types.Object):
    """Shape keys survive applying the armature modifier (Blender refuses to apply one on a mesh with
    keys): each key's shape is evaluated through the pose first, the keys removed, and after the
    modifier is applied put back as posed shapes. Returns the function that puts them back."""
    keys = body.data.shape_keys
    if keys is None or len(keys.key_blocks) < 2:
        return lambda: 0
    blocks = list(keys.key_blocks)
    shapes: list[tuple[str, np.ndarray]] = []
    for k in blocks[1:]:
        for other in blocks:
            other.value = 0.0
        k.value = 1.0
        bpy.context.view_layer.update()
        ev = body.evaluated_get(bpy.context.evaluated_depsgraph_get())
        m = ev.to_mesh()
        co = np.empty(len(m.vertices) * 3)
        m.vertices.foreach_get("co", co)
        ev.to_mesh_clear()
        shapes.append((k.name, co))
    body.shape_key_clear()

    def restore() -> int:
        body.shape_key_add(name="Basis", from_mix=False)
        for name, co in shapes:
            if len(co) != len(body.data.vertices) * 3:
                continue
            kb = body.shape_key_add(name=name, from_mix=False)
            kb.data.foreach_set("co", co)
            kb.value = 0.0
        body.data.update()
        return len(shapes)

    return restore
