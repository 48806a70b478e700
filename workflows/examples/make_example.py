"""Draw workflows/examples/character_apose.png: a simple full-body humanoid, front view, A-pose.

The example input of the CPU image -> VRM path. It is drawn from primitives with Pillow
(no assets, no randomness), so re-running this script reproduces the committed picture:

    python workflows/examples/make_example.py            # rewrites character_apose.png
    python workflows/examples/make_example.py --opaque out.png   # same figure on a plain background

Proportions follow a 7-head figure so an automatic humanoid template fits it: head 1/7 of
the height, crotch at half height, arms ~33 degrees from the body reaching mid-thigh,
legs apart with a clear gap down to the feet.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
OUT = HERE / "character_apose.png"

W, H = 640, 720  # final picture size (pixels)
HEAD = 96  # one head height in final pixels; the figure is 7 heads tall
TOP = 24  # margin above the head
SS = 4  # supersampling factor for smooth, anti-aliased edges
OUTLINE = 2.0  # outline width in final pixels
BACKGROUND = (255, 255, 255)  # plain background of the --opaque variant

SKIN, SKIN_LIT = (238, 190, 156), (250, 212, 184)
HAIR, HAIR_LIT = (86, 54, 36), (120, 80, 52)
SHIRT, SHIRT_LIT = (46, 104, 190), (84, 142, 222)
PANTS, PANTS_LIT = (44, 56, 82), (68, 82, 114)
SHOES = (104, 62, 38)
BELT = (38, 30, 26)
INK = (32, 26, 38)
MOUTH = (168, 86, 86)

ARM_ANGLE = math.radians(33)  # from the vertical, away from the body


def px(x: float, y: float) -> tuple[float, float]:
    """Head units (x from the body's centre line, y down from the top of the head) -> supersampled pixels."""
    return ((W / 2 + x * HEAD) * SS, (TOP + y * HEAD) * SS)


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 64) -> list[tuple[float, float]]:
    return [px(cx + rx * math.cos(2 * math.pi * k / n), cy + ry * math.sin(2 * math.pi * k / n)) for k in range(n)]


