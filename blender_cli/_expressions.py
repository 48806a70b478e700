"""Face morph targets and their VRM 1.0 binding, inside Blender (bpy + numpy).

    report = add_face(body, arm, options, work_dir)   # after the T-pose is the rest pose, before export

Steps: the shape keys the mesh already has are mapped to VRM presets first (an exact preset name,
VRoid's Fcl_* names, ARKit's 52 names through the VRM add-on's own ARKit table); only the presets
still missing are generated, around the landmarks the face finder placed (_face.py). Then every
preset is bound in VRMC_vrm.expressions with morphTargetBinds and the override flags of
core/vrm/expressions.py, lookAt is "expression" (the look presets) unless the humanoid has eye
bones, and the mesh gets a firstPerson annotation.

How the generated morphs move the surface (everything is multiplied by the vertex's head weight,
how much it faces the front and how close it is in depth to the feature, so nothing outside the
head moves and the back of the head never does; each falloff is a smoothstep):
- blink: the skin above the eye slides down over it while the eye's own band is pressed into a
  thin line at its lower edge - on a painted eye this is how a lid closes (no geometry to hide);
- visemes: the lower lip and the chin below the mouth line drop (tapering to nothing at the chin,
  so the lower face never folds) and the upper lip lifts; ih/ee widen, ou/oh narrow the mouth;
- emotions: brows up/down/tilted, mouth corners up/down, lids narrowed or widened;
- look*: the eye's content slides towards the gaze, the skin around it stretches.
"""

from __future__ import annotations

import bpy
import numpy as np
from _face import Head, head_picture, head_region, place_landmarks, verts, vrm_face
from _pack import load

vrm_expr = load("comfy_avatar_vrm_expressions", "vrm/expressions.py")


