"""Is this mesh a standing humanoid seen from the front? The check before rigging (numpy + stdlib only).

A VRM is a humanoid avatar: the template rig puts hips, legs, arms and a head where a standing figure
has them. Fed a chair, it still "succeeds" and writes a VRM of a chair with a skeleton through it; fed
a figure drawn in profile (silhouette inflation turns the profile into the figure's front), it makes a
torn, stretched avatar. So before any rigging the figure's front outline is read:

- a head: the top of the figure is a narrow part roughly over the body's middle, narrower than the
  shoulders or the arms' span below it (a chair's backrest, a table top or a roof is as wide as the rest);
- two legs: between the knees and the crotch the outline has a gap along the body's midline, or two
  separate feet touch the ground (a long skirt or robe hides them: the check says so);
- upright: at least about as tall as wide (a T-pose is as wide as tall; an animal on four legs, a car or a
  table is wider), not a solid block (a building or a box fills its outline);
- seen from the front: left and right mirror each other (a profile or a three-quarter view does not), and
  the feet do not all reach to one side (in a profile they point forward, i.e. sideways in the picture).

The outline comes from the mesh itself (its projection onto the X-Y plane), so the same check covers
meshes from a picture, a turnaround, TRELLIS or a file. Runs inside Blender too (blender_cli/_pack.py
loads this file by path), hence numpy + stdlib only.

    verdict = assess_humanoid(vertices, triangles)    # glTF axes: Y up, facing +Z, metres or not
    verdict.ok, verdict.kind, verdict.reasons, verdict.features, verdict.confidence
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

ROWS = 128  # outline rows over the figure's height
SAMPLES = 200_000  # surface samples rasterised into the outline
GATE_MODES = ("refuse", "warn", "off")

# thresholds, as shares of the height (H) or width (W); measured on the tests' figures (tests/test_gate.py)
MIN_ASPECT = 0.78  # height / width below this: lying or wide (animal, vehicle, table)
MAX_FILL = 0.82  # outline area / bounding box above this: a block (building, box, cabinet)
MAX_HEAD_RATIO = 0.72  # head width / widest part below it
MAX_HEAD_OFFSET = 0.22  # head centre off the body's centre, share of W
MIN_LEG_GAP_ROWS = 0.04  # share of H with a gap on the midline in the leg band
MIN_SYMMETRY = 0.72  # IoU of the outline with its mirror image about the head's centre
MAX_FOOT_OFFSET = 0.035  # feet's centre off the midline, share of H
PROFILE_FOOT_OFFSET = 0.015  # ... when the legs overlap in one column: the feet point one way (a profile)
PROFILE_ASPECT = 3.0  # height / width above this with one leg column: a profile's narrow outline
PLAIN_GLB_FIX = (
    "to keep it as a plain mesh, connect the mesh to 'Export Asset (GLB/FBX/OBJ/.blend + LODs + "
    "previews)' instead of a VRM node"
)
OVERRIDE_FIX = "if this really is a standing humanoid the check misreads, set humanoid_check to warn or off"


@dataclass
class HumanoidVerdict:
    """The gate's answer: ``kind`` is humanoid, side_view, quadruped, table, chair, building, vehicle,
    robed_or_legless or unknown; ``reasons`` say what was measured; ``confidence`` 0..1 how clearly
    each humanoid landmark showed (head, legs, front view)."""

    ok: bool
    kind: str
    reasons: list[str] = field(default_factory=list)
    features: dict[str, float] = field(default_factory=dict)
    confidence: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def problem(self) -> str:
        return "; ".join(self.reasons)

    def fix(self) -> str:
        """What to do about a refusal (the AvatarError's Fix)."""
        if self.kind == "side_view":
            return (
                "give a front view of the figure (facing the camera, arms apart or at the sides), or a turnaround: "
                "front + side (+ back) pictures into Image to Mesh (CPU) give real depth; " + OVERRIDE_FIX
            )
        if self.kind == "quadruped":
            return "VRM is a humanoid-only format: use a figure standing on two legs; " + PLAIN_GLB_FIX
        return PLAIN_GLB_FIX + "; " + OVERRIDE_FIX


def _outline(verts: np.ndarray, tris: np.ndarray, a: int, b: int, rows: int) -> tuple[np.ndarray, float]:
    """Occupancy of the projection onto axes (a = horizontal, b = up): rows x cols, row 0 at the bottom;
    and the cell size."""
    lo_b, hi_b = float(verts[:, b].min()), float(verts[:, b].max())
    cell = (hi_b - lo_b) / rows if hi_b > lo_b else 1.0
    lo_a = float(verts[:, a].min()) - cell
    cols = int(np.ceil((float(verts[:, a].max()) - lo_a) / cell)) + 2
    pts = [verts[:, [a, b]]]
    if len(tris):
        p0, p1, p2 = (verts[tris[:, i]][:, [a, b]] for i in range(3))
        area = 0.5 * np.abs(
            (p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p1[:, 1] - p0[:, 1]) * (p2[:, 0] - p0[:, 0])
        )
        total = float(area.sum())
        if total > 0:
            rng = np.random.default_rng(0)
            idx = rng.choice(len(tris), size=SAMPLES, p=area / total)
            r1 = np.sqrt(rng.random(SAMPLES))[:, None]
            r2 = rng.random(SAMPLES)[:, None]
            pts.append((1 - r1) * p0[idx] + r1 * (1 - r2) * p1[idx] + r1 * r2 * p2[idx])
    p = np.concatenate(pts)
    mask = np.zeros((rows + 1, cols), bool)
    ix = np.clip(((p[:, 0] - lo_a) / cell).astype(int), 0, cols - 1)
    iy = np.clip(((p[:, 1] - lo_b) / cell).astype(int), 0, rows)
    mask[iy, ix] = True

    # close one-cell holes (sampling gaps): dilate then erode with a 3x3 cross
    def shift_or(m: np.ndarray) -> np.ndarray:
        o = m.copy()
        o[1:] |= m[:-1]
        o[:-1] |= m[1:]
        o[:, 1:] |= m[:, :-1]
        o[:, :-1] |= m[:, 1:]
        return o

    def shift_and(m: np.ndarray) -> np.ndarray:
        o = m.copy()
        o[1:] &= m[:-1]
        o[:-1] &= m[1:]
        o[:, 1:] &= m[:, :-1]
        o[:, :-1] &= m[:, 1:]
        return o

    return shift_and(shift_or(mask)), cell


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), (np.flatnonzero(d == -1) - 1).tolist()))


