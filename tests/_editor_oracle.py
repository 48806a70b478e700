"""Ask the real ComfyUI editor (the frontend a ComfyUI server ships) to convert UI workflows.

This is the oracle for driver/convert.py: headless Chromium loads the editor from a
running ComfyUI, `app.loadGraphData(workflow)` then `app.graphToPrompt()` gives exactly
the API prompt the editor would queue. Used to (re)generate the golden files under
tests/data/convert/ and by tests when a ComfyUI server and Chromium are available.

    python tests/_editor_oracle.py --server http://127.0.0.1:8188 wf1.json wf2.json ...

prints {"file": api_prompt, ...} as JSON. Needs `chromium` (Debian package) on PATH.
Speaks the Chrome DevTools Protocol over websocket-client; no browser driver library.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _devtools import Page, open_tab


class EditorOracle(Page):
    """A headless Chromium tab with the ComfyUI editor loaded from `server`."""

    def __init__(self, server: str, timeout_s: float = 120.0):
        self.server = server.rstrip("/")
        super().__init__(open_tab(ws_timeout_s=timeout_s, start_s=30.0))
        deadline = time.monotonic() + 30
        self._call("Page.enable")
        self._call("Page.navigate", url=self.server + "/")
        while time.monotonic() < deadline + timeout_s:
            ok = self.evaluate(
                "!!(window.app && window.app.graph && window.app.vueAppReady !== false"
                " && window.LiteGraph && Object.keys(LiteGraph.registered_node_types).length > 10)"
            )
            if ok:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError("the ComfyUI editor did not finish loading")

    def convert(self, workflow: dict) -> dict:
        """The API prompt the editor builds for `workflow` (graphToPrompt().output)."""
        expr = (
            "(async () => { const wf = " + json.dumps(workflow) + ";"
            " await app.loadGraphData(wf, true, true, null, {showMissingNodesDialog: false,"
            " showMissingModelsDialog: false});"
            " const p = await app.graphToPrompt(); return JSON.stringify(p.output); })()"
        )
        return json.loads(self.evaluate(expr))


# Graphs built with the editor's own API (LiteGraph), one per conversion feature. Each
# body runs after PRELUDE and ends with the graph in app.graph; build_cases() saves it
# the way the editor's Save does and records the prompt the editor queues for it.
PRELUDE = """
const tick = () => new Promise(r => setTimeout(r, 50));
const g = app.graph; g.clear(); await tick();
const add = (t, vals = {}, graph = g) => { const n = LiteGraph.createNode(t); graph.add(n);
  for (const [k, v] of Object.entries(vals)) { const w = n.widgets.find(w => w.name === k);
    if (!w) throw new Error(t + ' has no widget ' + k); w.value = v; } return n; };
const wi = (n, name) => { const i = n.inputs.findIndex(i => i.name === name);
  if (i < 0) throw new Error('no input ' + name); return i; };
const link = (a, oslot, b, inp) => a.connect(oslot, b, typeof inp === 'string' ? wi(b, inp) : inp);
"""

CASES: dict[str, str] = {
    "primitive_two_targets": """
const e = add('EmptyImage', {batch_size: 2}); const s = add('SaveImage', {filename_prefix: 'prim'});
link(e, 0, s, 'images');
const p = add('PrimitiveNode'); link(p, 0, e, 'width'); await tick(); link(p, 0, e, 'height'); await tick();
p.widgets[0].value = 96; p.widgets[1].value = 'increment';
""",
    "reroute_chain": """
const e = add('EmptyImage', {width: 32, height: 48}); const r1 = add('Reroute'); const r2 = add('Reroute');
const inv = add('ImageInvert'); const s = add('SaveImage'); const pv = add('PreviewImage');
link(e, 0, r1, 0); link(r1, 0, r2, 0); link(r2, 0, inv, 'image'); link(inv, 0, s, 'images'); link(r2, 0, pv, 'images');
""",
    "bypass_passthrough": """
const e = add('EmptyImage', {width: 16}); const inv = add('ImageInvert'); const blur = add('ImageBlur', {blur_radius: 3});
const s = add('SaveImage'); link(e, 0, inv, 'image'); link(inv, 0, blur, 'image'); link(blur, 0, s, 'images');
inv.mode = 4; blur.mode = 4;
""",
    "bypass_type_mismatch": """
const e = add('EmptyImage'); const tm = add('ImageToMask', {channel: 'green'}); const mi = add('MaskToImage');
const s = add('SaveImage'); const pad = add('ImagePadForOutpaint', {left: 8}); const m2 = add('MaskToImage');
const pv = add('PreviewImage'); link(e, 0, tm, 'image'); link(tm, 0, mi, 'mask'); link(mi, 0, s, 'images');
link(e, 0, pad, 'image'); link(pad, 1, m2, 'mask'); link(m2, 0, pv, 'images'); tm.mode = 4; pad.mode = 4;
""",
    "muted_nodes": """
const e1 = add('EmptyImage', {color: 255}); const s1 = add('SaveImage'); link(e1, 0, s1, 'images'); e1.mode = 2;
const e2 = add('EmptyImage', {width: 8, height: 8}); const pv = add('PreviewImage'); link(e2, 0, pv, 'images');
const s2 = add('SaveImage', {filename_prefix: 'muted'}); link(e2, 0, s2, 'images'); s2.mode = 2;
""",
    "notes_ignored": """
