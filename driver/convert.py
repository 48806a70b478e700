"""UI-format workflow (what the editor saves) -> API prompt (what POST /prompt takes).

A port of what the ComfyUI editor does when it queues a graph (ComfyUI_frontend
1.27 `graphToPrompt` + `ExecutableNodeDTO`), driven by the server's /object_info:

- each node's widgets are rebuilt from its /object_info inputs in `input_order`
  (required, then optional); `widgets_values` fill them in order; widgets the editor
  never sends (control_after_generate, control_filter_list, upload buttons) take
  their slot in `widgets_values` but are dropped from the prompt;
- a linked input wins over the widget of the same name; links are resolved through
  Reroute nodes, bypassed nodes (mode 4: the matching input is passed through) and
  subgraph boundaries (subgraphs are flattened to ids like "outer:inner");
- PrimitiveNode values are copied into the widgets they feed; virtual nodes
  (PrimitiveNode, Reroute, Note, MarkdownNote) and muted nodes (mode 2) are left out,
  and inputs linked to a node that is left out are dropped;
- `_meta.title` is the node's title (or the class display name);
- string widgets with `dynamicPrompts` get `{a|b}` choices and comments resolved,
  and save nodes get `%Node.widget%` / `%date:...%` replaced in filename_prefix,
  like the editor does.

The result is checked against the real editor (headless Chromium driving the frontend
that ComfyUI ships) in tests/test_driver_convert.py.
"""

from __future__ import annotations

import copy
import datetime as _dt
import logging
import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .workflow import is_api_prompt

log = logging.getLogger("comfy_avatar.driver.convert")

MODE_NEVER = 2
MODE_BYPASS = 4
VIRTUAL_TYPES = frozenset({"PrimitiveNode", "Reroute", "Note", "MarkdownNote"})
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})
SUBGRAPH_INPUT_ID = -10
SUBGRAPH_OUTPUT_ID = -20

# Input types the editor turns into widgets (its widget store, frontend 1.27.10).
WIDGET_TYPES = frozenset({
    "INT", "FLOAT", "BOOLEAN", "STRING", "MARKDOWN", "COMBO", "IMAGEUPLOAD", "FILEUPLOAD",
    "COLOR", "IMAGECOMPARE", "TREESELECT", "MULTISELECT", "CHART", "GALLERIA",
    "SELECTBUTTON", "TEXTAREA", "LOAD_3D", "LOAD_3D_ANIMATION", "PREVIEW_3D",
    "PREVIEW_3D_ANIMATION", "AUDIO_UI", "AUDIOUPLOAD", "AUDIO_RECORD", "WEBCAM",
})

# Nodes whose widgets the editor's bundled extensions lay out by hand (frontend
# 1.27.10, read from the live editor): (name, sent in the prompt, has a widgets_values slot).
_EXTENSION_LAYOUTS: dict[str, list[tuple[str, bool, bool]]] = {
    "LoadImageOutput": [("image", True, True), ("Auto-refresh after generation", False, True),
                        ("refresh", True, True), ("upload", False, True)],
    "WebcamCapture": [("image", True, True), ("width", True, True), ("height", True, True),
                      ("capture_on_queue", True, True), ("waiting for camera...", True, True)],
    "Load3D": [("model_file", True, True), ("upload 3d model", True, True),
               ("upload extra resources", True, True), ("clear", True, True),
               ("image", True, True), ("width", True, True), ("height", True, True)],
    "Preview3D": [("model_file", True, True), ("image", True, True)],
    "SaveGLB": [("filename_prefix", True, True), ("image", True, True)],
    "PreviewAny": [("preview", True, False)],
}
_EXTENSION_LAYOUTS["Load3DAnimation"] = _EXTENSION_LAYOUTS["Load3D"]
_EXTENSION_LAYOUTS["Preview3DAnimation"] = _EXTENSION_LAYOUTS["Preview3D"]

# Save nodes whose filename_prefix the editor runs through text replacement.
_SAVE_NODE_TYPES = frozenset({
    "SaveImage", "SaveAnimatedWEBP", "SaveWEBM", "SaveAudio", "SaveGLB", "SaveAnimatedPNG",
    "CLIPSave", "VAESave", "ModelSave", "LoraSave", "SaveLatent",
})
_UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")


