"""driver.convert.ui_to_api against what the real ComfyUI editor queues.

Golden data (tests/data/convert/) was produced by the editor itself, in headless
Chromium (tests/_editor_oracle.py): `app.loadGraphData(workflow)` then
`app.graphToPrompt()`.
- editor_cases.json: graphs built with the editor's own API, one per feature
  (primitives, reroutes, bypass, mute, notes, linked widgets, seeds, uploads,
  subgraphs, dynamic prompts, filename replacements); frontend 1.27.10 (ComfyUI 0.3.64).
- editor_templates.json.gz: every workflow template shipped with ComfyUI 0.3.64
  (comfyui_workflow_templates 0.1.95) whose nodes are all core nodes.
- editor_0.8.0/: workflows SAVED by the frontend 1.35.9 that ComfyUI 0.8.0 ships
  (tests/_record_editor_saves.py): subgraphs with promoted widgets and proxyWidgets,
  two instances of one subgraph, nested subgraphs, group-node definitions, inputs a
  node does not declare, editor titles; each as Save and as Export write it, with the
  prompt the 0.8.0 editor queues after loading it, the object_info it saw, and what
  the 0.3.64 editor queues for the same saves (replay_0.3.64.json).
With COMFYUI_DIR set and chromium installed, the cases and the saves are re-run
through the live editor, so a newer frontend that changes behaviour shows up here.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import random
import shutil
from pathlib import Path

import pytest
from conftest import NOT_APPLICABLE, comfyui_dir, need

from driver.convert import (
    ConversionError,
    editor_titles,
    merge_inputs,
    process_dynamic_prompt,
    required_node_types,
    to_api_prompt,
    ui_to_api,
    widget_layout,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "convert"


def _load(name: str) -> dict:
    path = DATA / name
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


OBJECT_INFO = _load("object_info_core.json.gz")["nodes"]
CASES = _load("editor_cases.json")["cases"]
TEMPLATES = _load("editor_templates.json.gz")["cases"]


def assert_same_prompt(mine: dict, editor: dict) -> None:
    """Same nodes, and per node the same class_type, inputs and _meta (the title the
    editor gives it: its own, else the editor's name for the class)."""
    assert sorted(mine) == sorted(editor), "different node sets"
    for nid, exp in editor.items():
        got = mine[nid]
        assert got["class_type"] == exp["class_type"], nid
        assert got["inputs"] == exp["inputs"], f"node {nid} ({exp['class_type']}) inputs differ"
        assert got["_meta"] == exp["_meta"], f"node {nid} ({exp['class_type']}) title differs"


OLD_FRONTEND = "1.27.10"  # the editor that made editor_cases.json and editor_templates.json.gz


@pytest.mark.parametrize("name", sorted(CASES))
def test_editor_built_feature_graphs(name: str) -> None:
    case = CASES[name]
    assert_same_prompt(ui_to_api(case["workflow"], OBJECT_INFO, frontend_version=OLD_FRONTEND), case["api"])


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_shipped_templates_match_the_editor(name: str) -> None:
    case = TEMPLATES[name]
    assert_same_prompt(ui_to_api(case["workflow"], OBJECT_INFO, frontend_version=OLD_FRONTEND), case["api"])


def test_feature_cases_cover_what_the_editor_does() -> None:
    # The golden data really exercises each feature (guards against a silent re-record).
    assert CASES["bypass_passthrough"]["api"]["4"]["inputs"]["images"] == ["1", 0]
    assert "mask" not in CASES["bypass_type_mismatch"]["api"]["3"]["inputs"]
    assert CASES["primitive_two_targets"]["api"]["1"]["inputs"]["height"] == 96
    assert CASES["linked_widget_wins"]["api"]["2"]["inputs"]["width"] == ["1", 0]
    assert CASES["subgraph_promoted_widget"]["api"]["5:2"]["inputs"]["width"] == 77
    assert "6:5:2" in CASES["subgraph_nested"]["api"]
    assert "control_after_generate" not in CASES["seed_controls"]["api"]["1"]["inputs"]
    assert "upload" not in CASES["load_image_upload"]["api"]["1"]["inputs"]
    assert sum(1 for t in TEMPLATES.values() if t["workflow"].get("definitions")) >= 3


# --------------------------------------------------------------------------- saves by the 0.8.0 editor

SAVES = DATA / "editor_0.8.0"
SAVES_INDEX = json.loads((SAVES / "index.json").read_text(encoding="utf-8"))
SAVES_FRONTEND = SAVES_INDEX["_source"]["frontend"]  # 1.35.9 (ComfyUI 0.8.0)
SAVES_INFO = _load("editor_0.8.0/object_info.json.gz")["nodes"]
REPLAY = json.loads((SAVES / "replay_0.3.64.json").read_text(encoding="utf-8"))
REPLAY_FRONTEND = REPLAY["_source"]["frontend"]  # 1.27.10 (ComfyUI 0.3.64)
REPLAY_INFO = _load("editor_0.8.0/object_info_0.3.64.json.gz")["nodes"]
FORMS = ("saved", "exported")  # as the editor's Save writes it / as Export (and PNG metadata) do
TEMPLATES_080 = _load("editor_0.8.0/templates.json.gz")["cases"]  # shipped with 0.8.0, core nodes only
SAVE_CASES = sorted(SAVES_INDEX["cases"])
ABSENT = "<absent>"


def _save(case: str, form: str) -> dict:
    return json.loads((SAVES / f"{case}.{form}.json").read_text(encoding="utf-8"))


def _editor(case: str) -> dict:
    """{"live": prompt of the graph as built, "saved"/"exported": prompt after loading that save}."""
    return json.loads((SAVES / f"{case}.api.json").read_text(encoding="utf-8"))


def _input_diffs(editor: dict, mine: dict) -> set[tuple[str, str, str, str]]:
    """(class_type, input, editor's value, converter's value) per input that differs (JSON text)."""
    out = set()
    for nid in set(editor) | set(mine):
        a, b = (editor.get(nid) or {}).get("inputs", {}), (mine.get(nid) or {}).get("inputs", {})
        ctype = (editor.get(nid) or mine.get(nid))["class_type"]
        for name in set(a) | set(b):
            va = json.dumps(a[name]) if name in a else ABSENT
            vb = json.dumps(b[name]) if name in b else ABSENT
            if va != vb:
                out.add((ctype, name, va, vb))
    return out


# Where the editor itself is wrong, the converter does what the editor means to do; the
# editor's wrong values are pinned here, so an editor that fixes them shows up as a failure.
# case -> {(class_type, input, editor's value, converter's value)}.
EDITOR_WRONG: dict[str, set[tuple[str, str, str, str]]] = {
    # SaveImage carries two widget inputs a JS extension added (extra_a, extra_b) that it
    # does not declare. Loading a save, the editor removes widget inputs whose widget the
    # node lacks (widgetInputs' onGraphConfigured), but it removes them from the very list
    # it is iterating, so it skips the input after each one it removes: extra_a goes,
    # extra_b stays and is sent to a node that never declared it (frontend 1.27.10 and
    # 1.35.9 alike). The converter drops both.
    "undeclared_inputs": {("SaveImage", "extra_b", '["4", 0]', ABSENT)},
}
# The 0.3.64 editor (frontend 1.27.10) on these 0.8.0 saves, in addition:
OLD_EDITOR_WRONG: dict[str, set[tuple[str, str, str, str]]] = {
    **EDITOR_WRONG,
    # 1.27.10 predates properties.proxyWidgets. It reads the instance's widgets_values in
    # the order of the subgraph's inputs (text, ckpt_name, cfg), but the 1.35.9 save keeps
    # them in the proxyWidgets order the panel shows (ckpt_name, the proxied seed (null),
    # text, the proxied negative text (null), cfg): the model name lands in the prompt
    # text, the prompt text in cfg, null in ckpt_name; the server accepts the first two.
    # The converter reads proxyWidgets as 1.35.9 does.
    "sg_proxy_order": {
        ("CLIPTextEncode", "text", '"flow.safetensors"', '"an owl at dusk"'),
        ("KSampler", "cfg", '"an owl at dusk"', "4.5"),
        ("CheckpointLoaderSimple", "ckpt_name", "null", '"flow.safetensors"'),
    },
}


def _check_against_editor(
    case: str, form: str, editor: dict, object_info: dict, frontend: str | None, wrong: dict[str, set]
) -> None:
    save = _save(case, form)
    missing = sorted(required_node_types(save) - set(object_info))
    if missing:
        # A server without these node types (0.3.64 for the ComfyUI 0.8 nodes): its editor
        # still queues them, without a class_type, which the server refuses; the converter
        # says which type is missing and what to do.
        assert any("class_type" not in v for v in editor.values()), f"{case}/{form}"
        with pytest.raises(ConversionError, match=rf"node type '({'|'.join(missing)})': not in the server's"):
            ui_to_api(save, object_info, frontend_version=frontend)
        return
    if case == "group_node_used":
        # The editor expands a used group node into its inner nodes ("5:0", "5:1"); the
        # converter refuses it (group nodes are deprecated), saying what to do instead.
        assert any(":" in nid for nid in editor), "the editor should have expanded the group node"
        with pytest.raises(ConversionError, match=r"node 5: is a group node.*Fix: .*Convert to Subgraph"):
            ui_to_api(save, object_info, frontend_version=frontend)
        return
    mine = ui_to_api(save, object_info, frontend_version=frontend)
    assert sorted(mine) == sorted(editor), f"{case}/{form}: different node sets"
    for nid, exp in editor.items():
        assert mine[nid]["class_type"] == exp["class_type"], f"{case}/{form} node {nid}"
        assert mine[nid]["_meta"] == exp["_meta"], f"{case}/{form} node {nid} ({exp['class_type']}) title"
    assert _input_diffs(editor, mine) == wrong.get(case, set()), f"{case}/{form}: inputs differ from the editor's"


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", SAVE_CASES)
def test_saves_by_the_0_8_0_editor_convert_as_it_queues_them(case: str, form: str) -> None:
    """ui_to_api(save, the object_info the editor saw) == the prompt the 0.8.0 editor queues
    after loading that save (class_type, inputs and titles per node)."""
    _check_against_editor(case, form, _editor(case)[form], SAVES_INFO, SAVES_FRONTEND, EDITOR_WRONG)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", SAVE_CASES)
def test_saves_by_the_0_8_0_editor_convert_for_a_0_3_64_server(case: str, form: str) -> None:
    """The same saves, for ComfyUI 0.3.64 (its object_info) against what its editor
    (frontend 1.27.10) queues for them. It loads every one of these saves; a save it
    could not load is recorded with the editor's error and skipped here, not faked."""
    got = REPLAY["cases"][case][form]
    if "error" in got:
        pytest.skip(f"{NOT_APPLICABLE} the 0.3.64 editor cannot load this 0.8.0 save: {got['error'][:200]}")
    _check_against_editor(case, form, got, REPLAY_INFO, REPLAY_FRONTEND, OLD_EDITOR_WRONG)


@pytest.mark.parametrize("name", sorted(TEMPLATES_080))
def test_templates_shipped_with_0_8_0_match_its_editor(name: str) -> None:
    """Every workflow template ComfyUI 0.8.0 ships (comfyui_workflow_templates 0.7.67) that
    needs only core nodes, saved by newer editors (many with subgraphs and proxyWidgets)."""
    case = TEMPLATES_080[name]
    assert_same_prompt(ui_to_api(case["workflow"], SAVES_INFO, frontend_version=SAVES_FRONTEND), case["api"])


def test_saves_round_trip_in_the_editor() -> None:
    """Loading a save gives the editor the prompt of the graph as built, so the saves carry
    everything the golden prompts depend on; the exceptions are the editor's own."""
    for case in SAVE_CASES:
        rec = _editor(case)
        for form in FORMS:
            diffs = {(c, n) for c, n, _, _ in _input_diffs(rec["live"], rec[form])}
            if case == "undeclared_inputs":
                # The graph as built has the extension's widget inputs; the reload drops one (above).
                assert diffs == {("SaveImage", "extra_a")}, form
            elif case == "v3_dynamic_widgets":
                # The editor loses PreviewAny's Markdown toggle on reload: LGraphNode.serialize
                # writes widgets_values by widget index (null for the two preview widgets, which
                # are not saved), configure reads them in order skipping those, so the toggle
                # saved at index 2 is read from index 0 (null). The converter reads the save as
                # the editor does; PreviewAny does not declare previewMode, the server ignores it.
                assert diffs == {("PreviewAny", "previewMode")}, form
            else:
                assert not diffs, f"{case}/{form}: {diffs}"
            titles = {nid for nid in rec["live"] if rec["live"][nid]["_meta"] != rec[form].get(nid, {}).get("_meta")}
            # An empty title is not saved (LGraphNode.serialize skips it): the reload shows the class title.
            assert titles == ({"12"} if case == "titles" else set()), f"{case}/{form}"


def test_saves_exercise_what_broke_the_converter() -> None:
    # Guards against a silent re-record: each save still has the shape the classes need.
    def instances(wf: dict) -> list[dict]:
        defs = {d["id"] for d in wf["definitions"]["subgraphs"]}
        return [n for n in wf["nodes"] if n["type"] in defs]

    def first_def(wf: dict) -> dict:
        return wf["definitions"]["subgraphs"][0]

    # proxyWidgets order != inputs order, proxied widgets' slots are null; Export drops unlinked widget inputs.
    inst = instances(_save("sg_proxy_order", "saved"))[0]
    assert [w for _, w in inst["properties"]["proxyWidgets"]][:3] == ["ckpt_name", "seed", "text"]
    assert inst["widgets_values"][1] is None
    exported = instances(_save("sg_proxy_order", "exported"))[0]
    assert not {"text", "ckpt_name"} & {i["name"] for i in exported["inputs"]}
    # The promoted widget is the subgraph's first input, and Export leaves it out of the instance.
    wf = _save("sg_widget_input_first", "exported")
    assert first_def(wf)["inputs"][0]["name"] == "width"
    assert "width" not in {i["name"] for i in instances(wf)[0]["inputs"]}
    # Two instances of one subgraph with different promoted steps; the inner widget holds one of them.
    a, b = instances(_save("sg_two_instances", "exported"))
    assert a["type"] == b["type"] and a["widgets_values"] != b["widgets_values"]
    # A subgraph that contains an instance of another, both promoting steps.
    wf = _save("sg_nested_promoted", "exported")
    defs = {d["id"]: d for d in wf["definitions"]["subgraphs"]}
    assert any(n["type"] in defs for d in defs.values() for n in d["nodes"])
    # An unused group-node definition; a used one.
    wf = _save("group_node_unused", "saved")
    assert wf["extra"]["groupNodes"] and not any(n["type"].startswith("workflow>") for n in wf["nodes"])
    assert any(n["type"] == "workflow>InvertBlur" for n in _save("group_node_used", "saved")["nodes"])
    # resolution_steps: declared by 0.8.0, not by 0.3.64, whose editor drops the linked input.
    assert "resolution_steps" in SAVES_INFO["ImageScaleToTotalPixels"]["input"]["required"]
    assert "resolution_steps" not in REPLAY_INFO["ImageScaleToTotalPixels"]["input"]["required"]
    old = REPLAY["cases"]["undeclared_inputs"]["saved"]
    assert (
        "resolution_steps"
        not in next(v for v in old.values() if v["class_type"] == "ImageScaleToTotalPixels")["inputs"]
    )
    # A dynamic combo on a non-default option: that option's widgets follow it in widgets_values.
    rz = next(n for n in _save("v3_dynamic_widgets", "saved")["nodes"] if n["type"] == "ResizeImageMaskNode")
    assert rz["widgets_values"][:2] == ["scale dimensions", 300]
    assert sum(1 for t in TEMPLATES_080.values() if t["workflow"].get("definitions", {}).get("subgraphs")) >= 40
    # Titles: null display_name; an editor name that is not /object_info's display_name.
    assert SAVES_INFO["ImageBlur"]["display_name"] is None
    mahiro = next(v for v in _editor("titles")["saved"].values() if v["class_type"] == "Mahiro")
    assert mahiro["_meta"]["title"] != SAVES_INFO["Mahiro"]["display_name"]


@pytest.mark.comfyui
def test_live_editor_agrees_on_the_0_8_0_saves() -> None:
    """Re-run the recorded saves through the editor of the ComfyUI in COMFYUI_DIR (0.8.0 or
    0.3.64 in CI) and compare with the converter on that server's object_info."""
    comfyui_dir()
    need(
        bool(shutil.which("chromium") or shutil.which("chromium-browser")),
        "chromium is not installed (apt-get install -y chromium): no headless editor",
    )
    import requests

    from tests._driver_helpers import shared_comfy
    from tests._editor_oracle import EditorOracle

    url = shared_comfy().url
    info = requests.get(url + "/object_info", timeout=60).json()
    frontend = requests.get(url + "/system_stats", timeout=30).json()["system"].get("required_frontend_version")
    major_minor = tuple(int(x) for x in str(frontend).split(".")[:2])
    # 1.35.9 reads proxyWidgets; 1.27.10 predates them (see OLD_EDITOR_WRONG).
    wrong = EDITOR_WRONG if major_minor >= (1, 35) else OLD_EDITOR_WRONG
    with EditorOracle(url) as oracle:
        for case in SAVE_CASES:
            for form in FORMS:
                editor = oracle.convert(_save(case, form))
                _check_against_editor(case, form, editor, info, frontend, wrong)


def test_promoted_widgets_follow_the_subgraph_inputs_by_name() -> None:
    """Unit view of the two subgraph fixes on a 0.8.0 Export: each instance keeps its own
    promoted value, and a subgraph input missing from the saved inputs is a widget value,
    never the saved input that happens to sit at the same position."""
    two = ui_to_api(_save("sg_two_instances", "exported"), SAVES_INFO)
    steps = sorted(v["inputs"]["steps"] for v in two.values() if v["class_type"] == "KSampler")
    assert steps == [21, 33]
    first = ui_to_api(_save("sg_widget_input_first", "exported"), SAVES_INFO)
    latent = next(v for v in first.values() if v["class_type"] == "EmptyLatentImage")
    assert latent["inputs"]["width"] == 704


def test_merge_inputs_takes_saved_inputs_by_name() -> None:
    declared = [("width", "INT"), ("model", "MODEL")]
    saved = [{"name": "model", "type": "MODEL", "link": 4}, {"name": "extra", "type": "IMAGE", "link": 5}]
    assert merge_inputs(declared, saved) == [
        {"name": "width", "type": "INT", "link": None},
        {"name": "model", "type": "MODEL", "link": 4},
        {"name": "extra", "type": "IMAGE", "link": 5},
    ]
    # The last saved input of a name wins, as in the editor's Map by name.
    dup = [{"name": "model", "type": "MODEL", "link": 4}, {"name": "model", "type": "MODEL", "link": None}]
    assert merge_inputs(declared, dup)[1]["link"] is None


def test_editor_titles_by_frontend_release() -> None:
    assert editor_titles("1.27.10")["ImageBlur"] == "Image Blur"
    assert "ImageBlur" not in editor_titles("1.35.9")  # 1.35's locale names it ImageBlur
    assert editor_titles(None) == editor_titles("1.35.9") == editor_titles("1.40.0")
    assert editor_titles("1.30.2") == editor_titles("1.27.10")
    assert editor_titles("0.9") == editor_titles("not a version") == editor_titles("1.35.9")


def test_bad_proxy_widgets_are_a_clear_error() -> None:
    wf = _save("sg_txt2img_promoted", "saved")
    inst = next(n for n in wf["nodes"] if n["type"] == wf["definitions"]["subgraphs"][0]["id"])
    inst["properties"]["proxyWidgets"] = [["-1"]]
    with pytest.raises(ConversionError, match=r"proxyWidgets is not a list of \[node id, widget name\].*Fix:"):
        ui_to_api(wf, SAVES_INFO)


# --------------------------------------------------------------------------- workflows/


def _pairs() -> list[Path]:
    return sorted(
        p
        for p in (ROOT / "workflows").glob("*.json")
        if not p.name.endswith(".api.json") and p.with_name(p.stem + ".api.json").exists()
    )


def _pack_object_info() -> tuple[dict, str]:
    """object_info for the pack workflows: live from a real ComfyUI with the pack when
    COMFYUI_DIR is set, else the recording in tests/data/convert/object_info_pack.json."""
    if os.environ.get("COMFYUI_DIR"):
        import requests

        from tests._driver_helpers import shared_comfy

        return requests.get(shared_comfy().url + "/object_info", timeout=60).json(), "live server"
    return _load("object_info_pack.json")["nodes"], "recording"


@pytest.mark.parametrize("ui_path", _pairs(), ids=lambda p: p.name)
def test_workflow_pairs_convert_to_their_api_twin(ui_path: Path) -> None:
    ui = json.loads(ui_path.read_text())
    api = json.loads(ui_path.with_name(ui_path.stem + ".api.json").read_text())
    info, source = _pack_object_info()
    missing = sorted(t for t in required_node_types(ui) if t not in info)
    if missing:
        pytest.skip(
            f"object_info ({source}) lacks {missing}: set COMFYUI_DIR to convert against a "
            "live server, or re-record: python tests/_driver_helpers.py record-object-info"
        )
    got = ui_to_api(ui, info)
    assert sorted(got) == sorted(api)
    for nid, node in api.items():
        assert got[nid]["class_type"] == node["class_type"], nid
        assert got[nid]["inputs"] == node["inputs"], f"{ui_path.name} node {nid} ({node['class_type']})"


def test_there_is_at_least_one_workflow_pair() -> None:
    assert _pairs(), "workflows/ should hold <name>.json + <name>.api.json pairs"


@pytest.mark.comfyui
def test_recorded_pack_object_info_matches_the_live_server() -> None:
    comfyui_dir()
    info, _ = _pack_object_info()
    recorded = _load("object_info_pack.json")["nodes"]
    # The pack's own nodes must match on every ComfyUI version; core nodes (Preview3D, LoadImage...)
    # differ between releases and were recorded from one (the offline conversion test only needs that one).
    ours = [name for name in recorded if name.startswith("Avatar")]
    assert ours, "the recording holds none of the pack's nodes"
    for name in ours:
        assert info.get(name, {}).get("input") == recorded[name]["input"], (
            f"{name} changed since the recording: python tests/_driver_helpers.py record-object-info"
        )


# --------------------------------------------------------------------------- live editor


@pytest.mark.comfyui
def test_live_editor_agrees_with_the_converter() -> None:
    """Re-run the feature graphs through the editor of the ComfyUI in COMFYUI_DIR."""
    comfyui_dir()
    need(
        bool(shutil.which("chromium") or shutil.which("chromium-browser")),
        "chromium is not installed (apt-get install -y chromium): no headless editor",
    )
    import requests

    from tests._driver_helpers import shared_comfy
    from tests._editor_oracle import EditorOracle, build_cases

    url = shared_comfy().url
    info = requests.get(url + "/object_info", timeout=60).json()
    with EditorOracle(url) as oracle:
        cases = build_cases(oracle)
    frontend = requests.get(url + "/system_stats", timeout=30).json()["system"].get("required_frontend_version")
    for case in cases.values():
        assert_same_prompt(ui_to_api(case["workflow"], info, frontend_version=frontend), case["api"])


# --------------------------------------------------------------------------- unit behaviour


def _node(
    nid: int,
    type_: str,
    widgets: list | None = None,
    inputs: list | None = None,
    outputs: list | None = None,
    mode: int = 0,
    **extra,
) -> dict:
    return {
        "id": nid,
        "type": type_,
        "mode": mode,
        "inputs": inputs or [],
        "outputs": outputs or [],
        "widgets_values": widgets or [],
        **extra,
    }


def test_widget_layout_drops_control_values_and_upload_buttons() -> None:
    ks = [(w.name, w.in_prompt) for w in widget_layout("KSampler", OBJECT_INFO)]
    assert ks[:3] == [("seed", True), ("control_after_generate", False), ("steps", True)]
    li = [(w.name, w.in_prompt) for w in widget_layout("LoadImage", OBJECT_INFO)]
    assert li == [("image", True), ("upload", False)]


def test_missing_widget_values_take_object_info_defaults_and_lists_are_wrapped() -> None:
    info = {
        **OBJECT_INFO,
        "ListNode": {
            "input": {"required": {"xs": ["INT", {"default": 3}], "s": ["STRING", {}]}},
            "input_order": {"required": ["xs", "s"]},
            "output": [],
        },
    }
    wf = {"nodes": [_node(1, "EmptyImage", [64]), _node(2, "ListNode", [[1, 2]])], "links": []}
    api = ui_to_api(wf, info)
    assert api["1"]["inputs"] == {"width": 64, "height": 512, "batch_size": 1, "color": 0}
    assert api["2"]["inputs"] == {"xs": {"__value__": [1, 2]}, "s": ""}


def test_unknown_node_type_names_node_and_fix() -> None:
    wf = {"nodes": [_node(7, "NoSuchNode")], "links": []}
    with pytest.raises(ConversionError, match=r"NoSuchNode.*Fix: install"):
        ui_to_api(wf, OBJECT_INFO)


def test_unknown_type_is_fine_when_muted() -> None:
    wf = {"nodes": [_node(7, "NoSuchNode", mode=2), _node(8, "EmptyImage", [8, 8, 1, 0])], "links": []}
    assert list(ui_to_api(wf, OBJECT_INFO)) == ["8"]


def test_dangling_link_and_group_nodes_are_clear_errors() -> None:
    wf = {"nodes": [_node(1, "PreviewImage", inputs=[{"name": "images", "type": "IMAGE", "link": 99}])], "links": []}
    with pytest.raises(ConversionError, match="link 99"):
        ui_to_api(wf, OBJECT_INFO)
    # A group-node definition nothing uses is ignored, as the editor ignores it; a used one is refused.
    unused = {"nodes": [_node(8, "EmptyImage", [8, 8, 1, 0])], "links": [], "extra": {"groupNodes": {"g": {}}}}
    assert list(ui_to_api(unused, OBJECT_INFO)) == ["8"]
    used = {**unused, "nodes": [*unused["nodes"], _node(9, "workflow>g")]}
    with pytest.raises(ConversionError, match=r"node 9: is a group node \('workflow>g'\).*Fix: in the editor"):
        ui_to_api(used, OBJECT_INFO)
    assert required_node_types(used) == {"EmptyImage"}


def test_dynamic_prompt_choices_follow_the_rng() -> None:
    seen = {process_dynamic_prompt("a {red|green|blue} hat", random.Random(i)) for i in range(60)}
    assert seen == {"a red hat", "a green hat", "a blue hat"}
    assert process_dynamic_prompt("{x|{y|y}} // c", random.Random(1)) in ("x ", "y ")


def test_date_replacement_in_save_node_prefix() -> None:
    wf = {
        "nodes": [
            _node(
                1, "SaveImage", ["out/%date:yyyy-MM-dd_hh%"], inputs=[{"name": "images", "type": "IMAGE", "link": None}]
            )
        ],
        "links": [],
    }
    api = ui_to_api(wf, OBJECT_INFO, now=lambda: dt.datetime(2025, 3, 4, 5, 6, 7))
    assert api["1"]["inputs"]["filename_prefix"] == "out/2025-03-04_05"


def test_to_api_prompt_accepts_both_formats_and_rejects_others() -> None:
    api = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}
    assert to_api_prompt(api, lambda: pytest.fail("object_info not needed for API input")) is api
    ui = CASES["reroute_chain"]["workflow"]
    assert to_api_prompt(ui, lambda: OBJECT_INFO) == ui_to_api(ui, OBJECT_INFO)
    with pytest.raises(ConversionError, match="neither"):
        to_api_prompt({"foo": 1}, OBJECT_INFO)


def test_required_node_types_skip_virtual_muted_and_subgraph_ids() -> None:
    wf = CASES["subgraph_inner_muted_and_bypassed"]["workflow"]
    assert required_node_types(wf) == {"EmptyImage", "SaveImage", "ImageBlur"}
