"""VRM validation: reads VRMC_vrm and the skin, reports what a VRM app would reject."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from comfy_api.latest import io

from ..core.assets import Asset, write_json_atomic
from ..core.errors import AvatarError
from ._common import AvatarVRM, ui_files


class AvatarValidateVRM(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AvatarValidateVRM",
            display_name="Validate VRM",
            category="avatar/vrm",
            description=(
                "Checks a VRM 1.0 file: spec version, the 15 required humanoid bones (present and unique), every "
                "vertex skinned with weights summing to 1, facing +Z, feet on Y=0, license URL and sizes. "
                "Writes the report as JSON beside the VRM."
            ),
            is_output_node=True,
            inputs=[
                AvatarVRM.Input("vrm", tooltip="VRM handle from the rig/export node."),
                io.Boolean.Input(
                    "fail_on_error",
                    default=True,
                    tooltip="Stop the workflow with the report as error message when the VRM is invalid.",
                ),
            ],
            outputs=[
                io.Boolean.Output("ok", tooltip="True when no errors were found."),
                io.String.Output("report", tooltip="Readable summary of the checks."),
                io.String.Output("report_json", tooltip="The same report as a JSON object."),
                AvatarVRM.Output(
                    "checked_vrm",
                    tooltip="The VRM handle, passed on once checked (with fail_on_error only when "
                    "valid): connect export/publish nodes here so they run after the check.",
                ),
            ],
        )

    @classmethod
    async def execute(cls, vrm: dict, fail_on_error: bool) -> io.NodeOutput:
        from ..core.vrm.validate import validate_vrm

        asset = Asset.from_dict(vrm).require("vrm", "vrm")
        report = await asyncio.to_thread(validate_vrm, Path(asset.path))
        data = report.to_dict()
        report_path = write_json_atomic(Path(asset.path).with_suffix(".report.json"), data)
        summary = report.summary()
        if fail_on_error and not report.ok:
            raise AvatarError(
                "vrm",
                f"{Path(asset.path).name} failed validation:\n{summary}",
                "see the report; re-run the rig with another remesh_voxel or fix the mesh",
            )
        # ui: the files, the readable text and the report object, which the editor extension
        # (web/avatar_nodes.js) shows inside the node: badge, errors, warnings, expression summary, text
        ui = ui_files(asset.path, report_path, text=summary)
        ui["avatar_report"] = [data]
        return io.NodeOutput(report.ok, summary, json.dumps(data), vrm, ui=ui)


NODES = [AvatarValidateVRM]
