"""Image -> closed textured mesh on the CPU by silhouette inflation.

Not a learned 3D reconstruction: the outline of the figure decides everything. Steps:

1. Foreground mask: the alpha channel when the picture has real transparency, otherwise a
   background key (background colour = median of the picture's border, distance in CIE Lab),
   cleaned up (speckles removed, the main figure and pieces close to it kept, small holes filled).
2. The mask is cropped to the figure and resampled to a grid of ``resolution`` cells on its
   long side. Each foreground cell becomes two triangles on the front surface and two on the
   back; boundary edges are joined by a thin side wall, giving one closed 2-manifold.
3. Depth from the mask's Euclidean distance transform d (metres, 0 on the outline):
   ``z = z_rim + thickness * sqrt(2 * R * d)`` with R = height_m / 10 - the profile of a round
   cross-section near its edge, so at thickness 0.5 limbs come out about round and the torso
   flatter than it is wide. The front surface is at +Z, the back mirrors it at -Z.
4. Texture: the picture itself, projected along Z onto both sides (the back shows the front
   mirrored); colours are bled outwards from the figure so the outline shows no background fringe.

Output: Y up, metres, feet (lowest foreground row) at Y=0, the figure height = height_m,
bounding box centred on X=0 and Z=0, facing +Z; a GLB written atomically.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..assets import atomic_path
from ..errors import AvatarError

log = logging.getLogger("comfy_avatar.silhouette")

ANALYSIS_MAX_SIDE = 1024  # the mask and the texture are computed at most at this size (long side)
ALPHA_MIN_TRANSPARENT = 0.01  # alpha counts as "real" when >= 1% of the pixels are transparent
HOLE_FILL_FRACTION = 0.01  # enclosed holes smaller than this share of the figure are filled
RIVAL_FRACTION = 0.25  # a separate piece far from the figure and this big (share of it) is a second figure
KEEP_GAP_FRACTION = 0.01  # separate pieces this close to the figure (share of the long side) are kept
MIN_FIGURE_PX = 24  # the figure must be at least this many pixels tall/wide (analysis size)
ROUND_RADIUS = 0.1  # R in the depth profile, as a share of height_m
RIM_CELLS = 0.25  # half height of the side wall, in grid cells
FOREGROUND_FIX = (
    "use a picture with a transparent background around the figure, or the figure "
    "on a plain background colour that differs clearly from the figure"
)


@dataclass
class MeshInfo:
    """What image_to_mesh made; JSON-safe through to_dict() (used as asset metadata)."""

    vertices: int
    faces: int
    watertight: bool
    winding_consistent: bool
    volume_m3: float
    bounds: list[list[float]]  # [[min x, y, z], [max x, y, z]] in metres
    height_m: float
    foreground: str  # "alpha" or "background_key"
    grid: list[int]  # [rows, cols] of the mesh grid
    texture_size: list[int]  # [width, height] of the embedded texture
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- foreground


def _as_rgba(rgba: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(rgba)
    if a.ndim == 3 and a.shape[2] == 3:
        a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, a.dtype)], axis=2)
    if a.ndim != 3 or a.shape[2] != 4 or a.dtype != np.uint8:
        raise AvatarError(
            what,
            f"expected an (H, W, 4) uint8 RGBA array, got {a.dtype} {a.shape}",
            "load pictures with core.images.load_image or from_comfy",
        )
    if min(a.shape[:2]) < 8:
        raise AvatarError(what, f"is only {a.shape[1]}x{a.shape[0]} pixels", "use a larger picture")
    return a


def _downscale(rgba: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgba.shape[:2]
    if max(h, w) <= max_side:
        return rgba
    from PIL import Image

    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(rgba, "RGBA").resize(size, Image.Resampling.BOX))


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB -> (..., 3) float32 CIE Lab (D65)."""
    c = rgb.astype(np.float32) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], np.float32)
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883], np.float32)
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)


