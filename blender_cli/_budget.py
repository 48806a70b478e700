"""The triangle budget of a VRM, and the watertight remesh (runs INSIDE Blender: bpy + numpy).

Web VRM viewers want avatars of tens of thousands of triangles, and everything after this step costs
at least linear time in the mesh size, automatic weights more (heat diffusion over the surface: a
276k-face mesh took 80 s to weight, 30k faces 5 s). So the budget is met *before* the skeleton is fitted
and the weights computed, by one of two means, whichever is cheaper for the reduction asked:

- a collapse Decimate (first in the stack, applied) when the mesh is at most ``REMESH_ABOVE`` times over
  budget: it keeps UVs, materials and the shape's features, but costs ~30-40 us per input triangle;
- a voxel remesh sized to the budget (triangles ~ 2 x area / voxel^2) when it is further over: OpenVDB
  is near-linear in the input and fast, the result is one closed surface (automatic weights need that
  anyway), and a short Decimate then trims it to the budget.

Remeshing loses the UVs (the remesher's own transfer copies the nearest corner: blocky texture), so
they are projected back from the original surface: every new vertex takes the UV of the nearest point
of the original surface (barycentric), and every new face also finds the original triangle nearest its
centre and projects its corners onto that triangle's plane. A face whose vertices' UVs spread over more
than ``SEAM_UV`` straddles a UV seam (a turnaround atlas has one between every two views: a jump of a
tile's width, while neighbouring vertices of one island differ by ~0.01) and takes its own projection,
so no triangle blends two UV islands; every other face keeps one UV per vertex, so the exporter splits
vertices only along seams. A Data Transfer modifier does the same but 5-20x slower.
"""

from __future__ import annotations

import math
import time

import bpy
import numpy as np
from _job import JobError

REMESH_ABOVE = 4.0  # remesh (instead of a plain Decimate) when the mesh has more than 4x the budget
REMESH_TARGET = 0.9  # size the remesh voxel for this share of the budget (the trim Decimate does the rest)
FINEST_VOXEL = 1 / 260  # never remesh finer than this share of the height (memory, time)
SEAM_UV = 0.06  # a face whose vertices' UVs spread more than this lies across a UV seam


def _verts(me: bpy.types.Mesh) -> np.ndarray:
    co = np.empty(len(me.vertices) * 3, dtype=np.float64)
    me.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def triangle_count(me: bpy.types.Mesh) -> int:
    me.calc_loop_triangles()
    return len(me.loop_triangles)


def _loop_triangles(me: bpy.types.Mesh) -> tuple[np.ndarray, np.ndarray]:
    """(vertex indices (t, 3), loop indices (t, 3)) of the mesh's triangulation."""
    me.calc_loop_triangles()
    n = len(me.loop_triangles)
    tv = np.empty(n * 3, dtype=np.int64)
    tl = np.empty(n * 3, dtype=np.int64)
    me.loop_triangles.foreach_get("vertices", tv)
    me.loop_triangles.foreach_get("loops", tl)
    return tv.reshape(-1, 3), tl.reshape(-1, 3)


def surface_area(me: bpy.types.Mesh) -> float:
    v = _verts(me)
    tv, _ = _loop_triangles(me)
    a, b, c = v[tv[:, 0]], v[tv[:, 1]], v[tv[:, 2]]
    return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())