def capsule(
    p0: tuple[float, float], p1: tuple[float, float], r0: float, r1: float, n: int = 24
) -> list[tuple[float, float]]:
    """A tapered limb: round end of radius r0 at p0, round end of radius r1 at p1 (head units)."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    a = math.atan2(dy, dx)
    pts = []
    for k in range(n + 1):  # half circle around p1
        t = a - math.pi / 2 + math.pi * k / n
        pts.append(px(p1[0] + r1 * math.cos(t), p1[1] + r1 * math.sin(t)))
    for k in range(n + 1):  # half circle around p0
        t = a + math.pi / 2 + math.pi * k / n
        pts.append(px(p0[0] + r0 * math.cos(t), p0[1] + r0 * math.sin(t)))
    return pts


def poly(*pts: tuple[float, float]) -> list[tuple[float, float]]:
    return [px(x, y) for x, y in pts]


def along(p: tuple[float, float], angle: float, dist: float, side: float) -> tuple[float, float]:
    """Point ``dist`` head units from ``p`` down an arm at ``angle`` from the vertical, on ``side`` (+1/-1)."""
    return (p[0] + side * dist * math.sin(angle), p[1] + dist * math.cos(angle))


def parts() -> list[tuple[list[tuple[float, float]], tuple[int, int, int]]]:
    """(polygon, colour) pairs, back to front."""
    out: list[tuple[list[tuple[float, float]], tuple[int, int, int]]] = []
    add = lambda pts, col: out.append((pts, col))  # noqa: E731

    add(ellipse(0, 0.50, 0.42, 0.50), HAIR)  # hair behind the head
    for s in (-1, 1):  # legs: hip -> knee -> ankle
        hip, knee, ankle = (s * 0.36, 3.35), (s * 0.55, 5.05), (s * 0.74, 6.62)
        add(capsule(hip, knee, 0.32, 0.22), PANTS)
        add(capsule(knee, ankle, 0.22, 0.15), PANTS)
        add(capsule((s * 0.30, 3.45), (s * 0.50, 5.0), 0.12, 0.08), PANTS_LIT)
        add(ellipse(s * 0.80, 6.84, 0.27, 0.16), SHOES)  # feet: soles at y = 7.0
    add(
        poly(
            (-0.70, 2.85),
            (0.70, 2.85),
            (0.68, 3.35),
            (0.40, 3.55),
            (0.05, 3.62),
            (-0.05, 3.62),
            (-0.40, 3.55),
            (-0.68, 3.35),
        ),
        PANTS,
    )
    add(
        poly(
            (-0.30, 1.18),
            (0.30, 1.18),
            (0.86, 1.34),
            (0.98, 1.62),
            (0.80, 1.95),
            (0.64, 2.60),
            (0.70, 2.92),
            (-0.70, 2.92),
            (-0.64, 2.60),
            (-0.80, 1.95),
            (-0.98, 1.62),
            (-0.86, 1.34),
        ),
        SHIRT,
    )
    add(poly((-0.50, 1.40), (-0.15, 1.36), (-0.12, 2.70), (-0.50, 2.70)), SHIRT_LIT)
    add(poly((-0.70, 2.84), (0.70, 2.84), (0.71, 3.00), (-0.71, 3.00)), BELT)
    for s in (-1, 1):  # arms: shoulder -> elbow -> wrist -> hand
        shoulder = (s * 0.84, 1.50)
        elbow = along(shoulder, ARM_ANGLE, 1.50, s)
        wrist = along(elbow, ARM_ANGLE + math.radians(3), 1.30, s)
        hand = along(wrist, ARM_ANGLE + math.radians(3), 0.32, s)
        add(capsule(shoulder, elbow, 0.23, 0.18), SKIN)
        add(capsule(elbow, wrist, 0.18, 0.13), SKIN)
        add(capsule(along(shoulder, ARM_ANGLE, 0.3, s), along(wrist, ARM_ANGLE, -0.2, s), 0.07, 0.05), SKIN_LIT)
        hand_axis = math.atan2(hand[1] - wrist[1], hand[0] - wrist[0])
        add(
            [
                px(
                    hand[0] + 0.18 * math.cos(t) * math.sin(hand_axis) + 0.27 * math.sin(t) * math.cos(hand_axis),
                    hand[1] - 0.18 * math.cos(t) * math.cos(hand_axis) + 0.27 * math.sin(t) * math.sin(hand_axis),
                )
                for t in (2 * math.pi * k / 48 for k in range(48))
            ],
            SKIN,
        )  # hand: tip ~0.6 head below the wrist
        add(capsule(shoulder, along(shoulder, ARM_ANGLE, 0.62, s), 0.26, 0.23), SHIRT)  # short sleeve
    add(poly((-0.15, 0.85), (0.15, 0.85), (0.16, 1.28), (-0.16, 1.28)), SKIN)  # neck
    add(ellipse(0, 0.56, 0.36, 0.44), SKIN)  # face: chin at y = 1.0
    add(ellipse(-0.10, 0.44, 0.12, 0.14), SKIN_LIT)
    add(poly((-0.40, 0.42), (-0.30, 0.14), (0.0, 0.06), (0.30, 0.14), (0.40, 0.42), (0.20, 0.24), (-0.20, 0.24)), HAIR)
    add(poly((-0.22, 0.12), (0.10, 0.06), (0.00, 0.16)), HAIR_LIT)
    for s in (-1, 1):
        add(ellipse(s * 0.14, 0.56, 0.045, 0.065), INK)  # eyes
    add(poly((-0.10, 0.80), (0.10, 0.80), (0.08, 0.83), (-0.08, 0.83)), MOUTH)
    return out


def draw() -> Image.Image:
    """The RGBA picture (transparent background), deterministic."""
    big = (W * SS, H * SS)
    colour = Image.new("RGB", big, INK)
    coverage = Image.new("L", big, 0)
    cdraw, mdraw = ImageDraw.Draw(colour), ImageDraw.Draw(coverage)
    for pts, col in parts():
        cdraw.polygon(pts, fill=col)
        mdraw.polygon(pts, fill=255)
    k = 2 * round(OUTLINE * SS / 2) + 1
    outline = coverage.filter(ImageFilter.MaxFilter(k))  # silhouette grown by the outline width
    ink = Image.new("RGB", big, INK)
    colour = Image.composite(colour, ink, coverage)  # the ring outside the parts is ink
    rgba = colour.convert("RGBA")
    rgba.putalpha(outline)
    # outside the silhouette the colour is ink too, so edge pixels never blend with undefined colours
    return rgba.resize((W, H), Image.Resampling.BOX, reducing_gap=None)


def opaque(img: Image.Image, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """The same picture flattened onto a plain background (no alpha), for the background-key path."""
    flat = Image.new("RGB", img.size, background)
    flat.paste(img, mask=img.getchannel("A"))
    return flat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", type=Path, default=OUT, help=f"output PNG (default {OUT.name})")
    ap.add_argument("--opaque", action="store_true", help="flatten onto a plain white background (no alpha)")
    args = ap.parse_args()
    img = draw()
    if args.opaque:
        img = opaque(img)
    img.save(args.out, format="PNG", optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
