"""Record workflows SAVED BY THE REAL ComfyUI editor, and the prompt the editor queues for each.

Golden data for driver/convert.py on workflows written by newer editors (subgraphs with
promoted widgets and proxyWidgets, nested subgraphs, group-node definitions, inputs a
server does not declare, editor titles). Headless Chromium drives the editor a ComfyUI
server ships (tests/_editor_oracle.py): each case builds a graph with the editor's own
API (LiteGraph, convertToSubgraph, the subgraph input/widget-promotion API, the group
node command), then keeps

- ``<case>.saved.json``: the text the editor's Save writes (``JSON.stringify`` of
  ``app.rootGraph.serialize()``, the workflow store's activeState), byte for byte;
- ``<case>.exported.json``: the text Export writes (``graphToPrompt().workflow``, the
  form with unlinked widget inputs compressed away; also what a queued prompt embeds
  in its PNG), indented like the editor's Export;
- ``<case>.api.json``: ``live``: the prompt the editor queues for the graph as built;
  ``saved`` / ``exported``: the prompt it queues after loading each save into a fresh
  graph (``app.loadGraphData`` then ``app.graphToPrompt``);

and for the whole folder ``object_info.json.gz`` (what the editor saw, trimmed to the
node types the saves use) and ``index.json`` (versions, one line per case). With
``--replay URL`` the saves are also loaded into the editor of a second server (e.g.
ComfyUI 0.3.64, frontend 1.27.10): ``replay_<version>.json`` holds its prompts (or
the error it raised) and ``object_info_<version>.json.gz`` its object_info. With
``--templates``, ``templates.json.gz`` gets every workflow template the server ships
(GET /templates/index.json) whose nodes it all has, with the prompt its editor queues.

Start the servers as the tests do (driver.local.LocalComfy) or by hand, e.g.
``cd .runtime/comfyui-0.8.0 && venv/bin/python main.py --cpu --listen 127.0.0.1 --port 8190``:

    python tests/_record_editor_saves.py --server http://127.0.0.1:8190 \\
        [--replay http://127.0.0.1:8191] [--templates] [--out tests/data/convert/editor_0.8.0] [case ...]

The cases need only core nodes and no model files: combo values such as ckpt_name are
set by name. Re-recording against another frontend rewrites the folder it is pointed at.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests._editor_oracle import PRELUDE, EditorOracle  # noqa: E402

DEFAULT_OUT = ROOT / "tests" / "data" / "convert" / "editor_0.8.0"

# Helpers on top of the oracle's PRELUDE (add, wi, link, tick).
HELPERS = """
const G = () => app.rootGraph || app.graph;
const setW = (n, name, v) => { const w = n.widgets.find(w => w.name === name);
  if (!w) throw new Error(n.type + ' has no widget ' + name + ': ' + n.widgets.map(w => w.name)); w.value = v; };
// Promote an inner widget the editor's way: a new subgraph input connected to it.
const expose = (subgraph, n, name, label) => { const i = wi(n, name);
  const si = subgraph.addInput(name, String(n.inputs[i].type)); si.connect(n.inputs[i], n);
  if (label) subgraph.renameInput(si, label); return si; };
const sgOf = inst => inst.subgraph;
const innerOf = (inst, type, k = 0) => inst.subgraph.nodes.filter(n => n.type === type)[k];
const linkInputs = (from, to, names) => { for (const nm of names) {
  const lk = G().getLink(from.inputs.find(i => i.name === nm).link);
  G().getNodeById(lk.origin_id).connect(lk.origin_slot, to, to.inputs.findIndex(i => i.name === nm)); } };
const answerPrompt = async text => { for (let k = 0; k < 200; k++) {
  const inp = document.querySelector('.prompt-dialog-content input');
  if (inp) { inp.value = text; inp.dispatchEvent(new Event('input', {bubbles: true})); await tick();
    document.querySelector('.prompt-dialog-content button').click(); await tick(); return; }
  await tick(); } throw new Error('the group node name prompt did not open'); };
