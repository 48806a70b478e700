"""CPU image -> mesh by silhouette inflation (core/mesh/silhouette.py, core/images.py) and the example picture."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from comfy_avatar_nodes.core.assets import sha256_file
from comfy_avatar_nodes.core.errors import AvatarError
from comfy_avatar_nodes.core.images import from_comfy, load_image
from comfy_avatar_nodes.core.mesh.silhouette import foreground_mask, image_to_mesh, silhouette_mesh

ROOT = Path(__file__).resolve().parents[1]


def _opaque(rgba: np.ndarray, bg=(255, 255, 255)) -> np.ndarray:
    """The picture flattened onto a plain background, alpha all 255 (the background-key path)."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    out = np.empty_like(rgba)
    out[..., :3] = np.rint(rgba[..., :3] * a + np.array(bg, np.float32) * (1 - a)).astype(np.uint8)
    out[..., 3] = 255
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _hit(mesh: trimesh.Trimesh, x: float, y: float, from_front: bool = True):
    """First surface hit by a ray along -Z (from the front) or +Z (from the back) through (x, y).

    Returns (hit point, triangle index, barycentric coordinates); plain numpy, no ray engine.
    """
    t = mesh.triangles
    a, b, c = t[:, 0, :2], t[:, 1, :2], t[:, 2, :2]
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    ok = np.abs(den) > 1e-15
    den = np.where(ok, den, 1.0)
    l1 = ((b[:, 1] - c[:, 1]) * (x - c[:, 0]) + (c[:, 0] - b[:, 0]) * (y - c[:, 1])) / den
    l2 = ((c[:, 1] - a[:, 1]) * (x - c[:, 0]) + (a[:, 0] - c[:, 0]) * (y - c[:, 1])) / den
    l3 = 1.0 - l1 - l2
    inside = ok & (l1 >= 0) & (l2 >= 0) & (l3 >= 0)
    idx = np.nonzero(inside)[0]
    assert idx.size, f"no surface at x={x}, y={y}"
    bary = np.stack([l1[idx], l2[idx], l3[idx]], 1)
    z = np.einsum("ij,ij->i", bary, t[idx, :, 2])
    k = int(np.argmax(z) if from_front else np.argmin(z))
    return np.array([x, y, z[k]]), int(idx[k]), bary[k]


@pytest.fixture(scope="module")
def rgba(example_image) -> np.ndarray:
    return load_image(example_image)


@pytest.fixture(scope="module")
def example_glb(rgba, tmp_path_factory):
    out = tmp_path_factory.mktemp("mesh") / "example.glb"
    info = image_to_mesh(rgba, out)
    return out, info


@pytest.fixture(scope="module")
def loaded(example_glb) -> trimesh.Trimesh:
    return trimesh.load(example_glb[0], force="mesh", process=False)


# ----------------------------------------------------------------------------- the example picture


def test_example_picture_is_small_rgba_with_transparency(example_image, rgba):
    assert example_image.stat().st_size <= 100_000
    assert Image.open(example_image).mode == "RGBA"
    alpha = rgba[..., 3]
    assert (alpha == 0).mean() > 0.5 and (alpha == 255).mean() > 0.2


def test_example_script_reproduces_the_committed_picture(example_image):
    spec = importlib.util.spec_from_file_location("make_example", ROOT / "workflows/examples/make_example.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    drawn = np.asarray(mod.draw()).astype(np.int16)
    committed = np.asarray(Image.open(example_image).convert("RGBA")).astype(np.int16)
    assert drawn.shape == committed.shape
    assert np.abs(drawn - committed).max() <= 2, "re-run workflows/examples/make_example.py and commit its output"


def test_example_has_humanoid_a_pose_proportions(rgba):
    fg, _ = foreground_mask(rgba)
    ys, xs = np.nonzero(fg)
    top, bottom = ys.min(), ys.max()
    height = bottom - top + 1
    cx = (xs.min() + xs.max()) / 2

    def runs(row: int) -> list[tuple[int, int]]:
        r = np.concatenate([[0], fg[row].astype(np.int8), [0]])
        d = np.diff(r)
        return list(zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]))

    at = lambda frac: int(top + frac * height)  # noqa: E731
    # chest (2/7 of the height): arm, torso, arm as three separate pieces
    assert len(runs(at(2.6 / 7))) == 3
    # mid-thigh: hand, leg, leg, hand; shins: two legs with a gap between them
    assert len(runs(at(4.15 / 7))) == 4
    shins = runs(at(6.0 / 7))
    assert len(shins) == 2 and shins[0][1] < cx < shins[1][0]
    # head ~ 1/7 of the height: the narrowest row (the neck) lies between 1/8 and 1/5.5 of the height
    widths = np.array([fg[r].sum() for r in range(at(0.1), at(0.3))])
    neck = (at(0.1) + int(widths.argmin()) - top) / height
    assert 1 / 8 < neck < 1 / 5.5
    # arms reach down to about mid-thigh: the lowest hand pixel is 52-65% down the figure
    outer = fg[:, : int(xs.min() + 0.15 * (xs.max() - xs.min()))]
    hand_bottom = (np.nonzero(outer.any(axis=1))[0].max() - top) / height
    assert 0.52 < hand_bottom < 0.65