def _background_key(rgba: np.ndarray, what: str) -> np.ndarray:
    from scipy import ndimage

    h, w = rgba.shape[:2]
    lab = _srgb_to_lab(rgba[..., :3])
    b = max(2, round(0.02 * min(h, w)))
    border = np.concatenate(
        [lab[:b].reshape(-1, 3), lab[-b:].reshape(-1, 3), lab[:, :b].reshape(-1, 3), lab[:, -b:].reshape(-1, 3)]
    )
    bg = np.median(border, axis=0)
    d_border = np.linalg.norm(border - bg, axis=1)
    close = d_border < 12.0
    if close.mean() < 0.6:
        raise AvatarError(
            what,
            "has no transparency and its border is not one plain colour, so the figure "
            f"cannot be told apart from the background (only {close.mean():.0%} of the border "
            "matches its median colour)",
            FOREGROUND_FIX,
        )
    threshold = float(np.clip(3.0 * np.percentile(d_border[close], 90), 10.0, 30.0))
    fg = np.linalg.norm(lab - bg, axis=-1) > threshold
    fg = ndimage.binary_opening(fg, structure=np.ones((3, 3), bool))  # JPEG speckles, noise
    log.debug("background key: Lab %s, threshold dE %.1f", np.round(bg, 1).tolist(), threshold)
    return fg


def _rival_figures(fg: np.ndarray) -> list[float]:
    """Sizes, as shares of the largest piece, of the separate pieces far from it and at least
    ``RIVAL_FRACTION`` of its size, standing beside it: a second figure (two people side by side, a
    character and its pet, a sheet of several views). A piece above or below the figure (a head drawn
    apart from the body, a floating halo) is not counted. _keep_figure would keep only the largest and silently drop the rest."""
    from scipy import ndimage

    labels, n = ndimage.label(fg, structure=np.ones((3, 3), bool))
    if n < 2:
        return []
    sizes = np.bincount(labels.ravel()).astype(float)
    sizes[0] = 0
    main = int(sizes.argmax())
    gap = max(2.0, KEEP_GAP_FRACTION * max(fg.shape))
    near = np.unique(labels[ndimage.distance_transform_edt(labels != main) <= gap])
    cols = ndimage.find_objects(labels)

    def beside(i: int) -> bool:  # mostly beside the figure, not above or below it (a head drawn apart)
        a, b = cols[main - 1][1], cols[i - 1][1]
        overlap = max(0, min(a.stop, b.stop) - max(a.start, b.start))
        return overlap < 0.5 * (b.stop - b.start)

    far = [
        i
        for i in range(1, n + 1)
        if i != main and i not in near and sizes[i] >= RIVAL_FRACTION * sizes[main] and beside(i)
    ]
    return sorted((round(float(sizes[i] / sizes[main]), 3) for i in far), reverse=True)


def _keep_figure(fg: np.ndarray) -> np.ndarray:
    """The largest piece, pieces within a small gap of it, small enclosed holes filled."""
    from scipy import ndimage

    labels, n = ndimage.label(fg, structure=np.ones((3, 3), bool))
    if n == 0:
        return fg
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    main = int(sizes.argmax())
    gap = max(2.0, KEEP_GAP_FRACTION * max(fg.shape))
    near = ndimage.distance_transform_edt(labels != main) <= gap
    keep = np.zeros(n + 1, bool)
    keep[np.unique(labels[near])] = True
    keep &= sizes >= 0.002 * sizes[main]
    keep[0] = False
    keep[main] = True
    out = keep[labels]
    if n > 1:
        log.debug("kept %d of %d separate pieces of the foreground", int(keep.sum()), n)
    holes, nh = ndimage.label(ndimage.binary_fill_holes(out) & ~out)
    if nh:
        hole_sizes = np.bincount(holes.ravel())
        small = hole_sizes < HOLE_FILL_FRACTION * out.sum()
        small[0] = False
        out |= small[holes]
    return out