const toGroupNode = async (nodes, name) => { app.canvas.deselectAll(); app.canvas.selectNodes(nodes);
  const done = app.extensionManager.command.execute('Comfy.GroupNode.ConvertSelectedNodesToGroupNode');
  await answerPrompt(name); await done; await tick();
  return G().nodes.find(n => n.type === 'workflow>' + name); };
const txt2img = () => {
  const ck = add('CheckpointLoaderSimple', {ckpt_name: 'sd15.safetensors'});
  const pos = add('CLIPTextEncode', {text: 'a red fox in snow'}); const neg = add('CLIPTextEncode', {text: 'blurry'});
  const lat = add('EmptyLatentImage', {width: 640, height: 448});
  const ks = add('KSampler', {seed: 7, steps: 12, cfg: 6.5, sampler_name: 'dpmpp_2m', scheduler: 'karras'});
  const dec = add('VAEDecode'); const sv = add('SaveImage', {filename_prefix: 'fox'});
  link(ck, 1, pos, 'clip'); link(ck, 1, neg, 'clip'); link(ck, 0, ks, 'model'); link(pos, 0, ks, 'positive');
  link(neg, 0, ks, 'negative'); link(lat, 0, ks, 'latent_image'); link(ks, 0, dec, 'samples');
  link(ck, 2, dec, 'vae'); link(dec, 0, sv, 'images');
  return {ck, pos, neg, lat, ks, dec, sv}; };
"""

# name -> (what it exercises, JS body). Each body ends with the graph built in app.graph.
CASES: dict[str, tuple[str, str]] = {
    "sg_txt2img_promoted": (
        "txt2img with the prompts, latent and sampler in a subgraph: the editor auto-promotes "
        "the prompt texts and the seed as proxyWidgets; width/height are promoted through "
        "subgraph inputs and set on the instance",
        """
const t = txt2img();
const { node, subgraph } = g.convertToSubgraph(new Set([t.pos, t.neg, t.lat, t.ks])); await tick(); await tick();
const il = innerOf(node, 'EmptyLatentImage'); expose(subgraph, il, 'width'); expose(subgraph, il, 'height'); await tick();
setW(node, 'width', 768); setW(node, 'height', 512);
""",
    ),
    "sg_two_instances": (
        "one subgraph (a KSampler with steps promoted through a subgraph input) used by two "
        "instances with different steps: the inner widget holds only the last value",
        """
const t = txt2img();
const pi = add('PrimitiveInt', {value: 3}); link(pi, 0, t.ks, 'steps');
const { node, subgraph } = g.convertToSubgraph(new Set([t.ks])); await tick(); await tick();
node.disconnectInput(node.inputs.findIndex(i => i.name === 'steps')); await tick(); g.remove(pi); await tick();
setW(node, 'steps', 21);
const node2 = LiteGraph.createNode(subgraph.id); g.add(node2); await tick();
linkInputs(node, node2, ['model', 'positive', 'negative', 'latent_image']); await tick();
setW(node2, 'steps', 33);
const dec2 = add('VAEDecode'); node2.connect(0, dec2, 0); link(t.ck, 2, dec2, 'vae');
const pv = add('PreviewImage'); link(dec2, 0, pv, 'images');
""",
    ),
    "sg_widget_input_first": (
        "a subgraph whose first input is a promoted widget (width, unlinked) before linked "
        "inputs: the Export form drops it from the instance's inputs",
        """
const t = txt2img();
const pi = add('PrimitiveInt', {value: 3}); link(pi, 0, t.lat, 'width');
const { node, subgraph } = g.convertToSubgraph(new Set([t.lat, t.ks])); await tick(); await tick();
node.disconnectInput(node.inputs.findIndex(i => i.name === 'width')); await tick(); g.remove(pi); await tick();
setW(node, 'width', 704);
""",
    ),
    "sg_proxy_order": (
        "promoted widgets reordered in the subgraph panel (proxyWidgets order: ckpt_name, a "
        "proxied seed, then the prompt text): widgets_values follow that order, not the "
        "instance's inputs",
        """