class ConversionError(ValueError):
    """The workflow cannot be converted; the message names the node and the fix."""


# ----------------------------------------------------------------------------- widgets


@dataclass(frozen=True)
class Widget:
    name: str
    in_prompt: bool = True        # False: options.serialize === false in the editor
    has_slot: bool = True         # False: widget.serialize === false (no widgets_values slot)
    kind: str = ""                # input type (INT, COMBO, ...) or "" for extension widgets
    spec: tuple = ()              # the /object_info input spec, when there is one


def _input_specs(defn: dict) -> list[tuple[str, list]]:
    """(name, spec) in the editor's order: input_order.required, .optional, then the rest."""
    inputs = defn.get("input") or {}
    order = defn.get("input_order") or {}
    out: list[tuple[str, list]] = []
    seen: set[str] = set()
    for section in ("required", "optional"):
        specs = inputs.get(section) or {}
        for name in order.get(section) or list(specs):
            if name in specs and name not in seen:
                out.append((name, specs[name]))
                seen.add(name)
    for section in ("required", "optional"):
        for name, spec in (inputs.get(section) or {}).items():
            if name not in seen:
                out.append((name, spec))
                seen.add(name)
    return out


def _spec_type(spec: Any) -> str:
    if not isinstance(spec, (list, tuple)) or not spec:
        return ""
    t = spec[0]
    return "COMBO" if isinstance(t, list) else str(t)


def _spec_opts(spec: Any) -> dict:
    if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1]
    return {}


def widget_layout(class_type: str, object_info: dict) -> list[Widget]:
    """The widgets the editor creates for a node of `class_type`, in order."""
    defn = object_info.get(class_type)
    if defn is None:
        raise ConversionError(
            f"node type {class_type!r}: not in the server's /object_info. Fix: install the "
            "custom node pack that provides it on that server, or pick a server that has it")
    specs = _input_specs(defn)
    special = _EXTENSION_LAYOUTS.get(class_type)
    if special is not None:
        by_name = dict(specs)
        return [Widget(n, p, s, _spec_type(by_name.get(n)), tuple(by_name.get(n) or ()))
                for n, p, s in special]
    widgets: list[Widget] = []
    has_upload = False
    for name, spec in specs:
        kind, opts = _spec_type(spec), _spec_opts(spec)
        if opts.get("forceInput") or kind not in WIDGET_TYPES:
            continue
        widgets.append(Widget(name, True, True, kind, tuple(spec)))
        if kind == "INT":
            control = opts.get("control_after_generate")
            if control is None:
                control = name in ("seed", "noise_seed")
            if control:
                widgets.append(Widget("control_after_generate", False))
        elif kind == "COMBO":
            if opts.get("control_after_generate"):
                widgets.append(Widget("control_after_generate", False))
                widgets.append(Widget("control_filter_list", False))
            if name in (defn.get("input") or {}).get("required", {}) and any(
                    opts.get(f) is True for f in _UPLOAD_FLAGS):
                has_upload = True
    if has_upload:                       # Comfy.UploadImage appends required.upload
        widgets.append(Widget("upload", False))
    elif "audio" in ((defn.get("input") or {}).get("required") or {}) and _spec_opts(
            defn["input"]["required"]["audio"]).get("audio_upload") is True:
        widgets.append(Widget("upload", False))   # Comfy.UploadAudio
    return widgets


def widget_default(w: Widget) -> Any:
    """The value a fresh editor widget has before widgets_values are applied."""
    opts = _spec_opts(list(w.spec)) if w.spec else {}
    if "default" in opts:
        return opts["default"]
    if w.kind == "COMBO":
        values = w.spec[0] if w.spec and isinstance(w.spec[0], list) else opts.get("options") or []
        return values[0] if values else None
    if w.kind in ("INT", "FLOAT"):
        return 0
    if w.kind == "BOOLEAN":
        return False
    if w.kind == "STRING" or w.kind == "":
        return ""                       # extension widgets (previews, buttons) start empty
    return None


