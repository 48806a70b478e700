// comfy-avatar's editor extension (the pack's WEB_DIRECTORY; ComfyUI serves it under /extensions/<pack folder>/).
//
// - A node whose output is a VRM (Rig + Export VRM, Export VRM (rigged mesh), any node with an AVATAR_VRM
//   output) shows the VRM inside itself once it has run: three.js + @pixiv/three-vrm, orbit, expression
//   buttons (the presets the file binds), auto-blink, idle motion, look-at-cursor.
// - Validate VRM shows its report inside itself: OK/INVALID, errors, warnings, the expression summary and the
//   readable text the node also writes as JSON.
//
// The nodes' executed ui carries the files: `avatar_files` ({filename, subfolder, type}, served at /view),
// `text` (the readable report) and, from Validate VRM, `avatar_report` (the report object).
// The viewer (three + three-vrm) is the bundle vendor/avatar-viewer.bundle.mjs, built by web_src/build.mjs and
// imported on first use, so the editor loads ~0.8 MB only when a VRM is shown.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const VIEWER_WIDGET = "avatar_viewer";
const REPORT_WIDGET = "avatar_report";
const REPORT_NODE = "AvatarValidateVRM";
const VRM_TYPE = "AVATAR_VRM";
// The presets the report's expression summary lists, in the VRM 1.0 order.
const PRESETS = ["aa", "ih", "ou", "ee", "oh", "blink", "blinkLeft", "blinkRight", "happy", "angry", "sad",
  "relaxed", "surprised", "lookUp", "lookDown", "lookLeft", "lookRight"];

let bundlePromise = null;
const loadBundle = () => (bundlePromise ??= import(new URL("./vendor/avatar-viewer.bundle.mjs", import.meta.url).href));

const CSS = `
.cav-root { display: flex; flex-direction: column; gap: 4px; width: 100%; height: 100%; box-sizing: border-box;
  font: 11px/1.3 system-ui, sans-serif; color: var(--input-text, #ddd); overflow: hidden; }
.cav-stage { position: relative; flex: 1 1 auto; min-height: 120px; border-radius: 6px; overflow: hidden;
  background: #2a2d33; }
.cav-canvas { position: absolute; inset: 0; width: 100%; height: 100%; display: block; touch-action: none; }
.cav-msg { position: absolute; left: 8px; top: 6px; right: 8px; color: #ccc; pointer-events: none; white-space: pre-wrap; }
.cav-root[data-status="error"] .cav-msg { color: #ff8a80; }
.cav-bar { display: flex; flex-direction: column; gap: 3px; flex: 0 0 auto; }
.cav-row { display: flex; flex-wrap: wrap; gap: 3px; }
.cav-btn { font: inherit; padding: 1px 6px; border-radius: 4px; cursor: pointer; color: inherit;
  border: 1px solid var(--border-color, #555); background: var(--comfy-input-bg, #222); }
.cav-btn:hover:not(:disabled) { border-color: #8ab4f8; }
.cav-btn.on { background: #3b5f9a; border-color: #8ab4f8; color: #fff; }
.cav-btn:disabled { opacity: .35; cursor: default; }
.cav-note { opacity: .75; }
.car-root { display: flex; flex-direction: column; gap: 4px; width: 100%; height: 100%; box-sizing: border-box;
  font: 11px/1.35 system-ui, sans-serif; color: var(--input-text, #ddd); overflow: hidden; }
.car-head { display: flex; align-items: center; gap: 6px; flex-wrap: wrap; }
.car-badge { font-weight: 700; padding: 1px 7px; border-radius: 4px; color: #fff; }
.car-badge.ok { background: #2e7d32; } .car-badge.bad { background: #c62828; }
.car-list { margin: 0; padding-left: 16px; } .car-list.err { color: #ff8a80; } .car-list.warn { color: #ffd180; }
.car-chips { display: flex; flex-wrap: wrap; gap: 3px; }
.car-chip { padding: 0 5px; border-radius: 3px; border: 1px solid #555; opacity: .5; }
.car-chip.bound { opacity: 1; border-color: #66bb6a; color: #a5d6a7; }
.car-chip.problem { opacity: 1; border-color: #ef5350; color: #ff8a80; }
.car-text { flex: 1 1 auto; min-height: 40px; margin: 0; padding: 4px 6px; overflow: auto; white-space: pre-wrap;
  border-radius: 4px; background: var(--comfy-input-bg, #222); user-select: text; font: 10.5px/1.35 ui-monospace, monospace; }
`;