const t = txt2img();
const { node, subgraph } = g.convertToSubgraph(new Set([t.ck, t.pos, t.neg, t.ks])); await tick(); await tick();
const ip = innerOf(node, 'CLIPTextEncode', 0); const ic = innerOf(node, 'CheckpointLoaderSimple');
const iks = innerOf(node, 'KSampler');
expose(subgraph, ip, 'text'); expose(subgraph, ic, 'ckpt_name'); expose(subgraph, iks, 'cfg', 'guidance'); await tick();
setW(node, 'text', 'an owl at dusk'); setW(node, 'ckpt_name', 'flow.safetensors'); setW(node, 'cfg', 4.5);
node.properties.proxyWidgets = [['-1', 'ckpt_name'], [String(iks.id), 'seed'], ['-1', 'text'],
  [String(innerOf(node, 'CLIPTextEncode', 1).id), 'text'], ['-1', 'cfg']];
await tick();
""",
    ),
    "sg_nested_promoted": (
        "nested subgraphs: a KSampler subgraph (steps promoted) inside an outer subgraph that "
        "promotes the inner instance's steps and the latent height again; the outer instance "
        "also proxies the nested seed by its execution path",
        """
const t = txt2img();
const inner = g.convertToSubgraph(new Set([t.ks])); await tick(); await tick();
expose(inner.subgraph, innerOf(inner.node, 'KSampler'), 'steps'); await tick(); setW(inner.node, 'steps', 14);
const outer = g.convertToSubgraph(new Set([inner.node, t.lat])); await tick(); await tick();
const ii = outer.subgraph.nodes.find(n => n.isSubgraphNode && n.isSubgraphNode());
const si = outer.subgraph.addInput('steps', 'INT'); si.connect(ii.inputs[wi(ii, 'steps')], ii);
expose(outer.subgraph, innerOf(outer.node, 'EmptyLatentImage'), 'height'); await tick();
setW(outer.node, 'steps', 17); setW(outer.node, 'height', 384);
const iks = ii.subgraph.nodes.find(n => n.type === 'KSampler');
outer.node.properties.proxyWidgets = [...outer.node.properties.proxyWidgets, [ii.id + ':' + iks.id, 'seed']];
await tick();
""",
    ),
    "undeclared_inputs": (
        "inputs a node does not declare: a socket and two widget inputs added by a JS "
        "extension (the editor drops widget inputs without a widget when it loads a save), "
        "and ImageScaleToTotalPixels.resolution_steps, which ComfyUI 0.3.64 does not have",
        """
const e = add('EmptyImage', {width: 64, height: 64}); const inv = add('ImageInvert'); const s = add('SaveImage');
link(e, 0, inv, 'image'); link(inv, 0, s, 'images');
const pi = add('PrimitiveInt', {value: 5});
inv.addInput('extra_image', 'IMAGE'); e.connect(0, inv, inv.inputs.length - 1);
s.addInput('extra_a', 'INT', {widget: {name: 'extra_a'}}); pi.connect(0, s, s.inputs.length - 1);
s.addInput('extra_b', 'INT', {widget: {name: 'extra_b'}}); pi.connect(0, s, s.inputs.length - 1);
const sc = add('ImageScaleToTotalPixels', {megapixels: 0.5}); link(e, 0, sc, 'image');
const steps = add('PrimitiveInt', {value: 8}); link(steps, 0, sc, 'resolution_steps');
const pv = add('PreviewImage'); link(sc, 0, pv, 'images');
""",
    ),
    "group_node_unused": (
        "extra.groupNodes holds a group-node definition that no node uses any more (made with "
        "the editor's Convert to Group Node, then the group node deleted)",
        """