def foreground_mask(rgba: np.ndarray, what: str = "image") -> tuple[np.ndarray, str]:
    """Boolean figure mask of an RGBA picture (same size) and how it was found ("alpha"/"background_key").

    Raises AvatarError naming ``what`` when there is no usable foreground.
    """
    rgba = _as_rgba(rgba, what)
    alpha = rgba[..., 3]
    transparent = float((alpha < 128).mean())
    if transparent >= ALPHA_MIN_TRANSPARENT:
        source = "alpha"
        fg = alpha >= 128
        if not fg.any():
            raise AvatarError(what, "has no foreground: every pixel is transparent", FOREGROUND_FIX)
    else:
        source = "background_key"
        fg = _background_key(rgba, what)
        if not fg.any():
            raise AvatarError(
                what,
                "has no foreground: every pixel matches the background colour (a blank or uniform picture?)",
                FOREGROUND_FIX,
            )
    rivals = _rival_figures(fg)
    if rivals:
        raise AvatarError(
            what,
            f"holds {len(rivals) + 1} separate figures of similar size (the largest, then "
            f"{', '.join(f'{r:.0%}' for r in rivals)} of its size), and a mesh is made of one figure: the "
            "others would be dropped",
            "crop the picture to the one figure you want; for a turnaround sheet, cut it into one picture "
            "per view and connect them to front / side / back",
        )
    fg = _keep_figure(fg)
    ys, xs = np.nonzero(fg)
    fh, fw = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
    if max(fh, fw) < MIN_FIGURE_PX:
        raise AvatarError(
            what,
            f"the figure found is only {fw}x{fh} pixels",
            "use a larger picture or crop it closer around the figure",
        )
    if fg.mean() > 0.97:
        raise AvatarError(
            what,
            f"the foreground ({source}) covers the whole picture, so there is no outline to inflate",
            FOREGROUND_FIX,
        )
    return fg, source


# ----------------------------------------------------------------------------- mesh


def _grid_mask(fg: np.ndarray, resolution: int) -> tuple[np.ndarray, tuple[int, int], tuple[float, float]]:
    """Crop to the figure, resample to ``resolution`` cells on the long side, pad by one cell.

    Returns (padded grid mask, (row0, col0) of the crop in analysis pixels,
    analysis pixels per cell along (rows, cols)).
    """
    from PIL import Image
    from scipy import ndimage

    ys, xs = np.nonzero(fg)
    r0, r1, c0, c1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    px_per_cell = max(r1 - r0, c1 - c0) / float(resolution)
    gh = max(1, round((r1 - r0) / px_per_cell))
    gw = max(1, round((c1 - c0) / px_per_cell))
    crop = Image.fromarray((fg[r0:r1, c0:c1] * 255).astype(np.uint8), "L")
    g = np.asarray(crop.resize((gw, gh), Image.Resampling.BOX)) >= 128
    # drop specks the resampling left apart from the figure (they would be tiny closed shells)
    labels, n = ndimage.label(g, structure=np.ones((3, 3), bool))
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        g = (sizes >= max(4, 0.002 * sizes.max()))[labels] & g
    g = np.pad(g, 1)
    _fix_pinches(g)
    return g, (r0, c0), ((r1 - r0) / gh, (c1 - c0) / gw)


def _fix_pinches(g: np.ndarray) -> None:
    """Fill a cell wherever two cells touch only at a corner (that corner would be non-manifold)."""
    for _ in range(100):
        a, b, c, d = g[:-1, :-1], g[:-1, 1:], g[1:, :-1], g[1:, 1:]
        p1 = a & d & ~b & ~c
        p2 = b & c & ~a & ~d
        if not (p1.any() or p2.any()):
            return
        b |= p1  # views into g: fills the top-right cell of a "\" pinch
        a |= p2  # and the top-left cell of a "/" pinch
    raise AvatarError("image", "the outline could not be made manifold", "try another resolution")


