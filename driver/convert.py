"""UI-format workflow (what the editor saves) -> API prompt (what POST /prompt takes).

A port of what the ComfyUI editor does when it loads a saved workflow and queues it
(ComfyUI_frontend `loadGraphData` + `graphToPrompt` + `ExecutableNodeDTO`; checked
against 1.27.10, shipped with ComfyUI 0.3.64, and 1.35.9, shipped with 0.8.0), driven
by the target server's /object_info:

- each node's widgets are rebuilt from its /object_info inputs in `input_order`
  (required, then optional); `widgets_values` fill them in order; widgets the editor
  never sends (control_after_generate, control_filter_list, upload buttons) take
  their slot in `widgets_values` but are dropped from the prompt; a dynamic combo
  (ComfyUI 0.8) is followed by the widgets of the option it is set to, and a few
  nodes' widgets are laid out by the editor's extensions, per frontend release;
- a node's inputs are the ones its /object_info declares, each taking the saved input
  of the same name, then the saved inputs it does not declare; of those, a widget
  input whose widget the node does not have is dropped (the editor removes it when it
  loads the save), a plain socket is kept;
- a linked input wins over the widget of the same name; links are resolved through
  Reroute nodes, bypassed nodes (mode 4: the matching input is passed through) and
  subgraph boundaries (subgraphs are flattened to ids like "outer:inner");
- a subgraph instance's inputs follow its definition's inputs, matched by name (newer
  editors save only the linked ones); the widgets it promotes through subgraph inputs
  take `widgets_values` in order and then, when the instance has
  `properties.proxyWidgets`, by their place in that list (proxied widgets are views of
  the inner widgets and carry no value of their own);
- PrimitiveNode values are copied into the widgets they feed; virtual nodes
  (PrimitiveNode, Reroute, Note, MarkdownNote) and muted nodes (mode 2) are left out,
  and inputs linked to a node that is left out are dropped;
- `_meta.title` is the node's own title, else the name the editor gives the class
  (its English locale where that differs from /object_info's display_name, else the
  display name, else the class name);
- string widgets with `dynamicPrompts` get `{a|b}` choices and comments resolved,
  and save nodes get `%Node.widget%` / `%date:...%` replaced in filename_prefix,
  like the editor does;
- group nodes (the editor's deprecated extra.groupNodes) are not expanded: a workflow
  that uses one is refused with the fix; unused definitions are ignored, as the
  editor ignores them.

The result is checked against the real editor (headless Chromium driving the frontend
that ComfyUI ships) in tests/test_driver_convert.py, on graphs built and saved by it.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import logging
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .workflow import is_api_prompt

log = logging.getLogger("comfy_avatar.driver.convert")

MODE_NEVER = 2
MODE_BYPASS = 4
VIRTUAL_TYPES = frozenset({"PrimitiveNode", "Reroute", "Note", "MarkdownNote"})
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})
SUBGRAPH_INPUT_ID = -10
SUBGRAPH_OUTPUT_ID = -20
# Node types of group-node instances: "workflow>" + the name in extra.groupNodes ("workflow/"
# in saves made before frontend 1.3).
GROUP_NODE_PREFIXES = ("workflow>", "workflow/")

# The editor's English names for node classes where they differ from /object_info's
# display_name (or the class name when that is empty). The editor titles a node from its
# own locale files, per frontend release; read from the live editors
# (LiteGraph.registered_node_types[type].title) with the ComfyUI each ships.
_EDITOR_TITLES: dict[tuple[int, int], dict[str, str]] = {
    (1, 27): {  # 1.27.10, ComfyUI 0.3.64
        "ImageBlend": "Image Blend",
        "ImageBlur": "Image Blur",
        "ImageQuantize": "Image Quantize",
        "ImageSharpen": "Image Sharpen",
        "ImageScaleToTotalPixels": "Scale Image to Total Pixels",
    },
    (1, 35): {  # 1.35.9, ComfyUI 0.8.0
        "FluxKontextMultiReferenceLatentMethod": "FluxKontextMultiReferenceLatentMethod",
        "Mahiro": "Mahiro is so cute that she deserves a better guidance function!! (\u3002\u30fb\u03c9\u30fb\u3002)",
        "ByteDanceSeedreamNode": "ByteDance Seedream 4",
    },
}

# Input types the editor turns into widgets (its widget store, frontend 1.27.10; the layouts
# they give match the live 1.35.9 editor's for every node of ComfyUI 0.8.0 too).
WIDGET_TYPES = frozenset(
    {
        "INT",
        "FLOAT",
        "BOOLEAN",
        "STRING",
        "MARKDOWN",
        "COMBO",
        "IMAGEUPLOAD",
        "FILEUPLOAD",
        "COLOR",
        "IMAGECOMPARE",
        "TREESELECT",
        "MULTISELECT",
        "CHART",
        "GALLERIA",
        "SELECTBUTTON",
        "TEXTAREA",
        "LOAD_3D",
        "LOAD_3D_ANIMATION",
        "PREVIEW_3D",
        "PREVIEW_3D_ANIMATION",
        "AUDIO_UI",
        "AUDIOUPLOAD",
        "AUDIO_RECORD",
        "WEBCAM",
    }
)

# Nodes whose widgets the editor's bundled extensions lay out by hand, read from the live
# editors: (name, sent in the prompt, has a widgets_values slot[, input spec when
# /object_info has none]). Per frontend release: the newest table not newer than the
# editor's release applies on top of the ones before it.
_ExtLayout = list[tuple]
_EXTENSION_LAYOUTS_BY_FRONTEND: dict[tuple[int, int], dict[str, _ExtLayout]] = {
    (1, 27): {  # 1.27.10, ComfyUI 0.3.64
        "LoadImageOutput": [
            ("image", True, True),
            ("Auto-refresh after generation", False, True),
            ("refresh", True, True),
            ("upload", False, True),
        ],
        "WebcamCapture": [
            ("image", True, True),
            ("width", True, True),
            ("height", True, True),
            ("capture_on_queue", True, True),
            ("waiting for camera...", True, True),
        ],
        "Load3D": [
            ("model_file", True, True),
            ("upload 3d model", True, True),
            ("upload extra resources", True, True),
            ("clear", True, True),
            ("image", True, True),
            ("width", True, True),
            ("height", True, True),
        ],
        "Preview3D": [("model_file", True, True), ("image", True, True)],
        "SaveGLB": [("filename_prefix", True, True), ("image", True, True)],
        "PreviewAny": [("preview", True, False)],
    },
    (1, 35): {  # 1.35.9, ComfyUI 0.8.0: Preview Any got a Markdown preview and its toggle
        "PreviewAny": [
            ("preview", True, False),
            ("preview", True, False),
            ("previewMode", True, True, ("BOOLEAN", {"default": False})),
        ],
    },
}
for _table in _EXTENSION_LAYOUTS_BY_FRONTEND.values():
    for _src, _dst in (("Load3D", "Load3DAnimation"), ("Preview3D", "Preview3DAnimation")):
        if _src in _table:
            _table[_dst] = _table[_src]

# A V3 input whose value picks the inputs that follow it (ComfyUI 0.8: "resize_type" of
# ResizeImageMaskNode). The editor shows a combo of the option keys and, right after it,
# the widgets of the chosen option, named "<input>.<key>".
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"

# Save nodes whose filename_prefix the editor runs through text replacement.
_SAVE_NODE_TYPES = frozenset(
    {
        "SaveImage",
        "SaveAnimatedWEBP",
        "SaveWEBM",
        "SaveAudio",
        "SaveGLB",
        "SaveAnimatedPNG",
        "CLIPSave",
        "VAESave",
        "ModelSave",
        "LoraSave",
        "SaveLatent",
    }
)
_UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")


class ConversionError(ValueError):
    """The workflow cannot be converted; the message names the node and the fix."""


class _Undefined:
    """A widget value the editor leaves `undefined` (a combo with no options and no saved
    value): JSON.stringify leaves such a key out of the prompt."""

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Any = _Undefined()


# ----------------------------------------------------------------------------- widgets


@dataclass(frozen=True)
class Widget:
    name: str
    in_prompt: bool = True  # False: options.serialize === false in the editor
    has_slot: bool = True  # False: widget.serialize === false (no widgets_values slot)
    kind: str = ""  # input type (INT, COMBO, ...) or "" for extension widgets
    spec: tuple = ()  # the /object_info input spec, when there is one


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


def _for_frontend(tables: dict[tuple[int, int], Any], frontend_version: str | None) -> tuple[int, int]:
    """The key of the table for an editor release: the newest one not newer than it; the
    newest when the release is not known or older than all."""
    newest = max(tables)
    m = re.match(r"\s*v?(\d+)\.(\d+)", str(frontend_version or ""))
    if not m:
        return newest
    want = (int(m.group(1)), int(m.group(2)))
    older = [k for k in tables if k <= want]
    return max(older) if older else newest


def _extension_layout(class_type: str, frontend_version: str | None) -> _ExtLayout | None:
    key = _for_frontend(_EXTENSION_LAYOUTS_BY_FRONTEND, frontend_version)
    layout = None
    for k in sorted(_EXTENSION_LAYOUTS_BY_FRONTEND):
        if k <= key and class_type in _EXTENSION_LAYOUTS_BY_FRONTEND[k]:
            layout = _EXTENSION_LAYOUTS_BY_FRONTEND[k][class_type]
    return layout


def _spec_widgets(name: str, spec: Any) -> list[Widget]:
    """The widgets the editor makes for one input spec (none for a socket-only input)."""
    kind, opts = _spec_type(spec), _spec_opts(spec)
    if kind == DYNAMIC_COMBO:
        keys = [o.get("key") for o in opts.get("options") or [] if isinstance(o, dict)]
        return [Widget(name, True, True, DYNAMIC_COMBO, (keys, {}, tuple(opts.get("options") or [])))]
    if opts.get("forceInput") or kind not in WIDGET_TYPES:
        return []
    widgets = [Widget(name, True, True, kind, tuple(spec))]
    if kind == "INT":
        control = opts.get("control_after_generate")
        if control is None:
            control = name in ("seed", "noise_seed")
        if control:
            widgets.append(Widget("control_after_generate", False))
    elif kind == "COMBO" and opts.get("control_after_generate"):
        widgets.append(Widget("control_after_generate", False))
        widgets.append(Widget("control_filter_list", False))
    return widgets


def _dynamic_option_widgets(combo: Widget, key: Any) -> list[Widget]:
    """The widgets a dynamic combo shows for option `key`: its inputs, required then
    optional, named "<combo>.<input>"."""
    option = next((o for o in combo.spec[2] if isinstance(o, dict) and o.get("key") == key), None)
    inputs = (option or {}).get("inputs") or {}
    out: list[Widget] = []
    for section in ("required", "optional"):
        for sub, spec in (inputs.get(section) or {}).items():
            out += _spec_widgets(f"{combo.name}.{sub}", spec)
    return out


def widget_layout(class_type: str, object_info: Mapping[str, Any], frontend_version: str | None = None) -> list[Widget]:
    """The widgets the editor creates for a node of `class_type`, in order.

    A dynamic combo appears as one DYNAMIC_COMBO widget: the widgets of its option
    depend on its value, and node_widget_values lays them out."""
    defn = object_info.get(class_type)
    if defn is None:
        raise ConversionError(
            f"node type {class_type!r}: not in the server's /object_info. Fix: install the "
            "custom node pack that provides it on that server, or pick a server that has it"
        )
    specs = _input_specs(defn)
    special = _extension_layout(class_type, frontend_version)
    if special is not None:
        by_name = dict(specs)
        out = []
        for entry in special:
            n, p, s = entry[:3]
            spec = entry[3] if len(entry) > 3 else by_name.get(n)
            out.append(Widget(n, p, s, _spec_type(spec), tuple(spec or ())))
        return out
    widgets: list[Widget] = []
    has_upload = False
    required = (defn.get("input") or {}).get("required") or {}
    for name, spec in specs:
        widgets += _spec_widgets(name, spec)
        if (
            _spec_type(spec) == "COMBO"
            and name in required
            and any(_spec_opts(spec).get(f) is True for f in _UPLOAD_FLAGS)
        ):
            has_upload = True
    if has_upload:  # Comfy.UploadImage appends required.upload
        widgets.append(Widget("upload", False))
    elif "audio" in required and _spec_opts(required["audio"]).get("audio_upload") is True:
        widgets.append(Widget("upload", False))  # Comfy.UploadAudio
    return widgets


def widget_default(w: Widget) -> Any:
    """The value a fresh editor widget has before widgets_values are applied."""
    opts = _spec_opts(list(w.spec)) if w.spec else {}
    if "default" in opts:
        return opts["default"]
    if w.kind in ("COMBO", DYNAMIC_COMBO):
        values = w.spec[0] if w.spec and isinstance(w.spec[0], list) else opts.get("options") or []
        return values[0] if values else UNDEFINED
    if w.kind in ("INT", "FLOAT"):
        return 0
    if w.kind == "BOOLEAN":
        return False
    if w.kind == "STRING" or w.kind == "":
        return ""  # extension widgets (previews, buttons) start empty
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


def _with_options(widgets: list[Widget]) -> list[list]:
    """[widget, value] for a fresh node: each dynamic combo on its default option."""
    out: list[list] = []
    for w in widgets:
        value = widget_default(w)
        out.append([w, value])
        if w.kind == DYNAMIC_COMBO:
            out += _with_options(_dynamic_option_widgets(w, value))
    return out


def _set_dynamic(placed: list[list], k: int, value: Any) -> None:
    """Setting dynamic combo k replaces the widgets of its group with those of the option."""
    combo = placed[k][0]
    placed[k][1] = value
    prefix = combo.name + "."
    rest = [p for p in placed[k + 1 :] if not p[0].name.startswith(prefix)]
    placed[k + 1 :] = _with_options(_dynamic_option_widgets(combo, value)) + rest


def _custom_combo(values: list) -> list[list]:
    """CustomCombo (Comfy.CustomCombo): a combo, then string widgets option0, option1, ...;
    giving the last one a value adds an empty one after it; emptying the one before an
    empty last one removes that last one."""
    choice, option = (
        Widget("choice", True, True, "COMBO", ([], {})),
        lambda k: Widget(f"option{k}", True, True, "STRING"),
    )
    placed: list[list] = [[choice, UNDEFINED], [option(0), ""]]
    for k, v in enumerate(values):
        if k >= len(placed):
            break
        placed[k][1] = v
        if k > 0:
            if k == len(placed) - 1:
                if v:
                    placed.append([option(len(placed) - 1), ""])
            elif not v and k == len(placed) - 2 and not placed[-1][1]:
                placed.pop()
    return placed


def node_widget_values(
    node: dict, object_info: Mapping[str, Any], frontend_version: str | None = None
) -> dict[str, tuple[Widget, Any]]:
    """widget name -> (widget, value) after the editor has configured the node.

    LGraphNode.configure gives widgets_values in order to the widgets that have a slot;
    a dynamic combo that gets its value swaps in its option's widgets right after it,
    and those take the next values, as the editor's loop over its widget list does."""
    layout = widget_layout(node["type"], object_info, frontend_version)
    values = node.get("widgets_values")
    if node["type"] == "CustomCombo" and isinstance(values, list):
        placed = _custom_combo(values)
    else:
        placed = _with_options(layout)
        if isinstance(values, dict):  # some packs save a name -> value mapping
            k = 0
            while k < len(placed):
                w = placed[k][0]
                v = values.get(w.name, placed[k][1])
                if w.kind == DYNAMIC_COMBO:
                    _set_dynamic(placed, k, v)
                else:
                    placed[k][1] = v
                k += 1
        else:
            seq = _migrate_widgets_values(object_info[node["type"]], layout, list(values or []))
            k = i = 0
            while k < len(placed) and i < len(seq):
                w = placed[k][0]
                if w.has_slot:
                    if w.kind == DYNAMIC_COMBO:
                        _set_dynamic(placed, k, seq[i])
                    else:
                        placed[k][1] = seq[i]
                    i += 1
                k += 1
    assigned = {w.name: (w, v) for w, v in placed}
    if node["type"] in ("KSampler", "KSamplerAdvanced"):
        w, s = assigned.get("sampler_name", (None, None))
        if w is not None and isinstance(s, str) and s.startswith("sample_"):
            assigned["sampler_name"] = (w, s[7:])
    return assigned


