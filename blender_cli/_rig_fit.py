"""Fit a VRM humanoid skeleton to a standing figure's proportions (numpy only, no bpy).

Runs inside Blender (numpy ships with every Blender and with pip bpy) and in plain Python
for unit tests. Coordinates are Blender's: Z up, the figure faces -Y, the model's left
is +X, feet at Z=0, metres.

Method: rasterise the surface's front projection (X-Z plane) into a silhouette mask,
read landmarks off it (body midline from the head, crotch from the gap between the legs,
neck from the width profile, hand tips from the lateral extremes, leg centres from the
leg runs), fill in the rest from standard proportions, and put every joint at the
middle of the body's depth at that point so bones lie inside the mesh (automatic weights
need that).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ROWS = 160  # silhouette rows over the figure's height

# (bone, parent, connected to parent) in creation order; names are VRM humanoid names.
BONES: list[tuple[str, str | None, bool]] = [
    ("hips", None, False),
    ("spine", "hips", True),
    ("chest", "spine", True),
    ("neck", "chest", True),
    ("head", "neck", True),
]
for _side in ("left", "right"):
    BONES += [
        (f"{_side}Shoulder", "chest", False),
        (f"{_side}UpperArm", f"{_side}Shoulder", True),
        (f"{_side}LowerArm", f"{_side}UpperArm", True),
        (f"{_side}Hand", f"{_side}LowerArm", True),
        (f"{_side}UpperLeg", "hips", False),
        (f"{_side}LowerLeg", f"{_side}UpperLeg", True),
        (f"{_side}Foot", f"{_side}LowerLeg", True),
    ]


@dataclass
class Skeleton:
    """Bone name -> (head, tail) in Blender coordinates, plus what was measured."""

    bones: dict[str, tuple[np.ndarray, np.ndarray]]
    landmarks: dict[str, float] = field(default_factory=dict)
    fallbacks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "bones": {
                k: {"head": [round(float(x), 4) for x in h], "tail": [round(float(x), 4) for x in t]}
                for k, (h, t) in self.bones.items()
            },
            "landmarks": {k: round(float(v), 4) for k, v in self.landmarks.items()},
            "fallbacks": list(self.fallbacks),
        }


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """Occupied intervals [start, end] (inclusive) of a boolean row."""
    padded = np.concatenate([[False], row, [False]]).astype(np.int8)
    d = np.diff(padded)
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist()))


def _shift_or(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _shift_and(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    return out


class Silhouette:
    """Front-view occupancy mask of a mesh: rows = Z (row 0 at the feet), cols = X."""

    def __init__(self, verts: np.ndarray, tris: np.ndarray, rows: int = ROWS, samples: int = 300_000) -> None:
        self.zmin = float(verts[:, 2].min())
        self.height = float(verts[:, 2].max()) - self.zmin
        self.cell = self.height / rows
        self.xmin = float(verts[:, 0].min()) - self.cell
        cols = int(np.ceil((float(verts[:, 0].max()) - self.xmin) / self.cell)) + 2
        self.mask = np.zeros((rows + 1, cols), dtype=bool)
        pts = [verts[:, [0, 2]]]
        if len(tris):
            a, b, c = (verts[tris[:, i]][:, [0, 2]] for i in range(3))
            area = 0.5 * np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))
            total = float(area.sum())
            if total > 0:
                rng = np.random.default_rng(0)
                idx = rng.choice(len(tris), size=samples, p=area / total)
                r1 = np.sqrt(rng.random(samples))[:, None]
                r2 = rng.random(samples)[:, None]
                pts.append((1 - r1) * a[idx] + r1 * (1 - r2) * b[idx] + r1 * r2 * c[idx])
        p = np.concatenate(pts)
        ix = np.clip(((p[:, 0] - self.xmin) / self.cell).astype(int), 0, cols - 1)
        iz = np.clip(((p[:, 1] - self.zmin) / self.cell).astype(int), 0, rows)
        self.mask[iz, ix] = True
        self.mask = _shift_and(_shift_or(self.mask))  # close one-cell holes

    def x(self, col: float) -> float:
        return self.xmin + (col + 0.5) * self.cell

    def col(self, x: float) -> int:
        return int(np.clip((x - self.xmin) / self.cell, 0, self.mask.shape[1] - 1))

    def row(self, z: float) -> int:
        return int(np.clip((z - self.zmin) / self.cell, 0, self.mask.shape[0] - 1))

    def z(self, row: float) -> float:
        return self.zmin + (row + 0.5) * self.cell

    def occupied(self, x: float, z: float) -> bool:
        return bool(self.mask[self.row(z), self.col(x)])


def _central_width(sil: Silhouette, row: int, c0: int) -> int:
    runs = _runs(sil.mask[row])
    for s, e in runs:
        if s <= c0 <= e:
            return e - s + 1
    return 0


def _find_neck(sil: Silhouette, c0: int, lo_row: int) -> int | None:
    """Scan down from the top: past the head's widest row, the narrowest row before the width grows again."""
    top = sil.mask.shape[0] - 1
    widths = np.array([_central_width(sil, r, c0) for r in range(top, lo_row - 1, -1)], dtype=float)
    if len(widths) < 5:
        return None
    widths = np.convolve(widths, np.ones(3) / 3, mode="same")
    head_max, descending, best, best_i = 0.0, False, np.inf, None
    for i, w in enumerate(widths):
        if not descending:
            head_max = max(head_max, w)
            if head_max > 0 and w < 0.85 * head_max:
                descending = True
        if descending:
            if w < best:
                best, best_i = w, i
            elif w > 1.3 * best and w > 0.9 * head_max:
                return top - best_i
    return None