def _front_faces(g: np.ndarray) -> np.ndarray:
    """Front triangles (corner keys r * (cols + 1) + c), counter-clockwise seen from +Z (x = col, y = -row).

    Cells near the outline get two triangles each. Aligned 2x2 blocks whose cells and
    one-cell ring are all foreground become one coarse quad (two triangles), or a fan around
    the block centre that includes the mid-edge corners its fine neighbours use, so the
    triangulation stays conforming (no T-junctions) with about half the triangles.
    """
    from scipy import ndimage

    gh, gw = g.shape
    w1 = gw + 1
    k = lambda r, c: r * w1 + c  # noqa: E731
    e = ndimage.binary_erosion(g, structure=np.ones((3, 3), bool))
    coarse = e[0::2, 0::2] & e[0::2, 1::2] & e[1::2, 0::2] & e[1::2, 1::2]
    fine = g & ~np.repeat(np.repeat(coarse, 2, 0), 2, 1)
    ci, cj = np.nonzero(fine)
    a, b, c, d = k(ci, cj), k(ci, cj + 1), k(ci + 1, cj + 1), k(ci + 1, cj)
    tris = [np.stack([d, c, b], 1), np.stack([d, b, a], 1)]

    cpad = np.pad(coarse, 1)
    bi, bj = np.nonzero(coarse)
    r, c_ = 2 * bi, 2 * bj
    # cycle counter-clockwise in x/y: BL, bottom mid, BR, right mid, TR, top mid, TL, left mid
    ring = [
        k(r + 2, c_),
        k(r + 2, c_ + 1),
        k(r + 2, c_ + 2),
        k(r + 1, c_ + 2),
        k(r, c_ + 2),
        k(r, c_ + 1),
        k(r, c_),
        k(r + 1, c_),
    ]
    mid = [~cpad[bi + 2, bj + 1], ~cpad[bi + 1, bj + 2], ~cpad[bi, bj + 1], ~cpad[bi + 1, bj]]  # B, R, T, L
    centre = k(r + 1, c_ + 1)
    plain = ~(mid[0] | mid[1] | mid[2] | mid[3])
    bl, br, tr, tl = ring[0][plain], ring[2][plain], ring[4][plain], ring[6][plain]
    tris += [np.stack([bl, br, tr], 1), np.stack([bl, tr, tl], 1)]
    fan = ~plain
    for side in range(4):
        p0, m, p1 = ring[2 * side], ring[2 * side + 1], ring[(2 * side + 2) % 8]
        split = fan & mid[side]
        whole = fan & ~mid[side]
        tris += [
            np.stack([centre[split], p0[split], m[split]], 1),
            np.stack([centre[split], m[split], p1[split]], 1),
            np.stack([centre[whole], p0[whole], p1[whole]], 1),
        ]
    return np.concatenate(tris)