# ----------------------------------------------------------------------------- graph model


@dataclass
class _Link:
    id: Any
    origin_id: Any
    origin_slot: Any
    target_id: Any
    target_slot: Any
    type: Any


@dataclass
class _Graph:
    nodes: dict[str, dict]
    links: dict[Any, _Link]
    subgraph: dict  # the definition, for subgraph graphs ({} for the root)

    @classmethod
    def build(cls, nodes: list, links: Iterable, subgraph: dict | None = None) -> _Graph:
        by_id = {str(n["id"]): n for n in nodes if isinstance(n, dict) and "id" in n}
        table: dict[Any, _Link] = {}
        for raw in links or []:
            if isinstance(raw, (list, tuple)) and len(raw) >= 5:
                lk = _Link(raw[0], raw[1], raw[2], raw[3], raw[4], raw[5] if len(raw) > 5 else None)
            elif isinstance(raw, dict) and "id" in raw:
                lk = _Link(
                    raw["id"],
                    raw.get("origin_id"),
                    raw.get("origin_slot"),
                    raw.get("target_id"),
                    raw.get("target_slot"),
                    raw.get("type"),
                )
            else:
                continue
            table[lk.id] = lk
        return cls(by_id, table, subgraph or {})


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
    path: tuple[str, ...]  # ids of the subgraph instances that contain it
    graph: _Graph
    instance: _Dto | None  # the subgraph instance this node lives in
    id: str = ""
    widgets: dict[str, tuple[Widget, Any]] | None = None
    sub: _Graph | None = None  # for subgraph instance nodes: the inner graph
    runtime: list[dict] | None = None  # the inputs the editor's node has after loading the save
    declared: frozenset[str] = frozenset()  # inputs the node's definition declares
    declared_widgets: frozenset[str] = frozenset()  # those of them that are widgets
    promoted: dict[str, Any] | None = None  # instance widgets promoted through inputs

    def __post_init__(self) -> None:
        self.id = ":".join([*self.path, str(self.node["id"])])

    @property
    def mode(self) -> int:
        return int(self.node.get("mode") or 0)

    @property
    def saved_inputs(self) -> list[dict]:
        return [i for i in (self.node.get("inputs") or []) if isinstance(i, dict)]

    @property
    def inputs(self) -> list[dict]:
        return self.runtime if self.runtime is not None else self.saved_inputs

    @property
    def virtual(self) -> bool:
        return self.node.get("type") in VIRTUAL_TYPES or self.sub is not None


