"""Turnarounds that are not one figure seen from three sides, and mesh inputs with odd content.

The visual hull carves whatever outlines it is given: a side picture of another figure (a dog) used to
give a 2.5 m deep slab with two warnings, the front picture given again as the side view a figure as deep
as it is wide, a side view cut off at the knees a figure stretched to full height. What a user notices
now: each is refused, naming the view and the fix; honest turnarounds (the side facing either way, a
smaller side picture with a wide margin, different backgrounds, a back that mirrors the front) still
carve. The mesh socket's path and core-MESH inputs name an empty, truncated or mislabelled file and an
empty batch before Blender starts (tests/_redteam_pictures.py draws the figures).
"""

from __future__ import annotations

from pathlib import Path

import _redteam_pictures as pics
import numpy as np
import pytest
from PIL import Image, ImageOps

from comfy_avatar_nodes.core.errors import AvatarError
from comfy_avatar_nodes.core.mesh.hull import hull_mesh
from comfy_avatar_nodes.core.rig.gate import assess_humanoid


def _a(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGBA"))


def _pad(im: Image.Image, margin: int) -> Image.Image:
    out = Image.new("RGBA", (im.width + 2 * margin, im.height + 2 * margin), (0, 0, 0, 0))
    out.paste(im, (margin, margin), im)
    return out


def _on(im: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    out = Image.new("RGBA", im.size, colour + (255,))
    out.paste(im, (0, 0), im)
    return out


FRONT, SIDE = pics.hands_on_hips, pics.side_view  # the side view faces picture-right


def _carve(**views: Image.Image):
    return hull_mesh({k: _a(v) for k, v in views.items()}, resolution=80)


@pytest.mark.parametrize(
    "case",
    ["as drawn", "side facing the other way", "small side, wide margin", "different backgrounds", "mirrored back"],
)
def test_honest_turnarounds_carve_a_standing_humanoid(case):
    front, side = FRONT(), SIDE()
    views = {
        "as drawn": {"front": front, "side": side},
        "side facing the other way": {"front": front, "side": ImageOps.mirror(side)},
        "small side, wide margin": {"front": front, "side": _pad(side.resize((150, 225)), 200)},
        "different backgrounds": {"front": _on(front, (128, 128, 128)), "side": _on(side, (255, 255, 255))},
        "mirrored back": {"front": front, "side": side, "back": ImageOps.mirror(front)},
    }[case]
    _, closed, det = _carve(**views)
    lo, hi = closed.bounds
    assert 0.25 < hi[2] - lo[2] < 0.45, "depth follows the side view (~0.36 m), not the front's width (0.76 m)"
    assert hi[1] - lo[1] == pytest.approx(1.7, abs=0.03)
    assert assess_humanoid(closed.vertices, closed.faces).ok
    if case == "side facing the other way":
        assert det["facing"].startswith("left")
    if case == "mirrored back":
        assert det["iou"]["back"] > 0.95


def test_a_side_view_of_another_figure_is_refused_not_carved_into_a_slab():
    with pytest.raises(AvatarError) as err:
        _carve(front=FRONT(), side=pics.dog_standing_side())
    text = str(err.value)
    assert text.startswith("side: its figure is 2.") and "deep but the front's is only 0.7" in text
    assert "Fix: connect the side view of the same figure" in text


def test_the_front_given_again_as_the_side_is_refused():
    with pytest.raises(AvatarError, match=r"^side: its outline is the front's \(100% overlap.*Fix: connect a picture"):
        _carve(front=FRONT(), side=FRONT())


def test_a_view_cut_off_at_the_picture_edge_is_refused():
    with pytest.raises(AvatarError, match=r"^side: its figure touches the picture's bottom edge, where the front"):
        _carve(front=FRONT(), side=SIDE().crop((0, 0, 600, 600)))
    with pytest.raises(AvatarError, match=r"^front: its figure touches the picture's bottom edge, where the side"):
        _carve(front=FRONT().crop((0, 0, 600, 600)), side=SIDE())


def _tight(im: Image.Image) -> Image.Image:
    return im.crop(im.getbbox())


def test_views_all_cropped_tight_to_the_figure_still_carve():
    """Auto-cropped PNGs touch every edge: the same in every view, so nothing looks cut off."""
    _, closed, _ = _carve(front=_tight(FRONT()), side=_tight(SIDE()), back=ImageOps.mirror(_tight(FRONT())))
    lo, hi = closed.bounds
    assert 0.25 < hi[2] - lo[2] < 0.45 and hi[1] - lo[1] == pytest.approx(1.7, abs=0.03)


def test_a_back_view_of_another_figure_is_refused():
    with pytest.raises(AvatarError, match=r"^back: its outline matches the front view's mirror image only"):
        _carve(front=FRONT(), side=SIDE(), back=pics.robot())


# ---------------------------------------------------------------- mesh inputs (nodes/_mesh_inputs.py)

CHECK_INPUTS = r"""
import json, sys
sys.argv = ["t", "--cpu"]
sys.path[:0] = [COMFY_DIR, ROOT]
import comfy.options
comfy.options.enable_args_parsing()
import folder_paths
folder_paths.set_output_directory(OUT)
import numpy as np
from comfy_avatar_nodes.core.config import load_settings
from comfy_avatar_nodes.core.errors import AvatarError
from comfy_avatar_nodes.nodes import _mesh_inputs as mi

class CoreMesh:  # what a core MESH carries: batched vertices and faces; here an empty batch
    vertices = np.zeros((0, 3, 3), np.float32)
    faces = np.zeros((0, 1, 3), np.int64)

out = {}
for name, value in [*((p, p) for p in PATHS), ("empty batch", CoreMesh()), ("blank", "  ")]:
    try:
        out[name] = "accepted " + str(mi.to_asset(value, "mesh", load_settings()).path)
    except AvatarError as e:
        out[name] = str(e)
print(json.dumps(out))
"""


def test_mesh_inputs_with_odd_content_are_named_before_blender(tmp_path):
    """Run in ComfyUI's own Python (the nodes import comfy_api): an empty file, a web page saved as .glb, a
    picture renamed .fbx, JSON named .obj, an empty batch of core meshes and a blank path are refused
    with what is wrong; a real OBJ and GLB go through."""
    import json
    import subprocess

    from _driver_helpers import comfyui_python
    from conftest import comfyui_dir

    from driver.local import find_python

    comfy_dir = comfyui_dir()
    files = {
        "empty.glb": b"",
        "page.glb": b"<html>404 Not Found</html>",
        "picture.fbx": b"\x89PNG\r\n\x1a\n" + bytes(64),
        "json.obj": b'{"not": "an obj"}',
        "tri.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n",
        "tri.glb": b"glTF" + bytes(16),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    paths = [str(tmp_path / n) for n in files]
    root = str(Path(__file__).resolve().parents[1])
    code = (
        f"COMFY_DIR, ROOT, OUT, PATHS = {str(comfy_dir)!r}, {root!r}, {str(tmp_path / 'output')!r}, {paths!r}\n"
        + CHECK_INPUTS
    )
    proc = subprocess.run(
        [str(comfyui_python() or find_python(comfy_dir)), "-c", code], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    says = {
        "empty.glb": "is empty (0 bytes)",
        "page.glb": "is not a binary glTF: it starts with b'<html>",
        "picture.fbx": "is not an FBX file",
        "json.obj": "is not a text OBJ file",
    }
    for name, text in says.items():
        got = out[str(tmp_path / name)]
        assert got.startswith(f"mesh: {tmp_path / name} {text}") and "re-export it" in got, got
    assert out[str(tmp_path / "tri.obj")] == f"accepted {tmp_path / 'tri.obj'}"
    assert out[str(tmp_path / "tri.glb")] == f"accepted {tmp_path / 'tri.glb'}"
    assert out["empty batch"].startswith("mesh: is an empty batch of meshes") and "Fix:" in out["empty batch"]
    assert out["blank"].startswith("mesh: is an empty path. Fix: connect a mesh")