def _band(mask: np.ndarray, lo: float, hi: float) -> np.ndarray:
    n = mask.shape[0]
    return mask[int(lo * n) : max(int(lo * n) + 1, int(np.ceil(hi * n)))]


def outline_features(verts: np.ndarray, tris: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """The measurements the verdict is made from, and the front outline (rows x cols, row 0 at the feet)."""
    verts = np.asarray(verts, float)
    tris = np.asarray(tris, np.int64).reshape(-1, 3)
    mask, cell = _outline(verts, tris, 0, 1, ROWS)
    ys, xs = np.nonzero(mask)
    c0, c1 = int(xs.min()), int(xs.max())
    W = (c1 - c0 + 1) * cell
    H = float(verts[:, 1].max() - verts[:, 1].min())
    D = float(verts[:, 2].max() - verts[:, 2].min())
    f: dict[str, float] = {"height": H, "width": W, "depth": D, "aspect": H / W if W > 0 else 0.0}
    f["fill"] = float(mask[:, c0 : c1 + 1].mean())
    n = mask.shape[0]
    row_w = mask.sum(1).astype(float)

    # head: the top 11% of the height
    head = _band(mask, 0.89, 1.0)
    hc = np.flatnonzero(head.any(0))
    head_w = (hc.max() - hc.min() + 1) if len(hc) else 0
    head_c = 0.5 * (hc.max() + hc.min()) if len(hc) else 0.5 * (c0 + c1)
    below = row_w[int(0.45 * n) : int(0.86 * n)]
    span_below = max((np.ptp(np.flatnonzero(r)) + 1 if r.any() else 0) for r in mask[int(0.45 * n) : int(0.86 * n)])
    f["head_ratio"] = float(head_w / max(span_below, 1))
    f["head_offset"] = float(abs(head_c - 0.5 * (c0 + c1)) * cell / W) if W > 0 else 0.0
    f["top_fill"] = float(_band(mask, 0.92, 1.0)[:, c0 : c1 + 1].any(0).mean())
    f["body_width_rows"] = float(below.max() * cell / W) if len(below) and W > 0 else 0.0

    # legs: rows of the band between feet and crotch with a gap on the midline (at the head's centre)
    mid = int(round(head_c))
    legs = _band(mask, 0.06, 0.42)
    gaps = 0
    for r in legs:
        runs = _runs(r)
        if len(runs) >= 2 and not r[mid]:
            left = [s for s in runs if s[1] < mid]
            right = [s for s in runs if s[0] > mid]
            if left and right:
                gaps += 1
    f["leg_gap_rows"] = gaps / n
    ground = np.asarray(_band(mask, 0.0, 0.03).any(0), bool)
    f["ground_contacts"] = float(len(_runs(ground)))
    f["base_width"] = float(max((e - s + 1 for s, e in _runs(ground)), default=0) * cell / W) if W > 0 else 0.0
    low = _band(mask, 0.05, 0.3)
    f["low_runs"] = float(np.median([len(_runs(r)) for r in low])) if len(low) else 0.0

    # front view: mirror symmetry about the head's centre; feet reaching to one side
    width = mask.shape[1]
    cols = np.arange(width)
    mirrored_cols = np.rint(2 * head_c - cols).astype(int)
    valid = (mirrored_cols >= 0) & (mirrored_cols < width)
    mirror = np.zeros_like(mask)
    mirror[:, cols[valid]] = mask[:, mirrored_cols[valid]]
    union = (mask | mirror).sum()
    f["symmetry"] = float((mask & mirror).sum() / union) if union else 0.0
    feet = _band(mask, 0.0, 0.05)
    fw = feet.sum(0).astype(float)
    f["foot_offset"] = float(abs((fw * cols).sum() / fw.sum() - head_c) * cell / H) if fw.sum() and H > 0 else 0.0
    # where the mass sits: a quadruped's body is high, its head at one end
    top_profile = np.array([np.flatnonzero(mask[:, c]).max() if mask[:, c].any() else -1 for c in range(c0, c1 + 1)])
    f["highest_at"] = float((int(np.argmax(top_profile)) + 0.5) / max(len(top_profile), 1))
    return f, mask


def assess_humanoid(verts: np.ndarray, tris: np.ndarray) -> HumanoidVerdict:
    """The verdict on a mesh in glTF axes (Y up, facing +Z): see the module docstring."""
    f, _mask = outline_features(verts, tris)
    r = {k: round(v, 4) for k, v in f.items()}
    has_head = f["head_ratio"] <= MAX_HEAD_RATIO and f["head_offset"] <= MAX_HEAD_OFFSET and f["top_fill"] < 0.75
    has_legs = f["leg_gap_rows"] >= MIN_LEG_GAP_ROWS or f["ground_contacts"] == 2
    upright = f["aspect"] >= MIN_ASPECT
    block = f["fill"] >= MAX_FILL
    frontal = f["symmetry"] >= MIN_SYMMETRY and f["foot_offset"] <= MAX_FOOT_OFFSET
    conf = {
        "head": float(np.clip((MAX_HEAD_RATIO + 0.15 - f["head_ratio"]) / 0.3, 0, 1)) if f["top_fill"] < 0.75 else 0.0,
        "legs": float(np.clip(f["leg_gap_rows"] / (2.5 * MIN_LEG_GAP_ROWS), 0, 1)),
        "upright": float(np.clip((f["aspect"] - 0.6) / 0.6, 0, 1)),
        "front_view": float(
            np.clip((f["symmetry"] - 0.55) / 0.35, 0, 1) * (1.0 if f["foot_offset"] <= MAX_FOOT_OFFSET else 0.3)
        ),
    }
    conf["overall"] = float(np.mean(list(conf.values())))
    facts = (
        f"height/width {f['aspect']:.2f}, outline fill {f['fill']:.0%}, head width {f['head_ratio']:.0%} of the "
        f"span below it, leg gap over {f['leg_gap_rows']:.0%} of the height, mirror symmetry {f['symmetry']:.0%}"
    )

    def verdict(kind: str, *reasons: str) -> HumanoidVerdict:
        return HumanoidVerdict(
            ok=kind == "humanoid",
            kind=kind,
            reasons=[*reasons, f"measured: {facts}"],
            features=r,
            confidence={k: round(v, 3) for k, v in conf.items()},
        )

    if not upright:
        many_legs = f["low_runs"] >= 3 or f["ground_contacts"] >= 3
        if many_legs and f["top_fill"] < 0.75 and (f["highest_at"] < 0.3 or f["highest_at"] > 0.7):
            return verdict(
                "quadruped",
                "it looks like an animal on four legs (a long body over several legs, "
                "the head at one end), not a figure standing upright on two legs",
            )
        if f["top_fill"] >= 0.75 and (many_legs or f["leg_gap_rows"] > 0.1):
            return verdict(
                "table",
                "it looks like a table or bench (a flat top as wide as the whole object on legs), "
                "not a standing humanoid",
            )
        if block or f["ground_contacts"] <= 2 and f["fill"] >= 0.55:
            return verdict(
                "vehicle",
                "it is much wider than tall and mostly solid (a vehicle or a lying object?), "
                "not a figure standing upright",
            )
        return verdict("unknown", "it is wider than tall, so it is not a figure standing upright")
    if (
        not has_legs
        and f["ground_contacts"] <= 1
        and (f["aspect"] > PROFILE_ASPECT or f["foot_offset"] > PROFILE_FOOT_OFFSET)
    ):
        return verdict(
            "side_view",
            "the figure is not seen from the front: its legs overlap in one column and "
            + (
                "the outline is a profile's, narrow as the body is deep"
                if f["aspect"] > PROFILE_ASPECT
                else "the feet point to one side"
            )
            + " (a side or three-quarter view)",
        )
    if block or (not has_legs and f["base_width"] >= 0.7 and f["fill"] >= 0.6):
        return verdict(
            "building",
            "it fills its outline like a block (a building, a box or a cabinet?), with no separate head, arms or legs",
        )
    if not has_head:
        if f["top_fill"] >= 0.6 and f["leg_gap_rows"] > 0.1:
            return verdict(
                "chair",
                "its top is as wide as the object and stands on legs (a chair or a stool?): there "
                "is no head above the shoulders",
            )
        if not frontal:
            return verdict(
                "side_view",
                "the picture does not show the figure from the front: the outline is lopsided "
                "(no head centred over the body), as in a side or three-quarter view",
            )
        return verdict(
            "unknown", "there is no head: the top of the figure is not a narrower part over the body's middle"
        )
    if not frontal:
        return verdict(
            "side_view",
            "the figure is not seen from the front: its left and right do not mirror each "
            "other"
            + (" and the feet point to one side, as in a profile" if f["foot_offset"] > MAX_FOOT_OFFSET else "")
            + " (a side or three-quarter view)",
        )
    if not has_legs:
        return verdict(
            "robed_or_legless",
            "no two legs are visible: the outline has no gap between the legs and does "
            "not touch the ground with two feet (a long skirt or robe, or legs pressed together?)",
        )
    return verdict("humanoid", "a standing humanoid seen from the front")


def gate_error_parts(verdict: HumanoidVerdict) -> tuple[str, str]:
    """(problem, fix) for the AvatarError that refuses ``verdict``."""
    return f"is not a standing humanoid seen from the front ({verdict.kind}): {verdict.problem()}", verdict.fix()