def _smooth(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _window(d: np.ndarray, r: float) -> np.ndarray:
    """1 at d = 0, smoothly 0 at |d| >= r."""
    return _smooth(1.0 - np.abs(d) / max(r, 1e-9))


def _plateau(d: np.ndarray, flat: float, fade: float) -> np.ndarray:
    """1 for |d| <= flat, smoothly 0 by |d| = flat + fade (a lid closes evenly across the whole eye)."""
    return _smooth(1.0 - (np.abs(d) - flat) / max(fade, 1e-9))


def _normals(me: bpy.types.Mesh) -> np.ndarray:
    n = np.empty(len(me.vertices) * 3)
    me.vertices.foreach_get("normal", n)
    return n.reshape(-1, 3)


# ---------------------------------------------------------------- existing shape keys


def existing_binds(body: bpy.types.Object) -> dict[str, list[tuple[str, float]]]:
    """Preset -> [(shape key, weight)] for the shape keys the mesh already has."""
    keys = body.data.shape_keys
    if keys is None:
        return {}
    names = [k.name for k in keys.key_blocks[1:]]
    lower = {n.lower(): n for n in names}
    binds: dict[str, list[tuple[str, float]]] = {}
    try:
        from io_scene_vrm.common.shape_key_mapper.arkit_mapping import VRM1_PRESET_TO_ARKIT_SHAPE_KEY_MAPPING
    except ImportError:  # an add-on version without the table: exact and VRoid names still map
        VRM1_PRESET_TO_ARKIT_SHAPE_KEY_MAPPING = {}
    for preset, options in VRM1_PRESET_TO_ARKIT_SHAPE_KEY_MAPPING.items():
        for option in options:
            if option and all(k.lower() in lower for k in option):
                binds[preset.name] = [(lower[k.lower()], float(w)) for k, w in option.items()]
                break
    for name in names:
        if name in vrm_expr.VROID_KEYS:
            binds[vrm_expr.VROID_KEYS[name]] = [(name, 1.0)]
    for preset in vrm_expr.PRESETS:
        if preset.lower() in lower:
            binds[preset] = [(lower[preset.lower()], 1.0)]
    return {p: b for p, b in binds.items() if p in vrm_expr.PRESETS}


# ---------------------------------------------------------------- generated morphs


class _Face:
    """Per-vertex geometry shared by every generated morph."""

    def __init__(self, body: bpy.types.Object, head: Head, points: dict[str, dict]):
        me = body.data
        self.co = verts(me)
        self.hw = np.clip(2.0 * head.weight, 0.0, 1.0)  # full strength from half head weight on, 0 off the head
        nrm = _normals(me)
        self.front = _smooth((-nrm[:, 1] - 0.05) / 0.45)
        self.W, self.H = head.width, head.height
        self.axis = (head.box[0] + head.box[1]) / 2
        # The jaw drops down to the chin, but never below the line the validator holds every face
        # morph to (BELOW_NECK head heights under the head bone): where the chin scan found a lower
        # chin (a figure with no neck to speak of), the mouth stops moving there instead.
        floor = head.neck_z + vrm_expr.BELOW_NECK * (head.box[3] - head.neck_z)
        self.z0 = max(head.box[2], floor)
        self.p = points
        for side in ("left", "right"):
            e = points[f"{side}_eye"]
            e["w"] = max(e["w"], 0.10 * self.W)
            e["h"] = max(e["h"], 0.07 * self.H)
            b = points[f"{side}_brow"]
            b["w"] = max(b["w"], 0.12 * self.W)
        m = points["mouth"]
        m["w"] = max(m["w"], 0.16 * self.W)

    def mask(self, at: np.ndarray) -> np.ndarray:
        return self.hw * self.front * _window(self.co[:, 1] - at[1], 0.30 * self.W)

    # -- eyes
    def lids(self, side: str, top: float = 0.0, bottom: float = 0.0, widen: float = 0.0) -> np.ndarray:
        """Close the eye from the top (0..1 of its height), from the bottom, or widen it."""
        e = self.p[f"{side}_eye"]
        ex, _ey, ez = e["co"]
        eh = e["h"]
        X, Z = self.co[:, 0], self.co[:, 2]
        t, b = ez + eh / 2, ez - eh / 2
        d = np.zeros(len(X))
        if top or bottom:
            c_top = t - min(0.92, top) * (t - b)  # where the upper lid ends up
            c_bot = b + min(0.92, bottom) * (t - b)
            if c_bot > c_top:
                c_top = c_bot = (c_top + c_bot) / 2
            # the skin that slides down with the upper lid: 0.8 eye heights, but well short of where the bare
            # skin the finder saw above the eye ends (a big anime eye right under the fringe: the triangles
            # that span the fringe's edge must not stretch, or the hair smears down with the blink)
            lid = t + min(0.8 * eh, max(0.25 * eh, 0.6 * (e.get("lid") or 2.0 * eh)))
            under = b - 0.6 * eh
            inside = (b <= Z) & (t >= Z)
            # the eye band between b and t is mapped onto [c_bot, c_top]
            d = np.where(inside, c_bot + (Z - b) / (t - b) * (c_top - c_bot) - Z, d)
            d = np.where((t < Z) & (lid > Z), (c_top - t) * _smooth((lid - Z) / (lid - t)), d)
            d = np.where((b > Z) & (under < Z), (c_bot - b) * _smooth((Z - under) / (b - under)), d)
        if widen:
            up = np.where(ez <= Z, widen * eh * 0.6 * _window(Z - t, 1.2 * eh), 0.0)
            down = np.where(ez > Z, -widen * eh * 0.35 * _window(Z - b, 1.0 * eh), 0.0)
            d = d + up + down
        out = np.zeros_like(self.co)
        out[:, 2] = d * _plateau(X - ex, 0.55 * e["w"], 0.45 * e["w"]) * self.mask(e["co"])
        return out

    def look(self, dx: float, dz: float) -> np.ndarray:
        out = np.zeros_like(self.co)
        for side in ("left", "right"):
            e = self.p[f"{side}_eye"]
            u = (self.co[:, 0] - e["co"][0]) / (0.95 * e["w"])
            v = (self.co[:, 2] - e["co"][2]) / (0.95 * e["h"])
            f = _smooth(1.0 - np.sqrt(u * u + v * v)) * self.mask(e["co"])
            out[:, 0] += f * dx * 0.30 * e["w"]
            out[:, 2] += f * dz * 0.30 * e["h"]
        return out

    # -- mouth
    def mouth(self, open_: float = 0.0, widen: float = 0.0, corners: float = 0.0) -> np.ndarray:
        """open_ and corners in head heights; widen as a share of the mouth's half width."""
        m = self.p["mouth"]
        mx, _my, mz = m["co"]
        half = m["w"] / 2
        eye_z = (self.p["left_eye"]["co"][2] + self.p["right_eye"]["co"][2]) / 2
        X, Z = self.co[:, 0], self.co[:, 2]
        to_chin = max(mz - self.z0, 0.08 * self.H)
        up_reach = max(0.5 * (eye_z - mz), 0.05 * self.H)
        across = _window(np.maximum(np.abs(X - mx) - half, 0.0), 0.9 * half)
        out = np.zeros_like(self.co)
        if open_:
            drop = min(open_ * self.H, 0.6 * to_chin)
            below = (mz > Z) & (self.z0 < Z)
            dz = np.where(below, -drop * (Z - self.z0) / to_chin, 0.0)
            dz = np.where(mz <= Z, 0.3 * drop * _smooth(1.0 - (Z - mz) / up_reach), dz)
            out[:, 2] += dz * across
        if widen:
            band = _window(Z - mz, max(0.6 * up_reach, 0.6 * half))
            out[:, 0] += widen * (X - mx) * band * _window(np.maximum(np.abs(X - mx) - half, 0.0), 0.8 * half)
        if corners:
            band = _window(Z - mz, max(0.6 * up_reach, 0.5 * half))
            reach = np.clip(np.abs(X - mx) / half, 0.0, 1.0) ** 2
            out[:, 2] += corners * self.H * reach * band * across
        return out * self.mask(m["co"])[:, None]

    # -- brows
    def brows(self, lift: float = 0.0, inner: float = 0.0) -> np.ndarray:
        """lift: the whole brow, inner: the inner end only (both in head heights, + is up)."""
        out = np.zeros_like(self.co)
        for side in ("left", "right"):
            b = self.p[f"{side}_brow"]
            e = self.p[f"{side}_eye"]
            bx, _by, bz = b["co"]
            half = b["w"] / 2
            X, Z = self.co[:, 0], self.co[:, 2]
            reach = max(1.2 * (bz - (e["co"][2] + e["h"] / 2)), 0.07 * self.H)
            f = _window(X - bx, 1.6 * half) * _window(Z - bz, reach) * self.mask(b["co"])
            toward_axis = np.clip((bx - X) * np.sign(bx - self.axis) / half, -1.0, 1.0)
            inner_share = _smooth((toward_axis + 1.0) / 2.0)
            out[:, 2] += f * self.H * (lift + inner * inner_share)
        return out


def generate(face: _Face) -> dict[str, np.ndarray]:
    """Displacement (V, 3) of every preset."""
    both = lambda **kw: face.lids("left", **kw) + face.lids("right", **kw)  # noqa: E731
    return {
        "aa": face.mouth(open_=0.10),
        "ih": face.mouth(open_=0.03, widen=0.18),
        "ou": face.mouth(open_=0.05, widen=-0.30),
        "ee": face.mouth(open_=0.035, widen=0.30),
        "oh": face.mouth(open_=0.075, widen=-0.18),
        "blink": both(top=1.0),
        "blinkLeft": face.lids("left", top=1.0),
        "blinkRight": face.lids("right", top=1.0),
        "happy": face.mouth(corners=0.035) + both(top=0.12, bottom=0.45) + face.brows(lift=0.012),
        "angry": face.brows(lift=-0.012, inner=-0.025) + both(top=0.22) + face.mouth(corners=-0.02),
        "sad": face.brows(inner=0.03) + both(top=0.25) + face.mouth(corners=-0.03),
        "relaxed": both(top=0.45) + face.mouth(corners=0.015),
        "surprised": face.brows(lift=0.04) + both(widen=0.35) + face.mouth(open_=0.07, widen=-0.2),
        "lookUp": face.look(0.0, 1.0),
        "lookDown": face.look(0.0, -1.0),
        "lookLeft": face.look(1.0, 0.0),  # the avatar's left is +X
        "lookRight": face.look(-1.0, 0.0),
    }


# ---------------------------------------------------------------- VRM binding


def _has_eye_bones(arm: bpy.types.Object) -> bool:
    hb = arm.data.vrm_addon_extension.vrm1.humanoid.human_bones
    return bool(hb.left_eye.node.bone_name and hb.right_eye.node.bone_name)


def bind_look_and_first_person(
    arm: bpy.types.Object, body: bpy.types.Object, head: Head, eye_mid: np.ndarray | None
) -> dict:
    """lookAt (expression type unless the humanoid has eye bones) and the firstPerson annotation, through
    the VRM add-on's properties (the expressions themselves are written with the morph targets)."""
    vrm1 = arm.data.vrm_addon_extension.vrm1
    vrm1.expressions.initial_automatic_expression_assignment = False  # ours, not the add-on's guesses
    look_at = vrm1.look_at
    eye_bones = _has_eye_bones(arm)
    look_at.type = "bone" if eye_bones else "expression"
    for rm in (
        look_at.range_map_horizontal_inner,
        look_at.range_map_horizontal_outer,
        look_at.range_map_vertical_down,
        look_at.range_map_vertical_up,
    ):
        rm.input_max_value = 90.0
        rm.output_scale = 10.0 if eye_bones else 1.0  # degrees of eye bone, or expression weight
    if eye_mid is not None:
        bone_head = np.array(arm.data.bones[head.bone].head_local)
        off = eye_mid - bone_head  # Blender axes -> glTF (x, z, -y)
        look_at.offset_from_head_bone = (float(off[0]), float(off[2]), float(-off[1]))
    fp = vrm1.first_person
    fp.mesh_annotations.clear()
    ann = fp.mesh_annotations.add()
    ann.node.mesh_object_name = body.name
    ann.type = "auto"  # the app hides what follows the head bone in first person, keeps the rest
    return {
        "look_at": look_at.type,
        "look_at_offset": [round(float(v), 4) for v in look_at.offset_from_head_bone],
        "first_person": [{"mesh": body.name, "type": "auto"}],
    }


def _moved(delta: np.ndarray, head: Head) -> dict:
    mag = np.linalg.norm(delta, axis=1)
    return {
        "vertices_moved": int((mag > 1e-6).sum()),
        "max_move_head_heights": round(float(mag.max()) / head.height, 4),
    }


def face_summary(report: dict) -> dict:
    """What the VRM file keeps of the face stage (asset.extras.comfy_avatar_face): the validator reads it,
    so a figure whose face was never found (a helmet, a chair) is not reported as a face that works."""
    finder = report.get("finder") or {}
    return {
        "found": bool(finder.get("found")),
        "confidence": finder.get("confidence", 0.0),
        "source": finder.get("source", ""),
        "reason": finder.get("reason", ""),
        "from_proportions": finder.get("from_proportions", []),
        "warnings": finder.get("warnings", []),
        "generated": report.get("generated", []),
        "existing": sorted(report.get("existing", {})),
    }


def add_face(body: bpy.types.Object, arm: bpy.types.Object, options: dict, work_dir: str) -> tuple[dict, dict]:
    """Map existing shape keys, generate the missing presets, set lookAt and firstPerson.

    Returns (the result part "face", the morph payload for _mtoon.finish_file). The morphs are
    computed here on the mesh as shape-key shapes, then taken off the mesh before export and written
    into the file as sparse glTF morph targets with their VRMC_vrm expression binds: the VRM add-on's
    exporter re-evaluates the whole skinned mesh for every shape key (measured: 17 keys made the
    export 3-4x slower), while the file needs only the few hundred face vertices each one moves.
    """
    options = dict(options or {})
    head = head_region(body, arm)
    binds = existing_binds(body)
    existing = sorted(binds)
    missing = [p for p in vrm_expr.PRESETS if p not in binds]
    report: dict = {
        "head_bone": head.bone,
        "head_box_m": [round(v, 4) for v in head.box],
        "existing": {p: [k for k, _w in binds[p]] for p in existing},
        "generated": [],
    }
    rgb, mask, source, head_px = head_picture(body, head, work_dir, str(options.get("source") or "auto"))
    found = vrm_face.find_face(rgb, mask, options.get("overrides") or {}, head_px)
    report["finder"] = {**found, "source": source}
    points = place_landmarks(body, head, found)
    eye_mid = (points["left_eye"]["co"] + points["right_eye"]["co"]) / 2
    base = verts(body.data)
    targets: dict[str, np.ndarray] = {}
    keys = body.data.shape_keys
    if keys is not None:  # existing shape keys: their shapes relative to the basis, then off the mesh
        report["shape_keys_in"] = len(keys.key_blocks) - 1
        basis = np.empty(len(base) * 3)
        keys.reference_key.data.foreach_get("co", basis)
        used = {k for b in binds.values() for k, _w in b}
        for kb in keys.key_blocks[1:]:
            if kb.name in used:
                co = np.empty(len(base) * 3)
                kb.data.foreach_get("co", co)
                targets[kb.name] = (co - basis).reshape(-1, 3)
        body.shape_key_clear()
    if missing:
        deltas = generate(_Face(body, head, points))
        moved = {}
        for preset in missing:
            name = preset if preset not in targets else f"vrm_{preset}"
            targets[name] = deltas[preset]
            binds[preset] = [(name, 1.0)]
            moved[preset] = _moved(deltas[preset], head)
        report["generated"] = missing
        report["moved"] = moved
    report.update(bind_look_and_first_person(arm, body, head, eye_mid))
    report["binds"] = {p: [{"key": k, "weight": w} for k, w in binds[p]] for p in vrm_expr.PRESETS}
    report["landmarks_m"] = {
        k: {"co": [round(float(c), 4) for c in v["co"]], "source": v["source"]} for k, v in points.items()
    }
    morphs = {"mesh": body.name, "verts": base, "targets": targets, "binds": binds}
    return report, morphs
