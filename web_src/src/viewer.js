// The VRM viewer that the editor extension (comfy_avatar_nodes/web/avatar_nodes.js) puts inside a
// node: three.js + @pixiv/three-vrm, orbit, expression buttons, blink, idle motion, look-at-cursor.
// Bundled with three and three-vrm by web_src/build.mjs into
// comfy_avatar_nodes/web/vendor/avatar-viewer.bundle.mjs; knows nothing of ComfyUI.
import {
  AmbientLight, Box3, Color, DirectionalLight, Object3D, PerspectiveCamera, Plane, Raycaster,
  Scene, SRGBColorSpace, Timer, Vector2, Vector3, WebGLRenderer,
} from 'three';
import { GLTFLoader } from 'three/examples/jsm/loaders/GLTFLoader.js';
import { OrbitControls } from 'three/examples/jsm/controls/OrbitControls.js';
import { VRMLoaderPlugin, VRMUtils } from '@pixiv/three-vrm';

// The VRM 1.0 presets, grouped as the buttons show them (neutral is the "reset" button; the four
// look presets are driven by look-at, not by buttons).
export const PRESET_GROUPS = [
  ['mouth', ['aa', 'ih', 'ou', 'ee', 'oh']],
  ['eyes', ['blink', 'blinkLeft', 'blinkRight']],
  ['mood', ['happy', 'angry', 'sad', 'relaxed', 'surprised']],
];
export const LOOK_PRESETS = ['lookUp', 'lookDown', 'lookLeft', 'lookRight'];
export const PRESETS = [...PRESET_GROUPS.flatMap(([, names]) => names), ...LOOK_PRESETS];

const BACKGROUND = 0x2a2d33;
const BLINK_EVERY_S = [2.5, 5.5];
const BLINK_LENGTH_S = 0.16;

function el(tag, attrs = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'style') Object.assign(e.style, v);
    else if (k in e && k !== 'list') e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

/** What a loaded VRM offers: which presets have binds, the look-at type, the humanoid bones. */
export function describeVrm(vrm) {
  const em = vrm.expressionManager;
  const bound = [];
  const empty = [];
  for (const name of PRESETS) {
    const ex = em?.getExpression(name);
    if (!ex) continue;
    (ex.binds && ex.binds.length ? bound : empty).push(name);
  }
  const custom = Object.keys(em?.customExpressionMap ?? {});
  return {
    bound, empty, custom,
    lookAt: vrm.lookAt ? (vrm.lookAt.applier?.constructor?.type ?? 'yes') : 'none',
    bones: Object.keys(vrm.humanoid?.humanBones ?? {}).length,
    name: vrm.meta?.name ?? '',
  };
}

export class AvatarViewer {
  /**
   * @param {HTMLElement} host the element to fill: a canvas with a toolbar under it.
   * @param {{onStatus?: (status: string, detail?: string) => void}} [opts]
   */
  constructor(host, opts = {}) {
    this.host = host;
    this.onStatus = opts.onStatus ?? (() => {});
    this.vrm = null;
    this.info = null;
    this.active = null; // the expression a button switched on
    this.blink = true;
    this.idle = true;
    this.lookAtCursor = true;
    this.frames = 0;
    this._t = 0;
    this._nextBlink = 1.5;
    this._blinkT = -1;
    this._pointer = null; // NDC of the cursor over the canvas, or null
    this._disposed = false;

    this.canvas = el('canvas', { className: 'cav-canvas' });
    this.bar = el('div', { className: 'cav-bar' });
    this.stage = el('div', { className: 'cav-stage' }, [this.canvas]);
    this.host.append(this.stage, this.bar);

    this.renderer = new WebGLRenderer({ canvas: this.canvas, antialias: true, alpha: false });
    this.renderer.outputColorSpace = SRGBColorSpace;
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    this.scene = new Scene();
    this.scene.background = new Color(BACKGROUND);
    this.camera = new PerspectiveCamera(30, 1, 0.05, 50);
    this.camera.position.set(0, 1.2, 4);
    this.scene.add(new AmbientLight(0xffffff, 1.2));
    const sun = new DirectionalLight(0xffffff, 2.2);
    sun.position.set(1, 2, 3);
    this.scene.add(sun);
    this.controls = new OrbitControls(this.camera, this.canvas);
    this.controls.enableDamping = false;
    this.controls.target.set(0, 0.9, 0);
    this.controls.update();
    this.lookTarget = new Object3D();
    this.scene.add(this.lookTarget);
    this.timer = new Timer();
    this._ray = new Raycaster();
    this._plane = new Plane();

    // The editor's canvas must not see drags and wheels meant for the orbit.
    for (const type of ['pointerdown', 'wheel', 'contextmenu', 'dblclick']) {
      this.stage.addEventListener(type, (e) => e.stopPropagation());
    }
    this.canvas.addEventListener('pointermove', (e) => {
      const r = this.canvas.getBoundingClientRect();
      this._pointer = new Vector2(((e.clientX - r.left) / r.width) * 2 - 1, -((e.clientY - r.top) / r.height) * 2 + 1);
    });
    this.canvas.addEventListener('pointerleave', () => { this._pointer = null; });
    this._resize = new ResizeObserver(() => this.resize());
    this._resize.observe(this.stage);
    this._buildBar();
    this.resize();
    this._loop = this._loop.bind(this);
    requestAnimationFrame(this._loop);
  }