const e = add('EmptyImage', {width: 40}); const inv = add('ImageInvert'); const blur = add('ImageBlur', {blur_radius: 2});
link(e, 0, inv, 'image'); link(inv, 0, blur, 'image'); const s = add('SaveImage', {filename_prefix: 'grp'});
link(blur, 0, s, 'images');
const gn = await toGroupNode([inv, blur], 'InvertBlur'); if (!gn) throw new Error('no group node');
g.remove(gn); await tick();
const e2 = add('EmptyImage', {width: 24}); const pv = add('PreviewImage'); link(e2, 0, pv, 'images');
""",
    ),
    "group_node_used": (
        "a group node that is used (Convert to Group Node on two nodes): the converter refuses "
        "it with a clear error; the editor's prompt is recorded for reference",
        """
const e = add('EmptyImage', {width: 40}); const inv = add('ImageInvert'); const blur = add('ImageBlur', {blur_radius: 2});
link(e, 0, inv, 'image'); link(inv, 0, blur, 'image'); const s = add('SaveImage', {filename_prefix: 'grp'});
link(blur, 0, s, 'images');
const gn = await toGroupNode([inv, blur], 'InvertBlur'); if (!gn) throw new Error('no group node');
""",
    ),
    "v3_dynamic_widgets": (
        "ComfyUI 0.8 nodes whose widgets the editor lays out by value: a dynamic combo "
        "(ResizeImageMaskNode.resize_type on 'scale dimensions'), autogrow inputs "
        "(BatchImagesNode), CustomCombo's growing options, PreviewAny's preview mode",
        """
const e1 = add('EmptyImage', {width: 32}); const e2 = add('EmptyImage', {width: 48});
const b = add('BatchImagesNode'); link(e1, 0, b, 0); await tick(); link(e2, 0, b, 1); await tick();
const pv = add('PreviewImage'); link(b, 0, pv, 'images');
const r = add('ResizeImageMaskNode'); link(e1, 0, r, 0); await tick();
setW(r, 'resize_type', 'scale dimensions'); await tick(); setW(r, 'resize_type.width', 300);
setW(r, 'resize_type.crop', 'disabled'); setW(r, 'scale_method', 'bilinear');
const pv2 = add('PreviewImage'); link(r, 0, pv2, 'images');
const cc = add('CustomCombo'); setW(cc, 'option0', 'small'); await tick(); setW(cc, 'option1', 'large'); await tick();
setW(cc, 'choice', 'large'); const pa = add('PreviewAny'); link(cc, 0, pa, 'source'); setW(pa, 'previewMode', true);
""",
    ),
    "titles": (
        "what graphToPrompt puts in _meta.title: nodes whose display_name is null (ImageBlur, "
        "LatentAdd), one whose editor name differs from display_name (Mahiro), an explicit "
        "title, an empty title, and the same inside a subgraph",
        """