function injectCss() {
  if (document.getElementById("comfy-avatar-css")) return;
  const style = document.createElement("style");
  style.id = "comfy-avatar-css";
  style.textContent = CSS;
  document.head.append(style);
}

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function viewUrl(ref) {
  const q = new URLSearchParams({ filename: ref.filename, subfolder: ref.subfolder ?? "", type: ref.type ?? "output" });
  return api.apiURL(`/view?${q}`);
}

const vrmRefs = (message) => (message?.avatar_files ?? []).filter((f) => /\.vrm$/i.test(f?.filename ?? ""));

// Keeps the editor's canvas from taking drags, wheels and text selection that belong to the widget.
function isolate(el) {
  for (const type of ["pointerdown", "wheel", "contextmenu", "dblclick"]) el.addEventListener(type, (e) => e.stopPropagation());
}

// A DOM widget added after the node exists (so a node that has not run stays small).
function addPanel(node, name, root, minHeight, minWidth) {
  let widget = null;
  widget = node.addDOMWidget(name, name, root, { serialize: false, hideOnZoom: true,
    getMinHeight: () => widget?.minHeight ?? minHeight });
  widget.serialize = false; // not a value: never in widgets_values or the prompt
  widget.minHeight = minHeight;
  widget.minWidth = minWidth;
  fitNode(node, widget);
  return widget;
}

// Grow the node to what its widgets need, never shrink it (the user may have made it larger).
function fitNode(node, widget) {
  const want = node.computeSize();
  node.setSize([Math.max(node.size[0], want[0], widget.minWidth), Math.max(node.size[1], want[1])]);
  node.setDirtyCanvas?.(true, true);
}

// ------------------------------------------------------------------ VRM viewer

async function showVrm(node, message) {
  const ref = vrmRefs(message)[0];
  if (!ref) return;
  injectCss();
  let widget = node.widgets?.find((w) => w.name === VIEWER_WIDGET);
  if (!widget) {
    const root = h("div", "cav-root");
    root.dataset.status = "loading";
    isolate(root);
    widget = addPanel(node, VIEWER_WIDGET, root, 420, 340);
    const remove = widget.onRemove;
    widget.onRemove = function () {
      remove?.call(this);
      this.viewer?.dispose();
      this.viewer = null;
    };
  }
  const root = widget.element;
  const url = viewUrl(ref);
  root.dataset.file = `${ref.subfolder ? ref.subfolder + "/" : ""}${ref.filename}`;
  root.dataset.status = "loading";
  try {
    const { AvatarViewer } = await loadBundle();
    if (!widget.viewer) {
      widget.viewer = new AvatarViewer(root);
      widget.msg = h("div", "cav-msg");
      widget.viewer.stage.append(widget.msg);
    }
    widget.msg.textContent = `loading ${ref.filename}...`;
    const info = await widget.viewer.load(url);
    if (root.dataset.file !== `${ref.subfolder ? ref.subfolder + "/" : ""}${ref.filename}`) return; // a newer run won
    widget.msg.textContent = "";
    root.dataset.bound = (info?.bound ?? []).join(" ");
    root.dataset.status = "ready";
  } catch (err) {
    console.error("comfy-avatar: could not show", url, err);
    root.dataset.status = "error";
    root.dataset.error = String(err?.message ?? err);
    if (widget.msg) widget.msg.textContent = `could not show ${ref.filename}: ${err?.message ?? err}`;
    else root.replaceChildren(h("div", "cav-msg", `could not show ${ref.filename}: ${err?.message ?? err}`));
  }
}