def _build(
    fg: np.ndarray, resolution: int, height_m: float, thickness: float, smooth: float, analysis_shape: tuple[int, int]
):
    from scipy import ndimage

    g, (r0, c0), px_per_cell = _grid_mask(fg, resolution)
    fig_rows, fig_cols = g.shape[0] - 2, g.shape[1] - 2
    g = np.pad(g, ((0, g.shape[0] % 2), (0, g.shape[1] % 2)))  # even size for the 2x2 blocks
    gh, gw = g.shape
    # corners: (gh+1, gw+1); corner (r, c) touches cells (r-1..r, c-1..c)
    cp = np.pad(g, 1)
    interior = cp[:-1, :-1] & cp[:-1, 1:] & cp[1:, :-1] & cp[1:, 1:]
    keys = _front_faces(g)
    used_keys, front = np.unique(keys, return_inverse=True)
    front = front.reshape(-1, 3)
    rows, cols = np.divmod(used_keys, gw + 1)
    nv = rows.size

    # boundary edges: used by exactly one front face; walk direction u -> v as in the front faces
    e = np.concatenate([front[:, [0, 1]], front[:, [1, 2]], front[:, [2, 0]]])
    key = np.minimum(e[:, 0], e[:, 1]) * nv + np.maximum(e[:, 0], e[:, 1])
    _, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    bnd = e[counts[inv] == 1]
    nxt = np.full(nv, -1, np.int64)
    prv = np.full(nv, -1, np.int64)
    nxt[bnd[:, 0]] = bnd[:, 1]
    prv[bnd[:, 1]] = bnd[:, 0]
    is_b = nxt >= 0
    if np.count_nonzero(is_b) != len(bnd) or np.any((prv >= 0) != is_b):
        raise AvatarError(
            "image",
            "internal error: the outline is not a set of simple loops",
            "try a different resolution and report the picture",
        )

    # 2D positions in cells, boundary smoothed along its loops (staircase -> smooth outline)
    xy = np.stack([cols.astype(np.float64), rows.astype(np.float64)], 1)
    bi = np.nonzero(is_b)[0]
    if smooth > 0:
        orig = xy[bi].copy()
        for _ in range(max(1, round(2 * smooth))):
            target = 0.5 * (xy[prv[bi]] + xy[nxt[bi]])
            xy[bi] += 0.5 * (target - xy[bi])
            off = xy[bi] - orig
            norm = np.linalg.norm(off, axis=1, keepdims=True)
            xy[bi] = orig + off * np.minimum(1.0, 0.25 / np.maximum(norm, 1e-12))
        for _ in range(10):  # never fold a triangle: undo the move of any vertex of a flipped one
            p = xy[front]
            area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 0, 1] - p[:, 2, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (
                p[:, 0, 1] - p[:, 1, 1]
            )
            bad = area <= 1e-9
            if not bad.any():
                break
            vs = np.unique(front[bad])
            vs = vs[is_b[vs]]
            xy[vs] = np.stack([cols[vs], rows[vs]], 1)

    # depth: distance (cells) from each corner to the nearest outline corner, smoothed
    dist = ndimage.distance_transform_edt(interior)
    if smooth > 0:
        dist = ndimage.gaussian_filter(dist, sigma=smooth, mode="constant")
    dist[~interior] = 0.0
    cell_m = height_m / fig_rows
    r_round = ROUND_RADIUS * height_m
    z = RIM_CELLS * cell_m + thickness * np.sqrt(2.0 * r_round * dist[rows, cols] * cell_m)

    top = 1.0  # padded row of the figure's top edge
    verts_f = np.stack([(xy[:, 0] - 1.0) * cell_m, (fig_rows + 1.0 - xy[:, 1]) * cell_m, z], 1)
    verts_b = verts_f * np.array([1.0, 1.0, -1.0])
    verts = np.concatenate([verts_f, verts_b])
    back = front[:, ::-1] + nv
    u_, v_ = bnd[:, 0], bnd[:, 1]
    wall = np.concatenate([np.stack([v_, u_, u_ + nv], 1), np.stack([u_ + nv, v_ + nv, v_], 1)])
    faces = np.concatenate([front, back, wall])

    # exact placement: feet on Y=0, height = height_m, bounding box centred on X and Z
    lo, hi = verts.min(0), verts.max(0)
    verts *= height_m / (hi[1] - lo[1])
    lo, hi = verts.min(0), verts.max(0)
    verts -= np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2])

    # UVs: the picture projected along Z (same UV front and back); OpenGL convention (v up)
    ah, aw = analysis_shape
    px = c0 + (xy[:, 0] - 1.0) * px_per_cell[1]
    py = r0 + (xy[:, 1] - top) * px_per_cell[0]
    uv_f = np.stack([np.clip(px / aw, 0, 1), np.clip(1.0 - py / ah, 0, 1)], 1)
    uv = np.concatenate([uv_f, uv_f])
    return verts, faces, uv, [fig_rows, fig_cols]


def _texture(rgba: np.ndarray, fg: np.ndarray):
    """RGB texture at analysis size, colours outside the figure bled from the nearest figure pixel."""
    from PIL import Image
    from scipy import ndimage

    inner = ndimage.binary_erosion(fg)
    src = inner if inner.any() else fg
    _, (iy, ix) = ndimage.distance_transform_edt(~src, return_indices=True)
    rgb = rgba[..., :3][iy, ix]
    rgb[inner] = rgba[..., :3][inner]
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


