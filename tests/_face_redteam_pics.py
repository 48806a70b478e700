"""Characters for the face finder's red-team tests, drawn with numpy signed distance fields (another hand
and another body than tests/_face_helpers.py, which paints heads over the example figure).

    img = character("hair_over_eye")        # PIL image, 600 x 800 (RGBA; RGB for "noisy_jpeg")
    rgb, mask = head_crop("hair_over_eye")  # the head box (hair top to chin) as the finder sees it

Every figure stands in an A-pose (arms down and out, two legs), so the CPU path's humanoid check
accepts it; only the head differs. Kinds and what they try:
- "dot_eyes": plain dot eyes and a line mouth (the control case);
- "closed_eyes": eyes drawn as two curved lash lines;
- "high_eyes": a bald head with the eyes in its top third;
- "dark_skin": dark skin with dark eyes (low contrast);
- "pale_white": near-white skin on an opaque white background;
- "anime_tiny_mouth": big anime eyes (white, iris, pupil, highlight, lash) and a 3-pixel mouth;
- "hair_over_eye": a lock of hair over the avatar's left eye (only one eye can be seen);
- "beard": a full beard and moustache over the lower face (no mouth visible);
- "sunglasses": two dark lenses joined by a bridge;
- "helmet": a helmet with a dark visor over the whole face (no face can be found);
- "noisy_jpeg": "dot_eyes" with sensor noise, flattened on white and saved as a quality-35 JPEG;
- "soft_alpha": "dot_eyes" with a blurred, 85%-opaque alpha (a cut-out with a feathered edge);
- "tiny": "dot_eyes" shrunk to 60 x 80 pixels (the head is 10 pixels tall).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

W, H = 600, 800
HEAD_R, HEAD_CY = 50, 95  # the head's half height and centre row (pixels); its half width is 0.88 HEAD_R
SKIN = (240, 200, 170)
HAIR = (90, 55, 30)
KINDS = (
    "dot_eyes",
    "closed_eyes",
    "high_eyes",
    "dark_skin",
    "pale_white",
    "anime_tiny_mouth",
    "hair_over_eye",
    "beard",
    "sunglasses",
    "helmet",
    "noisy_jpeg",
    "soft_alpha",
    "tiny",
)


class _Canvas:
    def __init__(self, bg: tuple[int, int, int] | None):
        self.rgb = np.ones((H, W, 3)) if bg is None else np.ones((H, W, 3)) * np.array(bg) / 255.0
        self.a = np.zeros((H, W)) if bg is None else np.ones((H, W))
        ys, xs = np.mgrid[0:H, 0:W]
        self.x, self.y = xs + 0.5, ys + 0.5

    def paint(self, sdf: np.ndarray, colour: tuple[int, int, int]) -> None:
        cov = np.clip(0.5 - sdf / 1.5, 0.0, 1.0)  # about a pixel and a half of antialiasing
        self.rgb = self.rgb * (1 - cov[..., None]) + np.array(colour) / 255.0 * cov[..., None]
        self.a = self.a + cov * (1 - self.a)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        return (np.hypot((self.x - cx) / rx, (self.y - cy) / ry) - 1.0) * min(rx, ry)

    def capsule(self, x0: float, y0: float, x1: float, y1: float, r: float) -> np.ndarray:
        px, py, bx, by = self.x - x0, self.y - y0, x1 - x0, y1 - y0
        t = np.clip((px * bx + py * by) / (bx * bx + by * by), 0.0, 1.0)
        return np.hypot(px - t * bx, py - t * by) - r

    def box(self, x0: float, y0: float, x1: float, y1: float, r: float = 0.0) -> np.ndarray:
        qx = np.abs(self.x - (x0 + x1) / 2) - ((x1 - x0) / 2 - r)
        qy = np.abs(self.y - (y0 + y1) / 2) - ((y1 - y0) / 2 - r)
        return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - r

    def image(self) -> Image.Image:
        rgba = np.concatenate([self.rgb, self.a[..., None]], -1)
        return Image.fromarray((np.clip(rgba, 0, 1) * 255).round().astype(np.uint8), "RGBA")


def _body(c: _Canvas, skin: tuple[int, int, int]) -> None:
    cx = W / 2
    neck = HEAD_CY + 0.8 * HEAD_R
    sh, hip, foot = neck + 18, neck + 208, H - 30
    c.paint(c.box(cx - 12, neck - 10, cx + 12, sh + 10), skin)
    for side in (-1, 1):
        c.paint(c.capsule(cx + side * 70, sh + 12, cx + side * 175, sh + 200, 15), skin)
        c.paint(c.capsule(cx + side * 70, sh + 12, cx + side * 105, sh + 70, 24), (200, 60, 70))
    c.paint(c.box(cx - 75, sh, cx + 75, hip, 20), (200, 60, 70))
    for side in (-1, 1):
        c.paint(c.capsule(cx + side * 38, hip - 10, cx + side * 48, foot - 10, 24), (50, 50, 70))
        c.paint(c.ellipse(cx + side * 55, foot - 5, 30, 14), (40, 30, 30))


def _eyes(c: _Canvas, ey: float, sep: float, rx: float, ry: float, kind: str = "dot", colour=(30, 20, 20)) -> None:
    for side in (-1, 1):
        x = W / 2 + side * sep / 2
        if kind == "dot":
            c.paint(c.ellipse(x, ey, rx, ry), colour)
        elif kind == "anime":
            c.paint(c.ellipse(x, ey, rx, ry), (255, 255, 255))
            c.paint(c.ellipse(x, ey + 0.1 * ry, 0.75 * rx, 0.85 * ry), (150, 60, 160))
            c.paint(c.ellipse(x, ey + 0.15 * ry, 0.4 * rx, 0.5 * ry), (20, 20, 40))
            c.paint(c.ellipse(x - 0.3 * rx, ey - 0.35 * ry, 0.22 * rx, 0.2 * ry), (255, 255, 255))
            c.paint(c.capsule(x - 1.1 * rx, ey - 0.95 * ry, x + 1.1 * rx, ey - 1.0 * ry, 2.2), (20, 20, 30))
        else:  # closed: the lower arc of an ellipse, a lash line
            arc = np.abs(c.ellipse(x, ey - 0.6 * ry, rx, ry)) - 1.6
            c.paint(np.where(c.y > ey - 0.2 * ry, arc, 99.0), colour)


def character(kind: str) -> Image.Image:
    """The figure of one kind (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
    if kind == "tiny":
        return character("dot_eyes").resize((60, 80), Image.LANCZOS)
    skin = {"dark_skin": (92, 58, 40), "pale_white": (252, 244, 240)}.get(kind, SKIN)
    c = _Canvas((255, 255, 255) if kind == "pale_white" else None)
    cx, cy, rx, ry = W / 2, HEAD_CY, 0.88 * HEAD_R, HEAD_R
    _body(c, skin)
    if kind != "helmet":
        c.paint(c.ellipse(cx, cy - 0.15 * ry, 1.05 * rx, 0.95 * ry), HAIR)
    c.paint(c.ellipse(cx, cy, rx, ry), skin)
    if kind not in ("helmet", "high_eyes"):  # a fringe
        c.paint(np.maximum(c.ellipse(cx, cy - 0.25 * ry, 1.02 * rx, 0.8 * ry), c.y - (cy - 0.45 * ry)), HAIR)
    ey, sep, erx, ery = cy + 0.08 * ry, 0.72 * rx, 0.09 * rx, 0.13 * ry
    mouth = True
    if kind in ("dot_eyes", "dark_skin", "pale_white", "noisy_jpeg", "soft_alpha", "beard", "hair_over_eye"):
        _eyes(c, ey, sep, erx, ery, colour=(38, 24, 18) if kind == "dark_skin" else (30, 20, 20))
    elif kind == "closed_eyes":
        _eyes(c, ey, sep, 0.13 * rx, 0.10 * ry, kind="closed")
    elif kind == "high_eyes":
        _eyes(c, cy - 0.55 * ry, sep, erx, ery)
    elif kind == "anime_tiny_mouth":
        _eyes(c, ey, 0.75 * rx, 0.17 * rx, 0.25 * ry, kind="anime")
        c.paint(c.capsule(cx - 1.5, cy + 0.58 * ry, cx + 1.5, cy + 0.58 * ry, 1.0), (160, 60, 60))
        mouth = False
    if kind == "hair_over_eye":  # over the avatar's left eye (the picture's right)
        c.paint(c.capsule(cx + 0.2 * rx, cy - 0.7 * ry, cx + 0.55 * rx, cy + 0.5 * ry, 0.28 * rx), HAIR)
    if mouth and kind not in ("beard", "helmet"):
        c.paint(c.capsule(cx - 0.16 * rx, cy + 0.55 * ry, cx + 0.16 * rx, cy + 0.55 * ry, 2.5), (170, 60, 60))
    if kind == "beard":
        c.paint(np.maximum(c.ellipse(cx, cy + 0.35 * ry, 0.95 * rx, 0.75 * ry), (cy + 0.3 * ry) - c.y), (70, 45, 25))
        c.paint(c.capsule(cx - 0.35 * rx, cy + 0.4 * ry, cx + 0.35 * rx, cy + 0.4 * ry, 0.09 * ry), (60, 38, 22))
    if kind == "sunglasses":
        for side in (-1, 1):
            x = cx + side * sep / 2
            c.paint(c.box(x - 0.22 * rx, ey - 0.13 * ry, x + 0.22 * rx, ey + 0.13 * ry, 5), (15, 15, 20))
        c.paint(c.capsule(cx - sep / 2, ey - 0.06 * ry, cx + sep / 2, ey - 0.06 * ry, 2), (15, 15, 20))
    if kind == "helmet":
        c.paint(c.ellipse(cx, cy - 0.02 * ry, 1.08 * rx, 1.06 * ry), (150, 155, 165))
        c.paint(c.box(cx - 0.85 * rx, cy - 0.35 * ry, cx + 0.85 * rx, cy + 0.35 * ry, 14), (25, 35, 60))
        c.paint(c.ellipse(cx - 0.3 * rx, cy - 0.12 * ry, 0.25 * rx, 0.08 * ry), (90, 110, 150))  # a glint
    img = c.image()
    if kind == "noisy_jpeg":
        rgb = np.asarray(img.convert("RGB")).astype(float) + np.random.default_rng(1).normal(0, 12, (H, W, 3))
        flat = Image.new("RGB", img.size, (255, 255, 255))
        flat.paste(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)), mask=img.getchannel("A"))
        buf = io.BytesIO()
        flat.save(buf, "JPEG", quality=35)
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "soft_alpha":
        arr = np.asarray(img).copy()
        blurred = np.asarray(img.getchannel("A").filter(ImageFilter.GaussianBlur(6))).astype(float)
        arr[..., 3] = (0.85 * blurred).astype(np.uint8)
        img = Image.fromarray(arr, "RGBA")
    return img