def _migrate_widgets_values(defn: dict, layout: list[Widget], values: list) -> list:
    """The editor's migrateWidgetsValues: old saves kept a slot for forceInput inputs."""
    names = {w.name for w in layout}
    original = [(n, s) for n, s in _input_specs(defn) if n in names or _spec_opts(s).get("forceInput")]
    def width(n: str, s: list) -> int:
        o = _spec_opts(s)
        return 2 if o.get("control_after_generate") or n in ("seed", "noise_seed") else 1
    if not any(_spec_opts(s).get("forceInput") for _, s in original):
        return values
    if sum(width(n, s) for n, s in original) == len(values):
        return [v for (n, s), v in zip(original, values) if not _spec_opts(s).get("forceInput")]
    return values


def node_widget_values(node: dict, object_info: dict) -> dict[str, tuple[Widget, Any]]:
    """widget name -> (widget, value) after the editor has configured the node."""
    layout = widget_layout(node["type"], object_info)
    values = node.get("widgets_values")
    if isinstance(values, dict):       # some packs save a name -> value mapping
        assigned = {w.name: values.get(w.name, widget_default(w)) for w in layout}
    else:
        values = _migrate_widgets_values(object_info[node["type"]], layout, list(values or []))
        slots = [w for w in layout if w.has_slot]
        assigned = {w.name: widget_default(w) for w in layout}
        for w, v in zip(slots, values):
            assigned[w.name] = v
    if node["type"] in ("KSampler", "KSamplerAdvanced"):
        s = assigned.get("sampler_name")
        if isinstance(s, str) and s.startswith("sample_"):
            assigned["sampler_name"] = s[7:]
    return {w.name: (w, assigned[w.name]) for w in layout}


# ----------------------------------------------------------------------------- graph model


@dataclass
class _Link:
    id: Any
    origin_id: Any
    origin_slot: int
    target_id: Any
    target_slot: int
    type: Any


@dataclass
class _Graph:
    nodes: dict[str, dict]
    links: dict[Any, _Link]
    subgraph: dict | None = None       # the definition, for subgraph graphs

    @classmethod
    def build(cls, nodes: list, links: Iterable, subgraph: dict | None = None) -> "_Graph":
        by_id = {str(n["id"]): n for n in nodes if isinstance(n, dict) and "id" in n}
        table: dict[Any, _Link] = {}
        for raw in links or []:
            if isinstance(raw, (list, tuple)) and len(raw) >= 5:
                lk = _Link(raw[0], raw[1], raw[2], raw[3], raw[4], raw[5] if len(raw) > 5 else None)
            elif isinstance(raw, dict) and "id" in raw:
                lk = _Link(raw["id"], raw.get("origin_id"), raw.get("origin_slot"),
                           raw.get("target_id"), raw.get("target_slot"), raw.get("type"))
            else:
                continue
            table[lk.id] = lk
        return cls(by_id, table, subgraph)


def _valid_connection(a: Any, b: Any) -> bool:
    """LiteGraph.isValidConnection."""
    a = 0 if a in ("", "*") else a
    b = 0 if b in ("", "*") else b
    if not a or not b or a == b:
        return True
    a, b = str(a).lower(), str(b).lower()
    if "," not in a and "," not in b:
        return a == b
    return any(_valid_connection(x, y) for x in a.split(",") for y in b.split(","))


@dataclass
class _Dto:
    """ExecutableNodeDTO: one node at one place in the flattened graph."""
    node: dict
    path: tuple[str, ...]              # ids of the subgraph instances that contain it
    graph: _Graph
    instance: "_Dto | None"            # the subgraph instance this node lives in
    id: str = ""
    widgets: dict[str, tuple[Widget, Any]] | None = None
    sub: _Graph | None = None          # for subgraph instance nodes: the inner graph

    def __post_init__(self) -> None:
        self.id = ":".join([*self.path, str(self.node["id"])])

    @property
    def mode(self) -> int:
        return int(self.node.get("mode") or 0)

    @property
    def inputs(self) -> list[dict]:
        return [i for i in (self.node.get("inputs") or []) if isinstance(i, dict)]

    @property
    def virtual(self) -> bool:
        return self.node.get("type") in VIRTUAL_TYPES or self.sub is not None


