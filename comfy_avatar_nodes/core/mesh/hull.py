"""Turnaround sheet (2 to 4 orthographic views) -> closed textured mesh by visual-hull carving, on the CPU.

Character artists draw model sheets: front, side, back. Those are (nearly) orthographic projections,
so each picture's outline is the shadow the figure casts along one axis, and a point of space can
belong to the figure only if it falls inside every outline: that set is the *visual hull*. With a
front and a side view the hull has the real depth of the side view at every height (the one-view
silhouette inflation can only guess depth from the outline's width, and its back mirrors its front).
Still not a learned reconstruction: what no view sees as outline (a hollow between the legs seen from
neither side, the inside of a cupped hand) is filled in, and cross-sections are rounded boxes.

Steps:

1. Foreground of each view (core/mesh/silhouette.py's mask: alpha or a background key).
2. Alignment: every figure is scaled to ``height_m`` (its outline's top to its feet line), its feet
   line put at Y=0 and its outline centred: front/back on X=0, side views on Z=0. Which way the figure
   in the side view faces (picture left or right) decides which side of the body it shows; ``auto``
   reads it off the feet, which point forward. A back or other-side view must match the outline of
   the view it mirrors (intersection over union >= ``MIN_MIRROR_IOU``): a different pose or figure is
   refused, not carved into a wrong shape. So is a side view that cannot be the same standing figure's:
   deeper than ``MAX_DEPTH_RATIO`` times the front's width (a dog's profile gave a 2.5 m slab), an outline
   that is the front's again (``MAX_SIDE_AS_FRONT_IOU``: depth = width), and a view whose figure touches
   the picture's top or bottom edge where the others have a margin (cut off: scaled to the full height,
   its knees would become feet).
3. Carving: a voxel grid (``resolution`` voxels over the height) keeps the voxels inside every
   outline, and in each horizontal slice only the ellipse inscribed in each box a front run and a side
   run make (both outlines stay exact; limbs come out round, not square); the occupancy is Gaussian-smoothed and turned into a surface with marching cubes
   (scikit-image), then Taubin-smoothed (trimesh), which rounds the voxel steps without shrinking it.
4. Texture: one atlas with a tile per direction (front, back, left, right). A tile pixel is the surface
   point seen from its direction (depth and normal from the voxel field); its colour blends every view
   that sees that point, weighted by how squarely the point faces it (normal . view direction, squared),
   so neighbouring tiles agree at their seams. A direction with no picture of its own takes the opposite
   view's picture projected through the body (the back then mirrors the front, as in silhouette
   inflation) at a lower weight; the mesh metadata says which view textured which direction. Each
   triangle takes its UVs from the tile of the direction it faces best among those that see it.

Output: Y up, metres, feet at Y=0, figure height = height_m, centred on X=0 and Z=0, facing +Z; a GLB
written atomically. Coordinates used below: the front camera looks from +Z, its picture's right is +X
(the model's left); a side picture in which the figure faces left was taken from +X (the model's left
side), one in which it faces right from -X.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..assets import atomic_path
from ..errors import AvatarError
from .silhouette import ANALYSIS_MAX_SIDE, _as_rgba, _downscale, _texture, foreground_mask

log = logging.getLogger("comfy_avatar.hull")

VIEW_NAMES = ("front", "side", "back", "other_side")
SIDE_FACING = ("auto", "left", "right")
MIN_MIRROR_IOU = 0.72  # a back / other-side outline must overlap the mirrored front / side this much
MAX_DEPTH_RATIO = 1.6  # a side outline this many times deeper than the front is wide: not the same standing figure
MAX_SIDE_AS_FRONT_IOU = 0.9  # a side outline overlapping the front's this much is a front view again
CUT_SHARE = 0.3  # an outline meeting the picture's edge this wide (share of its width just inside): cut there
FALLBACK_WEIGHT = 0.3  # weight of a picture projected through the body (no view of that direction)
ROUND_SECTIONS = True  # elliptic cross-sections inside the hull's boxes (see _rounded)
MAX_RESOLUTION = 384  # voxels over the height the node's resolution is clamped to
TILE_UPSAMPLE = 2  # texture tile pixels per voxel
PAD_VOXELS = 3  # empty voxels around the figure, so marching cubes closes every surface
FEET_BAND = 0.04  # bottom share of the height read as feet when finding where a side view faces
SHIN_BAND = (0.10, 0.28)  # share of the height read as shins (the feet point forward of them)

# Directions as (name, unit vector towards the camera). The picture's right is cross(-d, +Y).
DIRECTIONS: dict[str, np.ndarray] = {
    "front": np.array([0.0, 0.0, 1.0]),
    "back": np.array([0.0, 0.0, -1.0]),
    "left": np.array([1.0, 0.0, 0.0]),
    "right": np.array([-1.0, 0.0, 0.0]),
}
OPPOSITE = {"front": "back", "back": "front", "left": "right", "right": "left"}
UP = np.array([0.0, 1.0, 0.0])


@dataclass
class AlignedView:
    """One picture and how its pixels map to world coordinates (orthographic camera on ``direction``)."""

    name: str  # the node input: front / side / back / other_side
    direction: str  # front / back / left / right: where its camera is
    rgba: np.ndarray  # analysis-size picture
    mask: np.ndarray  # figure mask (bool, same size)
    foreground: str  # "alpha" or "background_key"
    scale: float  # metres per pixel
    feet_row: float  # pixel row of the feet line (bottom edge of the lowest figure row)
    centre_col: float  # pixel column of the figure's centre
    texture: np.ndarray | None = field(repr=False, default=None)  # RGB, colours bled outwards from the figure

    @property
    def d(self) -> np.ndarray:
        return DIRECTIONS[self.direction]

    @property
    def right(self) -> np.ndarray:
        return np.cross(-self.d, UP)

    def project(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (n, 3) -> (rows, cols) in picture pixels (continuous; pixel i spans [i, i+1))."""
        cols = self.centre_col + (p @ self.right) / self.scale
        rows = self.feet_row - p[:, 1] / self.scale
        return rows, cols

    def summary(self) -> dict[str, Any]:
        return {
            "view": self.name,
            "direction": self.direction,
            "foreground": self.foreground,
            "picture_size": [int(self.rgba.shape[1]), int(self.rgba.shape[0])],
            "figure_px": [int(self.mask.any(0).sum()), int(self.mask.any(1).sum())],
            "metres_per_px": round(self.scale, 6),
        }


