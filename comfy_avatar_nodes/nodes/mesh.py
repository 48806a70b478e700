"""Image -> mesh on the CPU by silhouette inflation (not a learned model; see core/mesh/silhouette.py)."""
from __future__ import annotations

import asyncio

from comfy_api.latest import io

from ..core.assets import Asset
from ..core.config import load_settings
from ._common import AvatarMesh, comfy_rgba, model_file, output_path, ui_files
from ._metadata import with_workflow


class AvatarImageToMeshCPU(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AvatarImageToMeshCPU",
            display_name="Image to Mesh (CPU silhouette inflation)",
            category="avatar/mesh",
            # It writes a GLB the user keeps (as SaveGLB does): an output node, so a cached re-run still
            # reports its file (ComfyUI 0.8.0 never visits a cached non-output node, so its ui would be lost).
            is_output_node=True,
            description=(
                "Turns a front-view picture of a character into a closed, textured mesh by inflating its "
                "silhouette. Runs on the CPU in about a second. It is NOT a learned 3D reconstruction: the back "
                "mirrors the front and depth comes from the outline only. Use the TRELLIS node on a GPU for real shape."
            ),
            inputs=[
                io.Image.Input("image", tooltip="Front view of one full-body character; transparency or a plain background works best."),
                io.Mask.Input("mask", optional=True, tooltip="Optional LoadImage mask (1 = background). Without it the alpha channel or a background colour key is used."),
                io.Float.Input("height_m", default=1.7, min=0.1, max=10.0, step=0.01, tooltip="Height of the figure in metres (feet at Y=0)."),
                io.Float.Input("thickness", default=0.5, min=0.05, max=2.0, step=0.01, tooltip="Depth of the inflation relative to the silhouette's width; 0.5 gives round limbs."),
                io.Int.Input("resolution", default=256, min=64, max=1024, step=16, tooltip="Pixels on the long side used for the mesh grid; more = more triangles and detail."),
                io.String.Input("filename_prefix", default="avatar/mesh", tooltip="Output name under ComfyUI's output folder (comfy-avatar/<prefix>_00001.glb)."),
            ],
            outputs=[
                AvatarMesh.Output("mesh", tooltip="File handle of the textured GLB mesh."),
                io.String.Output("model_file", tooltip="GLB path relative to the output folder, for Preview3D."),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],  # the workflow goes into the GLB, like SaveGLB
        )

    @classmethod
    async def execute(cls, image, height_m: float, thickness: float, resolution: int,
                      filename_prefix: str, mask=None) -> io.NodeOutput:
        from ..core.mesh.silhouette import image_to_mesh

        rgba = comfy_rgba(image, mask)
        out = output_path(filename_prefix, "glb", load_settings())
        info = await asyncio.to_thread(image_to_mesh, rgba, out, height_m=height_m, thickness=thickness,
                                       resolution=resolution)
        asset = with_workflow(Asset.from_file(out, "mesh", source="silhouette-inflation-cpu", **info.to_dict()),
                              cls.hidden)
        return io.NodeOutput(asset.to_dict(), model_file(out), ui=ui_files(out))


NODES = [AvatarImageToMeshCPU]