class _Converter:
    def __init__(self, workflow: dict, object_info: dict, rng: random.Random | None,
                 now: Callable[[], _dt.datetime]):
        self.oi = object_info
        self.rng = rng or random.Random()
        self.now = now
        if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
            raise ConversionError("workflow: not a UI-format workflow (no 'nodes' list). Fix: "
                                  "export it from the editor with Save/Export, or pass an API-format prompt")
        extra = workflow.get("extra") or {}
        if isinstance(extra, dict) and extra.get("groupNodes"):
            raise ConversionError(
                "workflow: uses legacy group nodes (extra.groupNodes), which are not supported. "
                "Fix: in the editor, convert each group node to a subgraph (or ungroup it) and save again")
        self.defs: dict[str, dict] = {}
        for sg in ((workflow.get("definitions") or {}).get("subgraphs") or []):
            if isinstance(sg, dict) and sg.get("id"):
                self.defs[sg["id"]] = sg
        self.def_graphs = {k: _Graph.build(d.get("nodes") or [], d.get("links") or [], d)
                           for k, d in self.defs.items()}
        self.root = _Graph.build(workflow["nodes"], workflow.get("links") or [])
        self.dtos: dict[str, _Dto] = {}
        self._flatten(self.root, (), None, set())

    # --- flattening -------------------------------------------------------------------

    def _flatten(self, graph: _Graph, path: tuple[str, ...], instance: _Dto | None,
                 stack: set[str]) -> None:
        for node in graph.nodes.values():
            dto = _Dto(node, path, graph, instance)
            ntype = node.get("type")
            if ntype in self.defs:
                if ntype in stack:
                    raise ConversionError(f"node {dto.id}: subgraph {ntype} contains itself. "
                                          "Fix: remove the recursive subgraph instance")
                dto.sub = self.def_graphs[ntype]
                self.dtos[dto.id] = dto
                self._flatten(dto.sub, (*path, str(node["id"])), dto, stack | {ntype})
            else:
                self.dtos[dto.id] = dto
                if ntype in VIRTUAL_TYPES:
                    continue
                if not ntype:
                    raise ConversionError(f"node {dto.id}: has no type. Fix: re-save the workflow")
                if ntype in self.oi or dto.mode not in (MODE_NEVER, MODE_BYPASS):
                    dto.widgets = node_widget_values(node, self.oi)

    # --- editor hooks run before serialising --------------------------------------------

    def _apply_primitives(self) -> None:
        """PrimitiveNode.applyToGraph: copy the primitive's value into the widgets it feeds."""
        for dto in list(self.dtos.values()):
            if dto.node.get("type") != "PrimitiveNode":
                continue
            outs = dto.node.get("outputs") or []
            link_ids = (outs[0].get("links") if outs and isinstance(outs[0], dict) else None) or []
            values = dto.node.get("widgets_values") or []
            if not link_ids or not values:
                continue
            value = values[0]
            if value and (dto.node.get("properties") or {}).get("Run widget replace on values"):
                value = self._text_replace(value)
            for lid in link_ids:
                lk = dto.graph.links.get(lid)
                if lk is None:
                    continue
                target = self.dtos.get(":".join([*dto.path, str(lk.target_id)]))
                if target is None or not target.widgets:
                    continue
                ins = target.node.get("inputs") or []
                slot = ins[lk.target_slot] if 0 <= (lk.target_slot or 0) < len(ins) else None
                wname = ((slot or {}).get("widget") or {}).get("name")
                if wname in target.widgets:
                    w, _ = target.widgets[wname]
                    target.widgets[wname] = (w, value)

    def _text_replace(self, value: str) -> str:
        """applyTextReplacements: %date:fmt% and %NodeTitle.widget%."""
        def repl(m: re.Match) -> str:
            text = m.group(1)
            parts = text.split(".")
            if len(parts) != 2:
                if parts[0].startswith("date:"):
                    return _format_date(parts[0][5:], self.now())
                return m.group(0)
            matches = [d for d in self.dtos.values()
                       if (d.node.get("properties") or {}).get("Node name for S&R") == parts[0]]
            if not matches:
                matches = [d for d in self.dtos.values() if self._title(d) == parts[0]]
            if not matches or not matches[0].widgets or parts[1] not in matches[0].widgets:
                return m.group(0)
            v = matches[0].widgets[parts[1]][1]
            return re.sub(r'[/?<>\\:*|"\x00-\x1f\x7f]', "_", "" if v is None else _js_str(v))
        return re.sub(r"%([^%]+)%", repl, value)

    def _title(self, dto: _Dto) -> str:
        if "title" in dto.node and dto.node["title"] is not None:
            return str(dto.node["title"])
        if dto.sub is not None:
            return str(dto.sub.subgraph.get("name") or dto.node.get("type"))
        defn = self.oi.get(dto.node.get("type")) or {}
        return str(defn.get("display_name") or dto.node.get("type"))

    # --- link resolution (ExecutableNodeDTO.resolveInput / resolveOutput) ----------------

    def _promoted_widget(self, instance: _Dto, slot: dict) -> tuple[bool, Any]:
        """Value of the widget a subgraph instance shows for one of its inputs."""
        wname = (slot.get("widget") or {}).get("name")
        if not wname:
            return False, None
        widget_inputs = [i for i in instance.inputs if (i.get("widget") or {}).get("name")]
        values = instance.node.get("widgets_values")
        idx = next((k for k, i in enumerate(widget_inputs) if i is slot), None)
        if isinstance(values, list) and idx is not None and idx < len(values):
            return True, values[idx]
        # No stored value: the promoted widget starts from the inner widget's value.
        sg = instance.sub.subgraph if instance.sub else {}
        sg_inputs = sg.get("inputs") or []
        k = next((j for j, d in enumerate(sg_inputs) if d.get("name") == slot.get("name")), None)
        if k is not None:
            for lid in sg_inputs[k].get("linkIds") or []:
                lk = instance.sub.links.get(lid)
                inner = self.dtos.get(":".join([instance.id, str(lk.target_id)])) if lk else None
                if inner and inner.widgets:
                    ins = inner.node.get("inputs") or []
                    name = ((ins[lk.target_slot] if lk.target_slot < len(ins) else {}).get("widget") or {}).get("name")
                    if name in inner.widgets:
                        return True, inner.widgets[name][1]
        return False, None

    def resolve_input(self, dto: _Dto, slot: int, visited: set, type_: Any = None) -> dict | None:
        key = f"{dto.id}[I]{slot}"
        if key in visited:
            raise ConversionError(f"node {dto.id}: circular link through input {slot}. Fix: break the loop")
        visited.add(key)
        inputs = dto.inputs
        if slot >= len(inputs):
            raise ConversionError(f"node {dto.id}: no input slot {slot}. Fix: re-save the workflow")
        inp = inputs[slot]
        lid = inp.get("link")
        if lid is None:
            return None
        lk = dto.graph.links.get(lid)
        if lk is None:
            raise ConversionError(f"node {dto.id}: input {inp.get('name')!r} uses link {lid}, "
                                  "which the workflow does not define. Fix: reconnect it and save again")
        if dto.instance is not None and str(lk.origin_id) == str(SUBGRAPH_INPUT_ID):
            inst = dto.instance
            inst_inputs = inst.inputs
            sg_inputs = (inst.sub.subgraph or {}).get("inputs") or []
            # The instance's input slot for this subgraph input (same index, matched by name).
            name = sg_inputs[lk.origin_slot].get("name") if lk.origin_slot < len(sg_inputs) else None
            idx = next((k for k, i in enumerate(inst_inputs) if i.get("name") == name), lk.origin_slot)
            if idx >= len(inst_inputs):
                return None
            outer = inst_inputs[idx]
            if outer.get("link") is None:
                ok, value = self._promoted_widget(inst, outer)
                return {"widget_value": value} if ok else None
            return self.resolve_input(inst, idx, visited)
        origin = self.dtos.get(":".join([*dto.path, str(lk.origin_id)]))
        if origin is None:
            raise ConversionError(f"node {dto.id}: input {inp.get('name')!r} is linked to node "
                                  f"{lk.origin_id}, which is not in the workflow. Fix: reconnect it")
        return self.resolve_output(origin, int(lk.origin_slot), type_ if type_ is not None else inp.get("type"), visited)

    def resolve_output(self, dto: _Dto, slot: int, type_: Any, visited: set) -> dict | None:
        key = f"{dto.id}[O]{slot}"
        if key in visited:
            raise ConversionError(f"node {dto.id}: circular link through output {slot}. Fix: break the loop")
        visited.add(key)
        if dto.mode == MODE_BYPASS:
            idx = self._bypass_slot(dto, slot, type_)
            return None if idx < 0 else self.resolve_input(dto, idx, visited)
        if dto.sub is not None:
            return self._resolve_subgraph_output(dto, slot, type_, visited)
        if dto.node.get("type") in VIRTUAL_TYPES:
            if slot < len(dto.inputs):
                return self.resolve_input(dto, slot, visited, type_)
            return None
        return {"origin_id": dto.id, "origin_slot": slot}

    def _bypass_slot(self, dto: _Dto, slot: int, type_: Any) -> int:
        inputs = dto.inputs
        outs = dto.node.get("outputs") or []
        out_type = outs[slot].get("type") if slot < len(outs) and isinstance(outs[slot], dict) else None
        if type_ in ("*", ""):
            return slot if len(inputs) > slot else 0
        if slot < len(inputs) and _valid_connection(inputs[slot].get("type"), out_type) and \
                _valid_connection(inputs[slot].get("type"), type_):
            return slot
        for k, i in enumerate(inputs):
            if i.get("type") == type_:
                return k
        for k, i in enumerate(inputs):
            if _valid_connection(i.get("type"), out_type) and _valid_connection(i.get("type"), type_):
                return k
        return -1

    def _resolve_subgraph_output(self, dto: _Dto, slot: int, type_: Any, visited: set) -> dict | None:
        outs = (dto.sub.subgraph or {}).get("outputs") or []
        if slot >= len(outs):
            raise ConversionError(f"node {dto.id}: subgraph has no output {slot}. Fix: re-save the workflow")
        link_ids = outs[slot].get("linkIds") or []
        lk = dto.sub.links.get(link_ids[0]) if link_ids else None
        if lk is None:
            return None
        inner = self.dtos.get(":".join([dto.id, str(lk.origin_id)]))
        if inner is None:
            raise ConversionError(f"node {dto.id}: subgraph output {slot} comes from node "
                                  f"{lk.origin_id}, which the subgraph does not contain. Fix: reconnect it")
        return self.resolve_output(inner, int(lk.origin_slot), type_, visited)

    # --- serialising ---------------------------------------------------------------------

    def _widget_prompt_value(self, dto: _Dto, w: Widget, value: Any) -> Any:
        if w.kind == "STRING" and isinstance(value, str) and _spec_opts(list(w.spec)).get("dynamicPrompts"):
            value = process_dynamic_prompt(value, self.rng)
        if w.name == "filename_prefix" and dto.node.get("type") in _SAVE_NODE_TYPES and isinstance(value, str):
            value = self._text_replace(value)
        return value

    def convert(self) -> dict:
        self._apply_primitives()
        out: dict[str, dict] = {}
        for dto in self.dtos.values():
            if dto.virtual or dto.mode in (MODE_NEVER, MODE_BYPASS):
                continue
            inputs: dict[str, Any] = {}
            for name, (w, value) in (dto.widgets or {}).items():
                if not w.in_prompt:
                    continue
                value = self._widget_prompt_value(dto, w, value)
                inputs[name] = {"__value__": value} if isinstance(value, list) else value
            for k, inp in enumerate(dto.inputs):
                res = self.resolve_input(dto, k, set())
                if res is None:
                    continue
                if "widget_value" in res:
                    v = res["widget_value"]
                    inputs[inp.get("name")] = {"__value__": v} if isinstance(v, list) else v
                    continue
                inputs[inp.get("name")] = [str(res["origin_id"]), int(res["origin_slot"])]
            out[dto.id] = {"inputs": inputs, "class_type": dto.node["type"],
                           "_meta": {"title": self._title(dto)}}
        for entry in out.values():
            for name, v in list(entry["inputs"].items()):
                if isinstance(v, list) and len(v) == 2 and v[0] not in out:
                    del entry["inputs"][name]
        return out