def eye_positions(kind: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """Where the eyes were drawn, as fractions of head_crop's box: (avatar's left, avatar's right)."""
    x0, y0, x1, y1 = _box()
    ey = HEAD_CY - 0.55 * HEAD_R if kind == "high_eyes" else HEAD_CY + 0.08 * HEAD_R
    sep = (0.75 if kind == "anime_tiny_mouth" else 0.72) * 0.88 * HEAD_R
    fy = (ey - y0) / (y1 - y0)
    return ((W / 2 + sep / 2 - x0) / (x1 - x0), fy), ((W / 2 - sep / 2 - x0) / (x1 - x0), fy)


def _box() -> tuple[int, int, int, int]:
    """The head box in the 600 x 800 picture: hair top to chin, hair edge to hair edge."""
    rx, ry = 0.88 * HEAD_R, HEAD_R
    return (
        int(W / 2 - 1.05 * rx),
        int(HEAD_CY - 0.15 * ry - 0.95 * ry),
        int(np.ceil(W / 2 + 1.05 * rx)),
        int(np.ceil(HEAD_CY + ry)),
    )


def head_crop(kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(rgb, mask) of the head box, as the CPU path cuts it out of the texture (mask: the figure's pixels;
    None for the JPEG, which has no alpha)."""
    img = np.asarray(character(kind))
    x0, y0, x1, y1 = _box()
    crop = img[y0:y1, x0:x1]
    if crop.shape[-1] == 3:
        return crop, None
    if kind == "pale_white":  # an opaque picture: the figure is what is not the white background
        return crop[..., :3], np.abs(crop[..., :3].astype(int) - 255).max(axis=-1) > 3
    return crop[..., :3], crop[..., 3] > 127