  _button(label, title, onClick, extra = {}) {
    const b = el('button', { className: 'cav-btn', textContent: label, title, type: 'button', ...extra });
    b.addEventListener('click', (e) => { e.stopPropagation(); onClick(b); });
    b.addEventListener('pointerdown', (e) => e.stopPropagation());
    return b;
  }

  _buildBar() {
    const toggles = el('div', { className: 'cav-row' });
    const toggle = (key, label, title) => {
      const b = this._button(label, title, () => {
        this[key] = !this[key];
        b.classList.toggle('on', this[key]);
        b.setAttribute('aria-pressed', String(this[key]));
        if (key === 'blink' && !this.blink) this._blinkT = -1;
        if (key === 'idle' && !this.idle) this._restPose();
      }, { 'data-toggle': key });
      b.classList.toggle('on', this[key]);
      b.setAttribute('aria-pressed', String(this[key]));
      toggles.append(b);
    };
    toggle('blink', 'auto-blink', 'blink every few seconds (the blink preset)');
    toggle('idle', 'idle', 'breathing and a little sway (humanoid bones)');
    toggle('lookAtCursor', 'look at cursor', 'eyes (VRM lookAt) and head follow the cursor over the picture; '
      + 'off: look at the camera');
    toggles.append(
      this._button('body', 'frame the whole avatar', () => this.frame('body'), { 'data-frame': 'body' }),
      this._button('face', 'frame the head', () => this.frame('face'), { 'data-frame': 'face' }),
    );
    this.presetButtons = new Map();
    const rows = [toggles];
    for (const [group, names] of PRESET_GROUPS) {
      const row = el('div', { className: 'cav-row', 'data-group': group });
      if (group === 'mouth') {
        row.append(this._button('neutral', 'all expressions off', () => this.setExpression(null), { 'data-preset': 'neutral' }));
      }
      for (const name of names) {
        const b = this._button(name, `${name}: not loaded yet`, () => this.setExpression(this.active === name ? null : name),
          { 'data-preset': name, disabled: true });
        this.presetButtons.set(name, b);
        row.append(b);
      }
      rows.push(row);
    }
    this.note = el('div', { className: 'cav-note' });
    this.bar.append(...rows, this.note);
  }

  resize() {
    const w = Math.max(16, this.stage.clientWidth);
    const h = Math.max(16, this.stage.clientHeight);
    if (this._size && this._size[0] === w && this._size[1] === h) return;
    this._size = [w, h];
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
  }

