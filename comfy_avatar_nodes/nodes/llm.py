"""Language-model nodes: endpoint override, intent routing, requirements, script writer, answers.

API keys never come from a widget: endpoints name the ENVIRONMENT VARIABLE that holds the
key (config llm.<role>.api_key_env), and the key is read only when a request is sent.

Routing: the Intent node's ``build_prompt`` output carries an ExecutionBlocker unless the
intent is create_3d_model / modify_model, and its ``question`` output one unless the intent
is question. Everything downstream of a blocked output (Requirements -> Script Writer ->
Blender Executor -> Preview3D) is skipped silently, so a question never starts Blender.
(Lazy inputs would not do here: they only let a node skip evaluating one of its own inputs,
while output nodes such as Preview3D are always scheduled; blocking is what stops them.)
"""

from __future__ import annotations

import asyncio
import io as _bytes_io
import json
import re
from typing import Any

from comfy_api.latest import io, ui
from comfy_execution.graph_utils import ExecutionBlocker

from ..core.config import Settings, load_settings
from ..core.errors import AvatarError
from ..core.llm.client import ROLES, Endpoint, LLMClient

LLMType = io.Custom("AVATAR_LLM")
RequirementsType = io.Custom("AVATAR_REQUIREMENTS")

FORMAT_CHOICES = ["glb", "glb+fbx", "glb+blend", "glb+fbx+blend", "fbx", "blend", "requirements"]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_KEYLIKE = re.compile(r"(sk-[A-Za-z0-9_-]{12,}|AKIA[0-9A-Z]{12,}|hf_[A-Za-z0-9]{20,}|Bearer\s)")


def images_to_png(images: Any) -> list[bytes]:
    """ComfyUI IMAGE batch (B,H,W,C floats 0..1) -> one PNG per image."""
    if images is None:
        return []
    import numpy as np
    from PIL import Image

    out = []
    for img in images:
        arr = np.clip(img.cpu().numpy() * 255.0, 0, 255).astype(np.uint8)
        buf = _bytes_io.BytesIO()
        Image.fromarray(arr[..., :4] if arr.shape[-1] in (3, 4) else arr[..., 0]).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def client_for(role: str, llm: dict[str, Any] | None, settings: Settings | None = None) -> LLMClient:
    """The role's client from the llm settings (``settings``: the node run's; loaded when None), or
    from an LLM Endpoint node's handle (no key inside)."""
    llm_settings = (settings or load_settings()).llm
    if llm:
        if llm.get("role") and llm["role"] != role:
            raise AvatarError(
                "llm",
                f"this endpoint is for the {llm['role']!r} role, this node needs {role!r}",
                f"set the LLM Endpoint node's role to {role}",
            )
        ep = Endpoint.from_settings(role, llm_settings, base_url=llm.get("base_url", ""), model=llm.get("model", ""))
        if llm.get("api_key_env"):
            ep = Endpoint(ep.role, ep.base_url, ep.model, llm["api_key_env"])
        return LLMClient(ep, llm=llm_settings)
    return LLMClient.for_role(role, llm_settings)


def _llm_input() -> io.Input:
    return LLMType.Input(
        "llm",
        optional=True,
        tooltip="Optional LLM Endpoint node to override this role's server/model; "
        "without it the pack's config (llm.<role>.*) is used.",
    )


