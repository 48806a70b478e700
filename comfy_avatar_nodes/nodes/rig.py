"""Template humanoid rig + VRM 1.0 export in one Blender launch (CPU, automatic weights)."""
from __future__ import annotations

from pathlib import Path

from comfy_api.latest import io

from ..core.assets import Asset
from ._common import AvatarMesh, AvatarVRM, model_file, output_path, ui_files

AVATAR_PERMISSION = ["onlyAuthor", "onlySeparatelyLicensedPerson", "everyone"]
COMMERCIAL_USAGE = ["personalNonProfit", "personalProfit", "corporation"]
MODIFICATION = ["prohibited", "allowModification", "allowModificationRedistribution"]


class AvatarRigVRMCPU(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AvatarRigVRMCPU",
            display_name="Rig + Export VRM (CPU template rig)",
            category="avatar/rig",
            description=(
                "Fits a VRM humanoid template skeleton to the mesh's proportions, skins it with Blender's "
                "automatic weights and exports VRM 1.0 with the VRM add-on, all in one headless Blender run. "
                "A template fit, not a learned rig: use UniRig on a GPU for unusual body shapes."
            ),
            is_output_node=True,
            inputs=[
                AvatarMesh.Input("mesh", tooltip="Mesh handle from an image-to-mesh node."),
                io.String.Input("name", default="Avatar", tooltip="VRM meta name shown in VRM apps."),
                io.String.Input("version", default="1.0", tooltip="VRM meta version of this model."),
                io.String.Input("authors", default="comfy-avatar", tooltip="Authors, comma separated (at least one)."),
                io.Combo.Input("avatar_permission", options=AVATAR_PERMISSION, default="onlyAuthor", tooltip="Who may perform as this avatar (VRM 1.0 meta)."),
                io.Combo.Input("commercial_usage", options=COMMERCIAL_USAGE, default="personalNonProfit", tooltip="Allowed commercial use (VRM 1.0 meta)."),
                io.Combo.Input("modification", options=MODIFICATION, default="prohibited", tooltip="Whether others may modify or redistribute (VRM 1.0 meta)."),
                io.Float.Input("remesh_voxel", default=0.0, min=0.0, max=0.2, step=0.001, tooltip="Voxel size in metres for the watertight remesh before skinning; 0 = automatic."),
                io.String.Input("filename_prefix", default="avatar/avatar", tooltip="Output name under ComfyUI's output folder (comfy-avatar/<prefix>_00001.vrm)."),
            ],
            outputs=[
                AvatarVRM.Output("vrm", tooltip="File handle of the VRM 1.0 avatar."),
                io.String.Output("model_file", tooltip="VRM path relative to the output folder, for Preview3D."),
            ],
        )

    @classmethod
    async def execute(cls, mesh: dict, name: str, version: str, authors: str, avatar_permission: str,
                      commercial_usage: str, modification: str, remesh_voxel: float,
                      filename_prefix: str) -> io.NodeOutput:
        from ..core.rig import VrmMeta, rig_to_vrm

        src = Asset.from_dict(mesh).require("mesh", "mesh")
        meta = VrmMeta(name=name, version=version, authors=[a.strip() for a in authors.split(",") if a.strip()],
                       avatar_permission=avatar_permission, commercial_usage=commercial_usage,
                       modification=modification)
        out = output_path(filename_prefix, "vrm")
        vrm = await rig_to_vrm(Path(src.path), out, meta, remesh_voxel=remesh_voxel)
        return io.NodeOutput(vrm.to_dict(), model_file(out), ui=ui_files(out))


NODES = [AvatarRigVRMCPU]
