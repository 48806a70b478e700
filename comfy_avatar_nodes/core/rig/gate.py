"""Is this mesh a standing humanoid seen from the front? The check before rigging (numpy + stdlib only).

A VRM is a humanoid avatar: the template rig puts hips, legs, arms and a head where a standing figure
has them. Fed a chair, it still "succeeds" and writes a VRM of a chair with a skeleton through it; fed
a figure drawn in profile (silhouette inflation turns the profile into the figure's front), it makes a
torn, stretched avatar. So before any rigging the figure's front outline is read:

- the body's midline: the median column between hips and shoulders, not the bounding box's centre (a
  staff, a sword or a tail on one side moves that), and every measurement below is taken on the run of
  the outline at that midline (hands raised over the head or a staff's tip are not the head);
- a head: the top of the figure is a narrow part roughly over the body's middle, narrower than the
  shoulders or the arms' span below it (a chair's backrest, a table top or a tree's crown is as wide as
  the rest), or a neck: a row clearly narrower than the part above it (a head however wide its ears,
  hair or helmet) and than the shoulders below (a bottle's neck has nothing wider above it);
- two legs: between the knees and the crotch the outline has a gap along the body's midline, or the
  legs stay apart from the ground up for a while; and the leg band holds a fair share of the torso's
  width (a coat stand's or a lamp's pole is not two legs; a long skirt or robe hides them: the check
  says so);
- not a building: no long stretch of one unchanging wide span (walls) under a head with no neck (a
  house's roof tip reads as a head, its door as a leg gap);
- upright: at least about as tall as wide (a T-pose is as wide as tall; an animal on four legs, a car or a
  table is wider), not a solid block (a building or a box fills its outline);
- seen from the front: left and right mirror each other (a profile or a three-quarter view does not; a
  prop on one side or a thin staff is left out of the comparison), and the feet (the two ground contacts
  nearest the midline) do not all reach to one side (in a profile they point forward, i.e. sideways in
  the picture).

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

# thresholds, as shares of the height (H) or width (W); first measured on tests/test_gate.py's figures, then
# checked against figures drawn in another style that no one tuned on (tests/test_gate_redteam.py)
MIN_ASPECT = 0.78  # height / width below this: lying or wide (animal, vehicle, table)
MAX_FILL = 0.82  # outline area / bounding box above this: a block (building, box, cabinet)
MAX_HEAD_RATIO = 0.72  # head width / widest part below it
MAX_HEAD_OFFSET = 0.22  # head centre off the body's centre, share of W
MIN_LEG_GAP_ROWS = 0.08  # share of H with a gap on the midline in the leg band (a bust cut at the hips has ~0.05)
MIN_SYMMETRY = 0.72  # IoU of the outline with its mirror image about the head's centre
MAX_FOOT_OFFSET = 0.035  # feet's centre off the midline, share of H
PROFILE_FOOT_OFFSET = 0.015  # ... when the legs overlap in one column: the feet point one way (a profile)
PROFILE_MIN_FILL = 0.4  # a profile fills its narrow outline; a lamp's pole under its shade does not
PROFILE_ASPECT = 3.0  # height / width above this with one leg column: a profile's narrow outline
MAX_NECK_RATIO = 0.6  # a neck: the midline run this narrow against the head above and the shoulders below
MIN_WALLS = 0.45  # share of H with one unchanging wide span and no neck: walls (a house with a door)
MIN_LEG_MASS = 0.2  # the leg band's outline width, share of the torso's: legs, not a pole
MIN_FEET_APART_ROWS = 0.12  # share of H the legs stay apart from the ground up (a bust cut at the hips: ~0.1)
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

    # The body's midline: the median column of the outline between the hips and the shoulders. Not the
    # bounding box's centre: a staff, a sword or a tail on one side moves that, not the body.
    core_rows = mask[int(0.45 * n) : int(0.8 * n)]
    cy, cx = np.nonzero(core_rows)
    body_c = float(np.median(cx)) if len(cx) else 0.5 * (c0 + c1)
    # head: the top 11% of the height, read on the run at the midline (the first row from the top
    # that reaches it): hands raised above the head (a Y pose), a staff's tip or hat feathers off to the
    # side are not the head.
    central_w = np.zeros(n)  # width (cells) of the run at or nearest the midline, per row
    central_c = np.full(n, body_c)
    for i in range(n):
        runs = _runs(mask[i])
        if runs:
            s_, e_ = min(
                runs, key=lambda se: 0 if se[0] <= body_c <= se[1] else min(abs(se[0] - body_c), abs(se[1] - body_c))
            )
            if s_ - 1.5 <= body_c <= e_ + 1.5 or abs(0.5 * (s_ + e_) - body_c) * cell <= 0.12 * W:
                central_w[i], central_c[i] = e_ - s_ + 1, 0.5 * (s_ + e_)
    reach = np.flatnonzero(central_w > 0)
    head_top = int(reach.max()) if len(reach) else n - 1
    head_rows = np.arange(max(0, head_top - int(round(0.11 * n))), head_top + 1)
    head_w = float(central_w[head_rows].max()) if len(head_rows) else 0.0
    head_c = float(np.mean(central_c[head_rows][central_w[head_rows] > 0])) if central_w[head_rows].any() else body_c
    below = row_w[int(0.45 * n) : int(0.86 * n)]
    span_below = max((np.ptp(np.flatnonzero(r)) + 1 if r.any() else 0) for r in mask[int(0.45 * n) : int(0.86 * n)])
    f["head_ratio"] = float(head_w / max(span_below, 1))
    f["head_offset"] = float(abs(head_c - body_c) * cell / W) if W > 0 else 0.0
    f["top_fill"] = float(_band(mask, 0.92, 1.0)[:, c0 : c1 + 1].any(0).mean())
    f["body_width_rows"] = float(below.max() * cell / W) if len(below) and W > 0 else 0.0
    # a neck: below the top, a row of the midline run clearly narrower than the part above it (the head,
    # with its ears, hair or helmet however wide) and than the shoulders below it. A bottle's neck has
    # nothing wider above it; a chair's backrest, a tree's crown or a roof narrows nowhere on the way down.
    f["neck_ratio"] = 1.0
    prof = central_w[max(0, head_top - int(0.4 * n)) : head_top + 1][::-1]  # from the top down
    min_above = max(2, int(round(0.05 * n)))
    for i in range(min_above, len(prof) - 1):
        above, below_max = prof[:i].max(), prof[i:].max()
        # (a row with nothing at the midline between head and body is a neck too: a head drawn apart)
        if above > 0 and below_max > 0 and above >= 1.25 * prof[i] and below_max >= 1.6 * prof[i]:
            f["neck_ratio"] = min(f["neck_ratio"], float(prof[i] / min(above, below_max)))
    torso_w = float(central_w[int(0.5 * n) : int(0.75 * n)].max()) if n else 0.0
    # straight sides: the longest stretch of rows over which the outline keeps one wide span (a building's
    # walls, a cabinet, a box). A figure's span changes all the way down: head, shoulders, hands, hips, feet.
    spans = np.array([(np.ptp(np.flatnonzero(r)) + 1) if r.any() else 0 for r in mask], float)
    longest, start = 0, 0
    for i in range(1, n + 1):
        if i == n or abs(spans[i] - spans[start]) > 2 or spans[start] < 0.5 * (c1 - c0 + 1):
            longest = max(longest, i - start if spans[start] >= 0.5 * (c1 - c0 + 1) else 0)
            start = i
    f["straight_sides"] = longest / n

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
    # legs have substance: across the leg band the outline is a fair share of the torso's width (a coat
    # stand's or a lamp's pole under a wide top is not two legs)
    f["leg_mass"] = float(np.median(legs.sum(1)) / torso_w) if len(legs) and torso_w > 0 else 0.0
    # ... and two feet apart stand on two legs that stay apart for a while above the ground (a bird's
    # feet under its round body part only for the last few rows)
    apart, started = 0, False
    for r in mask[: int(0.42 * n)]:  # from the ground up, until the two columns join
        if not r.any() and not started:
            continue
        runs = _runs(r)
        if any(e < mid for _, e in runs) and any(s > mid for s, _ in runs) and not r[mid]:
            apart, started = apart + 1, True
        else:
            break
    f["feet_apart_rows"] = apart / n
    ground = np.asarray(_band(mask, 0.0, 0.03).any(0), bool)
    ground_runs = _runs(ground)
    f["ground_contacts"] = float(len(ground_runs))
    f["base_width"] = float(max((e - s + 1 for s, e in ground_runs), default=0) * cell / W) if W > 0 else 0.0
    low = _band(mask, 0.05, 0.3)
    f["low_runs"] = float(np.median([len(_runs(r)) for r in low])) if len(low) else 0.0

    # front view: mirror symmetry about the head's centre; feet reaching to one side
    width = mask.shape[1]
    cols = np.arange(width)

    def mirror_iou(m: np.ndarray) -> float:
        mirrored_cols = np.rint(2 * head_c - cols).astype(int)
        valid = (mirrored_cols >= 0) & (mirrored_cols < width)
        mirror = np.zeros_like(m)
        mirror[:, cols[valid]] = m[:, mirrored_cols[valid]]
        union = (m | mirror).sum()
        return float((m & mirror).sum() / union) if union else 0.0

    f["symmetry_full"] = mirror_iou(mask)
    # ... and of the body alone: what reaches past the body's narrower side (a staff held out, a tail, a
    # sword, a bag) is left out, so a prop on one side does not read as a profile
    occ = np.flatnonzero(mask[int(0.05 * n) :].any(0))
    reach_l, reach_r = head_c - occ.min(), occ.max() - head_c
    r_core = min(reach_l, reach_r) + 1
    core = mask.copy()
    core[:, (cols < head_c - r_core) | (cols > head_c + r_core)] = False
    # ... and without parts thinner than ~4.5% of the height across (a staff or a spear held upright)
    k = max(3, int(round(0.045 * n)))
    run_len = np.zeros(mask.shape, int)  # horizontal opening: keep cells in a run at least k wide
    for i, r in enumerate(mask):
        for s_, e_ in _runs(r):
            if e_ - s_ + 1 >= k:
                run_len[i, s_ : e_ + 1] = 1
    f["symmetry"] = max(f["symmetry_full"], mirror_iou(core), mirror_iou(run_len.astype(bool)))
    feet = _band(mask, 0.0, 0.05)
    # the feet: the two ground runs nearest the midline (a tail's tip, a staff's foot or a base's rim
    # beside them are not feet)
    feet_cols = np.zeros(width, bool)
    foot_runs = _runs(np.asarray(feet.any(0), bool))
    left = [se for se in foot_runs if 0.5 * (se[0] + se[1]) < head_c]
    right = [se for se in foot_runs if 0.5 * (se[0] + se[1]) >= head_c]
    on_mid = [se for se in foot_runs if se[0] <= head_c <= se[1]]
    if on_mid:  # feet together under the midline
        near = on_mid
    elif left and right:  # the nearest on each side of the midline
        near = [max(left, key=lambda se: se[1]), min(right, key=lambda se: se[0])]
    else:  # all on one side (a profile's feet) or one run: all of them
        near = foot_runs
    for s_, e_ in near:
        feet_cols[s_ : e_ + 1] = True
    fw = (feet.sum(0) * feet_cols).astype(float)
    f["foot_offset"] = float(abs((fw * cols).sum() / fw.sum() - head_c) * cell / H) if fw.sum() and H > 0 else 0.0
    # where the mass sits: a quadruped's body is high, its head at one end
    top_profile = np.array([np.flatnonzero(mask[:, c]).max() if mask[:, c].any() else -1 for c in range(c0, c1 + 1)])
    f["highest_at"] = float((int(np.argmax(top_profile)) + 0.5) / max(len(top_profile), 1))
    return f, mask


def assess_humanoid(verts: np.ndarray, tris: np.ndarray) -> HumanoidVerdict:
    """The verdict on a mesh in glTF axes (Y up, facing +Z): see the module docstring."""
    f, _mask = outline_features(verts, tris)
    r = {k: round(v, 4) for k, v in f.items()}
    has_neck = f["neck_ratio"] <= MAX_NECK_RATIO
    has_head = f["head_offset"] <= MAX_HEAD_OFFSET and (
        (f["head_ratio"] <= MAX_HEAD_RATIO and f["top_fill"] < 0.75) or has_neck
    )
    has_legs = f["leg_mass"] >= MIN_LEG_MASS and (
        f["leg_gap_rows"] >= MIN_LEG_GAP_ROWS or f["feet_apart_rows"] >= MIN_FEET_APART_ROWS
    )
    upright = f["aspect"] >= MIN_ASPECT
    block = f["fill"] >= MAX_FILL
    frontal = f["symmetry"] >= MIN_SYMMETRY and f["foot_offset"] <= MAX_FOOT_OFFSET
    conf = {
        # the head's confidence stays the narrow top's: a neck under a wide head (ears, hair) lets the
        # figure through, but a profile has a neck too, and its landmarks are still guesses
        "head": float(np.clip((MAX_HEAD_RATIO + 0.15 - f["head_ratio"]) / 0.3, 0, 1)) if f["top_fill"] < 0.75 else 0.0,
        "legs": float(
            np.clip(
                max(f["leg_gap_rows"] / (2.5 * MIN_LEG_GAP_ROWS), f["feet_apart_rows"] / (2 * MIN_FEET_APART_ROWS)),
                0,
                1,
            )
        )
        * (1.0 if f["leg_mass"] >= MIN_LEG_MASS else 0.0),
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
        and (
            # narrow and filled like a body's profile (a lamp's pole under its shade or a bottle is not)
            (f["aspect"] > PROFILE_ASPECT and PROFILE_MIN_FILL <= f["fill"] < MAX_FILL)
            or f["foot_offset"] > PROFILE_FOOT_OFFSET
        )
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
    # (only where a "head" was seen: a roof's tip; without one the chair and the other checks below decide)
    walls = has_head and not has_neck and f["straight_sides"] >= MIN_WALLS and f["fill"] >= 0.5
    if block or walls or (not has_legs and not has_neck and f["base_width"] >= 0.7 and f["fill"] >= 0.6):
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
    if not has_legs and f["leg_mass"] < MIN_LEG_MASS:
        return verdict(
            "unknown",
            "what it stands on is a pole or a thin stand, not two legs: across the leg band the outline is "
            f"only {f['leg_mass']:.0%} of the body's width above it (a lamp, a coat stand, an office chair?)",
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