@dataclass
class HullInfo:
    """What views_to_mesh made; JSON-safe through to_dict() (used as asset metadata)."""

    method: str
    views: list[str]
    vertices: int
    faces: int
    watertight: bool
    winding_consistent: bool
    volume_m3: float
    bounds: list[list[float]]
    height_m: float
    depth_m: float
    width_m: float
    voxel_m: float
    grid: list[int]  # voxels along [x, y, z]
    texture_size: list[int]
    texture_sources: dict[str, str]  # direction -> "front view", "front view mirrored (no back view)", ...
    side_facing: str  # where the figure in the side view faces: left / right (and how found)
    mirror_iou: dict[str, float]  # back / other_side outline overlap with the view it mirrors
    alignment: list[dict[str, Any]]
    warnings: list[str]
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- alignment


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def side_facing(mask: np.ndarray) -> tuple[str, float]:
    """Which way the figure in a side view faces in the picture ("left"/"right") and how clearly
    (the feet's forward reach past the shins, as a share of the height; ~0 means unclear).

    Feet point forward: the bottom band's centre lies in front of the shins' centre.
    """
    r0, r1, _, _ = _bbox(mask)
    h = r1 - r0
    cols = np.arange(mask.shape[1], dtype=float)

    def centre(lo: float, hi: float) -> float | None:
        band = mask[int(r1 - hi * h) : int(np.ceil(r1 - lo * h))]
        w = band.sum(0).astype(float)
        return float((w * cols).sum() / w.sum()) if w.sum() else None

    feet, shins = centre(0.0, FEET_BAND), centre(*SHIN_BAND)
    if feet is None or shins is None:
        return "left", 0.0
    reach = (feet - shins) / h
    return ("right" if reach > 0 else "left"), abs(reach)


def _align(name: str, direction: str, rgba: np.ndarray, height_m: float) -> AlignedView:
    small = _downscale(_as_rgba(rgba, name), ANALYSIS_MAX_SIDE)
    mask, source = foreground_mask(small, name)
    r0, r1, c0, c1 = _bbox(mask)
    view = AlignedView(
        name=name,
        direction=direction,
        rgba=small,
        mask=mask,
        foreground=source,
        scale=height_m / (r1 - r0),
        feet_row=float(r1),
        centre_col=0.5 * (c0 + c1),
    )
    view.texture = np.asarray(_texture(small, mask))
    return view


def _sample_mask(view: AlignedView, rows: np.ndarray, cols: np.ndarray, blur_px: float) -> np.ndarray:
    """Fractional coverage of ``view``'s mask at picture positions (bilinear over a slightly blurred mask)."""
    from scipy import ndimage

    m = view.mask.astype(np.float32)
    if blur_px > 0.5:
        m = ndimage.gaussian_filter(m, sigma=0.5 * blur_px)
    return ndimage.map_coordinates(m, [rows - 0.5, cols - 0.5], order=1, mode="constant", cval=0.0)


