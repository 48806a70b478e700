"""The editor extension (comfy_avatar_nodes/web/): the VRM viewer inside the node and Validate VRM's report,
in the real ComfyUI editor (the frontend that COMFYUI_DIR's ComfyUI ships) in headless Chromium with WebGL on
SwiftShader; plus the viewer bundle's reproducible build (web_src/).

The editor loads workflows/image_to_vrm_cpu.json and queues it itself; the test then looks at pixels of the
viewer's canvas (screenshots, saved under out/web_viewer/comfyui-<version>/ to be looked at): it renders
the avatar, orbit, idle motion and look-at change the picture, and the expression buttons (aa, blink, happy)
change the face and only the face, for every preset the VRM binds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
import websocket
from _devtools import chromium_path
from _web_helpers import EditorPage, png_diff, png_stats
from conftest import ROOT, comfyui_dir, comfyui_version, need

WEB = ROOT / "comfy_avatar_nodes" / "web"
WEB_SRC = ROOT / "web_src"
BUNDLE = WEB / "vendor" / "avatar-viewer.bundle.mjs"
LICENSES = WEB / "vendor" / "THIRD_PARTY_LICENSES.txt"
BUNDLE_BUDGET = 1_000_000  # bytes: three + three-vrm minified is ~0.8 MB
WORKFLOW = ROOT / "workflows" / "image_to_vrm_cpu.json"
RIG, VALIDATE = 3, 4  # node ids in the workflow
BUTTON_PRESETS = ("aa", "blink", "happy")


# ------------------------------------------------------------------ the bundle (no ComfyUI)


def _lock() -> dict:
    return json.loads((WEB_SRC / "package-lock.json").read_text())


def test_bundle_banner_matches_lock_file():
    """The committed bundle names the versions and the sha256 of the lock file it was built from."""
    head = BUNDLE.read_text(encoding="utf-8")[:600]
    lock = _lock()["packages"]
    sha = hashlib.sha256((WEB_SRC / "package-lock.json").read_bytes()).hexdigest()
    assert f"three {lock['node_modules/three']['version']}," in head
    assert f"@pixiv/three-vrm {lock['node_modules/@pixiv/three-vrm']['version']};" in head
    assert f"esbuild {lock['node_modules/esbuild']['version']};" in head
    assert f"package-lock.json sha256 {sha}" in head, "web_src/package-lock.json changed: rebuild (node build.mjs)"
    pkg = json.loads((WEB_SRC / "package.json").read_text())
    for deps in (pkg["dependencies"], pkg["devDependencies"]):
        for name, want in deps.items():
            assert re.fullmatch(r"\d+\.\d+\.\d+", want), f"{name}: pin an exact version, not {want!r}"
            assert lock[f"node_modules/{name}"]["version"] == want


def test_bundle_size_and_licences():
    size = BUNDLE.stat().st_size
    assert size < BUNDLE_BUDGET, f"{BUNDLE.name} is {size} bytes, over the {BUNDLE_BUDGET} budget"
    text = LICENSES.read_text(encoding="utf-8")
    lock = _lock()["packages"]
    for name in ("three", "@pixiv/three-vrm"):
        assert f"{name} {lock[f'node_modules/{name}']['version']} (MIT)" in text
    assert text.count("Permission is hereby granted") >= 2


def test_web_directory_holds_only_the_extension():
    """ComfyUI loads every *.js under WEB_DIRECTORY as an extension: only avatar_nodes.js may be one (the
    bundle is .mjs, imported on first use; no sources or node_modules in there)."""
    text = (ROOT / "__init__.py").read_text()
    assert re.search(r'^WEB_DIRECTORY = "\./comfy_avatar_nodes/web"$', text, re.M)
    js = sorted(p.relative_to(WEB).as_posix() for p in WEB.rglob("*.js"))
    assert js == ["avatar_nodes.js"]
    assert not (WEB / "node_modules").exists()


@pytest.mark.js
def test_bundle_rebuilds_byte_for_byte():
    """npm ci (the locked versions) + node build.mjs --check: a fresh build equals the committed files."""
    need(shutil.which("node") is not None and shutil.which("npm") is not None, "node and npm are needed to rebuild")
    stamp = WEB_SRC / "node_modules" / ".package-lock.json"
    fresh = stamp.is_file() and all(
        (WEB_SRC / "node_modules" / name / "package.json").is_file()
        for name in ("three", "@pixiv/three-vrm", "esbuild")
    )
    if fresh:
        have = json.loads(stamp.read_text())["packages"]
        fresh = all(
            have.get(k, {}).get("version") == v.get("version")
            for k, v in _lock()["packages"].items()
            if k and not v.get("optional")
        )
    if not fresh:
        proc = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=WEB_SRC,
            capture_output=True,
            text=True,
            timeout=600,
        )
        need(proc.returncode == 0, f"npm ci in web_src failed (offline?): {proc.stderr[-800:]}")
    proc = subprocess.run(["node", "build.mjs", "--check"], cwd=WEB_SRC, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["bytes"] == BUNDLE.stat().st_size
    assert result["packages"] == ["@pixiv/three-vrm", "three"]


# ------------------------------------------------------------------ in the real editor


def _shots_dir() -> Path:
    v = ".".join(map(str, comfyui_version()))
    d = Path(os.environ.get("COMFY_AVATAR_SCREENSHOTS", ROOT / "out" / "web_viewer")) / f"comfyui-{v}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _widget_js(node_id: int, name: str) -> str:
    return f"app.graph.getNodeById({node_id}).widgets?.find(w => w.name === {json.dumps(name)})"


class Editor:
    """The editor page after the CPU workflow ran from it, with helpers for the two panels."""

    def __init__(self, page: EditorPage, comfy, shots: Path, workflow: dict, prompt_id: str):
        self.page, self.comfy, self.shots, self.workflow, self.prompt_id = page, comfy, shots, workflow, prompt_id

    def viewer(self, expr: str):
        return self.page.evaluate(
            f"(() => {{ const w = {_widget_js(RIG, 'avatar_viewer')}; const v = w.viewer; return {expr}; }})()"
        )

    def click(self, selector: str) -> None:
        ok = self.page.evaluate(
            f"(() => {{ const b = {_widget_js(RIG, 'avatar_viewer')}.element.querySelector("
            f"{json.dumps(selector)}); if (!b) return false; b.click(); return true; }})()"
        )
        assert ok, f"no {selector} in the viewer"

    def canvas_rect(self) -> dict:
        return json.loads(
            self.viewer(
                "JSON.stringify((({x, y, width, height}) => ({x, y, width, height}))(v.canvas.getBoundingClientRect()))"
            )
        )

    def frames_after(self, n: int = 3, timeout_s: float = 20) -> None:
        """Wait until the viewer has drawn n more frames (SwiftShader draws a few a second)."""
        start = self.viewer("v.frames")
        self.page.wait_for(f"{_widget_js(RIG, 'avatar_viewer')}.viewer.frames >= {start + n}", timeout_s, "frames")

    def shot(self, name: str | None = None) -> bytes:
        self.frames_after()
        png = self.page.screenshot(self.canvas_rect())
        if name:
            (self.shots / f"{name}.png").write_bytes(png)
        return png

    def still(self) -> None:
        """Auto-blink, idle and look-at off: the picture changes only when the test changes something."""
        for key in ("blink", "idle", "lookAtCursor"):
            if self.viewer(f"v[{json.dumps(key)}]"):
                self.click(f"[data-toggle={key}]")
        self.page.mouse("mouseMoved", 5, 5)


def _wait_run(page: EditorPage, comfy, ready_js: str, timeout_s: float, before: set[str]) -> str:
    """Wait until the panels are there; returns the id of the prompt the editor queued (the one new
    /history entry; `before`: the ids there before), failing early with ComfyUI's error."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        new = {k: v for k, v in requests.get(comfy.url + "/history", timeout=10).json().items() if k not in before}
        if page.evaluate(ready_js) and new:
            return max(new, key=lambda k: new[k]["prompt"][0])
        for entry in new.values():
            status = entry.get("status", {})
            if status.get("status_str") == "error":
                msgs = [m for m in status.get("messages", []) if m[0] == "execution_error"]
                raise AssertionError(f"the workflow failed in ComfyUI: {json.dumps(msgs)[:3000]}")
        time.sleep(1)
    raise AssertionError(
        f"the viewer/report did not appear within {timeout_s:g} s; console:\n"
        + "\n".join(page.console[-30:])
        + "\n"
        + comfy.log_tail()
    )


