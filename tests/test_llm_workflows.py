"""workflows/prompt_to_asset(.api).json: graph shape, routing by intent, secrets.

Unit part: every workflow file (both formats) is exported/converted with a secret configured
and must not carry it; no widget may hold a key. Server part (COMFYUI_DIR set): a real
ComfyUI with the pack runs the workflow against the local OpenAI-compatible server and
real Blender, routes a question away from Blender, and no secret shows up in /object_info,
/history, the server log, the driver's output or any file written.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _agent_helpers import contains_bytes, files_under, validate_glb
from _fake_llm import FakeLLM
from conftest import comfyui_dir, need
from test_agent import BROKEN_SCRIPT, STOOL_SCRIPT
from test_llm_stages import STOOL

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
SECRET = "sk-wf-secret-31415926535897932384"
KEY_ENV = "COMFY_AVATAR_TEST_WF_KEY"
KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_-]{12,}|AKIA[0-9A-Z]{12,}|hf_[A-Za-z0-9]{20,})")


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def load(name: str) -> dict:
    return json.loads((ROOT / "workflows" / name).read_text())


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_files_carry_no_secret(path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    monkeypatch.setenv("COMFY_AVATAR_LLM_API_KEY", SECRET)
    data = json.loads(path.read_text())
    exported = json.dumps(data)  # what Save/Export writes
    assert SECRET not in exported
    assert not KEYLIKE.search(exported), KEYLIKE.search(exported)
    secret_values = {v for k, v in os.environ.items() if re.search(r"KEY|TOKEN|SECRET|PASSW", k) and len(v) >= 8}
    for s in _strings(data):
        assert s not in secret_values, f"{path.name} holds the value of a secret environment variable"
    names = [n for n in _strings(data) if re.fullmatch(r"(?i)api[_-]?key|token|password|secret", n)]
    assert not names, f"{path.name} has key-carrying inputs {names}"


def test_prompt_to_asset_api_graph_routes_by_intent():
    api = load("prompt_to_asset.api.json")
    by_type = {n["class_type"]: (nid, n) for nid, n in api.items()}
    intent_id = by_type["AvatarIntent"][0]
    assert by_type["AvatarRequirements"][1]["inputs"]["prompt"] == [intent_id, 2]  # build_prompt
    assert by_type["AvatarAnswer"][1]["inputs"]["question"] == [intent_id, 3]  # question
    req_id = by_type["AvatarRequirements"][0]
    assert by_type["AvatarScriptWriter"][1]["inputs"]["requirements"] == [req_id, 0]
    ex = by_type["AvatarBlenderExecutor"][1]["inputs"]
    assert ex["script"] == [by_type["AvatarScriptWriter"][0], 0] and ex["requirements"] == [req_id, 0]
    assert ex["formats"] == "glb"
    assert by_type["Preview3D"][1]["inputs"]["model_file"] == [by_type["AvatarBlenderExecutor"][0], 1]


def test_prompt_to_asset_ui_graph_is_consistent_litegraph():
    ui = load("prompt_to_asset.json")
    assert ui["version"] == 0.4
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert ui["last_node_id"] == max(nodes) and ui["last_link_id"] == max(link[0] for link in ui["links"])
    for n in ui["nodes"]:
        assert {"id", "type", "pos", "size", "inputs", "outputs", "widgets_values", "mode"} <= set(n), n["id"]
    for lid, src, sslot, dst, dslot, typ in ui["links"]:
        out = nodes[src]["outputs"][sslot]
        inp = nodes[dst]["inputs"][dslot]
        assert lid in out["links"] and inp["link"] == lid and out["type"] == inp["type"] == typ, lid
    for n in ui["nodes"]:
        for i in n["inputs"]:
            if i.get("link") is not None:
                assert any(link[0] == i["link"] for link in ui["links"])
    types = {n["type"] for n in ui["nodes"]}
    assert {
        "AvatarIntent",
        "AvatarRequirements",
        "AvatarScriptWriter",
        "AvatarBlenderExecutor",
        "Preview3D",
        "AvatarAnswer",
        "LoadImage",
    } <= types
    sketch = next(n for n in ui["nodes"] if n["type"] == "LoadImage")
    assert sketch["mode"] == 4  # optional sketch: bypassed until the user picks one


# ---------------------------------------------------------------- real ComfyUI


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """FakeLLM (with a key) + a ComfyUI whose environment points every role at it."""
    comfyui_dir()
    from comfy_avatar_nodes.core.errors import AvatarError
    from comfy_avatar_nodes.core.runtime.blender import find_runtime

    try:
        find_runtime()
    except AvatarError as e:
        need(False, f"no Blender runtime: {e}")
    from driver.local import LocalComfy

    fake = FakeLLM(api_key=SECRET).start()
    mp = pytest.MonkeyPatch()
    for role, model in (("intent", "intent-model"), ("vision", "vision-model"), ("coder", "coder-model")):
        mp.setenv(f"COMFY_AVATAR__LLM__{role.upper()}__BASE_URL", fake.base_url)
        mp.setenv(f"COMFY_AVATAR__LLM__{role.upper()}__MODEL", model)
        mp.setenv(f"COMFY_AVATAR__LLM__{role.upper()}__API_KEY_ENV", KEY_ENV)
    mp.setenv(KEY_ENV, SECRET)
    mp.setenv("COMFY_AVATAR__LLM__BACKOFF_S", "0.05")
    log = tmp_path_factory.mktemp("comfyui") / "comfyui.log"
    try:
        with LocalComfy(log_path=log) as server:
            yield fake, server
    finally:
        mp.undo()
        fake.stop()


@pytest.fixture(autouse=True)
def _fresh_replies(request):
    """Each test scripts its own replies; nothing left over from the one before."""
    if "served" in request.fixturenames:
        fake, _ = request.getfixturevalue("served")
        fake.queues.clear()
        fake.fallback.clear()


def _client(server):
    from driver.client import ComfyClient

    return ComfyClient(server.url, timeout=60)


@pytest.mark.comfyui
@pytest.mark.blender
def test_nodes_registered_without_secrets(served):
    fake, server = served
    with _client(server) as c:
        info = c.object_info()
    for nid in (
        "AvatarLLMEndpoint",
        "AvatarIntent",
        "AvatarRequirements",
        "AvatarScriptWriter",
        "AvatarAnswer",
        "AvatarBlenderExecutor",
    ):
        assert nid in info, f"{nid} missing:\n{server.log_tail()}"
        assert info[nid]["category"] in ("avatar/llm", "avatar/blender")
    assert SECRET not in json.dumps(info)


@pytest.mark.comfyui
@pytest.mark.blender
def test_prompt_to_asset_through_comfyui_with_repair(served, tmp_path):
    fake, server = served
    fake.script(
        "intent-model",
        [
            json.dumps(
                {
                    "intent": "create_3d_model",
                    "confidence": 0.95,
                    "rewritten_prompt": "A 45 cm oak stool with three legs",
                }
            )
        ],
    )
    fake.script("vision-model", [json.dumps(STOOL)])
    fake.script("coder-model", [BROKEN_SCRIPT, STOOL_SCRIPT])
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "driver",
            "run",
            str(ROOT / "workflows" / "prompt_to_asset.api.json"),
            "--out",
            str(out),
            "--server",
            server.url,
            "--progress",
            "log",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr + server.log_tail(80)
    files = [Path(line) for line in proc.stdout.splitlines() if line.strip()]
    glbs = [f for f in files if f.suffix == ".glb"]
    assert len(glbs) == 1 and validate_glb(glbs[0])["ok"]
    attempts = json.loads(next(f for f in files if f.name.endswith(".attempts.json")).read_text())
    assert [a["ok"] for a in attempts["attempts"]] == [False, True]
    assert "BEVELL" in attempts["attempts"][0]["error"]
    assert SECRET not in proc.stdout + proc.stderr
    assert not contains_bytes(files_under(out), SECRET)


@pytest.mark.comfyui
@pytest.mark.blender
def test_ui_workflow_runs_and_preview3d_gets_the_glb(served):
    from driver.convert import to_api_prompt

    fake, server = served
    fake.script(
        "intent-model", [json.dumps({"intent": "create_3d_model", "confidence": 0.9, "rewritten_prompt": "stool"})]
    )
    fake.script("vision-model", [json.dumps(STOOL)])
    fake.script("coder-model", [STOOL_SCRIPT])
    ui = load("prompt_to_asset.json")
    next(n for n in ui["nodes"] if n["type"] == "AvatarIntent")["widgets_values"][0] = "a stool (editor format)"
    with _client(server) as c:
        prompt = to_api_prompt(ui, c.object_info)
        assert "1" not in prompt  # the bypassed sketch loader is not part of the prompt
        res = c.run(prompt, timeout=600)
    preview_id = next(k for k, v in prompt.items() if v["class_type"] == "Preview3D")
    model_file = res.ui_outputs[preview_id]["result"][0]
    assert model_file.startswith("comfy-avatar/prompt_to_asset/asset_") and model_file.endswith(".glb")
    glb = server.base_dir / "output" / model_file
    assert validate_glb(glb)["ok"]


@pytest.mark.comfyui
@pytest.mark.blender
def test_a_question_never_starts_blender(served):
    fake, server = served
    before_coder = len(fake.requests_for("coder-model"))
    before_vision = len(fake.requests_for("vision-model"))
    fake.script(
        "intent-model",
        [
            json.dumps(
                {"intent": "question", "confidence": 0.97, "rewritten_prompt": "How do I export a stool as FBX?"}
            ),
            "Pick glb+fbx in the Blender Executor's formats.",
        ],
    )
    api = load("prompt_to_asset.api.json")
    api["2"]["inputs"]["prompt"] = "how do I get an FBX of my stool?"
    outputs = server.base_dir / "output"
    before_files = set(files_under(outputs)) if outputs.exists() else set()
    log_offset = server.log_path.stat().st_size
    with _client(server) as c:
        res = c.run(api, timeout=300)
    answer_id = next(k for k, v in api.items() if v["class_type"] == "AvatarAnswer")
    assert res.ui_outputs[answer_id]["text"] == ["Pick glb+fbx in the Blender Executor's formats."]
    executor_id = next(k for k, v in api.items() if v["class_type"] == "AvatarBlenderExecutor")
    assert executor_id not in res.ui_outputs
    assert len(fake.requests_for("coder-model")) == before_coder
    assert len(fake.requests_for("vision-model")) == before_vision
    assert set(files_under(outputs)) == before_files  # no Blender job, no new file
    with open(server.log_path, "rb") as f:
        f.seek(log_offset)
        assert b"blender job" not in f.read()  # the runner logs every Blender start


@pytest.mark.comfyui
@pytest.mark.blender
def test_bad_inputs_end_in_messages_naming_the_stage(served):
    from driver.errors import JobFailed

    fake, server = served
    api = load("prompt_to_asset.api.json")
    api["2"]["inputs"]["prompt"] = "   "
    with _client(server) as c, pytest.raises(JobFailed) as ei:
        c.run(api, timeout=120)
    assert "Intent: prompt: is empty" in str(ei.value)
    fake.always("intent-model", "Sure, a stool sounds lovely!")
    api["2"]["inputs"]["prompt"] = "a stool"
    with _client(server) as c, pytest.raises(JobFailed) as ei:
        c.run(api, timeout=120)
    assert "Intent: the model did not return usable JSON" in str(ei.value)
    fake.fallback.clear()
    fake.script(
        "intent-model",
        [json.dumps({"intent": "other", "confidence": 0.8, "rewritten_prompt": "hello", "reason": "a greeting"})],
    )
    api["2"]["inputs"]["prompt"] = "hello there"
    with _client(server) as c, pytest.raises(JobFailed) as ei:
        c.run(api, timeout=120)
    assert "classified as 'other' (a greeting)" in str(ei.value)


@pytest.mark.comfyui
@pytest.mark.blender
def test_no_secret_in_history_log_or_outputs(served):
    """Runs last in this module: everything the server kept or wrote after the runs above."""
    fake, server = served
    with _client(server) as c:
        history = c.history()
    assert history, "the runs above should be in /history"
    assert SECRET not in json.dumps(history)
    assert SECRET not in server.log_path.read_text(errors="replace")
    assert not contains_bytes(files_under(server.base_dir / "output"), SECRET)
    assert (
        not contains_bytes(files_under(server.base_dir / "temp"), SECRET)
        if (server.base_dir / "temp").exists()
        else True
    )
    # the key did travel to the LLM server (so the check above is not vacuous)
    assert any(s.headers.get("authorization") == f"Bearer {SECRET}" for s in fake.seen)


@pytest.mark.comfyui
def test_the_real_editor_loads_the_ui_workflow_and_queues_the_api_twin(served):
    """Drag-and-drop check: ComfyUI's own editor (headless Chromium) loads prompt_to_asset.json
    with every node known and builds exactly prompt_to_asset.api.json from it."""
    import shutil

    need(
        bool(shutil.which("chromium") or shutil.which("chromium-browser")),
        "chromium is not installed (apt-get install -y chromium): no headless editor",
    )
    from _editor_oracle import EditorOracle

    _, server = served
    api = load("prompt_to_asset.api.json")
    with EditorOracle(server.url) as editor:
        got = editor.convert(load("prompt_to_asset.json"))
        types = editor.evaluate("JSON.stringify(app.graph._nodes.map(n => [n.type, !!n.has_errors]))")
    assert sorted(got) == sorted(api)
    for nid, node in api.items():
        assert got[nid]["class_type"] == node["class_type"]
        assert got[nid]["inputs"] == node["inputs"], nid
    assert not [t for t, bad in json.loads(types) if bad]
