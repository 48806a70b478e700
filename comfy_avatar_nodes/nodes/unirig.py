"""Learned auto-rig with UniRig on an NVIDIA GPU (skeleton + skinning + merge, in UniRig's own env)."""

from __future__ import annotations

import json
from pathlib import Path

from comfy_api.latest import io

from ..core.assets import Asset
from ..core.config import load_settings
from ._common import AvatarMesh, model_file, output_path, ui_files
from ._metadata import with_workflow
from ._progress import NodeProgress


class AvatarAutoRigUniRig(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AvatarAutoRigUniRig",
            display_name="Auto-rig (UniRig, GPU)",
            category="avatar/rig",
            description=(
                "Predicts a skeleton and skinning weights for any mesh with UniRig (Articulation-XL2.0 checkpoint) "
                "and merges them into the original mesh. Needs an NVIDIA GPU with >= 8 GB, the UniRig Python env and "
                "checkout (config unirig.python / unirig.repo_dir) and the weights on disk; nothing is downloaded. "
                "Bones come out as bone_0..bone_N: the humanoid_map output is a HEURISTIC guess of the VRM humanoid "
                "bones from joint positions; check it. Without a GPU use 'Rig + Export VRM (CPU template rig)'."
            ),
            is_output_node=True,
            inputs=[
                AvatarMesh.Input("mesh", tooltip="Mesh handle (GLB/OBJ/FBX/VRM) from an image-to-mesh node."),
                io.Int.Input(
                    "seed",
                    default=12345,
                    min=0,
                    max=2**31 - 1,
                    tooltip="Skeleton sampling seed (UniRig's default 12345).",
                ),
                io.Int.Input(
                    "seed_retries",
                    default=3,
                    min=0,
                    max=20,
                    tooltip="Extra seeds (seed+1, seed+2 ...) tried when UniRig samples an invalid skeleton.",
                ),
                io.Combo.Input(
                    "output_format", options=["glb", "fbx"], default="glb", tooltip="File type of the rigged result."
                ),
                io.String.Input(
                    "filename_prefix",
                    default="avatar/unirig",
                    tooltip="Output name under ComfyUI's output folder (comfy-avatar/<prefix>_00001.glb).",
                ),
            ],
            outputs=[
                AvatarMesh.Output("rigged", tooltip="File handle of the rigged, skinned mesh (kind rigged_mesh)."),
                io.String.Output(
                    "humanoid_map",
                    tooltip="JSON: heuristic VRM humanoid bone name -> UniRig bone name, with what is missing.",
                ),
                io.String.Output(
                    "model_file", tooltip="Rigged file path relative to the output folder, for Preview3D."
                ),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],  # the workflow goes into a GLB, like SaveGLB
        )

    @classmethod
    async def execute(
        cls, mesh: dict, seed: int, seed_retries: int, output_format: str, filename_prefix: str
    ) -> io.NodeOutput:
        from ..core.rig.unirig import UniRigParams, rig_unirig

        src = Asset.from_dict(mesh).require("mesh", "mesh")
        params = UniRigParams(seed=seed, seed_retries=seed_retries, output_format=output_format)
        settings = load_settings()
        out = output_path(filename_prefix, output_format, settings)
        rigged = with_workflow(
            await rig_unirig(src, out, params, settings, progress=NodeProgress(100).fraction), cls.hidden
        )
        mapping = Path(rigged.meta["humanoid_map"]).read_text(encoding="utf-8")
        text = json.dumps(json.loads(mapping), indent=1)
        return io.NodeOutput(rigged.to_dict(), text, model_file(out), ui=ui_files(out, rigged.meta["humanoid_map"]))


NODES = [AvatarAutoRigUniRig]