const n = add('Note'); n.widgets[0].value = 'remember me'; const md = add('MarkdownNote'); md.widgets[0].value = '# hi';
const e = add('EmptyImage'); const pv = add('PreviewImage'); link(e, 0, pv, 'images');
""",
    "linked_widget_wins": """
const pi = add('PrimitiveInt', {value: 33}); const e = add('EmptyImage', {width: 512, height: 40});
const s = add('SaveImage'); link(pi, 0, e, 'width'); link(e, 0, s, 'images');
""",
    "seed_controls": """
const rn = add('RandomNoise', {noise_seed: 1234}); rn.widgets[1].value = 'increment';
const ks = add('KSamplerAdvanced', {noise_seed: 99, steps: 7, end_at_step: 5, add_noise: 'disable'});
ks.widgets.find(w => w.name === 'control_after_generate').value = 'fixed';
const pv = add('PrimitiveInt', {value: 5}); pv.widgets[1].value = 'decrement';
""",
    "load_image_upload": """
const li = add('LoadImage'); li.widgets[0].value = 'example.png'; const lm = add('LoadImageMask', {channel: 'red'});
lm.widgets[0].value = 'mask.png'; const pv = add('PreviewImage'); link(li, 0, pv, 'images');
const mi = add('MaskToImage'); link(lm, 0, mi, 'mask'); const s = add('SaveImage'); link(mi, 0, s, 'images');
""",
    "subgraph_basic": """
const e = add('EmptyImage', {width: 24}); const inv = add('ImageInvert'); const s = add('SaveImage');
link(e, 0, inv, 'image'); link(inv, 0, s, 'images'); g.convertToSubgraph(new Set([inv])); await tick();
""",
    "subgraph_linked_widget": """
const pi = add('PrimitiveInt', {value: 21}); const e = add('EmptyImage', {height: 12}); const inv = add('ImageInvert');
const s = add('SaveImage'); link(pi, 0, e, 'width'); link(e, 0, inv, 'image'); link(inv, 0, s, 'images');
g.convertToSubgraph(new Set([e, inv])); await tick();
""",
    "subgraph_promoted_widget": """
const pi = add('PrimitiveInt', {value: 21}); const e = add('EmptyImage', {height: 12}); const inv = add('ImageInvert');
const s = add('SaveImage'); link(pi, 0, e, 'width'); link(e, 0, inv, 'image'); link(inv, 0, s, 'images');
const { node } = g.convertToSubgraph(new Set([e, inv])); await tick();
node.disconnectInput(node.inputs.findIndex(i => i.name === 'width')); await tick(); g.remove(pi); await tick();
const w = node.widgets.find(w => w.name === 'width'); if (w) w.value = 77;
""",
    "subgraph_nested": """
const e = add('EmptyImage', {width: 20}); const inv = add('ImageInvert'); const blur = add('ImageBlur', {sigma: 2});
const s = add('SaveImage'); link(e, 0, inv, 'image'); link(inv, 0, blur, 'image'); link(blur, 0, s, 'images');
const first = g.convertToSubgraph(new Set([inv])); await tick();
g.convertToSubgraph(new Set([first.node, blur])); await tick();
""",
    "subgraph_bypassed_instance": """
const e = add('EmptyImage', {width: 28}); const inv = add('ImageInvert'); const s = add('SaveImage');
link(e, 0, inv, 'image'); link(inv, 0, s, 'images'); const { node } = g.convertToSubgraph(new Set([inv])); await tick();
node.mode = 4;
""",
    "subgraph_inner_muted_and_bypassed": """
const e = add('EmptyImage', {width: 30}); const inv = add('ImageInvert'); const blur = add('ImageBlur');
const s = add('SaveImage'); link(e, 0, inv, 'image'); link(inv, 0, blur, 'image'); link(blur, 0, s, 'images');
const { subgraph } = g.convertToSubgraph(new Set([inv, blur])); await tick();
for (const n of subgraph.nodes) { if (n.type === 'ImageInvert') n.mode = 4; }
const pv = add('PreviewImage', {}, subgraph); const lim = subgraph.nodes.find(n => n.type === 'ImageBlur');
link(lim, 0, pv, 'images'); pv.mode = 2;
""",
    "dynamic_prompt_comments": """
const t = add('CLIPTextEncode'); t.widgets[0].value = 'a cat // a comment\\n{blue|blue} sky /* gone */ \\\\{kept\\\\}';
const t2 = add('CLIPTextEncode'); t2.widgets[0].value = 'plain words';
""",
    "filename_replacement": """
const e = add('EmptyImage', {width: 40, height: 50}); e.title = 'My Size'; const s = add('SaveImage',
  {filename_prefix: 'img_%EmptyImage.width%_%My Size.height%_%nope.x%_%width%'}); link(e, 0, s, 'images');
""",
}


def build_cases(oracle: EditorOracle, names: list[str] | None = None) -> dict[str, dict]:
    """{name: {"workflow": saved UI workflow, "api": prompt the editor queues after loading it}}."""
    out = {}
    for name in names or list(CASES):
        wf = json.loads(
            oracle.evaluate(
                "(async () => {"
                + PRELUDE
                + CASES[name]
                + "\nawait tick(); const __p = await app.graphToPrompt(); return JSON.stringify(__p.workflow); })()"
            )
        )
        out[name] = {"workflow": wf, "api": oracle.convert(wf)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("workflows", nargs="+", type=Path)
    args = ap.parse_args(argv)
    out = {}
    with EditorOracle(args.server) as oracle:
        for path in args.workflows:
            out[str(path)] = oracle.convert(json.loads(path.read_text()))
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