# ----------------------------------------------------------------------------- carving


@dataclass
class _Grid:
    origin: np.ndarray  # world position of voxel (0, 0, 0)'s centre
    voxel: float
    shape: tuple[int, int, int]  # (nx, ny, nz)

    def axis(self, i: int) -> np.ndarray:
        return self.origin[i] + self.voxel * np.arange(self.shape[i])


def _grid(front: AlignedView, side: AlignedView, height_m: float, resolution: int) -> _Grid:
    voxel = height_m / resolution

    def extent(view: AlignedView) -> tuple[float, float]:
        _, _, c0, c1 = _bbox(view.mask)
        a, b = (c0 - view.centre_col) * view.scale, (c1 - view.centre_col) * view.scale
        return min(a, b), max(a, b)

    x0, x1 = extent(front)
    z0, z1 = extent(side)  # symmetric about 0 along the side picture's horizontal axis
    lo = np.array([x0, 0.0, z0]) - PAD_VOXELS * voxel
    hi = np.array([x1, height_m, z1]) + PAD_VOXELS * voxel
    shape = tuple(int(np.ceil((hi[i] - lo[i]) / voxel)) + 1 for i in range(3))
    return _Grid(origin=lo, voxel=voxel, shape=shape)  # type: ignore[arg-type]


def _coverage(view: AlignedView, grid: _Grid) -> np.ndarray:
    """The view's outline sampled on the grid's plane it projects onto: (nx, ny) or (nz, ny)."""
    horiz = 0 if view.direction in ("front", "back") else 2
    h = grid.axis(horiz)
    y = grid.axis(1)
    hh, yy = np.meshgrid(h, y, indexing="ij")
    p = np.zeros(hh.shape + (3,))
    p[..., horiz], p[..., 1] = hh, yy
    rows, cols = view.project(p.reshape(-1, 3))
    cov = _sample_mask(view, rows, cols, grid.voxel / view.scale)
    return cov.reshape(hh.shape)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a >= 0.5, b >= 0.5
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _runs1d(row: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), (np.flatnonzero(d == -1) - 1).tolist()))


def _rounded(xy: np.ndarray, zy: np.ndarray) -> np.ndarray:
    """Elliptic cross-sections: in every horizontal slice, each (front run, side run) rectangle of the hull
    holds the ellipse inscribed in it (soft edge one voxel wide). An ellipse spans its rectangle's full
    width at its middle depth and its full depth at its middle, so both outlines stay exactly as drawn,
    while limbs, torso and head get round cross-sections instead of boxes (two silhouettes cannot tell
    them apart; round is what bodies are)."""
    nx, ny = xy.shape
    nz = zy.shape[0]
    out = np.zeros((nx, ny, nz), np.float32)
    xi = np.arange(nx, dtype=np.float32)[:, None]
    zi = np.arange(nz, dtype=np.float32)[None, :]
    for y in range(ny):
        xruns, zruns = _runs1d(xy[:, y] >= 0.5), _runs1d(zy[:, y] >= 0.5)
        if not xruns or not zruns:
            continue
        best = np.zeros((nx, nz), np.float32)
        for x0, x1 in xruns:
            ax, cx = 0.5 * (x1 - x0 + 1), 0.5 * (x0 + x1)
            for z0, z1 in zruns:
                az, cz = 0.5 * (z1 - z0 + 1), 0.5 * (z0 + z1)
                r = np.sqrt(((xi - cx) / ax) ** 2 + ((zi - cz) / az) ** 2)
                np.maximum(best, np.clip(0.5 + (1.0 - r) * min(ax, az), 0.0, 1.0), out=best)
        out[:, y, :] = best
    return out


def _carve(covs: dict[str, np.ndarray], smooth: float) -> np.ndarray:
    """Occupancy field (nx, ny, nz) in 0..1: inside every outline (the smallest coverage of any view),
    with elliptic cross-sections (_rounded), then smoothed."""
    from scipy import ndimage

    xy = np.minimum.reduce([c for k, c in covs.items() if k in ("front", "back")])  # (nx, ny)
    zy = np.minimum.reduce([c for k, c in covs.items() if k in ("left", "right")])  # (nz, ny)
    field_ = np.minimum(xy[:, :, None], zy.T[None, :, :]).astype(np.float32)
    if ROUND_SECTIONS:
        field_ = np.minimum(field_, _rounded(xy, zy))
    if smooth > 0:
        field_ = ndimage.gaussian_filter(field_, sigma=0.6 * smooth, mode="constant")
    return field_