def _js_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _format_date(fmt: str, date: _dt.datetime) -> str:
    """The editor's formatDate (d, M, h, m, s with 1-2 digits; yy / yyyy)."""
    parts = {"d": date.day, "M": date.month, "h": date.hour, "m": date.minute, "s": date.second}
    def repl(m: re.Match) -> str:
        t = m.group(0)
        if t == "yy":
            return str(date.year)[2:]
        if t == "yyyy":
            return str(date.year)
        if t[0] in parts:
            return str(parts[t[0]]).rjust(len(t), "0")
        return t
    return re.sub(r"dd?|MM?|hh?|mm?|ss?|yyy?y?", repl, fmt)


def process_dynamic_prompt(text: str, rng: random.Random | None = None) -> str:
    """The editor's processDynamicPrompt: strip comments, pick one of each {a|b|c}."""
    rng = rng or random.Random()
    src = re.sub(r"/\*[\s\S]*?\*/|//.*", "", text)
    pos = 0

    def choice_block() -> str:
        nonlocal pos
        options, choice, depth = [], "", 0
        while pos < len(src):
            ch = src[pos]
            pos += 1
            if ch == "\\":
                choice += "\\" + (src[pos] if pos < len(src) else "undefined")
                pos += 1
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                if not depth:
                    break
                depth -= 1
            elif ch == "|" and not depth:
                options.append(choice)
                choice = ""
                continue
            choice += ch
        options.append(choice)
        return process_dynamic_prompt(options[int(rng.random() * len(options))], rng)

    result = ""
    while pos < len(src):
        ch = src[pos]
        pos += 1
        if ch == "\\":
            result += "\\" + (src[pos] if pos < len(src) else "undefined")
            pos += 1
        elif ch == "{":
            result += choice_block()
        else:
            result += ch
    return re.sub(r"\\([{}|])", r"\1", result)