@pytest.fixture(scope="module")
def editor(example_image):
    comfyui_dir()
    need(chromium_path() is not None, "chromium is not installed (apt-get install -y chromium)")
    from _driver_helpers import shared_comfy

    comfy = shared_comfy()
    with example_image.open("rb") as f:
        requests.post(
            comfy.url + "/upload/image",
            files={"image": (example_image.name, f, "image/png")},
            data={"overwrite": "true"},
            timeout=60,
        ).raise_for_status()
    # A returning user: no template browser over the canvas, no minimap.
    requests.post(
        comfy.url + "/settings", json={"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}, timeout=30
    ).raise_for_status()
    workflow = json.loads(WORKFLOW.read_text())
    # A name of its own, so ComfyUI runs the rig for this test instead of answering from its cache.
    rig = next(n for n in workflow["nodes"] if n["id"] == RIG)
    rig["widgets_values"][0] = f"Web viewer {uuid.uuid4().hex[:6]}"
    shots = _shots_dir()
    with EditorPage(comfy.url) as page:
        page.evaluate(
            "(async () => { await app.loadGraphData(" + json.dumps(workflow) + ", true, true, null,"
            " {showMissingNodesDialog: false, showMissingModelsDialog: false}); return 1; })()"
        )
        before = set(requests.get(comfy.url + "/history", timeout=30).json())
        page.evaluate("(async () => { await app.queuePrompt(0, 1); return 1; })()")
        prompt_id = _wait_run(
            page,
            comfy,
            f"(() => {{ const w = {_widget_js(RIG, 'avatar_viewer')}; const r = "
            f"{_widget_js(VALIDATE, 'avatar_report')}; return !!(w && r && w.element.dataset.status"
            f" && w.element.dataset.status !== 'loading'); }})()",
            900,
            before,
        )
        page.evaluate(
            "(() => { const c = app.canvas; c.ds.scale = 1; c.ds.offset = [-810 + 150, -100 + 60];"
            " c.setDirty(true, true); return 1; })()"
        )
        time.sleep(1)
        (shots / "editor.png").write_bytes(page.screenshot())
        yield Editor(page, comfy, shots, workflow, prompt_id)


def _history_ui(editor: Editor, node_id: int) -> dict:
    """The ui the node sent in the prompt the editor queued."""
    entry = requests.get(f"{editor.comfy.url}/history/{editor.prompt_id}", timeout=30).json()[editor.prompt_id]
    out = entry.get("outputs", {}).get(str(node_id))
    assert out, f"no output of node {node_id} in /history/{editor.prompt_id}: {entry.get('status')}"
    return out


@pytest.mark.comfyui
def test_extension_is_served(editor):
    exts = requests.get(editor.comfy.url + "/extensions", timeout=30).json()
    ours = [e for e in exts if "comfy-avatar" in e]
    assert ours == ["/extensions/comfy-avatar/avatar_nodes.js"], ours
    r = requests.get(editor.comfy.url + "/extensions/comfy-avatar/vendor/avatar-viewer.bundle.mjs", timeout=30)
    assert (
        r.status_code == 200 and "javascript" in r.headers["Content-Type"] and len(r.content) == BUNDLE.stat().st_size
    )
    assert "comfy-avatar.viewer" in editor.page.evaluate("app.extensions.map(e => e.name).join(' ')")


@pytest.mark.comfyui
def test_viewer_shows_the_vrm_the_node_wrote(editor):
    status = editor.viewer("JSON.stringify(w.element.dataset)")
    data = json.loads(status)
    assert data["status"] == "ready", data
    vrm = [f for f in _history_ui(editor, RIG)["avatar_files"] if f["filename"].endswith(".vrm")][0]
    assert data["file"] == f"{vrm['subfolder']}/{vrm['filename']}"
    png = editor.shot("viewer_body")
    stats = png_stats(png)
    # a blank canvas is one colour; the avatar covers a good part of the full-body view
    assert stats["off_background"] > 0.03 and stats["colors"] > 100, stats
    # the avatar stands in the middle of the picture
    middle = png_stats(png, (0.35, 0.2, 0.65, 0.8))
    assert middle["off_background"] > 0.15, middle


@pytest.mark.comfyui
def test_viewer_adds_nothing_to_the_workflow(editor):
    """The panels are not widgets with values: the saved workflow and the queued prompt stay as they were."""
    out = json.loads(
        editor.page.evaluate("(async () => { const p = await app.graphToPrompt(); return JSON.stringify(p); })()")
    )
    saved = {n["id"]: n for n in out["workflow"]["nodes"]}
    for node in editor.workflow["nodes"]:
        if node["id"] not in (RIG, VALIDATE):
            continue
        others = editor.page.evaluate(
            f"app.graph.getNodeById({node['id']}).widgets"
            ".filter(w => !['avatar_viewer', 'avatar_report'].includes(w.name)).length"
        )
        values = saved[node["id"]]["widgets_values"]
        assert len(values) == others, (values, others)
        # (the node may have grown inputs since the workflow file was saved: those come after)
        assert values[: len(node["widgets_values"])] == node["widgets_values"]
    assert sorted(out["output"][str(VALIDATE)]["inputs"]) == ["fail_on_error", "vrm"]


@pytest.mark.comfyui
def test_orbit_idle_and_look_at_change_the_picture(editor):
    editor.click("[data-frame=body]")
    editor.still()
    a = editor.shot()
    b = editor.shot()
    assert png_diff(a, b)["changed"] == 0, "the picture moves with blink, idle and look-at off"
    r = editor.canvas_rect()
    cx, cy = r["x"] + r["width"] / 2, r["y"] + r["height"] / 2
    # orbit: a drag on the canvas turns the camera (and the editor's canvas does not pan instead)
    before = editor.page.evaluate("JSON.stringify(app.canvas.ds.offset)")
    editor.page.drag(cx - 60, cy, cx + 60, cy)
    orbit = editor.shot("viewer_orbit")
    assert png_diff(a, orbit)["changed"] > 0.02
    assert editor.page.evaluate("JSON.stringify(app.canvas.ds.offset)") == before
    editor.click("[data-frame=body]")  # back to the front view
    front = editor.shot()
    # look at the cursor: the head follows the pointer over the picture
    editor.click("[data-toggle=lookAtCursor]")
    editor.page.mouse("mouseMoved", r["x"] + 5, r["y"] + r["height"] * 0.2)
    left = editor.shot()
    editor.page.mouse("mouseMoved", r["x"] + r["width"] - 5, r["y"] + r["height"] * 0.2)
    right = editor.shot("viewer_look_right")
    assert png_diff(left, right)["changed"] > 0, "the head did not follow the cursor"
    editor.click("[data-toggle=lookAtCursor]")
    editor.page.mouse("mouseMoved", 5, 5)
    # idle motion: breathing and sway move the body between two frames a second apart
    editor.click("[data-toggle=idle]")
    one = editor.shot()
    time.sleep(1.2)
    two = editor.shot("viewer_idle")
    assert png_diff(one, two)["changed"] > 0 and png_diff(front, two)["changed"] > 0
    editor.click("[data-toggle=idle]")


@pytest.mark.comfyui
def test_expression_buttons_change_the_face(editor):
    """Each of aa, blink, happy changes the picture inside the head and nowhere else; the buttons of the presets
    the VRM binds are enabled, the others disabled (and do nothing)."""
    editor.still()
    editor.click("[data-frame=face]")
    editor.click("[data-preset=neutral]")
    neutral = editor.shot("face_neutral")
    assert png_diff(neutral, editor.shot())["changed"] == 0
    bound = editor.viewer("v.info.bound")
    buttons = json.loads(editor.viewer("JSON.stringify([...v.presetButtons].map(([n, b]) => [n, b.disabled]))"))
    assert {n: d for n, d in buttons} == {n: n not in bound for n, _ in buttons}, "buttons enabled = presets bound"
    head = editor.viewer("v.headRect()")
    missing = [n for n in BUTTON_PRESETS if n not in bound]
    assert not missing, f"the pipeline's VRM binds no morph target to {missing} (issue 9's face stage)"
    for name in BUTTON_PRESETS:
        editor.click(f"[data-preset={name}]")
        assert editor.viewer("v.active") == name
        d = png_diff(neutral, editor.shot(f"face_{name}"))
        assert d["changed"] > 0.0005, f"{name} did not change the picture ({d})"
        x0, y0, x1, y1 = d["bbox"]
        tol = 0.02
        assert (
            x0 >= head["x0"] - tol and y0 >= head["y0"] - tol and x1 <= head["x1"] + tol and y1 <= head["y1"] + tol
        ), f"{name} changed pixels outside the head: {d['bbox']} vs {head}"
        editor.click(f"[data-preset={name}]")  # the same button again: back to neutral
        assert editor.viewer("v.active") is None
        assert png_diff(neutral, editor.shot())["changed"] == 0
    # a disabled button does nothing: unbind happy in the viewer as a VRM without it would load
    editor.viewer(
        "(v.info.bound = v.info.bound.filter(n => n !== 'happy'), v.presetButtons.get('happy').disabled = true, 1)"
    )
    editor.page.evaluate(
        f"{_widget_js(RIG, 'avatar_viewer')}.element.querySelector('[data-preset=happy]')"
        ".dispatchEvent(new MouseEvent('click'))"
    )
    assert editor.viewer("v.active") is None and png_diff(neutral, editor.shot())["changed"] == 0
    assert editor.viewer("v.setExpression('happy')") is False
    editor.viewer("(v.info.bound.push('happy'), v.presetButtons.get('happy').disabled = false, 1)")


@pytest.mark.comfyui
def test_validate_vrm_shows_its_report(editor):
    ui = _history_ui(editor, VALIDATE)
    report = ui["avatar_report"][0]
    panel = json.loads(
        editor.page.evaluate(
            f"(() => {{ const e = {_widget_js(VALIDATE, 'avatar_report')}.element; return JSON.stringify({{"
            " text: e.querySelector('.car-text').textContent, badge: e.querySelector('.car-badge').textContent,"
            " ok: e.dataset.ok, bound: e.dataset.bound ?? null, expr: e.querySelector('.car-expr').textContent,"
            " rect: (({x, y, width, height}) => ({x, y, width, height}))(e.getBoundingClientRect()) }); })()"
        )
    )
    (editor.shots / "validate_report.png").write_bytes(editor.page.screenshot(panel["rect"]))
    assert panel["text"] == ui["text"][0] and panel["text"].startswith(Path(report["path"]).name)
    assert panel["badge"] == ("VALID" if report["ok"] else "INVALID") and panel["ok"] == str(report["ok"]).lower()
    # the validator's expression summary, as chips: the presets its own report calls bound
    expressions = report["facts"]["expressions"]
    want = [n for n, e in expressions.items() if e["bound"]]
    assert set((panel["bound"] or "").split()) == set(want), (panel, expressions)
    assert f"expressions: {len(want)}/17 presets bound" in panel["expr"]


@pytest.mark.comfyui
def test_report_panel_renders_an_expression_summary(editor):
    """The panel's reading of facts.expressions (the shape core/vrm/validate_face.py reports:
    {preset: {bound, targets, problems, ...}}) for a report with a broken and an unbound preset, fed as the
    editor feeds an executed message (the pipeline's own VRMs bind every preset cleanly)."""
    facts = {
        "expressions": {
            "aa": {"bound": True, "targets": ["Face.aa"], "problems": [], "vertices_moved": 40},
            "blink": {"bound": False, "targets": [], "problems": []},
            "happy": {"bound": True, "targets": ["Face.happy"], "problems": ["moves vertices below the neck"]},
        },
        "look_at": "expression",
        "first_person_annotations": 1,
        "mtoon_materials": 1,
        "face_found": False,
    }
    message = {
        "text": ["demo.vrm: OK (0 errors, 1 warnings)\nexpressions: ..."],
        "avatar_report": [{"path": "demo.vrm", "ok": True, "errors": [], "warnings": ["w1"], "facts": facts}],
    }
    node = f"app.graph.getNodeById({VALIDATE})"
    out = json.loads(
        editor.page.evaluate(
            f"(() => {{ const n = {node}; const before = JSON.stringify(n.widgets.map(w => w.name));"
            f" n.onExecuted({json.dumps(message)}); const e = {_widget_js(VALIDATE, 'avatar_report')}.element;"
            " return JSON.stringify({ before, after: JSON.stringify(n.widgets.map(w => w.name)), bound: e.dataset.bound,"
            " problem: [...e.querySelectorAll('.car-chip.problem')].map(c => c.dataset.preset),"
            " warn: [...e.querySelectorAll('.car-list.warn li')].map(li => li.textContent),"
            " head: e.querySelector('.car-expr div').textContent, face: e.querySelector('.car-face').textContent,"
            " tip: e.querySelector('.car-chip[data-preset=aa]').title }); })()"
        )
    )
    assert out["before"] == out["after"], "a second run must reuse the panel"
    assert out["bound"] == "aa happy" and out["problem"] == ["happy"] and out["warn"] == ["w1"]
    assert out["head"] == "expressions: 2/17 presets bound"
    assert out["face"] == "face NOT found · lookAt expression · firstPerson 1 · MToon 1"
    assert out["tip"] == "aa: Face.aa, 40 vertices"
    # put the real report back for anyone looking at the editor afterwards
    ui = _history_ui(editor, VALIDATE)
    editor.page.evaluate(f"{node}.onExecuted({json.dumps(ui)})")


@pytest.mark.comfyui
def test_panels_come_back_after_a_page_reload(editor):
    """A reload rebuilds the graph from the workflow the editor kept, but replays no `executed` message: the
    viewer and the report come back from the server's /history (the last output of each node), showing the
    same VRM and the same verdict. Runs last: the page it leaves is a fresh one."""
    vrm = [f for f in _history_ui(editor, RIG)["avatar_files"] if f["filename"].endswith(".vrm")][0]
    report = _history_ui(editor, VALIDATE)["avatar_report"][0]
    editor.page._call("Page.reload", ignoreCache=True)
    loaded = (
        "!!(window.app && app.graph && window.LiteGraph && Object.keys(LiteGraph.registered_node_types).length > 10"
        f" && app.graph.getNodeById({RIG}))"
    )
    end = time.monotonic() + 300
    while True:  # the tab is busy loading the editor (SwiftShader, a shared machine): a call may time out
        time.sleep(2)
        try:  # the editor asks "leave the page?" for a workflow the earlier tests changed: leave, as a user would
            editor.page._call("Page.handleJavaScriptDialog", accept=True)
        except RuntimeError:
            pass  # no dialog open
        try:
            if editor.page.evaluate(loaded):
                break
        except (RuntimeError, websocket.WebSocketTimeoutException):
            pass
        assert time.monotonic() < end, "the editor did not come back after the reload:\n" + "\n".join(
            editor.page.console[-30:]
        )
    kinds = editor.page.evaluate(f"[{RIG}, {VALIDATE}].map(i => app.graph.getNodeById(i)?.type).join(' ')")
    assert kinds == "AvatarRigVRMCPU AvatarValidateVRM", (
        f"the editor did not keep the workflow over the reload: {kinds}"
    )
    status = f"({_widget_js(RIG, 'avatar_viewer')})?.element.dataset.status"
    editor.page.wait_for(f"{status} === 'ready' || {status} === 'error'", 180, "the viewer after the reload")
    data = json.loads(editor.viewer("JSON.stringify(w.element.dataset)"))
    assert data["status"] == "ready" and data["file"] == f"{vrm['subfolder']}/{vrm['filename']}", data
    assert set(data["bound"].split()) >= set(BUTTON_PRESETS), data
    panel = editor.page.evaluate(
        f"(() => {{ const e = ({_widget_js(VALIDATE, 'avatar_report')})?.element;"
        " return e ? e.dataset.ok + ' ' + e.querySelector('.car-badge').textContent : null; })()"
    )
    assert panel == f"{str(report['ok']).lower()} {'VALID' if report['ok'] else 'INVALID'}", panel
    stats = png_stats(editor.shot("viewer_after_reload"))
    assert stats["off_background"] > 0.03 and stats["colors"] > 100, stats  # the avatar is drawn, not a blank canvas