def _surface(field_: np.ndarray, grid: _Grid, smooth: float):
    """Marching cubes at 0.5, specks dropped, Taubin smoothing: (vertices, faces) in world units."""
    import trimesh
    from skimage.measure import marching_cubes

    verts, faces, _normals, _values = marching_cubes(
        field_, level=0.5, spacing=(grid.voxel,) * 3, allow_degenerate=False
    )
    verts = verts + grid.origin
    mesh: Any = trimesh.Trimesh(vertices=verts, faces=faces, process=True)
    parts = mesh.split(only_watertight=False)
    if len(parts) > 1:
        biggest = max(len(p.faces) for p in parts)
        kept = [p for p in parts if len(p.faces) >= 0.01 * biggest]
        mesh = trimesh.util.concatenate(kept)
        log.debug("hull: kept %d of %d pieces", len(kept), len(parts))
    if smooth > 0:
        trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=0.53, iterations=max(2, round(6 * smooth)))
    if mesh.volume < 0:
        mesh.invert()
    return mesh


# ----------------------------------------------------------------------------- texture


def _depth_maps(field_: np.ndarray, grid: _Grid) -> dict[str, dict[str, np.ndarray]]:
    """Per direction: for every ray of the grid plane facing it, the first surface voxel's depth along the
    direction (world units, larger = nearer the camera; -inf where the ray misses) and index."""
    occ = field_ >= 0.5
    out = {}
    for name, d in DIRECTIONS.items():
        axis = int(np.flatnonzero(d)[0])
        sign = d[axis]
        a = np.moveaxis(occ, axis, -1)  # (..., n_along)
        n = a.shape[-1]
        hit = a.any(-1)
        if sign > 0:
            idx = n - 1 - np.argmax(a[..., ::-1], axis=-1)
        else:
            idx = np.argmax(a, axis=-1)
        coord = grid.origin[axis] + grid.voxel * idx
        depth = np.where(hit, sign * coord, -np.inf)
        out[name] = {"axis": axis, "index": idx, "hit": hit, "depth": depth}
    return out


def _visible(points: np.ndarray, direction: str, maps: dict, grid: _Grid, tol: float) -> np.ndarray:
    d = DIRECTIONS[direction]
    m = maps[direction]
    axis = m["axis"]
    others = [i for i in range(3) if i != axis]
    idx = [
        np.clip(np.rint((points[:, i] - grid.origin[i]) / grid.voxel).astype(int), 0, grid.shape[i] - 1) for i in others
    ]
    front_depth = m["depth"][idx[0], idx[1]]
    return points @ d >= front_depth - tol


