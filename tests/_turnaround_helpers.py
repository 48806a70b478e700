"""Turnaround sheets the tests make themselves: a 3D humanoid whose front and back differ in colour,
rendered in real Blender from the front, the side and the back (tests/_blender_render_views.py), plus
pictures of things that are not humanoids (drawn with Pillow).

The figure is _rig_helpers' primitive humanoid (glTF axes: Y up, facing +Z, metres). Its texture is an
atlas of colour bands: the front half of the body (z >= 0) takes the left half of the texture, the back
half the right half, so a back textured from the back view shows BACK colours and one mirrored from the
front shows FRONT colours.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import trimesh
from _rig_helpers import humanoid_parts
from PIL import Image, ImageDraw

# (top share of the height, bottom share, front colour, back colour)
BANDS = [
    (0.00, 0.13, (70, 45, 25), (70, 45, 25)),  # hair
    (0.13, 0.20, (235, 195, 165), (70, 45, 25)),  # face / back of the head
    (0.20, 0.50, (40, 90, 200), (200, 50, 40)),  # shirt: blue front, red back
    (0.50, 0.95, (60, 60, 70), (40, 150, 60)),  # trousers: grey front, green back
    (0.95, 1.00, (20, 20, 20), (20, 20, 20)),  # shoes
]
FRONT_SHIRT, BACK_SHIRT = BANDS[2][2], BANDS[2][3]
FRONT_TROUSERS, BACK_TROUSERS = BANDS[3][2], BANDS[3][3]


def _atlas(size: int = 256) -> Image.Image:
    img = np.zeros((size, size, 3), np.uint8)
    for top, bottom, front, back in BANDS:
        r0, r1 = int(top * size), int(np.ceil(bottom * size))
        img[r0:r1, : size // 2] = front
        img[r0:r1, size // 2 :] = back
    return Image.fromarray(img)


def two_tone_humanoid(height: float = 1.7, pose: str = "A") -> trimesh.Trimesh:
    """The primitive humanoid, front and back in different colours (see BANDS)."""
    mesh = trimesh.util.concatenate(humanoid_parts(height, pose))
    # split faces by side so no face straddles the front/back colour boundary
    v = mesh.vertices[mesh.faces]  # (f, 3, 3)
    back = v[:, :, 2].mean(1) < 0
    verts = v.reshape(-1, 3)
    faces = np.arange(len(verts)).reshape(-1, 3)
    lo, hi = verts.min(0), verts.max(0)
    frac = (hi[1] - verts[:, 1]) / (hi[1] - lo[1])  # 0 at the top
    u = np.where(np.repeat(back, 3), 0.75, 0.25)
    uv = np.stack([u, 1.0 - np.clip(frac, 0.002, 0.998)], 1)
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=_atlas(), metallicFactor=0.0, roughnessFactor=1.0)
    return trimesh.Trimesh(
        vertices=verts, faces=faces, process=False, visual=trimesh.visual.TextureVisuals(uv=uv, material=material)
    )


def render_turnaround(tmp: Path, views: dict[str, float] | None = None, *, pose: str = "A", size: int = 512) -> dict:
    """Render the two-tone humanoid with real Blender; {"images": {name: png}, "mesh": glb, ...}."""
    from comfy_avatar_nodes.core.runtime.blender import run_blender, run_sync

    views = views or {"front": 0.0, "side": 90.0, "back": 180.0}
    tmp.mkdir(parents=True, exist_ok=True)
    glb = tmp / "source.glb"
    two_tone_humanoid(pose=pose).export(glb)
    script = Path(__file__).with_name("_blender_render_views.py")
    args = {
        "mesh": str(glb),
        "out_dir": str(tmp / "views"),
        "size": size,
        "views": [{"name": k, "azimuth_deg": a} for k, a in views.items()],
    }
    res = run_sync(lambda: run_blender(script, args, work_dir=tmp / "work"), "render-views")
    return {**res.result, "mesh": glb}


@functools.cache
def shared_turnaround() -> dict:
    """One render per test process of front, side, back, a three-quarter view and the right side, shared by
    the test modules that need real turnaround pictures (a Blender render costs seconds)."""
    tmp = Path(tempfile.mkdtemp(prefix="comfy-avatar-turnaround-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return render_turnaround(tmp, {"front": 0.0, "side": 90.0, "back": 180.0, "three_quarter": 45.0, "right": 270.0})


def rgba(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))


# ---------------------------------------------------------------- pictures of things that are not humanoids


def _canvas(w: int = 640, h: int = 640) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    return img, ImageDraw.Draw(img)


def chair_picture(path: Path) -> Path:
    """A chair seen from the front: a backrest, a seat and four legs (two seen), brown wood."""
    img, d = _canvas()
    wood, dark = (140, 90, 50, 255), (100, 60, 30, 255)
    d.rectangle((200, 80, 440, 330), fill=wood)  # backrest
    d.rectangle((180, 330, 460, 370), fill=dark)  # seat front edge
    d.rectangle((190, 370, 225, 600), fill=wood)  # legs
    d.rectangle((415, 370, 450, 600), fill=wood)
    d.rectangle((240, 370, 265, 560), fill=dark)  # back legs between them
    d.rectangle((375, 370, 400, 560), fill=dark)
    img.save(path)
    return path


def table_picture(path: Path) -> Path:
    """A table seen from the front: a wide top on legs."""
    img, d = _canvas(800, 480)
    d.rectangle((60, 120, 740, 170), fill=(160, 110, 60, 255))
    for x in (80, 200, 580, 690):
        d.rectangle((x, 170, x + 30, 440), fill=(120, 80, 40, 255))
    img.save(path)
    return path


def quadruped_picture(path: Path) -> Path:
    """A dog in profile: a long body over four legs, the head raised at one end, a tail."""
    img, d = _canvas(800, 520)
    fur = (180, 140, 90, 255)
    d.ellipse((160, 170, 600, 330), fill=fur)  # body
    for x in (190, 260, 480, 550):
        d.rectangle((x, 300, x + 38, 470), fill=fur)  # legs
    d.ellipse((560, 70, 720, 200), fill=fur)  # head
    d.polygon([(600, 190), (650, 190), (600, 260)], fill=fur)  # neck
    d.rectangle((690, 120, 770, 160), fill=fur)  # muzzle
    d.polygon([(170, 220), (60, 140), (80, 130), (180, 200)], fill=fur)  # tail
    img.save(path)
    return path


def building_picture(path: Path) -> Path:
    """A house: walls with windows under a roof."""
    img, d = _canvas(600, 700)
    d.rectangle((100, 250, 500, 660), fill=(200, 190, 170, 255))
    d.polygon([(80, 260), (300, 60), (520, 260)], fill=(150, 60, 50, 255))
    for x in (150, 350):
        d.rectangle((x, 320, x + 90, 420), fill=(120, 170, 220, 255))
    d.rectangle((260, 500, 340, 660), fill=(100, 70, 40, 255))
    img.save(path)
    return path


def vehicle_picture(path: Path) -> Path:
    """A car from the side: a long body, a cabin, two wheels."""
    img, d = _canvas(900, 420)
    d.rounded_rectangle((60, 180, 840, 320), radius=40, fill=(200, 30, 40, 255))
    d.polygon([(250, 180), (330, 90), (600, 90), (690, 180)], fill=(200, 30, 40, 255))
    for x in (170, 620):
        d.ellipse((x, 270, x + 120, 390), fill=(30, 30, 30, 255))
    img.save(path)
    return path
