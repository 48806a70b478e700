"""The job page ``serve`` answers at ``/``: drop a picture (or write a prompt), watch the job's
nodes run, see the VRM, download the files.

One self-contained HTML document (no build step, no CDN: fleets run offline), kept as a
string so the API needs no package data. It talks to the same API as any client: POST
/jobs, the job's websocket (the API key as its first message, never in a URL) and GET
/jobs/{id}/files/... with the key in a header (downloads go through fetch + a blob URL).
The 3D view is the pack's three-vrm viewer bundle (comfy_avatar_nodes/web/vendor/
avatar-viewer.bundle.mjs, ``AvatarViewer``: orbit, expression buttons, blink), served under
/viewer/; where serve runs without the pack's files the page says the viewer is missing and
offers the files for download.
"""

from __future__ import annotations

PAGE_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>comfy-avatar job</title>
<style>
  :root { font-family: system-ui, sans-serif; color: #1d2330; background: #f4f6f9; }
  body { max-width: 880px; margin: 1.5rem auto; padding: 0 1rem; }
  h1 { font-size: 1.4rem; margin: 0 0 1rem; }
  section { background: #fff; border-radius: 8px; padding: 1rem 1.2rem; margin-bottom: 1rem;
            box-shadow: 0 1px 3px rgba(0,0,0,.08); }
  label { display: block; font-size: .85rem; margin: .6rem 0 .2rem; color: #4a5366; }
  input[type=text], input[type=password], select, textarea { width: 100%; box-sizing: border-box; padding: .45rem;
            border: 1px solid #c9d0dc; border-radius: 5px; font: inherit; }
  #drop { border: 2px dashed #9aa6bb; border-radius: 8px; padding: 1.2rem; text-align: center; color: #4a5366;
          cursor: pointer; margin-top: .6rem; }
  #drop.over { background: #e8efff; border-color: #3d6cf0; }
  #drop img { max-height: 140px; display: block; margin: .5rem auto 0; }
  button { margin-top: .9rem; padding: .55rem 1.2rem; border: 0; border-radius: 5px; background: #3d6cf0; color: #fff;
           font: inherit; cursor: pointer; }
  button:disabled { background: #9aa6bb; }
  #status { font-weight: 600; }
  .node { display: grid; grid-template-columns: 1fr 200px 80px; gap: .6rem; align-items: center; padding: .2rem 0;
          font-size: .9rem; }
  .bar { height: 8px; background: #e3e7ee; border-radius: 4px; overflow: hidden; }
  .bar > div { height: 100%; width: 0; background: #3d6cf0; transition: width .2s; }
  .node[data-state=done] .bar > div { background: #2f9e5b; width: 100%; }
  .node[data-state=cached] .bar > div { background: #9aa6bb; width: 100%; }
  .state { font-size: .8rem; color: #4a5366; }
  #files li { margin: .3rem 0; }
  #viewer { min-height: 60px; border-radius: 6px; background: #eef1f6; padding: .8rem; margin-top: .6rem; }
  .err { color: #b3261e; white-space: pre-wrap; }
  .muted { color: #6b7385; font-size: .85rem; }
  /* the three-vrm viewer bundle's elements (the same rules as the pack's editor extension) */
  .cav-root { display: flex; flex-direction: column; gap: 4px; width: 100%; height: 460px; box-sizing: border-box;
    font: 12px/1.3 system-ui, sans-serif; color: #ddd; overflow: hidden; }
  .cav-stage { position: relative; flex: 1 1 auto; min-height: 120px; border-radius: 6px; overflow: hidden;
    background: #2a2d33; }
  .cav-canvas { position: absolute; inset: 0; width: 100%; height: 100%; display: block; touch-action: none; }
  .cav-bar { display: flex; flex-direction: column; gap: 3px; flex: 0 0 auto; color: #1d2330; }
  .cav-row { display: flex; flex-wrap: wrap; gap: 3px; }
  .cav-btn { font: inherit; padding: 1px 6px; border-radius: 4px; cursor: pointer; border: 1px solid #9aa6bb;
    background: #fff; margin: 0; color: #1d2330; }
  .cav-btn.on { background: #3d6cf0; color: #fff; }
  .cav-btn:disabled { opacity: .35; cursor: default; }
  .cav-note { opacity: .75; }
</style>
</head>
<body>
<h1>comfy-avatar: picture &rarr; avatar</h1>
<section id="submit-form">
  <label for="key">API key</label>
  <input id="key" type="password" autocomplete="off" placeholder="from COMFY_AVATAR_API_KEYS">
  <label for="workflow">Workflow</label>
  <select id="workflow"></select>
  <div id="drop" tabindex="0">Drop a picture here, or click to choose one (PNG, JPEG, WebP)
    <input id="file" type="file" accept="image/png,image/jpeg,image/webp" hidden></div>
  <label for="prompt">Prompt (for the Blender agent workflow; optional)</label>
  <textarea id="prompt" rows="2" placeholder="A low wooden stool, 45 cm high"></textarea>
  <label for="params">Parameters (JSON, NODE.input: value; optional)</label>
  <input id="params" type="text" placeholder='{"Rig + Export VRM (CPU template rig).name": "Ada"}'>
  <label for="priority">Priority</label>
  <select id="priority"><option>normal</option><option>high</option><option>low</option></select>
  <button id="go">Make the avatar</button>
  <div id="form-error" class="err"></div>
</section>
<section id="job" hidden>
  <div>Job <code id="job-id"></code>: <span id="status">pending</span> <span id="where" class="muted"></span></div>
  <div id="nodes"></div>
  <div id="job-error" class="err"></div>
  <h3>Files</h3>
  <ul id="files"><li class="muted">when the job is done</li></ul>
  <div id="viewer" class="muted">3D view: when the job is done</div>
</section>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const keyInput = $("key");
keyInput.value = sessionStorage.getItem("ca-key") || "";
keyInput.addEventListener("change", () => { sessionStorage.setItem("ca-key", keyInput.value); loadWorkflows(); });
const headers = () => ({ "Authorization": "Bearer " + keyInput.value });
let picked = null;

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...headers(), ...(opts.headers || {}) } });
  const ct = r.headers.get("content-type") || "";
  const body = ct.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error((body && body.error) || ("HTTP " + r.status));
  return body;
}

async function loadWorkflows() {
  if (!keyInput.value) { $("form-error").textContent = ""; return; }   // asked again once a key is typed
  try {
    const names = await api("/workflows");
    $("form-error").textContent = "";
    const sel = $("workflow"); sel.textContent = "";
    for (const n of names) { const o = document.createElement("option"); o.textContent = n; o.selected = n === "image_to_vrm_cpu"; sel.appendChild(o); }
  } catch (e) { $("form-error").textContent = "workflows: " + e.message; }
}

const drop = $("drop");
drop.addEventListener("click", () => $("file").click());
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); pick(e.dataTransfer.files[0]); });
$("file").addEventListener("change", (e) => pick(e.target.files[0]));
function pick(file) {
  if (!file) return;
  picked = file;
  drop.textContent = `${file.name} (${Math.round(file.size / 1024)} KiB)`;
  const img = document.createElement("img"); img.src = URL.createObjectURL(file); drop.appendChild(img);
}

$("go").addEventListener("click", async () => {
  $("form-error").textContent = "";
  sessionStorage.setItem("ca-key", keyInput.value);
  const form = new FormData();
  form.append("workflow", $("workflow").value);
  form.append("priority", $("priority").value);
  let params = {};
  try { params = $("params").value.trim() ? JSON.parse($("params").value) : {}; }
  catch (e) { $("form-error").textContent = "parameters: not JSON"; return; }
  if ($("prompt").value.trim()) params["prompt -> intent.prompt"] = $("prompt").value.trim();
  form.append("params", JSON.stringify(params));
  if (picked) form.append("image", picked, picked.name);
  $("go").disabled = true;
  try {
    const job = await api("/jobs", { method: "POST", body: form });
    location.hash = "job=" + job.job_id;
    follow(job.job_id);
  } catch (e) { $("form-error").textContent = e.message; }
  finally { $("go").disabled = false; }
});

const nodeRows = {};
function setNodes(nodes) {
  const box = $("nodes");
  for (const [id, [type, title]] of Object.entries(nodes || {})) {
    if (nodeRows[id]) continue;
    const row = document.createElement("div");
    row.className = "node"; row.dataset.node = id; row.dataset.state = "waiting";
    // node ids, titles and types come from the submitted workflow: text, never markup
    const name = document.createElement("span"); name.textContent = `${id} ${title || type}`;
    const bar = document.createElement("div"); bar.className = "bar"; bar.appendChild(document.createElement("div"));
    const st = document.createElement("span"); st.className = "state"; st.textContent = "waiting";
    row.append(name, bar, st);
    box.appendChild(row); nodeRows[id] = row;
  }
}
function applySnapshot(job) {
  const finished = new Set(job.finished || []), cached = new Set(job.cached || []);
  for (const [id, row] of Object.entries(nodeRows)) {
    let state = "waiting", pct = 0;
    if (cached.has(id)) state = "cached";
    else if (finished.has(id)) state = "done";
    else if (job.current === id) { state = "running"; pct = job.step && job.step[1] ? 100 * job.step[0] / job.step[1] : 50; }
    row.dataset.state = state;
    row.querySelector(".state").textContent = state;
    row.querySelector(".bar > div").style.width = state === "running" ? pct + "%" : "";
  }
}

function follow(jobId) {
  $("job").hidden = false; $("job-id").textContent = jobId; $("status").textContent = "pending";
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/jobs/" + jobId + "/events");
  ws.onopen = () => ws.send(JSON.stringify({ key: keyInput.value }));
  ws.onmessage = (m) => {
    const evt = JSON.parse(m.data);
    if (evt.error) { $("job-error").textContent = evt.error; return; }
    const d = evt.data || {};
    if (evt.kind === "record") { showRecord(d); return; }
    if (evt.kind === "started") { setNodes(d.nodes); $("status").textContent = "running"; $("where").textContent = "on " + d.server; }
    if (evt.kind === "comfy" && d.job) { if (d.job.nodes) setNodes(d.job.nodes); applySnapshot(d.job); $("status").textContent = "running"; }
    if (evt.kind === "retry") $("where").textContent = `attempt ${d.attempt} failed, retry in ${d.delay_s} s`;
    if (["finished", "dead", "cancelled"].includes(evt.kind)) refresh(jobId);
  };
  ws.onclose = () => refresh(jobId);
}

async function refresh(jobId) {
  try { showRecord(await api("/jobs/" + jobId)); } catch (e) { $("job-error").textContent = e.message; }
}

function showRecord(rec) {
  $("status").textContent = rec.status;
  if (rec.error) $("job-error").textContent = rec.error;
  if (rec.status !== "succeeded") return;
  for (const row of Object.values(nodeRows)) if (row.dataset.state !== "cached") {
    row.dataset.state = "done"; row.querySelector(".state").textContent = "done";
    row.querySelector(".bar > div").style.width = ""; }
  const list = $("files"); list.innerHTML = "";
  for (const o of rec.outputs || []) {
    const li = document.createElement("li");
    const a = document.createElement("a"); a.href = "#"; a.textContent = o.filename; a.dataset.url = o.url;
    a.addEventListener("click", (e) => { e.preventDefault(); download(o.url, o.filename); });
    li.appendChild(a);
    li.append(` ${o.size != null ? o.size + " bytes" : ""} ${o.sha256 ? "sha256 " + o.sha256.slice(0, 12) : ""}`);
    list.appendChild(li);
  }
  showModel(rec.outputs || []);
}

async function blobOf(url) {
  const r = await fetch(url, { headers: headers() });
  if (!r.ok) throw new Error("HTTP " + r.status + " for " + url);
  return URL.createObjectURL(await r.blob());
}
async function download(url, name) {
  const a = document.createElement("a"); a.href = await blobOf(url); a.download = name; a.click();
}

async function showModel(outputs) {
  const vrm = outputs.find(o => /\.vrm$/i.test(o.filename)) || outputs.find(o => /\.glb$/i.test(o.filename));
  const box = $("viewer");
  if (!vrm) { box.textContent = "3D view: no VRM or GLB among the outputs"; return; }
  let status = { available: false };
  try { status = await (await fetch("/viewer-status")).json(); } catch (e) {}
  if (!status.available) {
    const b = document.createElement("b"); b.textContent = vrm.filename;  // an output name the workflow chose
    box.textContent = "3D view unavailable: this serve has no three-vrm viewer bundle. Download ";
    box.append(b, " above.");
    box.dataset.viewer = "missing";
    return;
  }
  try {
    const mod = await import(status.entry);
    const url = await blobOf(vrm.url);
    box.textContent = ""; box.dataset.viewer = "loading";
    const root = document.createElement("div"); root.className = "cav-root"; box.appendChild(root);
    const viewer = new mod.AvatarViewer(root);
    const info = await viewer.load(url);
    box.dataset.bound = ((info && info.bound) || []).join(" ");
    box.dataset.viewer = "shown";
  } catch (e) { box.textContent = "3D view failed: " + e.message; box.dataset.viewer = "error"; }
}

loadWorkflows();
const m = location.hash.match(/job=([0-9a-f-]+)/);
if (m) follow(m[1]);
</script>
</body>
</html>
"""


def _script_hash(html: str) -> str:
    import base64
    import hashlib

    body = html.split("<script>", 1)[1].split("</script>", 1)[0]
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"


# Defense in depth behind the page's own rule (job data goes in as text, never markup): the
# page's one inline script by its hash, modules only from this server (the viewer bundle),
# no inline event handlers, no plugins, no framing. The viewer builds object URLs for the
# model and its textures (blob:), and may compile WebAssembly decoders.
PAGE_CSP = "; ".join(
    [
        "default-src 'self'",
        f"script-src 'self' {_script_hash(PAGE_HTML)} 'wasm-unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' blob: data:",
        "connect-src 'self' blob: data:",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