// ------------------------------------------------------------------ Validate VRM report

// facts.expressions as core/vrm/validate_face.py reports it: {preset: {bound, targets, problems, vertices_moved,
// max_move_head_heights, centre}}; also read: a list of {name|preset, ...} and morph_targets/binds for targets.
export function expressionRows(facts) {
  const raw = facts?.expressions;
  if (!raw || typeof raw !== "object") return null;
  const entries = Array.isArray(raw) ? raw.map((e) => [e?.name ?? e?.preset, e]) : Object.entries(raw);
  const rows = new Map();
  for (const [name, e] of entries) {
    if (!name) continue;
    const v = e && typeof e === "object" ? e : { bound: !!e };
    const binds = v.targets ?? v.morph_targets ?? v.morphTargets ?? v.binds;
    const bound = v.bound ?? (Array.isArray(binds) ? binds.length > 0 : false);
    const problems = [v.errors, v.problems, v.warnings, v.flags].flat().filter((x) => x);
    rows.set(name, { bound: !!bound, problems, targets: Array.isArray(binds) ? binds : [], detail: v });
  }
  return rows;
}

function chipTitle(name, r) {
  if (!r) return `${name}: not in the file`;
  if (r.problems.length) return `${name}: ${r.problems.join("; ")}`;
  if (!r.bound) return `${name}: no morph target`;
  const d = r.detail;
  return [`${name}: ${r.targets.join(", ") || "bound"}`,
    d.vertices_moved != null ? `${d.vertices_moved} vertices` : "",
    d.max_move_head_heights != null ? `max ${d.max_move_head_heights} head heights` : ""].filter((x) => x).join(", ");
}

// The face facts beside the presets (look-at, first person, MToon, the face finder's verdict), where reported.
function faceLine(f) {
  const parts = [];
  if ("face_found" in f) parts.push(`face ${f.face_found ? "found" : "NOT found"}`
    + (f.face_found && f.face_confidence != null ? ` (${f.face_confidence}${f.face_source ? ", " + f.face_source : ""})` : ""));
  if ("look_at" in f) parts.push(`lookAt ${f.look_at ?? "none"}`);
  if ("first_person_annotations" in f) parts.push(`firstPerson ${f.first_person_annotations}`);
  if ("mtoon_materials" in f) parts.push(`MToon ${f.mtoon_materials}`);
  return parts.join(" · ");
}

function showReport(node, message) {
  const text = Array.isArray(message?.text) ? message.text.join("\n") : (message?.text ?? "");
  const report = (message?.avatar_report ?? [])[0] ?? null;
  if (!text && !report) return;
  injectCss();
  let widget = node.widgets?.find((w) => w.name === REPORT_WIDGET);
  if (!widget) {
    const root = h("div", "car-root");
    isolate(root);
    widget = addPanel(node, REPORT_WIDGET, root, 260, 340);
  }
  const root = widget.element;
  root.replaceChildren();
  const head = h("div", "car-head");
  if (report) {
    const ok = !!report.ok;
    head.append(h("span", `car-badge ${ok ? "ok" : "bad"}`, ok ? "VALID" : "INVALID"),
      h("span", "", `${report.errors?.length ?? 0} errors, ${report.warnings?.length ?? 0} warnings`));
    root.dataset.ok = String(ok);
  }
  root.append(head);
  for (const [cls, items] of [["err", report?.errors], ["warn", report?.warnings]]) {
    if (!items?.length) continue;
    const ul = h("ul", `car-list ${cls}`);
    for (const item of items) ul.append(h("li", "", item));
    root.append(ul);
  }
  const rows = report ? expressionRows(report.facts) : null;
  const ex = h("div", "car-expr");
  if (rows) {
    const bound = PRESETS.filter((p) => rows.get(p)?.bound);
    ex.append(h("div", "", `expressions: ${bound.length}/${PRESETS.length} presets bound`));
    const chips = h("div", "car-chips");
    for (const p of [...PRESETS, ...[...rows.keys()].filter((k) => !PRESETS.includes(k))]) {
      const r = rows.get(p);
      const chip = h("span", `car-chip${r?.bound ? " bound" : ""}${r?.problems?.length ? " problem" : ""}`, p);
      chip.title = chipTitle(p, r);
      chip.dataset.preset = p;
      chips.append(chip);
    }
    ex.append(chips);
    const line = faceLine(report.facts);
    if (line) ex.append(h("div", "cav-note car-face", line));
    root.dataset.bound = bound.join(" ");
  } else if (report) {
    ex.append(h("div", "cav-note", "expressions: this validator's report has no expression check yet"));
  }
  root.append(ex);
  const pre = h("pre", "car-text", text);
  root.append(pre);
  widget.text = text;
  // room for the whole report without scrolling, up to a point (the text box scrolls beyond that)
  const wrapped = (s, cols) => s.split("\n").reduce((n, l) => n + Math.max(1, Math.ceil(l.length / cols)), 0);
  const items = [...(report?.errors ?? []), ...(report?.warnings ?? [])].reduce((n, t) => n + wrapped(t, 48), 0);
  const estimate = 40 + items * 14 + (rows ? 90 : 20) + wrapped(text, 50) * 14;
  widget.minHeight = Math.max(widget.minHeight, Math.min(520, estimate));
  fitNode(node, widget);
}

