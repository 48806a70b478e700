"""Image(s) -> textured 3D mesh with TRELLIS on an NVIDIA GPU (a warm worker in TRELLIS's own env); several
views of one figure use TRELLIS's multi-image mode."""

from __future__ import annotations

import tempfile
from pathlib import Path

from comfy_api.latest import io

from ..core.config import load_settings
from ._common import AvatarMesh, comfy_rgba, model_file, output_path, ui_files
from ._metadata import with_workflow
from ._progress import NodeProgress
from .mesh import EXTRA_VIEWS


class AvatarImageTo3DTrellis(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AvatarImageTo3DTrellis",
            display_name="Image to 3D (TRELLIS, GPU)",
            category="avatar/mesh",
            # It writes a GLB the user keeps (as SaveGLB does): an output node, so a cached re-run still
            # reports its file (ComfyUI 0.8.0 never visits a cached non-output node, so its ui would be lost).
            is_output_node=True,
            description=(
                "Reconstructs a textured 3D mesh from one picture with Microsoft TRELLIS (TRELLIS-image-large). "
                "Needs an NVIDIA GPU with >= 16 GB, the TRELLIS Python env (config trellis.python) and the weights "
                "on disk (trellis.weights_dir); nothing is downloaded. The model stays loaded between runs. Connect "
                "more views of the same figure (side, back, other side) to use TRELLIS's multi-image mode. "
                "Without a GPU use 'Image to Mesh (CPU silhouette inflation)'."
            ),
            inputs=[
                io.Image.Input(
                    "image",
                    tooltip="One picture of the object or character; a transparent background skips background removal.",
                ),
                io.Mask.Input(
                    "mask", optional=True, tooltip="Optional LoadImage mask (1 = background) used as transparency."
                ),
                *[
                    i
                    for image, mask, tip in EXTRA_VIEWS
                    for i in (
                        io.Image.Input(
                            image,
                            optional=True,
                            tooltip=tip.split(":")[0] + ": another view for TRELLIS's multi-image mode.",
                        ),
                        io.Mask.Input(mask, optional=True, tooltip=f"Optional mask of the {image} view."),
                    )
                ],
                io.Int.Input(
                    "seed",
                    default=1,
                    min=0,
                    max=2**31 - 1,
                    tooltip="Sampling seed; the same seed and picture give the same mesh.",
                ),
                io.Int.Input(
                    "ss_steps",
                    default=12,
                    min=1,
                    max=100,
                    tooltip="Sparse-structure sampler steps (TRELLIS default 12).",
                ),
                io.Float.Input(
                    "ss_cfg",
                    default=7.5,
                    min=0.0,
                    max=20.0,
                    step=0.1,
                    tooltip="Sparse-structure guidance strength (default 7.5).",
                ),
                io.Int.Input(
                    "slat_steps", default=12, min=1, max=100, tooltip="Structured-latent sampler steps (default 12)."
                ),
                io.Float.Input(
                    "slat_cfg",
                    default=3.0,
                    min=0.0,
                    max=20.0,
                    step=0.1,
                    tooltip="Structured-latent guidance strength (default 3.0).",
                ),
                io.Float.Input(
                    "simplify",
                    default=0.95,
                    min=0.0,
                    max=0.99,
                    step=0.01,
                    tooltip="Share of triangles removed when simplifying the GLB (0.95 = keep 5%).",
                ),
                io.Int.Input(
                    "texture_size", default=1024, min=256, max=4096, step=256, tooltip="Baked texture size in pixels."
                ),
                io.String.Input(
                    "filename_prefix",
                    default="avatar/trellis",
                    tooltip="Output name under ComfyUI's output folder (comfy-avatar/<prefix>_00001.glb).",
                ),
                io.Combo.Input(
                    "multiview_mode",
                    options=["stochastic", "multidiffusion"],
                    default="stochastic",
                    optional=True,
                    tooltip="Several views: TRELLIS's multi-image mode (stochastic: one view per sampling "
                    "step in turn; multidiffusion: every view at every step, averaged).",
                ),
            ],
            outputs=[
                AvatarMesh.Output("mesh", tooltip="File handle of the textured GLB (Y-up, centred in a unit cube)."),
                io.String.Output("model_file", tooltip="GLB path relative to the output folder, for Preview3D."),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],  # the workflow goes into the GLB, like SaveGLB
        )

    @classmethod
    async def execute(
        cls,
        image,
        seed: int,
        ss_steps: int,
        ss_cfg: float,
        slat_steps: int,
        slat_cfg: float,
        simplify: float,
        texture_size: int,
        filename_prefix: str,
        mask=None,
        multiview_mode: str = "stochastic",
        **views,
    ) -> io.NodeOutput:
        from PIL import Image

        from ..core.mesh.trellis import TrellisParams, image_to_mesh_trellis

        rgba = comfy_rgba(image, mask)
        params = TrellisParams(
            seed=seed,
            ss_steps=ss_steps,
            ss_cfg=ss_cfg,
            slat_steps=slat_steps,
            slat_cfg=slat_cfg,
            simplify=simplify,
            texture_size=texture_size,
            multiview_mode=multiview_mode,
        )
        settings = load_settings()
        out = output_path(filename_prefix, "glb", settings)
        with tempfile.TemporaryDirectory(prefix="comfy-avatar-trellis-") as tmp:
            png = Path(tmp) / "input.png"
            Image.fromarray(rgba, "RGBA").save(png)
            more = {}
            for name, mask_name, _ in EXTRA_VIEWS:
                if views.get(name) is not None:
                    more[name] = Path(tmp) / f"{name}.png"
                    Image.fromarray(comfy_rgba(views[name], views.get(mask_name)), "RGBA").save(more[name])
            asset = await image_to_mesh_trellis(
                png, out, params, settings, progress=NodeProgress(100).fraction, more_views=more
            )
        asset = with_workflow(asset, cls.hidden)
        return io.NodeOutput(asset.to_dict(), model_file(out), ui=ui_files(out))


NODES = [AvatarImageTo3DTrellis]