const e = add('EmptyImage'); const b = add('ImageBlur'); const s = add('SaveImage'); link(e, 0, b, 'image'); link(b, 0, s, 'images');
const l1 = add('EmptyLatentImage'); const la = add('LatentAdd'); link(l1, 0, la, 'samples1'); link(l1, 0, la, 'samples2');
const ck = add('CheckpointLoaderSimple', {ckpt_name: 'm.safetensors'}); const m = add('Mahiro'); link(ck, 0, m, 'model');
const ms = add('ModelSamplingDiscrete'); link(m, 0, ms, 'model');
const sl = add('SaveLatent'); link(la, 0, sl, 'samples');
const inv = add('ImageInvert'); link(b, 0, inv, 'image'); inv.title = 'My invert'; const pv = add('PreviewImage'); link(inv, 0, pv, 'images');
const sh = add('ImageSharpen'); link(inv, 0, sh, 'image'); sh.title = ''; const pv2 = add('PreviewImage'); link(sh, 0, pv2, 'images');
g.convertToSubgraph(new Set([b, inv])); await tick();
""",
    ),
}


def _js_case(body: str) -> str:
    return (
        "(async () => {"
        + PRELUDE
        + HELPERS
        + body
        + "\nawait tick(); await tick(); const __p = await app.graphToPrompt();"
        " return JSON.stringify({live: __p.output,"
        " saved: JSON.stringify(G().serialize()),"
        " exported: JSON.stringify(__p.workflow, null, 2)}); })()"
    )


def record(oracle: EditorOracle, names: list[str]) -> dict[str, dict[str, Any]]:
    """{case: {"saved": text, "exported": text, "api": {"live", "saved", "exported"}}}."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        got = json.loads(oracle.evaluate(_js_case(CASES[name][1])))
        api = {"live": got["live"]}
        for form in ("saved", "exported"):
            api[form] = oracle.convert(json.loads(got[form]))
        out[name] = {"saved": got["saved"], "exported": got["exported"], "api": api}
    return out


def replay(oracle: EditorOracle, saves: dict[str, dict[str, str]]) -> dict[str, dict[str, Any]]:
    """The prompt another editor queues for each save, or {"error": what it raised}."""
    out: dict[str, dict[str, Any]] = {}
    for name, forms in saves.items():
        out[name] = {}
        for form in ("saved", "exported"):
            try:
                out[name][form] = oracle.convert(json.loads(forms[form]))
            except RuntimeError as e:
                out[name][form] = {"error": str(e)[:600]}
    return out


def record_templates(oracle: EditorOracle, server: str, object_info: dict) -> dict[str, dict]:
    """{template: {"workflow": as shipped, "api": the editor's prompt}} for the shipped templates
    that use only node types the server has (no API-key or custom nodes needed to load)."""
    import requests

    from driver.convert import required_node_types

    index = requests.get(server + "/templates/index.json", timeout=60).json()
    names = sorted({t["name"] for module in index for t in module.get("templates") or []})
    out: dict[str, dict] = {}
    for name in names:
        r = requests.get(f"{server}/templates/{name}.json", timeout=60)
        if r.status_code != 200:
            continue
        wf = r.json()
        if not isinstance(wf, dict) or not isinstance(wf.get("nodes"), list):
            continue
        if (
            (wf.get("extra") or {}).get("groupNodes")
            or not used_types(wf) - {"Note", "MarkdownNote"}
            or any(t not in object_info for t in required_node_types(wf))
        ):
            continue
        out[name] = {"workflow": wf, "api": oracle.convert(wf)}
    return out


def used_types(workflow: dict) -> set[str]:
    """Every node type a save mentions (root, subgraph definitions, group-node definitions)."""
    graphs = [workflow.get("nodes") or []]
    graphs += [d.get("nodes") or [] for d in ((workflow.get("definitions") or {}).get("subgraphs") or [])]
    graphs += [d.get("nodes") or [] for d in ((workflow.get("extra") or {}).get("groupNodes") or {}).values()]
    return {n["type"] for nodes in graphs for n in nodes if isinstance(n, dict) and n.get("type")}


def _system(url: str) -> dict:
    import requests

    return requests.get(url + "/system_stats", timeout=30).json()["system"]


def _object_info(url: str) -> dict:
    import requests

    return requests.get(url + "/object_info", timeout=120).json()


