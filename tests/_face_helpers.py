"""Stylised characters for the face tests, drawn here (no assets): the example figure
(workflows/examples/make_example.py) with another head painted over its own.

    img = character("big_eyes")     # RGBA PIL image, 640 x 720, the figure's head centred at (320, 72)

Kinds: "example" (the committed example as drawn), "big_eyes" (anime-style eyes: white, coloured iris,
dark outline, highlight; small mouth), "beard" (a full beard over the lower face and a moustache over
the mouth), "helmet" (a helmet with a dark visor over the whole face: no face can be found).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("example", "big_eyes", "beard", "helmet")
HEAD = (320, 72)  # centre of the head in the example picture (pixels)
RX, RY = 40, 48  # its half width and half height


def _example():
    spec = importlib.util.spec_from_file_location("make_example", ROOT / "workflows" / "examples" / "make_example.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def character(kind: str) -> Image.Image:
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: use one of {KINDS}")
    mod = _example()
    img = mod.draw().convert("RGBA")
    if kind == "example":
        return img
    ss = 4  # draw supersampled, then paste back
    cx, cy = HEAD
    box = (cx - 60, cy - 60, cx + 60, cy + 60)
    patch = img.crop(box).resize((120 * ss, 120 * ss), Image.Resampling.NEAREST)
    d = ImageDraw.Draw(patch)

    def ell(x, y, rx, ry, fill, outline=None, width=0):
        d.ellipse(
            [(60 + x - rx) * ss, (60 + y - ry) * ss, (60 + x + rx) * ss, (60 + y + ry) * ss],
            fill=fill,
            outline=outline,
            width=width * ss,
        )

    skin, ink = mod.SKIN, mod.INK
    if kind == "big_eyes":
        ell(0, 2, 34, 30, skin)  # repaint the face
        for side in (-1, 1):
            ell(side * 15, 6, 10, 13, (255, 255, 255), ink, 2)  # big eye
            ell(side * 15, 9, 7, 9, (70, 120, 200))  # iris
            ell(side * 15, 10, 3, 4, (20, 20, 40))  # pupil
            ell(side * 15 - 3, 3, 2, 2, (255, 255, 255))  # highlight
            d.line([((60 + side * 8) * ss, 44 * ss), ((60 + side * 22) * ss, 42 * ss)], fill=ink, width=2 * ss)
        ell(0, 30, 5, 2, mod.MOUTH)
    elif kind == "beard":
        beard = (90, 58, 40)
        d.pieslice([(60 - 36) * ss, (60 - 10) * ss, (60 + 36) * ss, (60 + 52) * ss], 0, 180, fill=beard)
        d.rectangle([(60 - 36) * ss, (60 + 14) * ss, (60 + 36) * ss, (60 + 22) * ss], fill=beard)
        ell(0, 23, 14, 4, (70, 44, 30))  # moustache
        ell(0, 31, 7, 2, (150, 80, 80))  # mouth under it
    elif kind == "helmet":
        ell(0, -2, 46, 52, (150, 156, 166), ink, 2)  # helmet shell over the head
        d.rounded_rectangle(
            [(60 - 38) * ss, (60 - 12) * ss, (60 + 38) * ss, (60 + 30) * ss], radius=10 * ss, fill=(30, 34, 48)
        )  # dark visor over the whole face
        d.line([((60 - 30) * ss, (60 - 6) * ss), ((60 - 10) * ss, (60 - 6) * ss)], fill=(90, 100, 130), width=2 * ss)
    small = patch.resize((120, 120), Image.Resampling.BOX)
    img.alpha_composite(small, (box[0], box[1]))
    return img


def head_crop(img: Image.Image):
    """(rgb, mask) of the head box (the figure's head ellipse, hair included) as numpy arrays."""
    import numpy as np

    a = np.asarray(img.convert("RGBA"))
    cx, cy = HEAD
    crop = a[cy - RY - 6 : cy + RY + 4, cx - RX - 6 : cx + RX + 6]
    return crop[..., :3], crop[..., 3] > 128