  /** Fetch and show a VRM; resolves to describeVrm()'s summary. */
  async load(url) {
    this.onStatus('loading', url);
    const loader = new GLTFLoader();
    loader.register((parser) => new VRMLoaderPlugin(parser));
    const res = await fetch(url);
    if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
    const gltf = await loader.parseAsync(await res.arrayBuffer(), '');
    const vrm = gltf.userData.vrm;
    if (!vrm) throw new Error('the file has no VRM extension (VRMC_vrm / VRM)');
    if (this._disposed) { VRMUtils.deepDispose(gltf.scene); return null; }
    VRMUtils.removeUnnecessaryVertices(gltf.scene);
    VRMUtils.combineSkeletons(gltf.scene);
    VRMUtils.rotateVRM0(vrm);
    if (this.vrm) { this.scene.remove(this.vrm.scene); VRMUtils.deepDispose(this.vrm.scene); }
    this.vrm = vrm;
    this.scene.add(vrm.scene);
    if (vrm.lookAt) vrm.lookAt.target = this.lookTarget;
    this.active = null;
    this.info = describeVrm(vrm);
    for (const [name, b] of this.presetButtons) {
      const bound = this.info.bound.includes(name);
      b.disabled = !bound;
      b.classList.toggle('on', false);
      b.title = bound ? `${name} (weight 1; click again for neutral)`
        : `${name}: not bound to any morph target in this VRM`;
    }
    const missing = PRESETS.filter((p) => !this.info.bound.includes(p));
    this.note.textContent = (!this.info.bound.length ? 'no expression presets bound in this VRM'
      : `${this.info.bound.length}/${PRESETS.length} presets bound` + (missing.length ? `; unbound: ${missing.join(' ')}` : ''))
      + `; lookAt: ${this.info.lookAt}`;
    this.vrm.update(0);
    this.frame('body');
    this.onStatus('ready', JSON.stringify(this.info));
    return this.info;
  }

  /** Point the camera at the whole avatar ('body') or its head ('face'). */
  frame(what) {
    if (!this.vrm) return;
    this.vrm.scene.updateMatrixWorld(true);
    const box = new Box3().setFromObject(this.vrm.scene);
    const size = box.getSize(new Vector3());
    const center = box.getCenter(new Vector3());
    let target = center;
    let dist;
    const fov = (this.camera.fov * Math.PI) / 180;
    if (what === 'face') {
      // From the head bone (the bottom of the head) to the top of the model, with a margin.
      const head = this.vrm.humanoid?.getNormalizedBoneNode('head');
      const base = head ? head.getWorldPosition(new Vector3()) : new Vector3(center.x, box.max.y - size.y * 0.13, center.z);
      const headHeight = Math.max(box.max.y - base.y, size.y * 0.05);
      target = new Vector3(base.x, base.y + headHeight * 0.5, base.z);
      dist = headHeight / Math.tan(fov / 2);
    } else {
      const fit = Math.max(size.y, size.x / Math.max(this.camera.aspect, 0.1));
      dist = (fit * 0.55) / Math.tan(fov / 2);
    }
    this.controls.target.copy(target);
    this.camera.position.set(target.x, target.y, target.z + dist);
    this.camera.near = dist / 50;
    this.camera.far = dist * 20;
    this.camera.updateProjectionMatrix();
    this.controls.update();
    this._framed = what;
  }

  /** Where the head is on the canvas: {x0, y0, x1, y1} as fractions of its width and height (y down),
   * from the head bone to the top of the model, as wide as it is tall; null before a VRM is loaded. */
  headRect() {
    const head = this.vrm?.humanoid?.getNormalizedBoneNode('head');
    if (!head) return null;
    this.vrm.scene.updateMatrixWorld(true);
    const box = new Box3().setFromObject(this.vrm.scene);
    const base = head.getWorldPosition(new Vector3());
    const hh = Math.max(box.max.y - base.y, 0.01);
    const pts = [];
    for (const dx of [-0.6, 0.6]) for (const dy of [-0.1, 1]) for (const dz of [-0.5, 0.5]) {
      const v = new Vector3(base.x + dx * hh, base.y + dy * hh, base.z + dz * hh).project(this.camera);
      pts.push([(v.x + 1) / 2, (1 - v.y) / 2]);
    }
    const xs = pts.map((q) => q[0]);
    const ys = pts.map((q) => q[1]);
    return { x0: Math.min(...xs), y0: Math.min(...ys), x1: Math.max(...xs), y1: Math.max(...ys) };
  }

  /** Switch one preset on at weight 1 (null: neutral). Unbound presets are refused. */
  setExpression(name) {
    if (name && !(this.info?.bound ?? []).includes(name)) return false;
    this.active = name;
    for (const [n, b] of this.presetButtons) b.classList.toggle('on', n === name);
    return true;
  }

  _restPose() {
    const h = this.vrm?.humanoid;
    if (!h) return;
    for (const bone of ['spine', 'chest', 'neck', 'head', 'leftUpperArm', 'rightUpperArm']) {
      h.getNormalizedBoneNode(bone)?.rotation.set(0, 0, 0);
    }
  }