// ------------------------------------------------------------------ back after a page reload

// A reload rebuilds the graph from the saved workflow, but the editor does not replay `executed`, so the
// panels would stay empty until the next run. The server still has the runs in /history (until it restarts):
// each of our nodes takes the newest output recorded for its id, when that prompt's node there is of the
// same class (another workflow reusing the id is not shown). Nothing is written into the workflow for it.
const HISTORY_ITEMS = 64;
let historyPromise = null;

function recentHistory() {
  if (!historyPromise) {
    historyPromise = api.fetchApi(`/history?max_items=${HISTORY_ITEMS}`)
      .then((r) => (r.ok ? r.json() : {}))
      .catch(() => ({}));
    setTimeout(() => { historyPromise = null; }, 5000); // one request for the nodes of one load
  }
  return historyPromise;
}

const hasPanel = (node) => !!node.widgets?.some((w) => w.name === VIEWER_WIDGET || w.name === REPORT_WIDGET);

export async function restoreFromHistory(node, kind) {
  if (hasPanel(node)) return false;
  const history = await recentHistory();
  const id = String(node.id);
  const cls = node.comfyClass ?? node.type;
  const entries = Object.values(history ?? {})
    .filter((e) => e?.outputs?.[id] && e?.prompt?.[2]?.[id]?.class_type === cls)
    .sort((a, b) => (b.prompt[0] ?? 0) - (a.prompt[0] ?? 0));
  for (const entry of entries) {
    if (hasPanel(node)) return false; // the node ran meanwhile: its own output wins
    const out = entry.outputs[id];
    if (kind === "report" && (out.text || out.avatar_report)) {
      showReport(node, out);
      return true;
    }
    if (kind === "vrm" && vrmRefs(out).length) {
      await showVrm(node, out);
      return true;
    }
  }
  return false;
}

// ------------------------------------------------------------------ registration

app.registerExtension({
  name: "comfy-avatar.viewer",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const isReport = nodeData?.name === REPORT_NODE;
    const makesVrm = !isReport && (nodeData?.output ?? []).includes(VRM_TYPE);
    if (!isReport && !makesVrm) return;
    nodeType.prototype.comfyAvatarPanel = isReport ? "report" : "vrm";
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      try {
        if (isReport) showReport(this, message);
        else showVrm(this, message);
      } catch (err) {
        console.error("comfy-avatar: node panel failed", err);
      }
    };
  },
  // every node of a graph being loaded (a page reload, a workflow opened): show what it last made
  loadedGraphNode(node) {
    const kind = node?.comfyAvatarPanel;
    if (!kind) return;
    restoreFromHistory(node, kind).catch((err) => console.error("comfy-avatar: could not restore the panel", err));
  },
});
