"""A test-only ComfyUI node pack: makes ComfyUI's own core MESH inside the server, with no model weights.

ComfyUI's MESH (vertices + faces tensors, batched) is what its native Hunyuan3D decode and VoxelToMesh
nodes make; those need a model or a VOXEL from one. This node builds the tests' primitive humanoid
(tests/_rig_helpers.py's figure, glTF axes, in the model units a MESH has: about 2 tall, centred) as
that very class, so a test can feed a genuine core MESH to our nodes and to core SaveGLB. Loaded only by
tests (driver.local.LocalComfy's extra_custom_nodes); never shipped with the pack.
"""

from __future__ import annotations

import os
import sys

import numpy as np

_TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # through the link


def _mesh_class():
    """ComfyUI's own MESH class: comfy_api's Types.MESH (0.8.0), else nodes_hunyuan3d's (0.3.64)."""
    try:
        from comfy_api.latest import Types

        return Types.MESH
    except (ImportError, AttributeError):
        from comfy_extras.nodes_hunyuan3d import MESH

        return MESH


class AvatarTestHumanoidMesh:
    CATEGORY = "avatar/tests"
    FUNCTION = "make"
    RETURN_TYPES = ("MESH",)
    DESCRIPTION = "Test only: a primitive humanoid as ComfyUI's core MESH (no weights needed)."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pose": (["A", "T"], {"default": "A"}),
                "scale": ("FLOAT", {"default": 1.2, "min": 0.1, "max": 10.0}),
            }
        }

    def make(self, pose: str, scale: float):
        import torch
        import trimesh

        if _TESTS not in sys.path:
            sys.path.insert(0, _TESTS)
        from _rig_helpers import humanoid_parts

        parts = humanoid_parts(1.7, pose)
        mesh = trimesh.util.concatenate(parts)
        v = (mesh.vertices - [0.0, 0.85, 0.0]) * scale  # model units, centred like VoxelToMesh's output
        verts = torch.from_numpy(np.asarray(v, np.float32))[None]
        faces = torch.from_numpy(np.asarray(mesh.faces, np.int64))[None]
        return (_mesh_class()(verts, faces),)


NODE_CLASS_MAPPINGS = {"AvatarTestHumanoidMesh": AvatarTestHumanoidMesh}
NODE_DISPLAY_NAME_MAPPINGS = {"AvatarTestHumanoidMesh": "Test humanoid (core MESH)"}
