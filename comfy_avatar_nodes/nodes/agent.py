"""Blender executor node: runs a model-written script in the sandbox, with the repair loop."""

from __future__ import annotations

import logging
from typing import Any

from comfy_api.latest import io

from ..core.assets import Asset
from ..core.config import SandboxSettings, load_settings
from ..core.errors import ConfigError
from ._common import AvatarMesh, model_file, output_path, ui_files
from ._metadata import with_workflow
from ._progress import NodeProgress
from .llm import FORMAT_CHOICES, LLMType, RequirementsType, client_for

log = logging.getLogger("comfy_avatar.nodes")


def _defaults() -> SandboxSettings:
    """The sandbox settings for the widgets' defaults. A broken config must not stop the node from
    registering (ComfyUI lists nodes at start-up): it fails when the node runs, naming the key."""
    try:
        return load_settings().sandbox
    except ConfigError as e:
        log.warning("comfy-avatar: %s; the Blender Executor's widgets show the built-in defaults", e)
        return SandboxSettings()


class AvatarBlenderExecutor(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        sandbox = _defaults()
        return io.Schema(
            node_id="AvatarBlenderExecutor",
            display_name="Blender Executor (sandboxed, repair loop)",
            category="avatar/blender",
            description=(
                "Runs the generated script in its own headless Blender process inside a sandbox (static check, "
                "audit hook, resource limits, no secrets in its environment, a work dir removed after) and "
                "exports the scene. When the script fails, its error and log go back to the coder model for "
                "another attempt. Every attempt is kept in the attempts log."
            ),
            is_output_node=True,
            inputs=[
                io.String.Input(
                    "script",
                    multiline=True,
                    default="",
                    force_input=True,
                    tooltip="Blender Python script from the Script Writer node.",
                ),
                RequirementsType.Input(
                    "requirements", tooltip="The requirements the script implements (sent back with repairs)."
                ),
                io.Combo.Input(
                    "formats",
                    options=FORMAT_CHOICES,
                    default="glb",
                    tooltip="Files to export; 'requirements' uses the requirements' output_formats.",
                ),
                io.Int.Input(
                    "max_attempts",
                    default=sandbox.max_attempts,
                    min=1,
                    max=10,
                    tooltip="Runs in total (the first script plus repairs by the coder model).",
                ),
                io.Float.Input(
                    "timeout_s",
                    default=sandbox.timeout_s,
                    min=5.0,
                    max=3600.0,
                    step=5.0,
                    tooltip="Wall-clock limit per Blender run, seconds; a script past it is killed.",
                ),
                io.String.Input(
                    "filename_prefix",
                    default="prompt_to_asset/asset",
                    tooltip="Output name under ComfyUI's output folder "
                    "(comfy-avatar/<prefix>_00001.glb and .attempts.json).",
                ),
                LLMType.Input(
                    "llm",
                    optional=True,
                    tooltip="Optional coder LLM Endpoint for repairs; without it the config's coder is used.",
                ),
            ],
            outputs=[
                AvatarMesh.Output("asset", tooltip="Handle of the main exported file (GLB when chosen)."),
                io.String.Output("model_file", tooltip="Main file relative to the output folder, for Preview3D."),
                io.String.Output("log", tooltip="Blender log of the last attempt."),
                io.String.Output("attempts_log", tooltip="Every attempt as JSON: script, stage, error, duration."),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],  # the workflow goes into the GLB, like SaveGLB
        )

    @classmethod
    async def execute(
        cls,
        script: str,
        requirements: dict,
        formats: str,
        max_attempts: int,
        timeout_s: float,
        filename_prefix: str,
        llm: dict[str, Any] | None = None,
    ) -> io.NodeOutput:
        from dataclasses import replace
        from pathlib import Path

        from ..core.executor.agent import build_asset, parse_formats
        from ..core.llm.requirements import validate

        req = validate(requirements, "Blender Executor: requirements")
        fmts = parse_formats(formats, req)
        settings = load_settings()
        first = output_path(filename_prefix, fmts[0], settings)
        progress = NodeProgress(max_attempts)
        res = await build_asset(
            req,
            coder=client_for("coder", llm, settings),
            out_dir=first.parent,
            name=first.stem.rsplit("_", 1)[0],
            formats=fmts,
            max_attempts=max_attempts,
            script=script,
            sandbox=replace(settings.sandbox, timeout_s=timeout_s),
            blender=settings.blender,
            on_attempt=lambda a: progress.set(a.number),
        )
        main = res.outputs.get("glb") or next(iter(res.outputs.values()))
        kind = "mesh" if main.endswith(".glb") else Path(main).suffix.lstrip(".")
        asset = with_workflow(
            Asset.from_file(
                main,
                kind,
                files=res.outputs,
                attempts=len(res.attempts),
                attempts_log=res.attempts_log,
                script=res.script_path,
                **{k: res.result.get(k) for k in ("dimensions_m", "triangles", "mesh_objects")},
            ),
            cls.hidden,
        )
        log_text = (
            Path(res.log_path).read_text(encoding="utf-8", errors="replace") if Path(res.log_path).is_file() else ""
        )
        summary = (
            f"{len(res.attempts)} attempt(s); {res.result.get('mesh_objects')} mesh objects, "
            f"{res.result.get('triangles')} triangles, size {res.result.get('dimensions_m')} m"
        )
        files = [*res.outputs.values(), res.attempts_log, res.script_path]
        return io.NodeOutput(
            asset.to_dict(), model_file(main), log_text, res.attempts_json(), ui=ui_files(*files, text=summary)
        )


NODES = [AvatarBlenderExecutor]
