"""prompt -> intent -> requirements -> script -> sandboxed Blender -> GLB, with the repair loop.

The language models are the local OpenAI-compatible server (tests/_fake_llm.py) answering
with scripted replies; Blender is real. GLBs are checked with the Khronos glTF-Validator.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from _agent_helpers import contains_bytes, files_under, validate_glb
from _fake_llm import FakeLLM, llm_env, png_bytes
from test_llm_stages import STOOL

from comfy_avatar_nodes.core.config import SandboxSettings, load_settings
from comfy_avatar_nodes.core.errors import AvatarError
from comfy_avatar_nodes.core.executor.agent import AgentError, build_asset, parse_formats
from comfy_avatar_nodes.core.llm import intent as intent_mod
from comfy_avatar_nodes.core.llm import requirements as req_mod
from comfy_avatar_nodes.core.llm.client import LLMClient

KEY = "sk-agent-7a6b5c4d3e2f1a0b"

STOOL_SCRIPT = """```python
import bpy
import math

SEAT_R, SEAT_T, HEIGHT = 0.175, 0.04, 0.45
LEG_R, LEG_SPREAD = 0.015, 0.12

oak = bpy.data.materials.new(name="Oak")
oak.use_nodes = True
bsdf = oak.node_tree.nodes.get("Principled BSDF")
bsdf.inputs["Base Color"].default_value = (0.545, 0.353, 0.169, 1.0)
bsdf.inputs["Roughness"].default_value = 0.7

bpy.ops.mesh.primitive_cylinder_add(vertices=48, radius=SEAT_R, depth=SEAT_T,
                                    location=(0, 0, HEIGHT - SEAT_T / 2))
seat = bpy.context.active_object
seat.name = "Seat"
seat.data.materials.append(oak)
bevel = seat.modifiers.new(name="Bevel", type="BEVEL")
bevel.width = 0.005
bevel.segments = 2

leg_h = HEIGHT - SEAT_T
for i in range(3):
    a = 2 * math.pi * i / 3
    bpy.ops.mesh.primitive_cylinder_add(vertices=16, radius=LEG_R, depth=leg_h,
                                        location=(LEG_SPREAD * math.cos(a), LEG_SPREAD * math.sin(a), leg_h / 2))
    leg = bpy.context.active_object
    leg.name = f"Leg_{i + 1}"
    leg.data.materials.append(oak)
```"""

BROKEN_SCRIPT = """```python
import bpy

bpy.ops.mesh.primitive_cylinder_add(radius=0.175, depth=0.04, location=(0, 0, 0.43))
seat = bpy.context.active_object
seat.name = "Seat"
seat.modifiers.new(name="Bevel", type="BEVELL")
```"""


@pytest.fixture
def fake(monkeypatch):
    with FakeLLM(api_key=KEY) as f:
        llm_env(monkeypatch, f)
        yield f


def client(role: str) -> LLMClient:
    c = LLMClient.for_role(role, load_settings().llm)
    c.sleep = lambda s: None
    return c


def build(req, out: Path, runtime, **kw):
    kw.setdefault("sandbox", SandboxSettings(timeout_s=60, cpu_s=60, memory_mb=4096))
    return asyncio.run(build_asset(req, coder=client("coder"), out_dir=out, name="stool", runtime=runtime, **kw))


def test_empty_script_is_refused_before_blender():
    with pytest.raises(AvatarError, match=r"^Blender executor: script: is empty"):
        asyncio.run(build_asset(STOOL, coder=None, out_dir="/nonexistent", script="  \n"))


def test_parse_formats():
    assert parse_formats("glb+fbx") == ["glb", "fbx"]
    assert parse_formats("requirements", {"output_formats": ["blend", "glb"]}) == ["blend", "glb"]
    with pytest.raises(AvatarError, match="formats: \\['obj'\\] is not a supported choice"):
        parse_formats("glb+obj")


@pytest.mark.blender
def test_prompt_to_validated_glb(blender_runtime, fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake.script(
        "intent-model",
        [
            json.dumps(
                {
                    "intent": "create_3d_model",
                    "confidence": 0.9,
                    "rewritten_prompt": "A 45 cm wooden stool with three legs",
                }
            )
        ],
    )
    fake.script("vision-model", [json.dumps(STOOL)])
    fake.script("coder-model", [STOOL_SCRIPT])
    sketch = png_bytes((120, 80, 40), (64, 64))

    it = intent_mod.classify(client("intent"), "make a wooden stool like my sketch", [sketch])
    assert it.builds
    req = req_mod.extract(client("vision"), it.rewritten_prompt, [sketch])
    res = build(req, tmp_path, blender_runtime, formats=["glb", "fbx"])

    assert [a.ok for a in res.attempts] == [True]
    glb = Path(res.outputs["glb"])
    assert glb.name == "stool_00001.glb" and Path(res.outputs["fbx"]).is_file()
    report = validate_glb(glb)
    assert report["ok"] and report["validator"]["numErrors"] == 0, report
    # the model's requirements reached the coder, and the built object has the asked-for size
    assert '"object_name": "Stool"' in fake.requests_for("coder-model")[0].body["messages"][1]["content"]
    w, d, h = res.result["dimensions_m"]
    assert abs(h - 0.45) < 0.005 and 0.25 < w < 0.36 and res.result["mesh_objects"] == 4
    log = json.loads(Path(res.attempts_log).read_text())
    assert log["attempts"][0]["ok"] and "import bpy" in log["attempts"][0]["script"]
    assert Path(res.script_path).read_text().startswith("import bpy")
    # the sketch went to the vision model as an image part
    assert fake.requests_for("vision-model")[0].images == [("image/png", (64, 64))]
    # no secret anywhere the run wrote or logged
    assert KEY not in caplog.text and not contains_bytes(files_under(tmp_path), KEY)


@pytest.mark.blender
def test_repair_loop_first_script_fails_second_works(blender_runtime, fake, tmp_path):
    fake.script("coder-model", [BROKEN_SCRIPT, STOOL_SCRIPT])
    seen = []
    res = build(STOOL, tmp_path, blender_runtime, formats=["glb"], on_attempt=seen.append)
    assert [a.ok for a in res.attempts] == [False, True] and len(seen) == 2
    first = res.attempts[0]
    assert first.stage == "blender" and "line 6" in first.error and "BEVELL" in first.error
    # the log tail shows the script's own traceback with the failing source line
    assert 'generated_script.py", line 6' in first.log_tail
    assert 'seat.modifiers.new(name="Bevel", type="BEVELL")' in first.log_tail
    # the second coder request carried the failed script, the error and the log tail
    repair = fake.requests_for("coder-model")[1].body["messages"]
    assert "BEVELL" in repair[2]["content"] and "line 6" in repair[3]["content"]
    assert 'type="BEVELL")' in repair[3]["content"].split("Last lines of the Blender log:")[1]
    assert validate_glb(res.outputs["glb"])["ok"]
    log = json.loads(Path(res.attempts_log).read_text())
    assert [a["ok"] for a in log["attempts"]] == [False, True]
    assert all(a["duration_s"] > 0 for a in log["attempts"])


@pytest.mark.blender
def test_advised_and_syntax_error_scripts_are_repaired(blender_runtime, fake, tmp_path):
    """`import os` is fine now (the OS contains the script); what it cannot do (start a process) fails
    in Blender, and the static pass's advice travels back to the coder with the error."""
    fake.script(
        "coder-model",
        [
            "```python\nimport bpy\nimport os\nos.system('ls')\n```",
            "```python\nimport bpy\nfor i in range(3)\n    pass\n```",
            STOOL_SCRIPT,
        ],
    )
    res = build(STOOL, tmp_path, blender_runtime, max_attempts=3)
    a1, a2, a3 = res.attempts
    assert a1.stage == "blender" and "empty scene" in a1.error
    assert "line 3: system(): the sandbox cannot start processes" in a1.error
    assert a2.stage == "static check" and "line 2: syntax error" in a2.error
    assert a3.ok
    assert "the sandbox cannot start processes" in fake.requests_for("coder-model")[1].body["messages"][3]["content"]