def _sample_rgb(view: AlignedView, points: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    rows, cols = view.project(points)
    assert view.texture is not None  # set by _align
    tex = view.texture.astype(np.float32)
    coords = [np.clip(rows - 0.5, 0, tex.shape[0] - 1), np.clip(cols - 0.5, 0, tex.shape[1] - 1)]
    return np.stack([ndimage.map_coordinates(tex[..., c], coords, order=1, mode="nearest") for c in range(3)], -1)


def _sources(views: dict[str, AlignedView]) -> dict[str, tuple[AlignedView, bool]]:
    """Direction -> (the picture that textures it, whether it is that direction's own view)."""
    by_dir = {v.direction: v for v in views.values()}
    out = {}
    for name in DIRECTIONS:
        if name in by_dir:
            out[name] = (by_dir[name], True)
        elif OPPOSITE[name] in by_dir:
            out[name] = (by_dir[OPPOSITE[name]], False)
    return out


def _blend(points: np.ndarray, normals: np.ndarray, sources: dict, maps: dict, grid: _Grid) -> np.ndarray:
    """Colour of surface points: every direction's picture weighted by (n . d)^2, views that do not see the
    point left out (a picture projected through the body is used only at FALLBACK_WEIGHT)."""
    tol = 2.5 * grid.voxel
    total = np.zeros((len(points), 3), np.float64)
    wsum = np.zeros(len(points), np.float64)
    for name, (view, own) in sources.items():
        facing = np.clip(normals @ DIRECTIONS[name], 0.0, None)
        if own:
            w = facing**2 * _visible(points, name, maps, grid, tol) + 1e-4
        else:
            w = FALLBACK_WEIGHT * facing**2 + 1e-6
        total += w[:, None] * _sample_rgb(view, points)
        wsum += w
    return total / wsum[:, None]


def _field_gradient(field_: np.ndarray) -> list[np.ndarray]:
    from scipy import ndimage

    return np.gradient(ndimage.gaussian_filter(field_, 1.0))


def _field_normals(g: list[np.ndarray], grid: _Grid, points: np.ndarray) -> np.ndarray:
    """Outward unit normals at world points: minus the occupancy field's gradient."""
    from scipy import ndimage

    idx = [(points[:, i] - grid.origin[i]) / grid.voxel for i in range(3)]
    n = -np.stack([ndimage.map_coordinates(gi, idx, order=1, mode="nearest") for gi in g], -1)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


@dataclass
class _Tile:
    direction: str
    h0: float  # world coordinate (along the tile's right vector) of the tile's left edge
    y1: float  # world Y of the tile's top edge
    px: float  # metres per tile pixel
    width: int
    height: int
    offset: int = 0  # column of the tile in the atlas

    def uv_px(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        right = np.cross(-DIRECTIONS[self.direction], UP)
        return self.offset + (p @ right - self.h0) / self.px, (self.y1 - p[:, 1]) / self.px


def _tile(
    direction: str, gradient: list[np.ndarray], grid: _Grid, maps: dict, sources: dict
) -> tuple[_Tile, np.ndarray]:
    """The direction's tile: blended colours of the surface seen from it (RGB uint8, outside bled)."""
    from scipy import ndimage

    m = maps[direction]
    axis = m["axis"]
    d = DIRECTIONS[direction]
    right = np.cross(-d, UP)
    h_axis = int(np.flatnonzero(right)[0])
    flip = right[h_axis] < 0
    depth = m["depth"]  # indexed [other axes in increasing order]
    hit = m["hit"]
    # reorder to (y, h) with h increasing to the picture's right, y from the top
    if h_axis < 1:
        depth_hy, hit_hy = depth, hit  # (h=x, y) when axis is z
    else:
        depth_hy, hit_hy = depth.T, hit.T  # axis x: (y, z) -> (z, y)
    img_depth = depth_hy.T[::-1]  # (y from top, h)
    img_hit = hit_hy.T[::-1]
    if flip:
        img_depth, img_hit = img_depth[:, ::-1], img_hit[:, ::-1]
    up = TILE_UPSAMPLE
    ny, nh = img_hit.shape
    px = grid.voxel / up
    h_coords = grid.axis(h_axis)
    h0 = (-h_coords[-1] if flip else h_coords[0]) - 0.5 * grid.voxel
    y1 = grid.axis(1)[-1] + 0.5 * grid.voxel
    tile = _Tile(direction=direction, h0=float(h0), y1=float(y1), px=px, width=nh * up, height=ny * up)
    # tile pixel centres -> world points on the surface seen from this direction
    rr, cc = np.meshgrid(np.arange(ny * up), np.arange(nh * up), indexing="ij")
    src_r, src_c = (rr + 0.5) / up - 0.5, (cc + 0.5) / up - 0.5
    finite = np.where(img_hit, img_depth, np.nan)
    fill = np.nan_to_num(finite, nan=float(np.nanmin(finite)) if np.isfinite(finite).any() else 0.0)
    dep = ndimage.map_coordinates(fill, [src_r, src_c], order=1, mode="nearest")
    inside = ndimage.map_coordinates(img_hit.astype(np.float32), [src_r, src_c], order=1, mode="nearest") > 0.25
    hval = h0 + (cc + 0.5) * px
    yval = y1 - (rr + 0.5) * px
    pts = np.zeros(rr.shape + (3,))
    pts[..., axis] = dep * d[axis]
    pts[..., h_axis] = hval * right[h_axis]
    pts[..., 1] = yval
    sel = pts[inside]
    rgb = np.zeros(rr.shape + (3,), np.float32)
    if len(sel):
        rgb[inside] = _blend(sel, _field_normals(gradient, grid, sel), sources, maps, grid)
        _, (iy, ix) = ndimage.distance_transform_edt(~inside, return_indices=True)
        rgb = rgb[iy, ix]
    return tile, np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _texture_mesh(mesh, field_: np.ndarray, grid: _Grid, views: dict[str, AlignedView]):
    """UVs + atlas: each face takes the tile of the best-facing direction that sees it."""
    import trimesh
    from PIL import Image
    from trimesh.visual.material import PBRMaterial
    from trimesh.visual.texture import TextureVisuals

    maps = _depth_maps(field_, grid)
    sources = _sources(views)
    gradient = _field_gradient(field_)
    tiles, images = [], []
    offset = 0
    for name in DIRECTIONS:
        tile, img = _tile(name, gradient, grid, maps, sources)
        tile.offset = offset
        offset += tile.width + 2
        tiles.append(tile)
        images.append(img)
    height = max(t.height for t in tiles)
    atlas = np.zeros((height, offset, 3), np.uint8)
    for t, img in zip(tiles, images):  # every tile is as tall as the grid; 2 px gutters between them
        atlas[: img.shape[0], t.offset : t.offset + t.width] = img
    # face -> tile: best facing among the directions that see its centre
    fn = mesh.face_normals
    centres = mesh.triangles_center
    tol = 2.5 * grid.voxel
    scores = np.stack(
        [
            np.where(
                _visible(centres - 0.5 * grid.voxel * DIRECTIONS[n], n, maps, grid, tol),
                fn @ DIRECTIONS[n],
                fn @ DIRECTIONS[n] - 2.0,
            )
            for n in DIRECTIONS
        ],
        1,
    )
    choice = scores.argmax(1)
    faces = mesh.faces
    key = faces * len(tiles) + choice[:, None]  # (vertex, tile) pairs
    uniq, inv = np.unique(key.ravel(), return_inverse=True)
    vid, tid = np.divmod(uniq, len(tiles))
    verts = mesh.vertices[vid]
    uv = np.zeros((len(uniq), 2))
    for i, t in enumerate(tiles):
        sel = tid == i
        u, v = t.uv_px(verts[sel])
        uv[sel, 0] = u / offset
        uv[sel, 1] = 1.0 - v / height
    material = PBRMaterial(
        name="turnaround", baseColorTexture=Image.fromarray(atlas, "RGB"), metallicFactor=0.0, roughnessFactor=0.9
    )
    textured = trimesh.Trimesh(
        vertices=verts, faces=inv.reshape(-1, 3), process=False, visual=TextureVisuals(uv=uv, material=material)
    )
    return textured, atlas


# ----------------------------------------------------------------------------- entry points


def _check(height_m: float, resolution: int, smooth: float, facing: str) -> None:
    if not (np.isfinite(height_m) and 0.01 <= height_m <= 100):
        raise AvatarError("height_m", f"{height_m} is out of range", "give the figure height in metres, e.g. 1.7")
    if not 48 <= int(resolution) <= 512:
        raise AvatarError(
            "resolution",
            f"{resolution} voxels over the height is out of range for the visual hull",
            "use 64..512 (256 is the default; the voxel grid grows with its cube)",
        )
    if not (np.isfinite(smooth) and 0 <= smooth <= 10):
        raise AvatarError("smooth", f"{smooth} is out of range", "use 0 (raw voxels) .. 3; 1 is the default")
    if facing not in SIDE_FACING:
        raise AvatarError(
            "side_facing",
            f"{facing!r} is not one of {', '.join(SIDE_FACING)}",
            "say where the figure in the side picture faces, or auto",
        )


def align_views(
    views: dict[str, np.ndarray], *, height_m: float = 1.7, facing: str = "auto"
) -> tuple[dict[str, AlignedView], str, list[str]]:
    """The pictures, each aligned (scale, feet line, centre) with its camera direction; how the side view's
    facing was found; warnings. ``views`` maps front / side / back / other_side to RGBA arrays."""
    unknown = sorted(set(views) - set(VIEW_NAMES))
    if unknown:
        raise AvatarError("views", f"unknown view names {unknown}", f"use {', '.join(VIEW_NAMES)}")
    if "front" not in views:
        raise AvatarError("image", "no front view given", "connect the front view of the turnaround to 'image'")
    if "side" not in views:
        missing = "a back view" if "back" in views else "an other-side view"
        raise AvatarError(
            "side",
            f"is missing: {missing} alone adds no depth (its outline mirrors the front's)",
            "connect the side view of the turnaround; the visual hull's depth comes from it",
        )
    warnings: list[str] = []
    front = _align("front", "front", views["front"], height_m)
    side = _align("side", "left", views["side"], height_m)
    how = facing
    if facing == "auto":
        facing, reach = side_facing(side.mask)
        how = f"{facing} (auto: the feet reach {reach:.1%} of the height forward)"
        if reach < 0.01:
            warnings.append(
                "the side view's facing could not be read off the feet (they do not point clearly "
                "forward); assumed it faces left. Set side_facing if the avatar's depth looks reversed"
            )
            how = f"{facing} (auto, unclear: assumed)"
    side.direction = side_dir = "left" if facing == "left" else "right"
    out = {"front": front, "side": side}
    if "back" in views:
        out["back"] = _align("back", "back", views["back"], height_m)
    if "other_side" in views:
        out["other_side"] = _align("other_side", OPPOSITE[side_dir], views["other_side"], height_m)
    fw = np.ptp(np.nonzero(front.mask.any(0))[0]) * front.scale
    sw = np.ptp(np.nonzero(out["side"].mask.any(0))[0]) * out["side"].scale
    if sw > MAX_DEPTH_RATIO * fw:
        raise AvatarError(
            "side",
            f"its figure is {sw:.2f} m deep but the front's is only {fw:.2f} m wide (both scaled to "
            f"{height_m:g} m tall): a standing figure is not {MAX_DEPTH_RATIO:g}x deeper than wide, so this is "
            "another figure, a lying pose, or front and side are swapped; carving would make a slab",
            "connect the side view of the same figure in the same pose, standing, seen from its left or right",
        )
    if sw > 1.3 * fw:
        warnings.append(
            f"the side view's figure is {sw:.2f} m deep but the front's only {fw:.2f} m wide: are front "
            "and side swapped?"
        )
    same = _outline_iou(front, out["side"])
    if same >= MAX_SIDE_AS_FRONT_IOU:
        raise AvatarError(
            "side",
            f"its outline is the front's ({same:.0%} overlap once both are scaled to the same height): it is "
            "the front picture again, or a front or back view, not a side view; carving it would give the "
            "figure its width as depth",
            "connect a picture of the figure seen from its left or right side (a profile)",
        )
    # A view cut off by its picture's top or bottom edge is scaled to the full height like the others, so its
    # knees would become feet. Pictures cropped tight to the figure touch those edges too, so only a
    # difference between the views tells: one touches an edge where another has a margin.
    front_cut, front_margin = set(_cut_edges(front.mask)) & {"top", "bottom"}, _margins(front.mask)
    for name, view in out.items():
        if name == "front":
            continue
        cut, margin = set(_cut_edges(view.mask)) & {"top", "bottom"}, _margins(view.mask)
        for who, edges, other in ((name, cut & front_margin, "front"), ("front", front_cut & margin, name)):
            if edges:
                raise AvatarError(
                    who,
                    f"its figure touches the picture's {' and '.join(sorted(edges))} edge, where the {other} "
                    "view's has a margin: it looks cut off there, and the views are aligned by the figure's "
                    "full height (a cut view is scaled and placed wrong)",
                    "give each view with the whole figure, head to feet (a margin around it, as on a model "
                    "sheet, or every view cropped tight the same way)",
                )
    return out, how, warnings


def _margins(mask: np.ndarray) -> set[str]:
    """The top / bottom edges the figure keeps clear of (at least 2 empty rows)."""
    rows = np.flatnonzero(mask.any(1))
    return {e for e, clear in (("top", rows.min() >= 2), ("bottom", rows.max() <= len(mask) - 3)) if clear}


def _cut_edges(mask: np.ndarray) -> list[str]:
    """The picture edges the figure is cut by: its outline meets the edge about as wide as it is just
    inside (a cut through legs or a torso), not at a point (the round top of a head cropped tight)."""
    h, w = mask.shape
    band = max(2, int(0.03 * h))
    out = []
    for name, line, inside in (
        ("top", mask[0], mask[:band]),
        ("bottom", mask[-1], mask[-band:]),
        ("left", mask[:, 0], mask[:, :band].T),
        ("right", mask[:, -1], mask[:, -band:].T),
    ):
        widest = int(inside.sum(1).max())
        if int(line.sum()) > 2 and line.sum() >= CUT_SHARE * widest:
            out.append(name)
    return out


def _outline_iou(a: AlignedView, b: AlignedView) -> float:
    """Overlap of two views' outlines scaled to the same height, feet on one line, centres on one
    column (the better of b as drawn and b mirrored)."""
    from scipy import ndimage

    def canon(v: AlignedView) -> np.ndarray:
        r0, r1, c0, c1 = _bbox(v.mask)
        crop = v.mask[r0:r1, c0:c1].astype(np.float32)
        z = 128.0 / (r1 - r0)
        return ndimage.zoom(crop, z, order=1) >= 0.5

    ma, mb = canon(a), canon(b)
    h, w = max(ma.shape[0], mb.shape[0]), max(ma.shape[1], mb.shape[1])

    def place(m: np.ndarray) -> np.ndarray:
        out = np.zeros((h, w), bool)
        r, c = h - m.shape[0], (w - m.shape[1]) // 2
        out[r : r + m.shape[0], c : c + m.shape[1]] = m
        return out

    pa = place(ma)
    best = 0.0
    for m in (mb, mb[:, ::-1]):
        pb = place(m)
        union = (pa | pb).sum()
        best = max(best, float((pa & pb).sum() / union) if union else 0.0)
    return best


def hull_mesh(
    views: dict[str, np.ndarray],
    *,
    height_m: float = 1.7,
    resolution: int = 192,
    smooth: float = 1.0,
    facing: str = "auto",
):
    """Carve and texture in memory: (trimesh.Trimesh with texture, untextured closed trimesh, details dict)."""
    _check(height_m, resolution, smooth, facing)
    aligned, how, warnings = align_views(views, height_m=float(height_m), facing=facing)
    grid = _grid(aligned["front"], aligned["side"], float(height_m), int(resolution))
    covs = {v.direction: _coverage(v, grid) for v in aligned.values()}
    ious: dict[str, float] = {}
    for name, (a, b) in {
        "back": ("back", "front"),
        "other_side": (OPPOSITE[aligned["side"].direction], aligned["side"].direction),
    }.items():
        if name in aligned:
            ious[name] = round(_iou(covs[a], covs[b]), 4)
            if ious[name] < MIN_MIRROR_IOU:
                mirrored = "front" if name == "back" else "side"
                raise AvatarError(
                    name,
                    f"its outline matches the {mirrored} view's mirror image only {ious[name]:.0%} "
                    f"(at least {MIN_MIRROR_IOU:.0%} needed): a different pose, figure or camera angle "
                    "would carve a wrong shape",
                    f"use a {name.replace('_', ' ')} view of the same figure in the same pose, drawn "
                    f"straight on, or leave '{name}' unconnected",
                )
    field_ = _carve(covs, float(smooth))
    closed = _surface(field_, grid, float(smooth))
    textured, atlas = _texture_mesh(closed, field_, grid, aligned)
    sources = {
        d: (f"{v.name} view" if own else f"{v.name} view projected through the body (no {d} view)")
        for d, (v, own) in _sources(aligned).items()
    }
    details = {
        "aligned": aligned,
        "facing": how,
        "warnings": warnings,
        "iou": ious,
        "grid": grid,
        "sources": sources,
        "atlas": atlas,
    }
    return textured, closed, details


def views_to_mesh(
    views: dict[str, np.ndarray],
    out_path: str | Path,
    *,
    height_m: float = 1.7,
    resolution: int = 192,
    smooth: float = 1.0,
    facing: str = "auto",
) -> HullInfo:
    """Carve the visual hull of a turnaround (front + side, optional back and other side) into a closed,
    textured GLB at ``out_path``. Nothing is written when anything fails."""
    t0 = time.perf_counter()
    clamped = []
    if int(resolution) > MAX_RESOLUTION:
        clamped.append(
            f"resolution {resolution} is more than the visual hull uses: carved at {MAX_RESOLUTION} voxels "
            "over the height (the voxel grid grows with the cube of it)"
        )
        resolution = MAX_RESOLUTION
    textured, closed, det = hull_mesh(views, height_m=height_m, resolution=resolution, smooth=smooth, facing=facing)
    watertight, winding = bool(closed.is_watertight), bool(closed.is_winding_consistent)
    volume = float(closed.volume)
    if not (winding and volume > 0):
        raise AvatarError(
            "views",
            f"internal error: the carved surface is not closed (watertight={watertight}, "
            f"winding consistent={winding}, volume={volume:.4g})",
            "try another resolution or smooth value and report the pictures",
        )
    buf = io.BytesIO()
    textured.export(buf, file_type="glb")  # no normals: split seam vertices must merge on import
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(buf.getvalue())
    lo, hi = closed.bounds
    grid: _Grid = det["grid"]
    info = HullInfo(
        method="visual-hull",
        views=[v for v in VIEW_NAMES if v in views],
        vertices=len(textured.vertices),
        faces=len(textured.faces),
        watertight=watertight,
        winding_consistent=winding,
        volume_m3=round(volume, 6),
        bounds=np.round(closed.bounds, 6).tolist(),
        height_m=float(height_m),
        depth_m=round(float(hi[2] - lo[2]), 4),
        width_m=round(float(hi[0] - lo[0]), 4),
        voxel_m=round(grid.voxel, 6),
        grid=list(grid.shape),
        texture_size=[int(det["atlas"].shape[1]), int(det["atlas"].shape[0])],
        texture_sources=det["sources"],
        side_facing=det["facing"],
        mirror_iou=det["iou"],
        alignment=[v.summary() for v in det["aligned"].values()],
        warnings=clamped + det["warnings"],
        duration_s=round(time.perf_counter() - t0, 4),
    )
    for w in info.warnings:
        log.warning("turnaround: %s", w)
    log.info(
        "visual hull %s: %d faces from %s, grid %s, %.2f s",
        out_path,
        info.faces,
        "+".join(info.views),
        info.grid,
        info.duration_s,
    )
    return info