class AvatarLLMEndpoint(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AvatarLLMEndpoint",
            display_name="LLM Endpoint (OpenAI-compatible)",
            category="avatar/llm",
            description=(
                "Points one role (intent, vision, coder) at an OpenAI-compatible server: DashScope "
                "compatible mode, vLLM, Ollama or OpenAI. The API key is NOT entered here: give the "
                "name of the environment variable that holds it."
            ),
            inputs=[
                io.Combo.Input(
                    "role",
                    options=list(ROLES),
                    default="coder",
                    tooltip="Which stage this endpoint serves: intent, vision (requirements) or coder.",
                ),
                io.String.Input(
                    "base_url",
                    default="",
                    tooltip="Server base URL ending in the API prefix, e.g. http://127.0.0.1:11434/v1. "
                    "Empty: use the config (llm.<role>.base_url).",
                ),
                io.String.Input(
                    "model",
                    default="",
                    tooltip="Model name the server serves. Empty: use the config (llm.<role>.model).",
                ),
                io.String.Input(
                    "api_key_env",
                    default="",
                    tooltip="NAME of the environment variable holding the API key (never the key "
                    "itself). Empty: use the config (llm.<role>.api_key_env).",
                ),
            ],
            outputs=[LLMType.Output("llm", tooltip="Endpoint handle (no key inside) for an LLM node's llm input.")],
        )

    @classmethod
    def validate_inputs(cls, role: str, base_url: str, model: str, api_key_env: str) -> bool | str:
        if any(_KEYLIKE.search(v or "") for v in (base_url, model, api_key_env)):
            return (
                "this looks like an API key; keys never go into a node (they would be saved in the workflow): "
                "put it in an environment variable and give that variable's NAME in api_key_env"
            )
        if api_key_env and not _ENV_NAME.match(api_key_env):
            return (
                "api_key_env must be the NAME of an environment variable (like DASHSCOPE_API_KEY), not a key; "
                "put the key itself in that variable"
            )
        if base_url and not base_url.startswith(("http://", "https://")):
            return f"base_url {base_url!r} must start with http:// or https://"
        return True

    @classmethod
    def execute(cls, role: str, base_url: str, model: str, api_key_env: str) -> io.NodeOutput:
        ep = Endpoint.from_settings(role, load_settings().llm, base_url=base_url, model=model)
        return io.NodeOutput({**ep.public(), "api_key_env": api_key_env.strip() or ep.api_key_env})


class AvatarIntent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AvatarIntent",
            display_name="Intent (LLM router)",
            category="avatar/llm",
            description=(
                "Classifies the request as create_3d_model, modify_model, question or other and "
                "rewrites it for the next stage. Only the matching branch runs: build_prompt feeds the "
                "3D branch, question feeds an answer node; the other output is blocked."
            ),
            inputs=[
                io.String.Input(
                    "prompt",
                    multiline=True,
                    default="",
                    tooltip="What you want, e.g. 'a low wooden stool with three legs, 45 cm high'.",
                ),
                io.Image.Input(
                    "images",
                    optional=True,
                    tooltip="Optional sketches or reference images (sent to the model as images).",
                ),
                io.Int.Input(
                    "repairs",
                    default=2,
                    min=0,
                    max=5,
                    tooltip="Extra round-trips when the model's JSON is unusable, before failing.",
                ),
                _llm_input(),
            ],
            outputs=[
                io.String.Output("intent", tooltip="create_3d_model, modify_model, question or other."),
                io.Float.Output("confidence", tooltip="The model's confidence, 0 to 1."),
                io.String.Output("build_prompt", tooltip="Rewritten prompt; blocked unless the intent builds a model."),
                io.String.Output("question", tooltip="The question; blocked unless the intent is question."),
            ],
        )

    @classmethod
    async def execute(cls, prompt: str, repairs: int, images: Any = None, llm: dict | None = None) -> io.NodeOutput:
        from ..core.llm.intent import classify

        pngs = images_to_png(images)
        res = await asyncio.to_thread(classify, client_for("intent", llm), prompt, pngs, repairs=repairs)
        if res.builds:
            build: Any = res.rewritten_prompt
        elif res.intent == "other":  # neither branch runs: say why instead of finishing silently
            build = ExecutionBlocker(
                f"Intent: the request was classified as 'other' ({res.reason or 'no reason given'})"
                f". Fix: ask for a 3D object (e.g. 'a wooden stool') or ask a question"
            )
        else:
            build = ExecutionBlocker(None)
        question = res.rewritten_prompt if res.intent == "question" else ExecutionBlocker(None)
        text = f"{res.intent} ({res.confidence:.2f}): {res.rewritten_prompt}"
        return io.NodeOutput(res.intent, res.confidence, build, question, ui=ui.PreviewText(text))