def _barycentric(
    src_v: np.ndarray, src_t: np.ndarray, tri: np.ndarray, p: np.ndarray, lo: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Barycentric weights of points ``p`` in source triangles ``tri`` (projected onto their planes),
    each weight clipped to [lo, 1 - 2 lo]."""
    a, b, c = (src_v[src_t[tri, k]] for k in range(3))
    n = np.cross(b - a, c - a)
    nn = np.maximum((n * n).sum(1), 1e-30)
    p = p - ((p - a) * n).sum(1)[:, None] * n / nn[:, None]
    v0, v1, v2 = b - a, c - a, p - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = np.where(np.abs(d00 * d11 - d01 * d01) > 1e-30, d00 * d11 - d01 * d01, 1.0)
    wb = np.clip((d11 * d20 - d01 * d21) / den, lo, 1 - 2 * lo)
    wc = np.clip((d00 * d21 - d01 * d20) / den, lo, 1 - 2 * lo)
    if lo >= 0:  # inside the triangle: renormalise
        wa = np.clip(1.0 - wb - wc, 0.0, 1.0)
        total = wa + wb + wc
        return wa / total, wb / total, wc / total
    return 1.0 - wb - wc, wb, wc


def _nearest(tree, points: np.ndarray) -> np.ndarray:
    from mathutils import Vector

    out = np.zeros(len(points), dtype=np.int64)
    find = tree.find_nearest
    for i, c in enumerate(points.tolist()):
        hit = find(Vector(c))
        if hit[2] is not None:
            out[i] = hit[2]
    return out


def _project_uvs(
    src_v: np.ndarray,
    src_t: np.ndarray,
    src_uvs: list[np.ndarray],
    me: bpy.types.Mesh,
    steps: dict,
    tree,
    tri_of_poly: np.ndarray,
) -> None:
    """UVs of ``me``'s loops from the original surface: per vertex, per face across seams (see the docstring).
    ``tree``: a BVH of the original mesh, whose hits are polygon indices (``tri_of_poly`` maps them to the
    loop triangles ``src_t`` indexes)."""
    v = _verts(me)
    n_poly = len(me.polygons)
    loop_start = np.empty(n_poly, dtype=np.int64)
    loop_total = np.empty(n_poly, dtype=np.int64)
    me.polygons.foreach_get("loop_start", loop_start)
    me.polygons.foreach_get("loop_total", loop_total)
    loop_vert = np.empty(len(me.loops), dtype=np.int64)
    me.loops.foreach_get("vertex_index", loop_vert)
    poly_of_loop = np.repeat(np.arange(n_poly), loop_total)
    centres = np.zeros((n_poly, 3))
    np.add.at(centres, poly_of_loop, v[loop_vert])
    centres /= loop_total[:, None]
    vtri = tri_of_poly[_nearest(tree, v)]  # per vertex: the nearest source triangle
    va, vb, vc = _barycentric(src_v, src_t, vtri, v, 0.0)
    ftri = tri_of_poly[_nearest(tree, centres)][poly_of_loop]  # per loop: its face's source triangle
    fa, fb, fc = _barycentric(src_v, src_t, ftri, v[loop_vert], -0.5)
    lt = vtri[loop_vert]
    wa, wb, wc = va[loop_vert], vb[loop_vert], vc[loop_vert]
    for layer, uv in zip(me.uv_layers, src_uvs):
        per_vertex = uv[lt, 0] * wa[:, None] + uv[lt, 1] * wb[:, None] + uv[lt, 2] * wc[:, None]
        per_face = uv[ftri, 0] * fa[:, None] + uv[ftri, 1] * fb[:, None] + uv[ftri, 2] * fc[:, None]
        spread = (
            np.maximum.reduceat(per_vertex, loop_start, axis=0) - np.minimum.reduceat(per_vertex, loop_start, axis=0)
        ).max(1)
        seam = spread[poly_of_loop] > SEAM_UV
        out = np.where(seam[:, None], per_face, per_vertex)
        layer.data.foreach_set("uv", out.astype(np.float32).ravel())
    me.update()


def remesh(obj: bpy.types.Object, voxel: float, steps: dict | None = None) -> None:
    """Voxel remesh to one closed surface; UVs projected back from the original surface. ``steps``
    gets the seconds of each part."""
    steps = {} if steps is None else steps
    t0 = time.perf_counter()
    me = obj.data
    src_uvs: list[np.ndarray] = []
    names: list[str] = []
    source = None
    if me.uv_layers:
        src_v = _verts(me)
        src_t, loops = _loop_triangles(me)
        poly = np.empty(len(src_t), dtype=np.int64)
        me.loop_triangles.foreach_get("polygon_index", poly)
        tri_of_poly = np.zeros(len(me.polygons), dtype=np.int64)
        tri_of_poly[poly[::-1]] = np.arange(len(poly))[::-1]  # each polygon's first triangle
        # a copy of the original to search: a BVH built from the object runs in C (from Python lists it
        # took 4 s for 450k triangles)
        source = obj.copy()
        source.data = me.copy()
        source.modifiers.clear()
        bpy.context.scene.collection.objects.link(source)
        for layer in me.uv_layers:
            uv = np.empty(len(me.loops) * 2)
            layer.data.foreach_get("uv", uv)
            src_uvs.append(uv.reshape(-1, 2)[loops])  # (t, 3, 2)
            names.append(layer.name)
    steps["read_source"] = round(time.perf_counter() - t0, 3)
    me.remesh_voxel_size = voxel
    me.use_remesh_preserve_attributes = True
    me.use_remesh_fix_poles = True
    bpy.ops.object.select_all(action="DESELECT")
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    t0 = time.perf_counter()
    result = bpy.ops.object.voxel_remesh()
    steps["voxel_remesh"] = round(time.perf_counter() - t0, 3)
    if result != {"FINISHED"} or len(obj.data.polygons) == 0:
        raise JobError(
            f"mesh: voxel remesh at {voxel:.4f} m produced no surface (set remesh_voxel smaller than the thinnest limb)"
        )
    if src_uvs:
        me = obj.data
        for name in names:
            if me.uv_layers.get(name) is None:
                me.uv_layers.new(name=name)
        from mathutils.bvhtree import BVHTree

        t0 = time.perf_counter()
        tree = BVHTree.FromObject(source, bpy.context.evaluated_depsgraph_get())
        steps["bvh_build"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        _project_uvs(src_v, src_t, src_uvs, me, steps, tree, tri_of_poly)
        steps["uv_projection"] = round(time.perf_counter() - t0, 3)
    if source is not None:
        data = source.data
        bpy.data.objects.remove(source, do_unlink=True)
        bpy.data.meshes.remove(data)


def decimate(obj: bpy.types.Object, max_triangles: int) -> None:
    """Collapse-decimate to at most ``max_triangles`` triangles (UVs and materials kept)."""
    n = triangle_count(obj.data)
    if max_triangles <= 0 or n <= max_triangles:
        return
    bpy.ops.object.select_all(action="DESELECT")
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    mod = obj.modifiers.new("Decimate", "DECIMATE")
    mod.ratio = 0.995 * max_triangles / n
    if len(obj.modifiers) > 1:  # a skinned mesh's Armature modifier: decimate the mesh itself, first
        bpy.ops.object.modifier_move_to_index(modifier=mod.name, index=0)
    bpy.ops.object.modifier_apply(modifier=mod.name)


def budget_voxel(me: bpy.types.Mesh, max_triangles: int, height: float) -> float:
    """The remesh voxel that gives about REMESH_TARGET x the budget (triangles ~ 2 area / voxel^2)."""
    voxel = math.sqrt(2.0 * surface_area(me) / (REMESH_TARGET * max_triangles))
    return max(voxel, FINEST_VOXEL * height)


def make_ready(obj: bpy.types.Object, *, closed: bool, height: float, remesh_voxel: float, max_triangles: int) -> dict:
    """Watertight + within the triangle budget, in that one pass; what was done (for the result and the
    node's message): action, triangles before/after, the voxel if remeshed, and why."""
    before = triangle_count(obj.data)
    over = max_triangles > 0 and before > max_triangles
    reasons = []
    voxel = 0.0
    if remesh_voxel > 0:
        voxel = remesh_voxel
        reasons.append(f"remesh_voxel {remesh_voxel:g} m asked for")
    elif remesh_voxel == 0 and not closed:
        voxel = height / 110.0  # ~16-20k triangles for a figure: a Decimate trims it to a smaller budget
        reasons.append("not one closed surface (automatic weights need one)")
    elif remesh_voxel == 0 and over and before > REMESH_ABOVE * max_triangles:
        voxel = budget_voxel(obj.data, max_triangles, height)
        reasons.append(
            f"{before} triangles are more than {REMESH_ABOVE:g}x the budget (a remesh is faster than decimating them)"
        )
    actions = []
    steps: dict[str, float] = {}
    if voxel > 0:
        remesh(obj, voxel, steps)
        actions.append(f"voxel-remeshed at {voxel * 1000:.1f} mm")
    mid = triangle_count(obj.data)
    if max_triangles > 0 and mid > max_triangles:
        t0 = time.perf_counter()
        decimate(obj, max_triangles)
        steps["decimate"] = round(time.perf_counter() - t0, 3)
        actions.append("decimated")
    after = triangle_count(obj.data)
    return {
        "max_triangles": int(max_triangles),
        "triangles_in": before,
        "triangles_out": after,
        "remeshed": voxel > 0,
        "remesh_voxel": round(voxel, 5),
        "actions": actions,
        "reasons": reasons,
        "steps_s": steps,
        "summary": (
            f"{before} -> {after} triangles ({', then '.join(actions)}; budget {max_triangles or 'none'})"
            if actions
            else f"{after} triangles, within the budget of {max_triangles or 'none'}: kept as is"
        ),
    }