def merge_inputs(declared: list[tuple[Any, Any]], saved: list[dict]) -> list[dict]:
    """The inputs a node has once the editor has configured it from a save.

    The editor creates a node with the inputs its definition declares (a ComfyUI node's
    /object_info inputs, a subgraph's inputs) and then takes each saved input by name
    (the last one of a name wins), keeping the declared name and type; saved inputs
    with other names are appended in their order. Saves do not list every input:
    graphToPrompt's workflow (Export, PNG metadata) drops unlinked widget inputs, so
    reading them by position puts values and links on the wrong input."""
    by_name: dict[Any, dict] = {}
    for slot in saved:
        by_name[slot.get("name")] = slot
    names = {n for n, _ in declared}
    out = []
    for name, type_ in declared:
        found = by_name.get(name)
        out.append(
            {**found, "name": name, "type": type_} if found is not None else {"name": name, "type": type_, "link": None}
        )
    out += [slot for slot in saved if slot.get("name") not in names]
    return out


def _saved_widget_name(slot: dict) -> Any:
    """The widget a saved input slot says it stands for ({"widget": {"name": ...}}), if any."""
    widget = slot.get("widget")
    return widget.get("name") if isinstance(widget, dict) else None


def parse_proxy_widgets(value: Any, where: str) -> list[tuple[str, str]]:
    """properties.proxyWidgets: [[inner node id (or "-1" for the instance's own promoted
    widget), widget name], ...], possibly JSON-encoded, as the editor's parseProxyWidgets
    reads it (which refuses anything else, so the editor cannot load such a node)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in value
    ):
        return [(p[0], p[1]) for p in value]
    raise ConversionError(
        f"node {where}: properties.proxyWidgets is not a list of [node id, widget name] "
        "pairs, and the editor refuses to load it too. Fix: remove the property (or "
        "re-promote the widgets in the editor) and save again"
    )


class _Converter:
    def __init__(
        self,
        workflow: dict,
        object_info: Mapping[str, Any],
        rng: random.Random | None,
        now: Callable[[], _dt.datetime],
        frontend_version: str | None,
    ):
        self.oi = object_info
        self.rng = rng or random.Random()
        self.now = now
        self.frontend = frontend_version
        self.titles = editor_titles(frontend_version)
        if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
            raise ConversionError(
                "workflow: not a UI-format workflow (no 'nodes' list). Fix: "
                "export it from the editor with Save/Export, or pass an API-format prompt"
            )
        extra = workflow.get("extra") or {}
        groups = extra.get("groupNodes") if isinstance(extra, dict) else None
        self.group_defs: dict = groups if isinstance(groups, dict) else {}
        self.defs: dict[str, dict] = {}
        for sg in (workflow.get("definitions") or {}).get("subgraphs") or []:
            if isinstance(sg, dict) and sg.get("id"):
                self.defs[sg["id"]] = sg
        self.def_graphs = {k: _Graph.build(d.get("nodes") or [], d.get("links") or [], d) for k, d in self.defs.items()}
        self.root = _Graph.build(workflow["nodes"], workflow.get("links") or [])
        self.dtos: dict[str, _Dto] = {}
        self._flatten(self.root, (), None, set())
        for dto in self.dtos.values():
            if dto.sub is not None:
                self._promoted(dto)

    # --- flattening -------------------------------------------------------------------

    def _flatten(self, graph: _Graph, path: tuple[str, ...], instance: _Dto | None, stack: set[str]) -> None:
        for node in graph.nodes.values():
            dto = _Dto(node, path, graph, instance)
            ntype = node.get("type")
            if isinstance(ntype, str) and ntype.startswith(GROUP_NODE_PREFIXES):
                # Only group nodes that are used matter; the editor ignores unused definitions.
                raise ConversionError(
                    f"node {dto.id}: is a group node ({ntype!r}), the editor's deprecated way of "
                    "grouping nodes, which this converter does not expand. Fix: in the editor, "
                    "right-click the node > Convert to Subgraph (or Ungroup), save, and convert again"
                )
            if ntype in self.defs:
                if ntype in stack:
                    raise ConversionError(
                        f"node {dto.id}: subgraph {ntype} contains itself. Fix: remove the recursive subgraph instance"
                    )
                dto.sub = self.def_graphs[ntype]
                sg_inputs = [d for d in (dto.sub.subgraph.get("inputs") or []) if isinstance(d, dict)]
                dto.runtime = merge_inputs([(d.get("name"), d.get("type")) for d in sg_inputs], dto.saved_inputs)
                self.dtos[dto.id] = dto
                self._flatten(dto.sub, (*path, str(node["id"])), dto, stack | {ntype})
            else:
                self.dtos[dto.id] = dto
                if ntype in VIRTUAL_TYPES:
                    continue
                if not ntype:
                    raise ConversionError(f"node {dto.id}: has no type. Fix: re-save the workflow")
                if ntype in self.oi or dto.mode not in (MODE_NEVER, MODE_BYPASS):
                    dto.widgets = node_widget_values(node, self.oi, self.frontend)
                    self._configure_inputs(dto)

    def _configure_inputs(self, dto: _Dto) -> None:
        """The node's inputs as the editor has them after loading: declared ones by name,
        then undeclared ones, less widget inputs whose widget the node lacks.

        The editor drops those (widgetInputs' onGraphConfigured removes an input whose
        widget is missing), so a save made where the node declared more (a newer ComfyUI,
        a JS extension that added the input) does not send them to a server whose node
        does not take them. Plain sockets stay and are sent, as the editor sends them.
        (The editor removes them while iterating the same list, so of two such inputs in
        a row it keeps the second; that is its bug, not copied here.)"""
        specs = _input_specs(self.oi[dto.node["type"]])
        names = set(dto.widgets or {})
        dto.declared = frozenset(n for n, _ in specs)
        dto.declared_widgets = frozenset(n for n, _ in specs if n in names)
        merged = merge_inputs([(n, _spec_type(s)) for n, s in specs], dto.saved_inputs)
        dto.runtime = [
            i
            for i in merged
            if i.get("name") in dto.declared or _saved_widget_name(i) is None or self._slot_widget(dto, i) is not None
        ]

    # --- widgets behind input slots -----------------------------------------------------

    def _slot_widget(self, dto: _Dto, slot: dict) -> str | None:
        """LGraphNode.getWidgetFromSlot: the name of the widget behind an input slot, if any.

        A ComfyUI node's declared inputs follow its definition (a widget input names its
        widget, a socket has none, whatever the save says); an undeclared slot only if
        the save gave it a widget the node has. A subgraph instance's slots name the
        widget the instance promotes for that subgraph input."""
        name = slot.get("name")
        saved = _saved_widget_name(slot)
        if dto.sub is not None:
            promoted = self._promoted(dto)
            for cand in (name, saved):
                if cand is not None and cand in promoted:
                    return cand
            return None
        if name in dto.declared:
            return name if name in dto.declared_widgets else None
        return saved if saved is not None and saved in (dto.widgets or {}) else None

    def _widget_value(self, dto: _Dto, name: str) -> Any:
        if dto.sub is not None:
            return self._promoted(dto)[name]
        return (dto.widgets or {})[name][1]

    def _promoted(self, inst: _Dto) -> dict[str, Any]:
        """Widgets a subgraph instance shows for its inputs, name -> value, in widget order.

        SubgraphNode configure: each subgraph input linked to an inner widget (the first
        such link) gets a copy of that widget, named after the input, in input order,
        starting from the inner widget's value. widgets_values then fill them in order;
        if the instance saved properties.proxyWidgets (frontend 1.29+), its entries
        ["-1", name] say where each of its own widgets sits in widgets_values (the list
        is in the order the panel shows, proxied inner widgets in between carry null),
        and the editor takes those values again by that place."""
        if inst.promoted is not None:
            return inst.promoted
        inst.promoted = {}  # guards a malformed definition that loops
        values: dict[Any, Any] = {}
        sub = inst.sub
        if sub is None:
            return values
        for d in sub.subgraph.get("inputs") or []:
            if not isinstance(d, dict) or d.get("name") in values:
                continue
            for lid in d.get("linkIds") or []:
                lk = sub.links.get(lid)
                inner = self.dtos.get(f"{inst.id}:{lk.target_id}") if lk is not None else None
                if inner is None:
                    continue
                slot = next((i for i in inner.inputs if i.get("link") == lid), None)
                wname = self._slot_widget(inner, slot) if slot is not None else None
                if wname is not None:
                    values[d.get("name")] = self._widget_value(inner, wname)
                    break
        saved = inst.node.get("widgets_values")
        if isinstance(saved, list):
            for name, v in zip(list(values), saved):
                values[name] = v
            proxies = (inst.node.get("properties") or {}).get("proxyWidgets")
            if proxies:
                for k, (nid, wname) in enumerate(parse_proxy_widgets(proxies, inst.id)):
                    if nid == "-1" and k < len(saved) and saved[k] is not None and wname in values:
                        values[wname] = saved[k]
        inst.promoted = values
        return values

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
                # The input that holds the link (the editor re-derives target_slot from it).
                slot = next((i for i in target.inputs if i.get("link") == lid), None)
                wname = self._slot_widget(target, slot) if slot is not None else None
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
            matches = [
                d for d in self.dtos.values() if (d.node.get("properties") or {}).get("Node name for S&R") == parts[0]
            ]
            if not matches:
                matches = [d for d in self.dtos.values() if self._title(d) == parts[0]]
            if not matches or not matches[0].widgets or parts[1] not in matches[0].widgets:
                return m.group(0)
            v = matches[0].widgets[parts[1]][1]
            return re.sub(r'[/?<>\\:*|"\x00-\x1f\x7f]', "_", "" if v is None or v is UNDEFINED else _js_str(v))

        return re.sub(r"%([^%]+)%", repl, value)

    def _title(self, dto: _Dto) -> str:
        """node.title after loading: the saved title unless empty (LGraphNode.configure
        falls back to the class title then), else the editor's name for the class."""
        title = dto.node.get("title")
        if title:
            return str(title)
        if dto.sub is not None:
            return str(dto.sub.subgraph.get("name") or dto.node.get("type"))
        ntype = dto.node.get("type")
        if ntype in self.titles:
            return self.titles[ntype]
        defn = self.oi.get(str(ntype)) or {}
        return str(defn.get("display_name") or ntype)

    # --- link resolution (ExecutableNodeDTO.resolveInput / resolveOutput) ----------------

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
            raise ConversionError(
                f"node {dto.id}: input {inp.get('name')!r} uses link {lid}, "
                "which the workflow does not define. Fix: reconnect it and save again"
            )
        if dto.instance is not None and str(lk.origin_id) == str(SUBGRAPH_INPUT_ID):
            # Out through the subgraph's input k: the instance's input k (its inputs follow
            # the definition's, by name), else the widget it promotes for that input.
            inst = dto.instance
            k = int(lk.origin_slot if lk.origin_slot is not None else -1)
            if not 0 <= k < len(inst.inputs):
                raise ConversionError(
                    f"node {dto.id}: input {inp.get('name')!r} comes from subgraph input {k}, which "
                    f"the subgraph of instance {inst.id} does not have. Fix: reconnect it and save again"
                )
            outer = inst.inputs[k]
            if outer.get("link") is None:
                wname = self._slot_widget(inst, outer)
                return None if wname is None else {"widget_value": self._promoted(inst)[wname]}
            return self.resolve_input(inst, k, visited)
        origin = self.dtos.get(":".join([*dto.path, str(lk.origin_id)]))
        if origin is None:
            raise ConversionError(
                f"node {dto.id}: input {inp.get('name')!r} is linked to node "
                f"{lk.origin_id}, which is not in the workflow. Fix: reconnect it"
            )
        return self.resolve_output(
            origin, int(lk.origin_slot), type_ if type_ is not None else inp.get("type"), visited
        )

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
        if (
            slot < len(inputs)
            and _valid_connection(inputs[slot].get("type"), out_type)
            and _valid_connection(inputs[slot].get("type"), type_)
        ):
            return slot
        for k, i in enumerate(inputs):
            if i.get("type") == type_:
                return k
        for k, i in enumerate(inputs):
            if _valid_connection(i.get("type"), out_type) and _valid_connection(i.get("type"), type_):
                return k
        return -1

    def _resolve_subgraph_output(self, dto: _Dto, slot: int, type_: Any, visited: set) -> dict | None:
        assert dto.sub is not None
        outs = dto.sub.subgraph.get("outputs") or []
        if slot >= len(outs):
            raise ConversionError(f"node {dto.id}: subgraph has no output {slot}. Fix: re-save the workflow")
        link_ids = outs[slot].get("linkIds") or []
        lk = dto.sub.links.get(link_ids[0]) if link_ids else None
        if lk is None:
            return None
        inner = self.dtos.get(":".join([dto.id, str(lk.origin_id)]))
        if inner is None:
            raise ConversionError(
                f"node {dto.id}: subgraph output {slot} comes from node "
                f"{lk.origin_id}, which the subgraph does not contain. Fix: reconnect it"
            )
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
            inputs: dict[Any, Any] = {}
            for name, (w, value) in (dto.widgets or {}).items():
                if not w.in_prompt:
                    continue
                if value is UNDEFINED:
                    continue
                value = self._widget_prompt_value(dto, w, value)
                inputs[name] = {"__value__": value} if isinstance(value, list) else value
            for k, inp in enumerate(dto.inputs):
                res = self.resolve_input(dto, k, set())
                if res is None:
                    continue
                if "widget_value" in res:
                    v = res["widget_value"]
                    if v is UNDEFINED:  # set to undefined: the key leaves the prompt
                        inputs.pop(inp.get("name"), None)
                    else:
                        inputs[inp.get("name")] = {"__value__": v} if isinstance(v, list) else v
                    continue
                inputs[inp.get("name")] = [str(res["origin_id"]), int(res["origin_slot"])]
            out[dto.id] = {"inputs": inputs, "class_type": dto.node["type"], "_meta": {"title": self._title(dto)}}
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