class AvatarRequirements(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AvatarRequirements",
            display_name="Requirements (vision LLM)",
            category="avatar/llm",
            description=(
                "Turns the prompt and sketches into requirements JSON (object name, parts with shapes "
                "and sizes in metres, materials, style, output formats), checked against the pack's "
                "JSON Schema; invalid answers are sent back to the model for repair."
            ),
            inputs=[
                io.String.Input(
                    "prompt",
                    multiline=True,
                    default="",
                    force_input=True,
                    tooltip="The request, usually the Intent node's build_prompt.",
                ),
                io.Image.Input("images", optional=True, tooltip="Optional sketches or reference images."),
                io.Int.Input(
                    "repairs",
                    default=2,
                    min=0,
                    max=5,
                    tooltip="Extra round-trips for invalid JSON or schema violations before failing.",
                ),
                _llm_input(),
            ],
            outputs=[
                RequirementsType.Output("requirements", tooltip="Validated requirements (a JSON object)."),
                io.String.Output("requirements_json", tooltip="The same requirements as JSON text."),
            ],
        )

    @classmethod
    async def execute(cls, prompt: str, repairs: int, images: Any = None, llm: dict | None = None) -> io.NodeOutput:
        from ..core.llm.requirements import extract

        doc = await asyncio.to_thread(
            extract, client_for("vision", llm), prompt, images_to_png(images), repairs=repairs
        )
        text = json.dumps(doc, indent=2, ensure_ascii=False)
        return io.NodeOutput(doc, text, ui=ui.PreviewText(text))


class AvatarScriptWriter(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AvatarScriptWriter",
            display_name="Script Writer (coder LLM)",
            category="avatar/llm",
            description=(
                "Asks the coder model for a Blender Python script that builds the object in the "
                "requirements. The script is untrusted: the Blender Executor checks and sandboxes it."
            ),
            inputs=[
                RequirementsType.Input("requirements", tooltip="Output of the Requirements node."),
                io.Combo.Input(
                    "formats",
                    options=FORMAT_CHOICES,
                    default="glb",
                    tooltip="Files the executor will export (told to the model so it does not export).",
                ),
                _llm_input(),
            ],
            outputs=[io.String.Output("script", tooltip="The generated Blender Python script.")],
        )

    @classmethod
    async def execute(cls, requirements: dict, formats: str, llm: dict | None = None) -> io.NodeOutput:
        from ..core.executor.agent import parse_formats
        from ..core.executor.sandbox import ALLOWED_IMPORTS
        from ..core.llm.requirements import validate
        from ..core.llm.script_writer import write_script
        from ..core.runtime.blender import find_runtime

        req = validate(requirements, "Script Writer: requirements")
        settings = load_settings()
        runtime = await asyncio.to_thread(find_runtime, settings.blender)
        script = await asyncio.to_thread(
            write_script,
            client_for("coder", llm, settings),
            req,
            allowed_imports=ALLOWED_IMPORTS,
            blender_version=runtime.version,
            formats=parse_formats(formats, req),
        )
        return io.NodeOutput(script, ui=ui.PreviewText(script))


class AvatarAnswer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AvatarAnswer",
            display_name="Answer Question (LLM)",
            category="avatar/llm",
            description="Answers a question routed by the Intent node (runs only when the intent is question).",
            inputs=[
                io.String.Input(
                    "question",
                    multiline=True,
                    default="",
                    force_input=True,
                    tooltip="The Intent node's question output.",
                ),
                _llm_input(),
            ],
            outputs=[io.String.Output("answer", tooltip="The model's answer.")],
            is_output_node=True,
        )

    @classmethod
    async def execute(cls, question: str, llm: dict | None = None) -> io.NodeOutput:
        from ..core.llm.intent import check_prompt

        text = check_prompt(question, stage="Answer")
        client = client_for("intent", llm)
        answer = await asyncio.to_thread(
            client.chat,
            [
                {
                    "role": "system",
                    "content": "You answer questions about making 3D assets with Blender and ComfyUI. "
                    "Be brief and concrete.",
                },
                {"role": "user", "content": text},
            ],
        )
        return io.NodeOutput(answer, ui=ui.PreviewText(answer))


NODES = [AvatarLLMEndpoint, AvatarIntent, AvatarRequirements, AvatarScriptWriter, AvatarAnswer]