def _center_across(sil: Silhouette, p: np.ndarray, direction: np.ndarray, reach: float) -> np.ndarray:
    """Move an X-Z point to the middle of the occupied segment across `direction`."""
    n = np.array([-direction[1], direction[0]])
    steps = np.arange(-reach, reach + 1e-9, sil.cell * 0.5)
    occ = np.array([sil.occupied(*(p + s * n)) for s in steps])
    if not occ.any():
        return p
    # the occupied run nearest to the point
    runs = _runs(occ)
    mid_idx = len(steps) // 2
    s, e = min(runs, key=lambda r: 0 if r[0] <= mid_idx <= r[1] else min(abs(r[0] - mid_idx), abs(r[1] - mid_idx)))
    return p + 0.5 * (steps[s] + steps[e]) * n


def _leg_center(sil: Silhouette, z: float, x0: float, side: int) -> float:
    row = sil.row(z)
    runs = _runs(sil.mask[row])
    c0 = sil.col(x0)
    best = None
    for s, e in runs:
        cx = sil.x(0.5 * (s + e))
        if s <= c0 <= e:  # one run over the midline: legs together (or a skirt)
            half = sil.x(e) if side > 0 else sil.x(s)
            cand = 0.5 * (x0 + half)
        elif (cx - x0) * side > 0:
            cand = cx
        else:
            continue
        if best is None or abs(cand - x0) < abs(best - x0):
            best = cand
    return best if best is not None else x0 + side * 0.06 * sil.height


def _shoulder_from_arm_line(
    sil: Silhouette,
    S: np.ndarray,
    T: np.ndarray,
    x0: float,
    sgn: int,
    torso_w: float,
    landmarks: dict[str, float],
    side: str,
) -> np.ndarray:
    """For a hanging (A-pose) arm: extend the arm's centre line up to the shoulder height.

    Rows between the hand and the armpit hold the arm as its own run; a line through those
    runs' centres meets the shoulder line at the shoulder joint. Not used for near-horizontal
    arms (T-pose), where rows cut along the arm.
    """
    if abs(T[1] - S[1]) < 0.5 * abs(T[0] - S[0]):  # flatter than ~27 degrees
        return S
    c0 = sil.col(x0)
    zs, xs = [], []
    for r in range(sil.row(T[1]) + 2, sil.row(S[1])):
        runs = [(s, e) for s, e in _runs(sil.mask[r]) if not s <= c0 <= e and (sil.x(0.5 * (s + e)) - x0) * sgn > 0]
        if len(runs) == 0:
            continue
        s, e = max(runs, key=lambda run: abs(sil.x(0.5 * (run[0] + run[1])) - x0))
        zs.append(sil.z(r))
        xs.append(sil.x(0.5 * (s + e)))
    if len(zs) < 6:
        return S
    b, a = np.polyfit(np.array(zs), np.array(xs), 1)
    x = float(a + b * S[1])
    lo, hi = 0.3 * torso_w, 0.8 * torso_w
    landmarks[f"{side}_shoulder_from_arm_line_x"] = x
    return np.array([x0 + sgn * float(np.clip(abs(x - x0), lo, hi)), S[1]])