def _write_gz(path: Path, doc: dict) -> None:
    # Key order kept: it is data (a dynamic combo's option inputs have no input_order).
    # mtime=0: re-recording the same data writes the same bytes.
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(json.dumps(doc, indent=0).encode())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True, help="the ComfyUI whose editor builds and saves the cases")
    ap.add_argument("--replay", action="append", default=[], help="another ComfyUI whose editor loads the saves")
    ap.add_argument("--templates", action="store_true", help="also record the server's shipped templates")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("cases", nargs="*", help=f"default: all of {', '.join(CASES)}")
    args = ap.parse_args(argv)
    names = args.cases or list(CASES)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    server = args.server.rstrip("/")
    system = _system(server)
    info = _object_info(server)
    with EditorOracle(server) as oracle:
        frontend = oracle.evaluate("window.__COMFYUI_FRONTEND_VERSION__ || null")
        recorded = record(oracle, names)
        templates = record_templates(oracle, server, info) if args.templates else None
    if templates is not None:
        _write_gz(
            out / "templates.json.gz",
            {
                "_source": {
                    "comfyui": system.get("comfyui_version"),
                    "frontend": frontend,
                    "how": "GET /templates/<name>.json for each template in /templates/index.json "
                    "whose nodes the server has, loaded into the editor: graphToPrompt output",
                },
                "cases": templates,
            },
        )
    types: set[str] = set()
    for name, rec in recorded.items():
        (out / f"{name}.saved.json").write_text(rec["saved"], encoding="utf-8")
        (out / f"{name}.exported.json").write_text(rec["exported"], encoding="utf-8")
        (out / f"{name}.api.json").write_text(json.dumps(rec["api"], indent=1, sort_keys=True) + "\n", encoding="utf-8")
        for form in ("saved", "exported"):
            types |= used_types(json.loads(rec[form]))
    index_path = out / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"cases": {}}
    index["_source"] = {
        "comfyui": system.get("comfyui_version"),
        "frontend": frontend,
        "how": "tests/_record_editor_saves.py: graphs built in the real editor (headless Chromium), "
        "saved as its Save and Export write them, and the prompt its graphToPrompt queues",
    }
    index["cases"].update({n: CASES[n][0] for n in names})
    index_path.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    all_saves = {
        p.name[: -len(".saved.json")]: {
            "saved": p.read_text(encoding="utf-8"),
            "exported": p.with_name(p.name.replace(".saved.", ".exported.")).read_text(encoding="utf-8"),
        }
        for p in sorted(out.glob("*.saved.json"))
    }
    for forms in all_saves.values():
        for text in forms.values():
            types |= used_types(json.loads(text))
    if (out / "templates.json.gz").exists():
        with gzip.open(out / "templates.json.gz", "rt", encoding="utf-8") as f:
            for case in json.load(f)["cases"].values():
                types |= used_types(case["workflow"])
    _write_gz(
        out / "object_info.json.gz",
        {
            "_source": {
                "comfyui": system.get("comfyui_version"),
                "frontend": frontend,
                "how": "GET /object_info, trimmed to the node types the saves (and templates) in this folder use",
            },
            "nodes": {t: info[t] for t in sorted(types) if t in info},
        },
    )

    for url in args.replay:
        url = url.rstrip("/")
        other = _system(url)
        version = other.get("comfyui_version")
        with EditorOracle(url) as oracle:
            other_frontend = oracle.evaluate("window.__COMFYUI_FRONTEND_VERSION__ || null")
            prompts = replay(oracle, all_saves)
        (out / f"replay_{version}.json").write_text(
            json.dumps(
                {
                    "_source": {
                        "comfyui": version,
                        "frontend": other_frontend,
                        "how": "each save loaded into this editor (loadGraphData + graphToPrompt)",
                    },
                    "cases": prompts,
                },
                indent=1,
                sort_keys=True,
            )
            + "\n",
            encoding="utf-8",
        )
        oinfo = _object_info(url)
        _write_gz(
            out / f"object_info_{version}.json.gz",
            {
                "_source": {
                    "comfyui": version,
                    "frontend": other_frontend,
                    "how": "GET /object_info, trimmed to the node types the saves in this folder use",
                },
                "nodes": {t: oinfo[t] for t in sorted(types) if t in oinfo},
            },
        )
    print(f"recorded {len(names)} case(s) into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
