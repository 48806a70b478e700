"""driver.convert.ui_to_api against what the real ComfyUI editor queues.

Golden data (tests/data/convert/) was produced by the editor itself: the ComfyUI
frontend 1.27.10 that ComfyUI 0.3.64 ships, in headless Chromium
(tests/_editor_oracle.py): `app.loadGraphData(workflow)` then `app.graphToPrompt()`.
- editor_cases.json: graphs built with the editor's own API, one per feature
  (primitives, reroutes, bypass, mute, notes, linked widgets, seeds, uploads,
  subgraphs, dynamic prompts, filename replacements).
- editor_templates.json.gz: every workflow template shipped with ComfyUI 0.3.64
  (comfyui_workflow_templates 0.1.95) whose nodes are all core nodes.
With COMFYUI_DIR set and chromium installed, the cases are re-run through the live
editor, so a newer frontend that changes behaviour shows up here.
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
from conftest import comfyui_dir, need

from driver.convert import (
    ConversionError,
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


def _explicit_titles(workflow: dict) -> dict[str, bool]:
    """Flattened node id -> whether the saved node carries its own title.

    A node saved without "title" gets the editor's localized display name, which
    /object_info does not carry ("Scale Image to Total Pixels" vs
    "ImageScaleToTotalPixels"); only explicit titles are compared."""
    defs = {d["id"]: d for d in ((workflow.get("definitions") or {}).get("subgraphs") or [])}
    out: dict[str, bool] = {}

    def walk(nodes: list, prefix: str) -> None:
        for n in nodes:
            nid = f"{prefix}{n['id']}"
            out[nid] = "title" in n
            if n.get("type") in defs:
                walk(defs[n["type"]]["nodes"], nid + ":")
    walk(workflow["nodes"], "")
    return out


def assert_same_prompt(mine: dict, editor: dict, workflow: dict) -> None:
    assert sorted(mine) == sorted(editor), "different node sets"
    titled = _explicit_titles(workflow)
    for nid, exp in editor.items():
        got = mine[nid]
        assert got["class_type"] == exp["class_type"], nid
        assert got["inputs"] == exp["inputs"], f"node {nid} ({exp['class_type']}) inputs differ"
        if titled.get(nid):
            assert got["_meta"] == exp["_meta"], nid


@pytest.mark.parametrize("name", sorted(CASES))
def test_editor_built_feature_graphs(name: str) -> None:
    case = CASES[name]
    assert_same_prompt(ui_to_api(case["workflow"], OBJECT_INFO), case["api"], case["workflow"])


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_shipped_templates_match_the_editor(name: str) -> None:
    case = TEMPLATES[name]
    assert_same_prompt(ui_to_api(case["workflow"], OBJECT_INFO), case["api"], case["workflow"])


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


# --------------------------------------------------------------------------- workflows/


def _pairs() -> list[Path]:
    return sorted(p for p in (ROOT / "workflows").glob("*.json")
                  if not p.name.endswith(".api.json") and p.with_name(p.stem + ".api.json").exists())


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
        pytest.skip(f"object_info ({source}) lacks {missing}: set COMFYUI_DIR to convert against a "
                    "live server, or re-record: python tests/_driver_helpers.py record-object-info")
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
    for name, node in recorded.items():
        if name == "LoadImage":          # its file list depends on the server's input folder
            continue
        assert info.get(name, {}).get("input") == node["input"], (
            f"{name} changed since the recording: python tests/_driver_helpers.py record-object-info")


# --------------------------------------------------------------------------- live editor


@pytest.mark.comfyui
def test_live_editor_agrees_with_the_converter() -> None:
    """Re-run the feature graphs through the editor of the ComfyUI in COMFYUI_DIR."""
    comfyui_dir()
    need(bool(shutil.which("chromium") or shutil.which("chromium-browser")),
         "chromium is not installed (apt-get install -y chromium): no headless editor")
    import requests

    from tests._driver_helpers import shared_comfy
    from tests._editor_oracle import EditorOracle, build_cases
    url = shared_comfy().url
    info = requests.get(url + "/object_info", timeout=60).json()
    with EditorOracle(url) as oracle:
        cases = build_cases(oracle)
    for case in cases.values():
        assert_same_prompt(ui_to_api(case["workflow"], info), case["api"], case["workflow"])


# --------------------------------------------------------------------------- unit behaviour


def _node(nid: int, type_: str, widgets: list | None = None, inputs: list | None = None,
          outputs: list | None = None, mode: int = 0, **extra) -> dict:
    return {"id": nid, "type": type_, "mode": mode, "inputs": inputs or [], "outputs": outputs or [],
            "widgets_values": widgets or [], **extra}


def test_widget_layout_drops_control_values_and_upload_buttons() -> None:
    ks = [(w.name, w.in_prompt) for w in widget_layout("KSampler", OBJECT_INFO)]
    assert ks[:3] == [("seed", True), ("control_after_generate", False), ("steps", True)]
    li = [(w.name, w.in_prompt) for w in widget_layout("LoadImage", OBJECT_INFO)]
    assert li == [("image", True), ("upload", False)]


def test_missing_widget_values_take_object_info_defaults_and_lists_are_wrapped() -> None:
    info = {**OBJECT_INFO, "ListNode": {"input": {"required": {"xs": ["INT", {"default": 3}],
                                                                "s": ["STRING", {}]}},
                                        "input_order": {"required": ["xs", "s"]}, "output": []}}
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
    wf = {"nodes": [_node(1, "PreviewImage", inputs=[{"name": "images", "type": "IMAGE", "link": 99}])],
          "links": []}
    with pytest.raises(ConversionError, match="link 99"):
        ui_to_api(wf, OBJECT_INFO)
    with pytest.raises(ConversionError, match="group nodes"):
        ui_to_api({"nodes": [], "links": [], "extra": {"groupNodes": {"g": {}}}}, OBJECT_INFO)


def test_dynamic_prompt_choices_follow_the_rng() -> None:
    seen = {process_dynamic_prompt("a {red|green|blue} hat", random.Random(i)) for i in range(60)}
    assert seen == {"a red hat", "a green hat", "a blue hat"}
    assert process_dynamic_prompt("{x|{y|y}} // c", random.Random(1)) in ("x ", "y ")


def test_date_replacement_in_save_node_prefix() -> None:
    wf = {"nodes": [_node(1, "SaveImage", ["out/%date:yyyy-MM-dd_hh%"],
                          inputs=[{"name": "images", "type": "IMAGE", "link": None}])], "links": []}
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
