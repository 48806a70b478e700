"""Find eyes, mouth and brows on a front picture of an avatar's head, on the CPU, with no model weights.

    result = find_face(rgb, mask)                 # rgb (H, W, 3) uint8 = exactly the head box
    result["found"], result["confidence"], result["landmarks"]["left_eye"] -> {"x", "y", "w", "h", "source"}

Positions are fractions of the head box: x from the picture's left edge (the avatar's RIGHT side in a
front view), y from the top of the head. "left"/"right" are the avatar's own sides.

Why this and not a face detector: the avatars are drawn characters (big eyes, dots for eyes, beards,
helmets) that photo-trained detectors miss, and no weights may be downloaded. The cues, strongest first:
1. the skin: the commonest colour of the mid face (forehead to cheeks; below is where beards are);
2. eyes: a pair of blobs that differ from the skin (dark, saturated or white), of similar size and
   height, mirrored about the head axis (the middle of the head's outline, not of the skin, which hair
   over one side would pull off), anywhere from the top sixth to the bottom of the face (bald heads
   have high eyes); one eye alone when its twin's place is covered by something bigger that is not
   skin (a lock of hair), mirrored and said so;
3. the mouth: a blob on the axis below the eyes (under a beard: just below the beard's upper edge,
   said so); brows: elongated blobs just above each eye;
4. OpenCV's bundled Haar eye/face cascades, where cv2 is importable and they fire (photo-like
   textures, e.g. TRELLIS): they raise the confidence, they never place a landmark alone;
5. standard stylised proportions as the prior: anything not found is placed by them and the result
   says so (``warnings``); no eye pair at all means no face was found (``found`` false, ``reason``):
   a visor, a helmet, sunglasses or a mask; nor on a head under MIN_HEAD_PX pixels tall in its
   source picture, where a "pair of eyes" is two pixels of noise.

stdlib + numpy only at import (cv2 is optional): blender_cli/_pack.py loads this very file inside
Blender, where the front render of a rigged mesh's head is analysed, and the pack calls it directly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

LANDMARKS = ("left_eye", "right_eye", "mouth", "left_brow", "right_brow")

# Standard proportions of a stylised head (fractions of the head box, hair included): the prior.
PROPORTIONS: dict[str, dict[str, float]] = {
    "left_eye": {"x": 0.68, "y": 0.56, "w": 0.15, "h": 0.11},
    "right_eye": {"x": 0.32, "y": 0.56, "w": 0.15, "h": 0.11},
    "mouth": {"x": 0.50, "y": 0.80, "w": 0.20, "h": 0.05},
    "left_brow": {"x": 0.68, "y": 0.45, "w": 0.16, "h": 0.03},
    "right_brow": {"x": 0.32, "y": 0.45, "w": 0.16, "h": 0.03},
}
WORK_SIDE = 160  # the picture is analysed at most this size (long side)
SKIN_DELTA_E = 16.0  # colour distance (CIE Lab) still counted as skin
FEATURE_DELTA_E = 22.0  # ... and from here on a pixel is a feature (eye, mouth, brow)
MIN_SKIN_SHARE = 0.12  # below this share of the head the face is covered (visor, helmet, mask)
MIN_CONFIDENCE = 0.35
MIN_HEAD_PX = 24  # a head fewer pixels tall than this in its source picture has eyes of a pixel or two
EYE_BAND = (0.15, 0.85)  # eye centres as fractions of the head box from the top (bald heads: high eyes)
MIRRORED_EYE_SCORE = 0.45  # the confidence an eye mirrored from the other one (hair over it) starts at


# ---------------------------------------------------------------- small image tools (numpy only)


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize (enough at this size; keeps dots and lines crisp)."""
    ys = np.minimum((np.arange(h) + 0.5) * img.shape[0] / h, img.shape[0] - 1).astype(int)
    xs = np.minimum((np.arange(w) + 0.5) * img.shape[1] / w, img.shape[1] - 1).astype(int)
    return img[ys][:, xs]


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 (..., 3) -> CIE Lab (D65)."""
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a small boolean image, as arrays of (row, col)."""
    h, w = mask.shape
    label = np.full(mask.shape, -1, dtype=np.int64)
    flat = mask.ravel()
    lab = label.ravel()
    out: list[np.ndarray] = []
    for start in np.flatnonzero(flat):
        if lab[start] >= 0:
            continue
        n = len(out)
        stack = [int(start)]
        lab[start] = n
        members = []
        while stack:
            i = stack.pop()
            members.append(i)
            r, c = divmod(i, w)
            for j, ok in ((i - w, r > 0), (i + w, r < h - 1), (i - 1, c > 0), (i + 1, c < w - 1)):
                if ok and flat[j] and lab[j] < 0:
                    lab[j] = n
                    stack.append(j)
        idx = np.array(members)
        out.append(np.stack([idx // w, idx % w], axis=1))
    return out


def _mode_colour(lab: np.ndarray) -> np.ndarray:
    """The commonest colour of a set of Lab pixels (6-unit bins), refined to the mean of its bin."""
    q = np.round(lab / 6.0).astype(np.int64)
    keys, inverse, counts = np.unique(q, axis=0, return_inverse=True, return_counts=True)
    best = int(np.argmax(counts))
    return lab[inverse.ravel() == best].mean(axis=0)


def _blob(pts: np.ndarray, h: int, w: int) -> dict[str, float]:
    r0, c0 = pts.min(axis=0)
    r1, c1 = pts.max(axis=0)
    return {
        "x": float(pts[:, 1].mean() + 0.5) / w,
        "y": float(pts[:, 0].mean() + 0.5) / h,
        "w": float(c1 - c0 + 1) / w,
        "h": float(r1 - r0 + 1) / h,
        "area": len(pts) / float(h * w),
        "x0": float(c0) / w,
        "x1": float(c1 + 1) / w,
        "y0": float(r0) / h,
        "y1": float(r1 + 1) / h,
    }


# ---------------------------------------------------------------- the finder


def _axis(m: np.ndarray, skin: np.ndarray, fx: np.ndarray) -> float:
    """The head's vertical axis (fraction of the box width): the median middle of the head's outline over
    the mid-face rows. Not the mean of the skin: hair over one eye or a side-swept fringe takes skin
    from one side only and would pull the axis off the face's real middle."""
    h = m.shape[0]
    mids = []
    for r in range(int(0.35 * h), int(0.72 * h) + 1):
        cols = np.flatnonzero(m[r])
        if len(cols) >= 4:
            mids.append((fx[r, cols[0]] + fx[r, cols[-1]]) / 2)
    if mids:
        return float(np.median(mids))
    return float(fx[skin].mean()) if skin.any() else 0.5


def _eye_pair(blobs: list[dict], axis: float) -> tuple[float, dict | None, dict | None]:
    """The best mirrored pair of eye-like blobs: (score 0..1, the avatar's left eye, right eye)."""
    cands = [
        b
        for b in blobs
        if 0.0008 <= b["area"] <= 0.09
        and EYE_BAND[0] <= b["y"] <= EYE_BAND[1]
        and b["w"] <= 0.38
        and 0.2 <= b["w"] / max(b["h"], 1e-6) <= 5.0
    ]
    best: tuple[float, dict | None, dict | None] = (0.0, None, None)
    for i, a in enumerate(cands):
        for b in cands[i + 1 :]:
            lo, hi = (a, b) if a["x"] < b["x"] else (b, a)  # lo: picture left = avatar's right
            sep = hi["x"] - lo["x"]
            if not 0.14 <= sep <= 0.72 or lo["x1"] > hi["x0"] + 0.01:
                continue
            dy = abs(a["y"] - b["y"])
            mid = (a["x"] + b["x"]) / 2
            size = min(a["area"], b["area"]) / max(a["area"], b["area"])
            s = (
                math.exp(-((dy / 0.05) ** 2))
                * math.exp(-(((mid - axis) / 0.07) ** 2))
                * size**0.5
                * math.exp(-(((a["y"] + b["y"]) / 2 - 0.56) ** 2) / 0.08)
                * min(1.0, (a["area"] + b["area"]) / 0.004)
            )
            if s > best[0]:
                best = (s, hi, lo)
    return best


def _skin_above(eye: dict, skin: np.ndarray, m: np.ndarray) -> float:
    """How far bare skin reaches above an eye (fraction of the box height) before a brow, a lash line
    or the hair's fringe: the blink slides only that skin down over the eye. Why: big anime eyes sit
    right under the fringe, and a lid reaching the usual 0.8 eye heights up dragged the hair down."""
    h, w = skin.shape
    c0, c1 = int(eye["x0"] * w), max(int(eye["x0"] * w) + 1, int(np.ceil(eye["x1"] * w)))
    top = int(eye["y0"] * h)
    r = top - 1
    while r >= 0:
        inside = m[r, c0:c1]
        if inside.sum() and skin[r, c0:c1][inside].mean() >= 0.6:
            break  # the first skin row above the eye (over its own lash line)
        r -= 1
    start = r
    while r >= 0:
        inside = m[r, c0:c1]
        if not inside.sum() or skin[r, c0:c1][inside].mean() < 0.6:
            break
        r -= 1
    return max(0.0, (start - r) / h) if start >= 0 else 0.0


def _hidden_eye(blobs: list[dict], axis: float, covered) -> tuple[dict | None, dict | None]:
    """One eye whose twin is hidden (a lock of hair over it): (the eye seen, its mirror image) or (None, None).

    Why: long hair over one eye is a common character design, and without a pair the whole face would
    fall back to proportions, so a blink would close nothing. The eye seen must be eye-like (size, in
    the eye band, off the axis), and where its twin would be must be covered by something bigger than
    the eye itself that is not skin (``covered``: a function of (x, y) fractions -> the covering blob's
    area, 0 where the face's own skin shows). A lone mole on a bare face is therefore not an eye.
    """
    best: tuple[float, dict | None] = (0.0, None)
    for b in blobs:
        off = b["x"] - axis
        if not (
            0.0008 <= b["area"] <= 0.09
            and EYE_BAND[0] <= b["y"] <= EYE_BAND[1]
            and 0.07 <= abs(off) <= 0.36
            and b["w"] <= 0.30
            and 0.2 <= b["w"] / max(b["h"], 1e-6) <= 5.0
        ):
            continue
        if covered(axis - off, b["y"]) < 2.0 * b["area"]:
            continue
        s = math.exp(-((b["y"] - 0.56) ** 2) / 0.08) * min(1.0, b["area"] / 0.002)
        if s > best[0]:
            best = (s, b)
    seen = best[1]
    if seen is None:
        return None, None
    twin = {
        **seen,
        "x": 2 * axis - seen["x"],
        "x0": 2 * axis - seen["x1"],
        "x1": 2 * axis - seen["x0"],
        "source": "mirrored",
    }
    return seen, twin


def _beard_top(
    m: np.ndarray, feature: np.ndarray, fx: np.ndarray, axis: float, below: float
) -> tuple[float, float] | None:
    """(top, bottom) of a beard (fractions of the box height): from some row under the eyes down to the
    chin, the middle of the face is covered by something wide that is not skin. None when there is none.

    Why: a painted beard hides the mouth, and a mouth placed by proportions then sits low in the beard,
    so aa only moved the chin's last few rows; the mouth is under the moustache, at the beard's top.
    """
    h = m.shape[0]
    band = np.abs(fx - axis) < 0.08
    covered_rows = []
    for r in range(min(h - 1, int(below * h)), h):
        inside = m[r] & band[r]
        if inside.sum() < 2:
            continue
        wide = feature[r] & m[r]
        covered_rows.append((r, bool(feature[r][inside].mean() >= 0.8 and wide.sum() >= 0.4 * max(1, m[r].sum()))))
    rows = [r for r, c in covered_rows]
    flags = [c for r, c in covered_rows]
    if not rows:
        return None
    # the beard: the covered run that reaches the bottom of the head
    bottom = rows[-1]
    i = len(rows) - 1
    while i >= 0 and flags[i]:
        i -= 1
    if i == len(rows) - 1:
        return None
    top = rows[i + 1]
    if (bottom - top + 1) / h < 0.12:
        return None
    return top / h, (bottom + 1) / h


def _pick(blobs: list[dict], score) -> dict | None:
    scored = [(score(b), b) for b in blobs]
    scored = [sb for sb in scored if sb[0] > 0]
    return max(scored, key=lambda sb: sb[0])[1] if scored else None


def _cascade_hits(rgb: np.ndarray, eyes: list[dict]) -> tuple[int, bool]:
    """(eyes confirmed by OpenCV's Haar eye cascade, a frontal face fired); (0, False) without cv2."""
    try:
        import cv2  # optional: the pack has it, a Blender runtime may not
    except ImportError:
        return 0, False
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    scale = max(1.0, 240.0 / max(gray.shape))
    if scale > 1:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    h, w = gray.shape
    cascades: str = cv2.data.haarcascades  # type: ignore[attr-defined]  # opencv's stubs omit the cv2.data module
    found_eyes = cv2.CascadeClassifier(cascades + "haarcascade_eye.xml").detectMultiScale(
        gray, 1.1, 3, minSize=(max(6, w // 20), max(6, w // 20))
    )
    face = cv2.CascadeClassifier(cascades + "haarcascade_frontalface_default.xml").detectMultiScale(
        gray, 1.1, 3, minSize=(w // 3, h // 3)
    )
    confirmed = 0
    for e in eyes:
        for x, y, ew, eh in found_eyes:
            if x <= e["x"] * w <= x + ew and y <= e["y"] * h <= y + eh:
                confirmed += 1
                break
    return confirmed, len(face) > 0


def find_face(
    rgb: np.ndarray,
    mask: np.ndarray | None = None,
    overrides: dict[str, Any] | None = None,
    head_px: float | None = None,
) -> dict:
    """Landmarks of the face in ``rgb`` (the head box, front view) as fractions of the box.

    mask: which pixels belong to the head (None: all). overrides: {landmark: [x, y]} (fractions of the
    head box) that replace what was found. head_px: how many pixels tall the head is in the picture it
    was cut from (the texture cut-out is enlarged to at least 16 pixels): below MIN_HEAD_PX the eyes
    are a pixel or two, and what looks like a pair there is noise, so no face is claimed. Never raises
    on a strange picture: the result says what it could not find (``found``, ``reason``, ``warnings``).
    """
    rgb = np.asarray(rgb)[..., :3]
    if rgb.ndim != 3 or min(rgb.shape[:2]) < 8:
        raise ValueError(f"face: the head picture is {rgb.shape}, expected (H >= 8, W >= 8, 3)")
    H0, W0 = rgb.shape[:2]
    mask = np.ones((H0, W0), bool) if mask is None else np.asarray(mask, bool)
    s = min(1.0, WORK_SIDE / max(H0, W0))
    h, w = max(8, round(H0 * s)), max(8, round(W0 * s))
    small, m = _resize(rgb, h, w), _resize(mask, h, w)
    lab = to_lab(small)
    ys, xs = np.mgrid[0:h, 0:w]
    fy, fx = (ys + 0.5) / h, (xs + 0.5) / w

    warnings: list[str] = []
    landmarks: dict[str, dict] = {}
    reason = ""
    score = 0.0
    visible_mouth: dict | None = None  # a mouth below covered eyes (sunglasses)
    mid = m & (fy > 0.35) & (fy < 0.72) & (fx > 0.22) & (fx < 0.78)
    if head_px is not None and head_px < MIN_HEAD_PX:
        reason = (
            f"the head is only {head_px:.0f} pixels tall in the picture (at least {MIN_HEAD_PX} are needed "
            "to see eyes; give a picture where the figure is larger)"
        )
        skin = np.zeros_like(m)
    elif mid.sum() < 20:
        reason = "the head picture has almost nothing in the middle of the head box"
        skin = np.zeros_like(m)
    else:
        skin_col = _mode_colour(lab[mid])
        dist = np.linalg.norm(lab - skin_col, axis=-1)
        skin = m & (dist < SKIN_DELTA_E)
        # the face: rows that hold skin, between the outermost skin pixels of each row
        rows = np.flatnonzero(skin.sum(axis=1) >= 2)
        hull = np.zeros_like(m)
        for r in rows:
            cols = np.flatnonzero(skin[r])
            hull[r, cols[0] : cols[-1] + 1] = True
        share = skin.sum() / max(1, m.sum())
        if share < MIN_SKIN_SHARE:
            reason = (
                f"only {share:.0%} of the head has one surface colour in the middle of the face "
                "(a visor, a helmet or a mask covers it)"
            )
        axis = _axis(m, skin, fx)
        feature = hull & m & (dist > FEATURE_DELTA_E)
        blobs = [_blob(p, h, w) for p in _components(feature) if len(p) >= 2]
        if not reason:
            pair_score, left, right = _eye_pair(blobs, axis)
            mirrored = ""
            if left is None or right is None or pair_score < 0.05:
                labels = np.full(m.shape, -1)
                areas = []
                for i, pts in enumerate(_components(m & ~skin & (dist > FEATURE_DELTA_E))):
                    labels[pts[:, 0], pts[:, 1]] = i
                    areas.append(len(pts) / float(h * w))

                def covered(x: float, y: float) -> float:
                    r, c = min(h - 1, max(0, int(y * h))), min(w - 1, max(0, int(x * w)))
                    return areas[labels[r, c]] if labels[r, c] >= 0 else 0.0

                seen, twin = _hidden_eye(blobs, axis, covered)
                if seen is not None and twin is not None:
                    left, right = (seen, twin) if seen["x"] > axis else (twin, seen)
                    pair_score = MIRRORED_EYE_SCORE**2
                    mirrored = "left" if twin is left else "right"
            if left is None or right is None or pair_score < 0.05:
                across = [
                    b
                    for b in blobs
                    if b["x0"] < axis - 0.1 < axis + 0.1 < b["x1"]
                    and b["w"] >= 0.38
                    and EYE_BAND[0] <= b["y"] <= EYE_BAND[1]
                    and b["h"] < 0.5
                ]
                reason = (
                    "no pair of eyes: something wide that is not skin lies across both eyes "
                    "(sunglasses, a visor or a mask)"
                    if across
                    else "no pair of eyes: nothing that differs from the skin sits mirrored about the head axis "
                    "in the upper half of the face (a visor, sunglasses or closed eyes?)"
                )
                if across:  # sunglasses: the mouth below them still shows, and lip-sync should use it
                    cover = max(across, key=lambda b: b["w"])
                    visible_mouth = _pick(
                        [b for b in blobs if b is not cover],
                        lambda b: (
                            (
                                abs(b["x"] - axis) < 0.12
                                and cover["y1"] + 0.05 < b["y"] < 0.95
                                and b["w"] < 0.5
                                and b["h"] < 0.2
                                and b["y1"] < 0.99
                            )
                            * (1.0 + 2 * b["w"])
                        ),
                    )
            else:
                score = 0.7 * min(1.0, pair_score**0.5)  # + 0.2 for the mouth, + 0.1 for the brows
                landmarks["left_eye"], landmarks["right_eye"] = left, right
                for eye in (left, right):
                    eye["lid"] = _skin_above(eye, skin, m)
                if mirrored:  # the hidden eye's skin is under the hair: the seen eye's lid is its lid
                    hidden, seen_eye = (left, right) if mirrored == "left" else (right, left)
                    hidden["lid"] = seen_eye["lid"]
                if mirrored:
                    warnings.append(
                        f"{mirrored}_eye: covered (hair over it?), placed as the mirror image of the other eye"
                    )
                eye_y = (left["y"] + right["y"]) / 2
                eye_sep = left["x"] - right["x"]
                used = {id(left), id(right)}
                expect = min(0.92, eye_y + 0.24)  # where stylised mouths sit below the eyes
                mouth = _pick(
                    [b for b in blobs if id(b) not in used],
                    lambda b: (
                        (
                            abs(b["x"] - axis) < 0.12
                            and eye_y + 0.10 < b["y"] < 0.95
                            and b["w"] < 0.5
                            and b["h"] < 0.2
                            and b["y1"] < 0.99
                        )
                        * (1.0 + 2 * b["w"])
                        * math.exp(-(((b["y"] - expect) / 0.2) ** 2))
                        - 0.1
                    ),
                )
                if mouth is not None:
                    landmarks["mouth"] = mouth
                    score += 0.2
                else:
                    warnings.append("mouth: not visible (a beard or a closed painted mouth?), placed by proportions")
                for side, eye in (("left", left), ("right", right)):
                    brow = _pick(
                        [b for b in blobs if id(b) not in used and b is not mouth],
                        lambda b, e=eye: (
                            (
                                abs(b["x"] - e["x"]) < 0.6 * max(e["w"], 0.1)
                                and e["y0"] - 0.16 < b["y"] < e["y0"] + 0.01
                                and b["w"] > 1.3 * b["h"]
                                and b["w"] < 0.4
                            )
                            * b["w"]
                        ),
                    )
                    if brow is not None:
                        landmarks[f"{side}_brow"] = brow
                    else:
                        landmarks[f"{side}_brow"] = {
                            "x": eye["x"],
                            "y": max(0.05, eye["y0"] - 0.07),
                            "w": max(eye["w"], 0.12),
                            "h": 0.03,
                            "source": "proportions",
                        }
                if all(landmarks[k].get("source") != "proportions" for k in ("left_brow", "right_brow")):
                    score += 0.1
                else:
                    warnings.append("brows: not visible (hair or none drawn), placed above the eyes by proportions")
                if "mouth" not in landmarks:
                    p: dict[str, Any] = dict(PROPORTIONS["mouth"])
                    p.update(
                        x=axis,
                        y=min(0.95, eye_y + 0.45 * (1.0 - eye_y) + 0.05),
                        w=max(0.12, 0.6 * eye_sep),
                        source="proportions",
                    )
                    beard = _beard_top(m, m & (dist > FEATURE_DELTA_E), fx, axis, eye_y)
                    if beard is not None:
                        top, bottom = beard
                        p.update(y=min(p["y"], top + 0.25 * (bottom - top)), source="beard")
                        warnings[:] = [
                            "mouth: under a beard (not visible), placed under the beard's upper edge; "
                            "a painted beard moves but shows no open mouth"
                            if w.startswith("mouth:")
                            else w
                            for w in warnings
                        ]
                    landmarks["mouth"] = p
                hits, face_hit = _cascade_hits(small, [left, right])
                if hits or face_hit:
                    score += 0.05 * hits + 0.1 * face_hit
                score = min(1.0, score)
    found = bool(landmarks) and not reason
    if not found:
        landmarks = {}
        if visible_mouth is not None:
            landmarks["mouth"] = visible_mouth
        warnings.insert(
            0,
            f"no face found: {reason}; "
            + (
                "the mouth was found, every other landmark placed by standard proportions "
                if visible_mouth is not None
                else "every landmark placed by standard proportions "
            )
            + "(set the face inputs of the node to place them yourself)",
        )
    for name in LANDMARKS:
        if name not in landmarks:
            landmarks[name] = {**PROPORTIONS[name], "source": "proportions"}
        else:
            landmarks[name].setdefault("source", "found")
    for name, value in (overrides or {}).items():
        if name not in LANDMARKS:
            raise ValueError(f"face override {name!r}: not a landmark (use {', '.join(LANDMARKS)})")
        x, y = (float(v) for v in value[:2])
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"face override {name}: {value!r} is outside the head box (fractions 0..1)")
        kept = {k: v for k, v in landmarks[name].items() if k != "lid"}  # the lid was measured where it was found
        landmarks[name] = {**kept, "x": x, "y": y, "source": "override"}
    clean = {
        k: {
            kk: (round(vv, 4) if isinstance(vv, float) else vv)
            for kk, vv in v.items()
            if kk in ("x", "y", "w", "h", "source", "lid")
        }
        for k, v in landmarks.items()
    }
    from_props = [k for k, v in clean.items() if v["source"] == "proportions"]
    confidence = round(score if found else 0.0, 3)
    if found and confidence < MIN_CONFIDENCE:
        warnings.append(
            f"face found with low confidence {confidence:.2f}: check the expressions or set the face inputs"
        )
    return {
        "found": found,
        "confidence": confidence,
        "reason": reason,
        "landmarks": clean,
        "from_proportions": from_props,
        "warnings": warnings,
        "size": [W0, H0],
    }


__all__ = ["find_face", "to_lab", "LANDMARKS", "PROPORTIONS", "MIN_CONFIDENCE"]