  _animate(dt) {
    const vrm = this.vrm;
    this._t += dt;
    const h = vrm.humanoid;
    const em = vrm.expressionManager;
    // Expressions: the button's preset at 1, auto-blink on top (three-vrm applies the overrides).
    if (em) {
      for (const name of PRESETS) {
        if (!LOOK_PRESETS.includes(name) && em.getExpression(name)) em.setValue(name, name === this.active ? 1 : 0);
      }
      if (this.blink && this.info.bound.includes('blink')) {
        if (this._blinkT < 0 && this._t >= this._nextBlink) this._blinkT = 0;
        if (this._blinkT >= 0) {
          this._blinkT += dt;
          const p = this._blinkT / BLINK_LENGTH_S;
          if (this.active !== 'blink') em.setValue('blink', p < 1 ? Math.sin(Math.PI * p) : 0);
          if (p >= 1) {
            this._blinkT = -1;
            this._nextBlink = this._t + BLINK_EVERY_S[0] + Math.random() * (BLINK_EVERY_S[1] - BLINK_EVERY_S[0]);
          }
        }
      }
    }
    // Idle: breathing in the spine, a slow sway, arms let down a little from the T-pose.
    if (this.idle && h) {
      const t = this._t;
      const breathe = Math.sin(t * 2 * Math.PI / 4);
      h.getNormalizedBoneNode('spine')?.rotation.set(0.02 * breathe, 0.04 * Math.sin(t * 0.7), 0.015 * Math.sin(t * 0.5));
      h.getNormalizedBoneNode('chest')?.rotation.set(0.025 * breathe, 0, 0);
      h.getNormalizedBoneNode('leftUpperArm')?.rotation.set(0, 0, -0.55 + 0.03 * breathe);
      h.getNormalizedBoneNode('rightUpperArm')?.rotation.set(0, 0, 0.55 - 0.03 * breathe);
    }
    // Look at: the cursor's point on a plane through the head facing the camera, else the camera.
    const head = h?.getNormalizedBoneNode('head');
    if (head) {
      const headPos = head.getWorldPosition(new Vector3());
      if (this.lookAtCursor && this._pointer) {
        const n = this.camera.getWorldDirection(new Vector3()).negate();
        this._plane.setFromNormalAndCoplanarPoint(n, headPos.clone().addScaledVector(n, 0.3));
        this._ray.setFromCamera(this._pointer, this.camera);
        const hit = this._ray.ray.intersectPlane(this._plane, new Vector3());
        this.lookTarget.position.copy(hit ?? this.camera.position);
      } else {
        this.lookTarget.position.copy(this.camera.position);
      }
      // The head turns part of the way (eyes do the rest through VRM lookAt, when the VRM has it).
      const local = head.parent ? head.parent.worldToLocal(this.lookTarget.position.clone()) : this.lookTarget.position.clone();
      const from = head.parent ? head.parent.worldToLocal(headPos.clone()) : headPos.clone();
      const d = local.sub(from);
      const clamp = (v, m) => Math.max(-m, Math.min(m, v));
      const yaw = this.lookAtCursor && this._pointer ? clamp(Math.atan2(d.x, d.z), 0.5) * 0.6 : 0;
      const pitch = this.lookAtCursor && this._pointer ? clamp(-Math.atan2(d.y, Math.hypot(d.x, d.z)), 0.4) * 0.6 : 0;
      head.rotation.set(pitch, yaw, 0);
    }
    vrm.update(dt);
  }

  _visible() {
    return this.canvas.isConnected && this.canvas.offsetParent !== null && document.visibilityState !== 'hidden';
  }

  _loop(now) {
    if (this._disposed) return;
    requestAnimationFrame(this._loop);
    this.timer.update(now);
    const dt = Math.min(this.timer.getDelta(), 0.1);
    if (!this._visible()) return;
    this.resize();
    if (this.vrm) this._animate(dt);
    this.renderer.render(this.scene, this.camera);
    this.frames += 1;
  }

  dispose() {
    this._disposed = true;
    this._resize.disconnect();
    this.controls.dispose();
    if (this.vrm) VRMUtils.deepDispose(this.vrm.scene);
    this.renderer.dispose();
    this.renderer.forceContextLoss?.();
    this.host.replaceChildren();
  }
}

export const VERSIONS = { three: __THREE_VERSION__, threeVrm: __THREE_VRM_VERSION__ };