# ----------------------------------------------------------------------------- the mesh


def test_example_mesh_is_closed_manifold_and_consistently_wound(example_glb, loaded):
    _, info = example_glb
    assert info.watertight and info.winding_consistent and info.volume_m3 > 0
    assert loaded.is_watertight and loaded.is_winding_consistent and loaded.volume > 0
    assert len(loaded.split(only_watertight=False)) == 1, "the figure should be one body"
    # a human-sized volume (a 1.7 m person is ~0.07 m^3), not a flat card or a block
    assert 0.03 < loaded.volume < 0.15


def test_example_mesh_triangle_count_and_timing_fields(example_glb, loaded):
    _, info = example_glb
    assert 10_000 <= info.faces <= 40_000
    assert info.faces == len(loaded.faces)
    assert info.foreground == "alpha"
    assert info.grid[0] == 256  # figure height in cells at the default resolution
    assert info.duration_s > 0


def test_example_mesh_placement_y_up_metres_feet_on_ground_centred(loaded):
    lo, hi = loaded.bounds
    assert hi[1] - lo[1] == pytest.approx(1.7, abs=1e-4)
    assert lo[1] == pytest.approx(0.0, abs=1e-6)
    assert (lo[0] + hi[0]) / 2 == pytest.approx(0.0, abs=1e-6)
    assert (lo[2] + hi[2]) / 2 == pytest.approx(0.0, abs=1e-6)
    # A-pose figure: wider than deep, arm span well under the height
    assert 0.25 < (hi[2] - lo[2]) < 0.5
    assert 0.9 < (hi[0] - lo[0]) < 1.7


def test_example_mesh_faces_plus_z_and_front_shows_the_picture(loaded, rgba):
    tex = np.asarray(loaded.visual.material.baseColorTexture.convert("RGB"))
    for x, y, colour in ((0.0, 1.15, "blue shirt"), (0.0, 1.58, "skin face")):
        loc, tri, bary = _hit(loaded, x, y)
        assert loc[2] > 0.05, "the front surface must be at +Z"
        assert loaded.face_normals[tri][2] > 0.5, "the front surface must face +Z"
        back, btri, _ = _hit(loaded, x, y, from_front=False)
        assert back[2] < -0.05 and loaded.face_normals[btri][2] < -0.5
        # the texel at the hit point has the picture's colour there
        u, v = bary @ loaded.visual.uv[loaded.faces[tri]]
        h, w = tex.shape[:2]
        r, g, b = tex[int((1 - v) * (h - 1)), int(u * (w - 1))].astype(int)
        if colour == "blue shirt":
            assert b > r + 60, f"expected the blue shirt at the chest, got {(r, g, b)}"
        else:
            assert r > b + 40 and r > 180, f"expected skin on the face, got {(r, g, b)}"


def test_example_mesh_front_surface_has_no_folds(rgba):
    mesh, _ = silhouette_mesh(rgba)
    v = mesh.vertices[mesh.faces]
    front = (v[:, :, 2] > 0).all(axis=1) & (np.ptp(v[:, :, 2], axis=1) < 0.05)
    e1, e2 = v[front, 1] - v[front, 0], v[front, 2] - v[front, 0]
    cross_z = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    assert front.sum() > 5000
    assert (cross_z > 0).all(), "every front triangle must keep its orientation seen from +Z"


def test_glb_embeds_texture_and_uvs(example_glb):
    from pygltflib import GLTF2

    g = GLTF2().load_binary(str(example_glb[0]))
    assert len(g.meshes) == 1 and len(g.images) == 1 and len(g.textures) == 1
    prim = g.meshes[0].primitives[0]
    assert prim.attributes.TEXCOORD_0 is not None and prim.attributes.NORMAL is not None
    mat = g.materials[prim.material]
    assert mat.pbrMetallicRoughness.baseColorTexture.index == 0
    img = g.images[0]
    assert img.mimeType == "image/png"
    view = g.bufferViews[img.bufferView]
    blob = g.binary_blob()[view.byteOffset or 0 : (view.byteOffset or 0) + view.byteLength]
    assert Image.open(io.BytesIO(blob)).size == (640, 720)


