// The face check that face_page.html runs in headless Chromium (see the comment there).
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { VRMLoaderPlugin } from "@pixiv/three-vrm";
import { MToonMaterialLoaderPlugin } from "@pixiv/three-vrm-materials-mtoon";

const STATES = ["neutral", "aa", "blink", "happy"];
const DIFF = 10; // a pixel changed when a channel moved more than this (0..255)
const params = new URLSearchParams(location.search);
const SIZE = Number(params.get("size") || 384);

async function post(result) {
  await fetch("/result", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(result) });
}

function loadVrm(url) {
  const loader = new GLTFLoader();
  loader.register((parser) => new VRMLoaderPlugin(parser, {
    mtoonMaterialPlugin: new MToonMaterialLoaderPlugin(parser),
  }));
  return new Promise((resolve, reject) => loader.load(url, resolve, undefined, reject));
}

// The head as the VRM's humanoid defines it: from a little under the head bone to the top of the
// figure, as wide and deep as the vertices in that band (rest pose = the file's positions).
function headBox(vrm, scene) {
  scene.updateMatrixWorld(true);
  const headY = vrm.humanoid.getRawBoneNode("head").getWorldPosition(new THREE.Vector3()).y;
  let top = -Infinity;
  const pts = [];
  scene.traverse((o) => {
    if (!o.isMesh) return;
    const pos = o.geometry.attributes.position;
    const v = new THREE.Vector3();
    for (let i = 0; i < pos.count; i += 1) {
      v.fromBufferAttribute(pos, i).applyMatrix4(o.matrixWorld);
      top = Math.max(top, v.y);
      pts.push(v.x, v.y, v.z);
    }
  });
  // width and depth from what is above the head bone (T-pose arms sit just under it), height from a
  // little under the head bone (a jaw and chin may hang below it) to the top
  const box = new THREE.Box3();
  for (let i = 0; i < pts.length; i += 3) {
    if (pts[i + 1] >= headY) box.expandByPoint(new THREE.Vector3(pts[i], pts[i + 1], pts[i + 2]));
  }
  box.min.y = headY - 0.25 * (top - headY);
  return box;
}

function screenRect(box, camera) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const x of [box.min.x, box.max.x]) for (const y of [box.min.y, box.max.y]) for (const z of [box.min.z, box.max.z]) {
    const p = new THREE.Vector3(x, y, z).project(camera);
    const sx = (p.x + 1) / 2 * SIZE, sy = (1 - p.y) / 2 * SIZE;
    x0 = Math.min(x0, sx); x1 = Math.max(x1, sx); y0 = Math.min(y0, sy); y1 = Math.max(y1, sy);
  }
  return { x0: Math.floor(x0) - 2, y0: Math.floor(y0) - 2, x1: Math.ceil(x1) + 2, y1: Math.ceil(y1) + 2 };
}

function grab(renderer, ctx) {
  ctx.clearRect(0, 0, SIZE, SIZE);
  ctx.drawImage(renderer.domElement, 0, 0);
  return ctx.getImageData(0, 0, SIZE, SIZE);
}

function compare(a, b, rect) {
  let changed = 0, outside = 0;
  let bx0 = SIZE, by0 = SIZE, bx1 = -1, by1 = -1;
  for (let y = 0; y < SIZE; y += 1) {
    for (let x = 0; x < SIZE; x += 1) {
      const i = (y * SIZE + x) * 4;
      const d = Math.max(Math.abs(a.data[i] - b.data[i]), Math.abs(a.data[i + 1] - b.data[i + 1]),
        Math.abs(a.data[i + 2] - b.data[i + 2]));
      if (d <= DIFF) continue;
      changed += 1;
      if (x < rect.x0 || x > rect.x1 || y < rect.y0 || y > rect.y1) outside += 1;
      bx0 = Math.min(bx0, x); by0 = Math.min(by0, y); bx1 = Math.max(bx1, x); by1 = Math.max(by1, y);
    }
  }
  return { changed, outside, bbox: changed ? { x0: bx0, y0: by0, x1: bx1, y1: by1 } : null };
}

async function main() {
  const result = { ok: false, states: {} };
  const gltf = await loadVrm(params.get("vrm"));
  const vrm = gltf.userData.vrm;
  if (!vrm) throw new Error("three-vrm did not create a VRM from the file");
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0x8c8c96);
  scene.add(vrm.scene);
  const sun = new THREE.DirectionalLight(0xffffff, Math.PI * 0.9);
  sun.position.set(0.4, 1.2, 2.0);
  scene.add(sun, new THREE.AmbientLight(0xffffff, 0.6));
  let mtoon = 0;
  vrm.scene.traverse((o) => {
    if (o.isMesh) for (const m of [].concat(o.material)) if (m.isMToonMaterial) mtoon += 1;
  });
  result.mtoon = mtoon;
  result.expressions = Object.fromEntries(vrm.expressionManager.expressions.map((e) => [e.expressionName, e._binds.length]));
  result.lookAtType = vrm.lookAt ? vrm.lookAt.applier.type : null;

  const box = headBox(vrm, vrm.scene);
  const centre = box.getCenter(new THREE.Vector3());
  const size = box.getSize(new THREE.Vector3());
  const camera = new THREE.PerspectiveCamera(18, 1, 0.05, 50);
  const span = Math.max(size.x, size.y) * 1.45;
  camera.position.set(centre.x, centre.y, box.max.z + span / 2 / Math.tan(THREE.MathUtils.degToRad(9)));
  camera.lookAt(centre);
  camera.updateMatrixWorld(true);
  result.faceRect = screenRect(box, camera);

  const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(1);
  renderer.setSize(SIZE, SIZE);
  document.body.appendChild(renderer.domElement);
  const work = document.createElement("canvas");
  work.width = work.height = SIZE;
  const ctx = work.getContext("2d", { willReadFrequently: true });
  const sheet = document.createElement("canvas");
  sheet.width = SIZE * STATES.length;
  sheet.height = SIZE + 28;
  const sctx = sheet.getContext("2d");
  sctx.fillStyle = "#ffffff";
  sctx.fillRect(0, 0, sheet.width, sheet.height);

  let neutral = null;
  for (const [k, state] of STATES.entries()) {
    for (const name of STATES) if (name !== "neutral") vrm.expressionManager.setValue(name, 0);
    if (state !== "neutral") vrm.expressionManager.setValue(state, 1);
    vrm.update(0);
    renderer.render(scene, camera);
    const img = grab(renderer, ctx);
    const entry = { png: work.toDataURL("image/png") };
    if (neutral === null) neutral = img; else Object.assign(entry, compare(neutral, img, result.faceRect));
    result.states[state] = entry;
    sctx.drawImage(work, k * SIZE, 28);
    sctx.fillStyle = "#222";
    sctx.font = "18px sans-serif";
    sctx.fillText(state, k * SIZE + 10, 20);
  }
  result.sheet = sheet.toDataURL("image/png");
  result.ok = true;
  return result;
}

main().then(post, (e) => post({ ok: false, error: String(e && e.stack ? e.stack : e) }));
