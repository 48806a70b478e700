"""Intent, requirements and script-writer stages against the local OpenAI-compatible server."""

from __future__ import annotations

import copy
import json

import pytest
from _fake_llm import FakeLLM, llm_env, png_bytes

from comfy_avatar_nodes.core.config import load_settings
from comfy_avatar_nodes.core.errors import AvatarError
from comfy_avatar_nodes.core.executor.sandbox import ALLOWED_IMPORTS
from comfy_avatar_nodes.core.llm import intent as intent_mod
from comfy_avatar_nodes.core.llm import requirements as req_mod
from comfy_avatar_nodes.core.llm.client import LLMClient, LLMError
from comfy_avatar_nodes.core.llm.script_writer import extract_code, repair_script, write_script

KEY = "sk-test-stages-1234567890"

STOOL = {
    "object_name": "Stool",
    "summary": "A low wooden stool with a round seat and three legs.",
    "overall_size_m": {"width": 0.35, "depth": 0.35, "height": 0.45},
    "parts": [
        {
            "name": "Seat",
            "shape": "cylinder",
            "size_m": [0.35, 0.35, 0.04],
            "position_m": [0, 0, 0.43],
            "material": "Oak",
        },
        {
            "name": "Leg",
            "shape": "cylinder",
            "size_m": [0.03, 0.03, 0.41],
            "position_m": [0.12, 0, 0.205],
            "count": 3,
            "material": "Oak",
        },
    ],
    "materials": [{"name": "Oak", "color": "#8B5A2B", "roughness": 0.7}],
    "style": "simple, realistic",
    "output_formats": ["glb"],
}


@pytest.fixture
def fake(monkeypatch):
    with FakeLLM(api_key=KEY) as f:
        llm_env(monkeypatch, f)
        yield f


def client(role: str) -> LLMClient:
    c = LLMClient.for_role(role, load_settings().llm)
    c.sleep = lambda s: None
    return c


# ---------------------------------------------------------------- intent


def test_intent_labels_and_rewrites(fake):
    fake.script(
        "intent-model",
        [
            json.dumps(
                {
                    "intent": "create_3d_model",
                    "confidence": 0.93,
                    "rewritten_prompt": "A wooden stool, 45 cm high",
                    "reason": "asks for a model",
                }
            )
        ],
    )
    res = intent_mod.classify(client("intent"), "make me a stool like this", [png_bytes()])
    assert (res.intent, res.confidence, res.builds) == ("create_3d_model", 0.93, True)
    assert res.rewritten_prompt == "A wooden stool, 45 cm high"
    (seen,) = fake.seen
    assert seen.json_mode and seen.images == [("image/png", (32, 24))]
    assert seen.body["messages"][0]["role"] == "system"


def test_intent_bad_label_gets_a_repair_round_trip(fake):
    fake.script(
        "intent-model",
        [
            json.dumps({"intent": "make_thing", "confidence": 2, "rewritten_prompt": ""}),
            json.dumps({"intent": "question", "confidence": 0.8, "rewritten_prompt": "How do I export FBX?"}),
        ],
    )
    res = intent_mod.classify(client("intent"), "how do i export fbx?")
    assert res.intent == "question" and not res.builds
    complaint = fake.seen[1].body["messages"][-1]["content"]
    assert "'intent' must be one of" in complaint and "'confidence'" in complaint


def test_intent_empty_prompt_is_refused_before_any_request(fake):
    with pytest.raises(AvatarError, match=r"^Intent: prompt: is empty"):
        intent_mod.classify(client("intent"), "   ")
    assert fake.seen == []


def test_intent_prose_answers_end_in_a_clear_error(fake):
    fake.always("intent-model", "You would like a chair! Chairs are great.")
    with pytest.raises(LLMError) as ei:
        intent_mod.classify(client("intent"), "a chair", repairs=1)
    assert str(ei.value).startswith("Intent: the model did not return usable JSON after 2 tries")
    assert "Chairs are great" in str(ei.value)


# ---------------------------------------------------------------- requirements