def editor_titles(frontend_version: str | None = None) -> dict[str, str]:
    """The editor's names for node classes that differ from /object_info's display names.

    They come from the frontend's locale files, so they depend on the frontend release
    that serves the editor (GET /system_stats: system.required_frontend_version). Known
    releases: the table of the newest one not newer than `frontend_version`; None (not
    known) or older than all: the newest table."""
    return _EDITOR_TITLES[_for_frontend(_EDITOR_TITLES, frontend_version)]


def ui_to_api(
    workflow: dict,
    object_info: Mapping[str, Any],
    *,
    rng: random.Random | None = None,
    now: Callable[[], _dt.datetime] = _dt.datetime.now,
    frontend_version: str | None = None,
) -> dict:
    """Convert an editor (UI-format) workflow into the API prompt the editor would queue.

    `object_info` is the target server's GET /object_info. `rng` drives `{a|b}`
    dynamic-prompt choices (the editor uses Math.random); `now` the %date:...%
    replacement; `frontend_version` (the server's required_frontend_version) picks the
    editor's names for untitled nodes (`_meta.title`; see editor_titles).
    Raises ConversionError naming the node and the fix.
    """
    return _Converter(copy.deepcopy(workflow), object_info, rng, now, frontend_version).convert()


def to_api_prompt(
    data: dict, object_info: Mapping[str, Any] | Callable[[], Mapping[str, Any]], *, frontend_version: str | None = None
) -> dict:
    """An API prompt from either format; `object_info` may be a callable fetched lazily."""
    if is_api_prompt(data):
        return data
    if is_ui_workflow(data):
        oi = object_info() if callable(object_info) else object_info
        return ui_to_api(data, oi, frontend_version=frontend_version)
    raise ConversionError(
        "workflow: neither an API prompt ({id: {class_type, inputs}}) nor an editor "
        "workflow ({nodes, links}). Fix: export it from the editor (Save or Export (API))"
    )


def required_node_types(data: dict) -> set[str]:
    """Node classes a workflow (either format) needs on the server.

    Group-node instances ("workflow>name") are not server classes; ui_to_api refuses
    them with the fix, so they are not reported as missing here."""
    if is_api_prompt(data):
        return {v["class_type"] for v in data.values()}
    types: set[str] = set()
    defs = {d.get("id") for d in ((data.get("definitions") or {}).get("subgraphs") or [])}
    graphs = [data.get("nodes") or []] + [
        d.get("nodes") or [] for d in ((data.get("definitions") or {}).get("subgraphs") or [])
    ]
    for nodes in graphs:
        for n in nodes:
            t = n.get("type") if isinstance(n, dict) else None
            if (
                t
                and t not in VIRTUAL_TYPES
                and t not in defs
                and not str(t).startswith(GROUP_NODE_PREFIXES)
                and int(n.get("mode") or 0) not in (MODE_NEVER, MODE_BYPASS)
            ):
                types.add(t)
    return types
