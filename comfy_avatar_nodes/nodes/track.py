"""Record a pipeline run in MLflow: the handles' meta as params/metrics, their files as artifacts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from comfy_api.latest import io, ui

from ..core.assets import Asset
from ..core.config import load_settings
from ..core.errors import AvatarError
from ._common import MESH_KINDS, AvatarMesh, AvatarVRM


class AvatarTrackMLflow(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AvatarTrackMLflow",
            display_name="Track run (MLflow)",
            category="avatar/publish",
            description=(
                "Logs one MLflow run: the handles' meta (bone count, triangles, timings ...) as params, numbers and "
                "file sizes as metrics, the files as artifacts. Tracking URI from tracking.uri or "
                "MLFLOW_TRACKING_URI, else a local sqlite store. Secret-looking params are withheld. Needs mlflow "
                "in ComfyUI's Python (pip install mlflow)."
            ),
            is_output_node=True,
            inputs=[
                AvatarVRM.Input("vrm", optional=True, tooltip="VRM handle to record (meta, size, the file)."),
                AvatarMesh.Input("mesh", optional=True, tooltip="Mesh handle to record (meta, size, the file)."),
                io.String.Input(
                    "experiment", default="comfy-avatar", tooltip="MLflow experiment name (created if missing)."
                ),
                io.String.Input("run_name", default="", tooltip="Run name shown in MLflow; empty: MLflow picks one."),
                io.String.Input(
                    "extra_params",
                    default="{}",
                    multiline=True,
                    tooltip="JSON object of extra params (style, seed ...). Never keys: secret-looking names and values are logged as [redacted].",
                ),
                io.Boolean.Input("log_files", default=True, tooltip="Upload the handles' files as run artifacts."),
                io.String.Input(
                    "url",
                    optional=True,
                    force_input=True,
                    tooltip="Optional URL from Promote to S3, logged as the param published_url.",
                ),
            ],
            outputs=[io.String.Output("run_id", tooltip="MLflow run id.")],
        )

    @classmethod
    async def execute(
        cls,
        experiment: str,
        run_name: str,
        extra_params: str,
        log_files: bool,
        vrm: dict | None = None,
        mesh: dict | None = None,
        url: str | None = None,
    ) -> io.NodeOutput:
        from ..core.jsontext import parse_object
        from ..core.publish.tracking import asset_record, log_run

        params: dict[str, Any] = parse_object(extra_params, "extra_params", '{"style": "anime", "seed": 7}')
        metrics: dict[str, float] = {}
        files: list[Path] = []
        for name, handle, kind in (("vrm", vrm, ("vrm",)), ("mesh", mesh, MESH_KINDS)):
            if handle is None:
                continue
            asset = Asset.from_dict(handle).require(kind, name)
            p, m = asset_record(asset.to_dict(), name)
            params.update(p)
            metrics.update(m)
            if log_files:
                files.append(Path(asset.path))
        if url:
            params["published_url"] = url
        if not params:
            raise AvatarError("vrm/mesh", "nothing to track", "connect a VRM or mesh handle, or give extra_params")
        tags = {"comfy_avatar.node": "AvatarTrackMLflow"}
        info = await asyncio.to_thread(
            log_run, experiment, run_name, params, metrics, files, tags, settings=load_settings()
        )
        text = (
            f"MLflow run {info.run_id} (experiment {experiment!r}, id {info.experiment_id}) at {info.tracking_uri}\n"
            f"{len(params)} params, {len(metrics)} metrics, {len(files)} files -> {info.artifact_uri}"
        )
        if info.redacted:
            text += f"\nwithheld as secret-looking: {', '.join(info.redacted)}"
        return io.NodeOutput(info.run_id, ui=ui.PreviewText(text))


NODES = [AvatarTrackMLflow]