def test_requirements_schema_ships_and_accepts_a_good_document():
    assert req_mod.problems(STOOL) == []
    assert req_mod.schema()["title"].startswith("Requirements")


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d.pop("parts"), "'parts' is a required property"),
        (lambda d: d["parts"][0].update(size_m=[0.3, -1, 0.1]), "parts/0/size_m/1"),
        (lambda d: d["materials"][0].update(color="brown"), "materials/0/color"),
        (lambda d: d.update(output_formats=["obj"]), "output_formats/0"),
        (lambda d: d["parts"][1].update(material="Steel"), "'Steel' is not one of the materials"),
    ],
)
def test_requirements_violations_are_named(mutate, needle):
    doc = copy.deepcopy(STOOL)
    mutate(doc)
    found = req_mod.problems(doc)
    assert any(needle in p for p in found), found
    with pytest.raises(AvatarError, match="does not match the requirements schema"):
        req_mod.validate(doc)


def test_requirements_repairs_invalid_json_then_validates(fake):
    bad = copy.deepcopy(STOOL)
    bad["parts"][0]["size_m"] = [0.35, 0.35]
    fake.script("vision-model", ['```json\n{"object_name": "Stool", \n```', json.dumps(bad), json.dumps(STOOL)])
    doc = req_mod.extract(client("vision"), "a stool", [png_bytes(), png_bytes((10, 200, 10))])
    assert doc == STOOL
    assert len(fake.seen) == 3 and fake.seen[0].images == [("image/png", (32, 24)), ("image/png", (32, 24))]
    # the schema travels in the system prompt; the schema problem travels back on the repair
    assert '"overall_size_m"' in fake.seen[0].body["messages"][0]["content"]
    assert "parts/0/size_m" in fake.seen[2].body["messages"][-1]["content"]


def test_requirements_give_up_naming_the_stage(fake):
    fake.always("vision-model", json.dumps({"object_name": "x"}))
    with pytest.raises(LLMError) as ei:
        req_mod.extract(client("vision"), "a stool", repairs=2)
    msg = str(ei.value)
    assert msg.startswith("Requirements: the model did not return usable JSON after 3 tries")
    assert "required property" in msg and len(fake.seen) == 3


# ---------------------------------------------------------------- script writer


def test_script_writer_sends_the_contract_and_extracts_code(fake):
    fake.script("coder-model", ["Here you go:\n```python\nimport bpy\nbpy.ops.mesh.primitive_cube_add()\n```\nEnjoy!"])
    code = write_script(
        client("coder"), STOOL, allowed_imports=ALLOWED_IMPORTS, blender_version="5.0.1", formats=["glb", "fbx"]
    )
    assert code == "import bpy\nbpy.ops.mesh.primitive_cube_add()\n"
    system = fake.seen[0].body["messages"][0]["content"]
    assert "Blender 5.0.1" in system and "metres" in system and "glb, fbx" in system
    assert "you do not\n  need to export" in system and "no network" in system and "cannot start programs" in system
    assert 'os.environ["COMFY_AVATAR_OUTPUT"]' in system and '["--output", PATH]' in system
    assert "os.path, sys.argv, pathlib and json" in system
    assert '"object_name": "Stool"' in fake.seen[0].body["messages"][1]["content"]


def test_repair_prompt_carries_script_error_and_log_tail(fake):
    fake.script("coder-model", ["```python\nimport bpy\n```"])
    repair_script(
        client("coder"),
        STOOL,
        "import bpy\nbpy.ops.mesh.primitive_cube_ad()\n",
        "the script failed at line 2: AttributeError: primitive_cube_ad",
        "line a\nTraceback line b",
        allowed_imports=ALLOWED_IMPORTS,
        blender_version="5.0.1",
        attempt=2,
    )
    msgs = fake.seen[0].body["messages"]
    assert msgs[2] == {"role": "assistant", "content": "```python\nimport bpy\nbpy.ops.mesh.primitive_cube_ad()\n```"}
    assert "attempt 2" in msgs[3]["content"] and "AttributeError: primitive_cube_ad" in msgs[3]["content"]
    assert "Traceback line b" in msgs[3]["content"]


def test_extract_code_variants():
    assert extract_code("import bpy\n") == "import bpy\n"
    assert extract_code("```py\nx = 1\n```") == "x = 1\n"
    assert extract_code("```python\na = 1\n```\n```python\nb = 2\nc = 3\n```") == "b = 2\nc = 3\n"
    assert extract_code("```python\nx = 1\n") == "x = 1\n"