def fit_skeleton(verts: np.ndarray, tris: np.ndarray) -> Skeleton:
    """Joint positions for the BONES list, fitted to the figure's silhouette."""
    verts = np.asarray(verts, dtype=float)
    sil = Silhouette(verts, np.asarray(tris, dtype=np.int64))
    H = sil.height
    zmin = sil.zmin
    fallbacks: list[str] = []

    # Body midline: centre of the head (the top 8% of the figure).
    top_rows = sil.mask[sil.row(zmin + 0.92 * H) :]
    cols = np.flatnonzero(top_rows.any(axis=0))
    x0 = sil.x(float(cols.mean())) if len(cols) else float(0.5 * (verts[:, 0].min() + verts[:, 0].max()))
    c0 = sil.col(x0)

    # Crotch: top of the gap between the legs along the midline.
    lo, hi = sil.row(zmin + 0.1 * H), sil.row(zmin + 0.7 * H)
    gap_rows = [r for r in range(lo, hi + 1) if not sil.mask[r, c0]]
    if gap_rows:
        crotch = sil.z(max(gap_rows) + 0.5)
    else:
        crotch = zmin + 0.47 * H
        fallbacks.append("crotch: no gap between the legs, used 0.47 x height")

    neck_row = _find_neck(sil, c0, sil.row(crotch + 0.3 * (zmin + H - crotch)))
    if neck_row is not None and sil.z(neck_row) > crotch + 0.1 * H:
        neck = sil.z(neck_row)
    else:
        neck = crotch + 0.72 * (zmin + H - crotch)
        fallbacks.append("neck: no narrowing below the head, used proportions")

    torso_len = neck - crotch
    hip = crotch + 0.06 * H
    shoulder = neck - 0.12 * torso_len
    neck_base = 0.5 * (neck + shoulder)
    head_base = neck + 0.15 * (zmin + H - neck)
    ankle = zmin + 0.045 * H
    knee = ankle + 0.5 * (hip - ankle)

    # Torso width: the narrowest central run between hips and chest (sleeves or arms touching
    # the chest widen single rows, the waist is torso only).
    widths = [
        w
        for r in range(sil.row(crotch + 0.2 * torso_len), sil.row(crotch + 0.75 * torso_len) + 1)
        if (w := _central_width(sil, r, c0)) > 0
    ]
    torso_w = float(np.percentile(widths, 10)) * sil.cell if widths else 0.0
    if torso_w <= 0 or torso_w > 0.5 * H:
        torso_w = 0.2 * H
        fallbacks.append("torso width: not measurable, used 0.2 x height")
    shoulder_dx = 0.55 * torso_w

    # Depth (Y) of the body's middle near an X-Z point, from the mesh vertices.
    def depth_mid(x: float, z: float) -> float:
        for r in (0.03 * H, 0.06 * H, 0.12 * H):
            near = (np.abs(verts[:, 0] - x) < r) & (np.abs(verts[:, 2] - z) < r)
            if near.sum() >= 3:
                ys = verts[near, 1]
                return float(0.5 * (ys.min() + ys.max()))
        return float(0.5 * (verts[:, 1].min() + verts[:, 1].max()))

    def P(x: float, z: float) -> np.ndarray:
        return np.array([x, depth_mid(x, z), z])

    bones: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    spine_a = hip + 0.3 * (shoulder - hip)
    chest_a = hip + 0.6 * (shoulder - hip)
    chain = [
        ("hips", hip, spine_a),
        ("spine", spine_a, chest_a),
        ("chest", chest_a, neck_base),
        ("neck", neck_base, head_base),
        ("head", head_base, zmin + H),
    ]
    for name, za, zb in chain:
        bones[name] = (P(x0, za), P(x0, zb))
    bones["head"][1][1] = bones["head"][0][1]  # keep the head bone vertical

    landmarks = {
        "height": H,
        "midline_x": x0,
        "crotch_z": crotch,
        "hip_z": hip,
        "neck_z": neck,
        "shoulder_z": shoulder,
        "knee_z": knee,
        "ankle_z": ankle,
        "torso_width": torso_w,
    }

    for side, sgn in (("left", 1), ("right", -1)):
        # Legs: centres of the leg runs.
        leg_x_top = _leg_center(sil, crotch - 0.04 * H, x0, sgn)
        knee_x = _leg_center(sil, knee, x0, sgn)
        ankle_x = _leg_center(sil, ankle + 0.02 * H, x0, sgn)
        # One depth for the whole leg (the knee's): a leg bent in depth would be straightened by
        # the T-pose step and tilt the foot; the foot's own forward reach must not pull the ankle.
        leg_y = depth_mid(knee_x, knee)
        hip_p, knee_p, ankle_p = (
            np.array([x, leg_y, z]) for x, z in ((leg_x_top, hip), (knee_x, knee), (ankle_x, ankle))
        )
        bones[f"{side}UpperLeg"] = (hip_p, knee_p)
        bones[f"{side}LowerLeg"] = (knee_p, ankle_p)
        foot_near = (np.abs(verts[:, 0] - ankle_x) < 0.06 * H) & (verts[:, 2] < zmin + 2 * (ankle - zmin))
        front_y = float(verts[foot_near, 1].min()) if foot_near.any() else ankle_p[1] - 0.05 * H
        toe = np.array([ankle_x, ankle_p[1] + 0.6 * (front_y - ankle_p[1]), zmin + 0.3 * (ankle - zmin)])
        if np.linalg.norm(toe - ankle_p) < 0.03 * H:
            toe = ankle_p + np.array([0.0, -0.05 * H, -0.02 * H])
        bones[f"{side}Foot"] = (ankle_p, toe)

        # Arms: shoulder joint at the torso edge, hand tip at the lateral extreme.
        S = np.array([x0 + sgn * shoulder_dx, shoulder])
        zlo, zhi = sil.row(knee), sil.row(neck)
        region = sil.mask[zlo : zhi + 1]
        cols_occ = np.flatnonzero(region.any(axis=0))
        side_cols = (
            cols_occ[(sil.x(0) + cols_occ * sil.cell - x0) * sgn > 0.5 * torso_w * 1.05] if len(cols_occ) else cols_occ
        )
        T = None
        if len(side_cols):
            ext_col = side_cols.max() if sgn > 0 else side_cols.min()
            rows_at = np.flatnonzero(region[:, ext_col]) + zlo
            T = np.array([sil.x(ext_col), sil.z(float(rows_at.mean()))])
            if np.linalg.norm(T - S) < 0.2 * H:
                T = None
        if T is None:
            T = S + np.array([sgn * 0.1 * H, -0.42 * H])
            fallbacks.append(f"{side} arm: no hand beside the body, assumed arms down")
        S = _shoulder_from_arm_line(sil, S, T, x0, sgn, torso_w, landmarks, side)
        d = (T - S) / np.linalg.norm(T - S)
        reach = 0.08 * H
        # Centre the tip across the arm a little inside the outline, then put it back at the far end.
        tip = _center_across(sil, T - d * 0.03 * H, d, reach) + d * 0.03 * H
        d = (tip - S) / np.linalg.norm(tip - S)
        L = float(np.linalg.norm(tip - S))
        elbow = _center_across(sil, S + 0.42 * L * d, d, reach)
        wrist = _center_across(sil, S + 0.78 * L * d, d, reach)
        hand_end = _center_across(sil, S + 0.97 * L * d, d, reach)
        S3, E3, W3, T3 = (P(float(q[0]), float(q[1])) for q in (S, elbow, wrist, hand_end))
        clav = P(x0 + sgn * 0.15 * torso_w, 0.5 * (shoulder + neck_base))
        bones[f"{side}Shoulder"] = (clav, S3)
        bones[f"{side}UpperArm"] = (S3, E3)
        bones[f"{side}LowerArm"] = (E3, W3)
        bones[f"{side}Hand"] = (W3, T3)
        landmarks[f"{side}_hand_tip_x"] = float(tip[0])
        landmarks[f"{side}_hand_tip_z"] = float(tip[1])
        landmarks[f"{side}_arm_angle_deg"] = float(np.degrees(np.arctan2(-(tip[1] - S[1]), abs(tip[0] - S[0]))))

    # Every bone needs a length (Blender deletes zero-length bones).
    for name, (h, t) in bones.items():
        if np.linalg.norm(t - h) < 0.01 * H:
            bones[name] = (h, h + np.array([0.0, 0.0, 0.02 * H]))
    return Skeleton(bones=bones, landmarks=landmarks, fallbacks=fallbacks)