def test_same_input_gives_identical_bytes(rgba, example_glb, tmp_path):
    again = tmp_path / "again.glb"
    image_to_mesh(rgba, again)
    assert sha256_file(again) == sha256_file(example_glb[0])


def test_parameters_change_size_and_depth(rgba, tmp_path, loaded):
    info = image_to_mesh(rgba, tmp_path / "tall.glb", height_m=2.0, thickness=1.0, resolution=128)
    m = trimesh.load(tmp_path / "tall.glb", force="mesh", process=False)
    lo, hi = m.bounds
    assert hi[1] - lo[1] == pytest.approx(2.0, abs=1e-4)
    depth, base_depth = hi[2] - lo[2], loaded.bounds[1][2] - loaded.bounds[0][2]
    assert depth > 1.7 * base_depth  # twice the thickness, a bit taller
    assert info.faces < 15_000 and m.is_watertight and m.is_winding_consistent


def test_smooth_zero_and_high_resolution_stay_closed(rgba):
    for kwargs in ({"smooth": 0.0}, {"resolution": 512, "smooth": 2.0}):
        mesh, _ = silhouette_mesh(rgba, **kwargs)
        assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0, kwargs


def test_large_picture_is_downscaled_not_exploded(rgba):
    big = np.asarray(Image.fromarray(rgba, "RGBA").resize((1920, 2160), Image.Resampling.LANCZOS))
    mesh, source = silhouette_mesh(big)
    assert source == "alpha" and 10_000 <= len(mesh.faces) <= 40_000 and mesh.is_watertight


# ----------------------------------------------------------------------------- background key


def test_background_key_matches_alpha_silhouette(rgba):
    alpha_mask, src_a = foreground_mask(rgba)
    # white, pale grey-green, a green screen (a dark background would swallow the dark belt/outline)
    for bg in ((255, 255, 255), (200, 220, 200), (0, 160, 80)):
        key_mask, src_k = foreground_mask(_opaque(rgba, bg))
        assert (src_a, src_k) == ("alpha", "background_key")
        assert _iou(alpha_mask, key_mask) > 0.95, bg


def test_background_key_mesh_from_opaque_file(rgba, tmp_path, loaded):
    path = tmp_path / "opaque.jpg"
    Image.fromarray(_opaque(rgba)[..., :3], "RGB").save(path, quality=90)  # JPEG: noisy background
    info = image_to_mesh(load_image(path), tmp_path / "opaque.glb")
    assert info.foreground == "background_key" and info.watertight and info.winding_consistent
    m = trimesh.load(tmp_path / "opaque.glb", force="mesh", process=False)
    np.testing.assert_allclose(m.bounds, loaded.bounds, atol=0.02)


def test_stray_specks_are_dropped(rgba):
    noisy = rgba.copy()
    noisy[5:9, 5:9] = (255, 0, 0, 255)  # a speck far from the figure
    noisy[300:302, 60:62] = (0, 0, 0, 255)
    mesh, _ = silhouette_mesh(noisy)
    clean, _ = silhouette_mesh(rgba)
    np.testing.assert_allclose(mesh.bounds, clean.bounds, atol=1e-6)
    assert len(mesh.split(only_watertight=False)) == 1


# ----------------------------------------------------------------------------- bad input


def _expect_error(func, *args, names: str, **kwargs) -> AvatarError:
    with pytest.raises(AvatarError) as ei:
        func(*args, **kwargs)
    msg = str(ei.value)
    assert names in msg, msg
    assert "Fix:" in msg, msg
    return ei.value


def test_corrupt_and_non_image_files_name_the_file_and_formats(example_image, tmp_path):
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(example_image.read_bytes()[:5000])
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for p in (truncated, text, garbage, empty):
        err = _expect_error(load_image, p, names=p.name)
        assert "PNG" in str(err), str(err)
    _expect_error(load_image, tmp_path / "missing.png", names="missing.png")
    _expect_error(load_image, tmp_path, names=str(tmp_path))
    assert sorted(x.name for x in tmp_path.iterdir()) == ["empty.png", "garbage.jpg", "notes.png", "truncated.png"]


def test_tiny_picture_is_rejected(tmp_path):
    p = tmp_path / "tiny.png"
    Image.new("RGBA", (20, 20), (255, 0, 0, 255)).save(p)
    err = _expect_error(load_image, p, names="tiny.png")
    assert "20x20" in str(err)