def _check_params(height_m: float, thickness: float, resolution: int, smooth: float) -> None:
    if not (np.isfinite(height_m) and 0.01 <= height_m <= 100):
        raise AvatarError("height_m", f"{height_m} is out of range", "give the figure height in metres, e.g. 1.7")
    if not (np.isfinite(thickness) and 0.01 <= thickness <= 5):
        raise AvatarError("thickness", f"{thickness} is out of range", "use 0.05..2 (0.5 gives round limbs)")
    if not (32 <= int(resolution) <= 2048):
        raise AvatarError("resolution", f"{resolution} is out of range", "use 64..1024 cells (256 is the default)")
    if not (np.isfinite(smooth) and 0 <= smooth <= 10):
        raise AvatarError("smooth", f"{smooth} is out of range", "use 0 (raw pixels) .. 3; 1 is the default")


def silhouette_mesh(
    rgba: np.ndarray,
    *,
    height_m: float = 1.7,
    thickness: float = 0.5,
    resolution: int = 256,
    smooth: float = 1.0,
    what: str = "image",
):
    """Build the inflated mesh in memory: (trimesh.Trimesh with texture, foreground source)."""
    import trimesh
    from trimesh.visual.material import PBRMaterial
    from trimesh.visual.texture import TextureVisuals

    _check_params(height_m, thickness, resolution, smooth)
    small = _downscale(_as_rgba(rgba, what), ANALYSIS_MAX_SIDE)
    fg, source = foreground_mask(small, what)
    verts, faces, uv, grid = _build(
        fg, int(resolution), float(height_m), float(thickness), float(smooth), small.shape[:2]
    )
    material = PBRMaterial(
        name="silhouette", baseColorTexture=_texture(small, fg), metallicFactor=0.0, roughnessFactor=0.9
    )
    mesh = trimesh.Trimesh(vertices=verts, faces=faces, process=False, visual=TextureVisuals(uv=uv, material=material))
    mesh.metadata["grid"] = grid
    return mesh, source


def image_to_mesh(
    rgba: np.ndarray,
    out_path: str | Path,
    *,
    height_m: float = 1.7,
    thickness: float = 0.5,
    resolution: int = 256,
    smooth: float = 1.0,
    what: str = "image",
) -> MeshInfo:
    """Inflate the figure in ``rgba`` ((H, W, 4) uint8) into a closed textured GLB at ``out_path``.

    ``what`` names the picture input in errors. Nothing is written when anything fails.
    """
    t0 = time.perf_counter()
    mesh, source = silhouette_mesh(
        rgba, height_m=height_m, thickness=thickness, resolution=resolution, smooth=smooth, what=what
    )
    watertight, winding = bool(mesh.is_watertight), bool(mesh.is_winding_consistent)
    volume = float(mesh.volume)
    if not (watertight and winding and volume > 0):
        raise AvatarError(
            what,
            f"internal error: the inflated mesh is not closed (watertight={watertight}, "
            f"winding consistent={winding}, volume={volume:.4g})",
            "try another resolution or smooth value and report the picture",
        )
    buf = io.BytesIO()
    mesh.export(buf, file_type="glb", include_normals=True)
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(buf.getvalue())
    tex = mesh.visual.material.baseColorTexture
    info = MeshInfo(
        vertices=len(mesh.vertices),
        faces=len(mesh.faces),
        watertight=watertight,
        winding_consistent=winding,
        volume_m3=round(volume, 6),
        bounds=np.round(mesh.bounds, 6).tolist(),
        height_m=float(height_m),
        foreground=source,
        grid=list(mesh.metadata["grid"]),
        texture_size=[tex.width, tex.height],
        duration_s=round(time.perf_counter() - t0, 4),
    )
    log.info(
        "silhouette mesh %s: %d faces, grid %s, %s, %.2f s", out_path, info.faces, info.grid, source, info.duration_s
    )
    return info