def is_ui_workflow(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def ui_to_api(workflow: dict, object_info: dict, *, rng: random.Random | None = None,
              now: Callable[[], _dt.datetime] = _dt.datetime.now) -> dict:
    """Convert an editor (UI-format) workflow into the API prompt the editor would queue.

    `object_info` is the server's GET /object_info. `rng` drives `{a|b}` dynamic-prompt
    choices (the editor uses Math.random); `now` the %date:...% replacement.
    Raises ConversionError naming the node and the fix.
    """
    return _Converter(copy.deepcopy(workflow), object_info, rng, now).convert()


def to_api_prompt(data: dict, object_info: dict | Callable[[], dict]) -> dict:
    """An API prompt from either format; `object_info` may be a callable fetched lazily."""
    if is_api_prompt(data):
        return data
    if is_ui_workflow(data):
        oi = object_info() if callable(object_info) else object_info
        return ui_to_api(data, oi)
    raise ConversionError("workflow: neither an API prompt ({id: {class_type, inputs}}) nor an editor "
                          "workflow ({nodes, links}). Fix: export it from the editor (Save or Export (API))")


def required_node_types(data: dict) -> set[str]:
    """Node classes a workflow (either format) needs on the server."""
    if is_api_prompt(data):
        return {v["class_type"] for v in data.values()}
    types: set[str] = set()
    defs = {d.get("id") for d in ((data.get("definitions") or {}).get("subgraphs") or [])}
    graphs = [data.get("nodes") or []] + [d.get("nodes") or [] for d in
                                          ((data.get("definitions") or {}).get("subgraphs") or [])]
    for nodes in graphs:
        for n in nodes:
            t = n.get("type") if isinstance(n, dict) else None
            if t and t not in VIRTUAL_TYPES and t not in defs and int(n.get("mode") or 0) not in (MODE_NEVER, MODE_BYPASS):
                types.add(t)
    return types
