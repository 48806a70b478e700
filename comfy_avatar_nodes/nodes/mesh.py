"""Image(s) -> mesh on the CPU: silhouette inflation from one picture, a visual hull from a turnaround
(front + side, optional back and other side). Neither is a learned model; see core/mesh/silhouette.py
and core/mesh/hull.py."""

from __future__ import annotations

import asyncio

from comfy_api.latest import io

from ..core.assets import Asset
from ..core.config import load_settings
from ._common import AvatarMesh, comfy_rgba, model_file, output_path, ui_files
from ._metadata import with_workflow

# The optional views of a turnaround sheet: (image input, mask input, what the picture shows)
EXTRA_VIEWS = (
    ("side", "side_mask", "Side view (profile, facing left or right) of the same figure: gives the mesh its depth."),
    (
        "back",
        "back_mask",
        "Back view of the same figure in the same pose: textures the back (else the front is mirrored).",
    ),
    ("other_side", "other_side_mask", "The other side view (the opposite profile): textures that side."),
)


class AvatarImageToMeshCPU(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        view_inputs = []
        for image, mask, tip in EXTRA_VIEWS:
            view_inputs += [
                io.Image.Input(image, optional=True, tooltip=tip),
                io.Mask.Input(
                    mask,
                    optional=True,
                    tooltip=f"Optional mask of the {image.replace('_', ' ')} view (LoadImage's MASK: 1 = background).",
                ),
            ]
        return io.Schema(
            node_id="AvatarImageToMeshCPU",
            display_name="Image to Mesh (CPU silhouette inflation)",
            category="avatar/mesh",
            # It writes a GLB the user keeps (as SaveGLB does): an output node, so a cached re-run still
            # reports its file (ComfyUI 0.8.0 never visits a cached non-output node, so its ui would be lost).
            is_output_node=True,
            description=(
                "Turns pictures of a character into a closed, textured mesh on the CPU in seconds. One front view: "
                "the silhouette is inflated (depth comes from the outline only, the back mirrors the front). A "
                "turnaround sheet (front + side, optional back and other side, orthographic like a model sheet): "
                "the views are aligned and carved into a visual hull with the side view's real depth, each surface "
                "textured from the view that faces it best. Neither is a learned 3D reconstruction; the mesh's "
                "metadata names the method used. Use the TRELLIS node on a GPU for learned shape."
            ),
            inputs=[
                io.Image.Input(
                    "image",
                    tooltip="Front view of one full-body character; transparency or a plain background works best.",
                ),
                io.Mask.Input(
                    "mask",
                    optional=True,
                    tooltip="Optional LoadImage mask (1 = background). Without it the alpha channel or a background colour key is used.",
                ),
                *view_inputs,
                io.Float.Input(
                    "height_m",
                    default=1.7,
                    min=0.1,
                    max=10.0,
                    step=0.01,
                    tooltip="Height of the figure in metres (feet at Y=0).",
                ),
                io.Float.Input(
                    "thickness",
                    default=0.5,
                    min=0.05,
                    max=2.0,
                    step=0.01,
                    tooltip="One view only: depth of the inflation relative to the silhouette's width; 0.5 gives round limbs.",
                ),
                io.Int.Input(
                    "resolution",
                    default=256,
                    min=64,
                    max=1024,
                    step=16,
                    tooltip="One view: grid cells on the long side. Turnaround: voxels over the height (at most 384). More = more triangles and detail.",
                ),
                io.String.Input(
                    "filename_prefix",
                    default="avatar/mesh",
                    tooltip="Output name under ComfyUI's output folder (comfy-avatar/<prefix>_00001.glb).",
                ),
                io.Combo.Input(
                    "side_facing",
                    options=["auto", "left", "right"],
                    default="auto",
                    optional=True,
                    tooltip="Turnaround: which way the figure in the side picture faces (auto reads it off "
                    "the feet, which point forward). Facing left = the figure's left side is shown.",
                ),
            ],
            outputs=[
                AvatarMesh.Output("mesh", tooltip="File handle of the textured GLB mesh."),
                io.String.Output("model_file", tooltip="GLB path relative to the output folder, for Preview3D."),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],  # the workflow goes into the GLB, like SaveGLB
        )

    @classmethod
    async def execute(
        cls,
        image,
        height_m: float,
        thickness: float,
        resolution: int,
        filename_prefix: str,
        mask=None,
        side_facing: str = "auto",
        **views,
    ) -> io.NodeOutput:
        rgba = comfy_rgba(image, mask)
        extra = {
            name: comfy_rgba(views[name], views.get(mask_name))
            for name, mask_name, _ in EXTRA_VIEWS
            if views.get(name) is not None
        }
        out = output_path(filename_prefix, "glb", load_settings())
        if not extra:
            from ..core.mesh.silhouette import image_to_mesh

            info = await asyncio.to_thread(
                image_to_mesh, rgba, out, height_m=height_m, thickness=thickness, resolution=resolution
            )
            meta = {
                "source": "silhouette-inflation-cpu",
                "method": "silhouette-inflation",
                "views": ["front"],
                **info.to_dict(),
            }
            text = None  # one view: the node's ui is its file, as before turnarounds
        else:
            from ..core.mesh.hull import views_to_mesh

            info = await asyncio.to_thread(
                views_to_mesh,
                {"front": rgba, **extra},
                out,
                height_m=height_m,
                resolution=resolution,
                facing=side_facing,
            )
            meta = {"source": "visual-hull-cpu", **info.to_dict()}
            text = (
                f"visual hull of {' + '.join(info.views)}: {info.faces} faces, {info.depth_m:.2f} m deep; "
                f"side view faces {info.side_facing}; back: {info.texture_sources.get('back')}"
            )
            if info.warnings:
                text += "\nwarning: " + "\nwarning: ".join(info.warnings)
        asset = with_workflow(Asset.from_file(out, "mesh", **meta), cls.hidden)
        return io.NodeOutput(asset.to_dict(), model_file(out), ui=ui_files(out, text=text))


NODES = [AvatarImageToMeshCPU]