@pytest.mark.parametrize("case", ["all_transparent", "uniform_white", "uniform_grey_noisy", "busy_photo"])
def test_no_foreground_names_the_input_and_leaves_no_file(case, tmp_path):
    rng = np.random.default_rng(0)
    if case == "all_transparent":
        img = np.zeros((200, 150, 4), np.uint8)
    elif case == "uniform_white":
        img = np.full((200, 150, 4), 255, np.uint8)
    elif case == "uniform_grey_noisy":
        img = np.full((200, 150, 4), 128, np.uint8)
        img[..., :3] = np.clip(128 + rng.normal(0, 2, (200, 150, 3)), 0, 255).astype(np.uint8)
    else:
        img = rng.integers(0, 256, (200, 150, 4), dtype=np.uint8)
        img[..., 3] = 255
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    err = _expect_error(image_to_mesh, img, out_dir / "m.glb", what="input image", names="input image")
    assert "transparen" in err.fix and "plain background" in err.fix
    assert list(out_dir.iterdir()) == [], "no output (not even a temp file) may be left behind"


def test_bad_parameters_name_the_parameter(rgba, tmp_path):
    for kwargs, name in (
        ({"height_m": 0.0}, "height_m"),
        ({"thickness": -1.0}, "thickness"),
        ({"resolution": 8}, "resolution"),
        ({"smooth": float("nan")}, "smooth"),
    ):
        _expect_error(image_to_mesh, rgba, tmp_path / "m.glb", names=name, **kwargs)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- loaders


def test_load_image_converts_modes(tmp_path):
    grey = tmp_path / "grey.png"
    Image.new("L", (64, 48), 100).save(grey)
    pal = tmp_path / "pal.png"
    im = Image.new("P", (64, 48), 0)
    im.putpalette([0, 0, 0, 200, 50, 50] + [0] * 762)
    im.paste(1, (10, 10, 40, 40))
    im.save(pal, transparency=0)
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((48, 64), 65535, np.uint16)).save(deep)
    g, p, d = load_image(grey), load_image(pal), load_image(deep)
    assert g.shape == p.shape == d.shape == (48, 64, 4) and g.dtype == np.uint8
    assert (g[..., :3] == 100).all() and (g[..., 3] == 255).all()
    assert p[0, 0, 3] == 0 and tuple(p[20, 20]) == (200, 50, 50, 255)
    assert (d[..., :3] == 255).all()


def test_from_comfy_mask_is_one_minus_alpha(rgba):
    img = rgba[..., :3].astype(np.float32) / 255.0
    mask = 1.0 - rgba[..., 3].astype(np.float32) / 255.0  # what LoadImage gives
    out = from_comfy(img[None], mask[None])
    np.testing.assert_array_equal(out[..., :3], rgba[..., :3])
    assert np.abs(out[..., 3].astype(int) - rgba[..., 3]).max() <= 1
    # a subject mask (1 = figure) needs mask_is_background=False and gives the same alpha
    same = from_comfy(img, 1.0 - mask, mask_is_background=False)
    np.testing.assert_array_equal(same, out)
    # LoadImage's 64x64 all-zero dummy (no alpha in the file) means "opaque"
    opaque = from_comfy(img, np.zeros((64, 64), np.float32))
    assert (opaque[..., 3] == 255).all()


def test_from_comfy_rejects_bad_tensors(rgba):
    img = rgba[..., :3].astype(np.float32) / 255.0
    _expect_error(from_comfy, img, np.ones((64, 64), np.float32), names="mask")
    _expect_error(from_comfy, img[None].repeat(2, 0), names="image")
    bad = img.copy()
    bad[0, 0, 0] = np.nan
    _expect_error(from_comfy, bad, names="image")
    _expect_error(from_comfy, np.zeros((10, 10, 3), np.float32), names="image")


def test_from_comfy_then_mesh_equals_file_path(rgba, example_glb, tmp_path):
    img = rgba[..., :3].astype(np.float32) / 255.0
    mask = 1.0 - rgba[..., 3].astype(np.float32) / 255.0
    out = tmp_path / "node.glb"
    info = image_to_mesh(from_comfy(img, mask), out)
    assert info.faces == example_glb[1].faces and info.watertight


@pytest.mark.js
def test_glb_passes_khronos_validator_without_warnings(example_glb):
    from _js import check_with_node

    result = check_with_node(example_glb[0], "check_gltf.mjs")
    assert result["ok"] is True and result["errors"] == [] and result["warnings"] == [], result
    assert result["validator"]["info"]["hasTextures"] is True