@pytest.mark.blender
def test_never_ending_script_ends_in_a_clear_error_with_the_attempts_log(blender_runtime, fake, tmp_path):
    fake.always("coder-model", "```python\nimport bpy\nbpy.ops.mesh.primitive_cube_add()\nwhile True:\n    pass\n```")
    with pytest.raises(AgentError) as ei:
        build(
            STOOL,
            tmp_path,
            blender_runtime,
            max_attempts=2,
            sandbox=SandboxSettings(timeout_s=6, cpu_s=60, memory_mb=4096),
        )
    msg = str(ei.value)
    assert msg.startswith("Blender executor: the script failed in all 2 attempt(s)")
    assert "did not finish within 6 s" in msg and "Attempts log:" in msg
    log = json.loads(ei.value.attempts_log.read_text())
    assert [a["ok"] for a in log["attempts"]] == [False, False]
    assert not list(tmp_path.glob("*.glb"))


@pytest.mark.blender
def test_empty_scene_and_unreachable_coder_name_their_stage(blender_runtime, fake, tmp_path, monkeypatch):
    fake.script("coder-model", ["```python\nimport bpy\nx = 1\n```"])
    monkeypatch.setenv("COMFY_AVATAR__LLM__MAX_RETRIES", "1")
    # the repair request goes to a model the server does not serve -> 404, no retry
    monkeypatch.setenv("COMFY_AVATAR__LLM__CODER__MODEL", "coder-model")
    c = client("coder")
    fake.queues["coder-model"].append({"status": 404, "body": {"error": {"message": "model gone"}}})
    with pytest.raises(AgentError) as ei:
        asyncio.run(
            build_asset(
                STOOL,
                coder=c,
                out_dir=tmp_path,
                name="stool",
                runtime=blender_runtime,
                sandbox=SandboxSettings(timeout_s=60, cpu_s=60, memory_mb=4096),
            )
        )
    msg = str(ei.value)
    assert "could not repair the script" in msg and "HTTP 404" in msg and "model gone" in msg
    log = json.loads(ei.value.attempts_log.read_text())
    assert "empty scene" in log["attempts"][0]["error"]
    assert log["attempts"][1]["stage"] == "script writer"
