"""Rig a standing humanoid mesh and export it as a VRM 1.0 avatar, in one Blender launch.

    python rig_vrm.py -- --job JOB.json          (pip bpy runtime)
    blender --background --factory-startup --python rig_vrm.py -- --job JOB.json

args:
    mesh            path to a .glb/.gltf/.obj/.fbx: one standing figure, Y-up, metres,
                    feet at Y=0, facing +Z (what the image->mesh stage writes)
    out             final .vrm path (written to a temp name beside it, then renamed)
    meta            {name, version, authors[list], license_url?, avatar_permission,
                     commercial_usage, modification, ...} (validated by core/vrm/meta.py)
    remesh_voxel    0: auto (voxel remesh only when the mesh is not one closed surface),
                    > 0: always remesh with this voxel size (m), < 0: never remesh
    decimate_faces  optional upper bound on the triangle count (Decimate, before weighting)
    target_height   height (m) to scale to when the input is not 0.3-3 m tall (default 1.6)

Steps: empty scene -> import -> join to one mesh, transforms applied -> orientation/units
-> watertight (voxel remesh keeps UVs + materials) -> decimate -> fit the humanoid
skeleton (_rig_fit) -> automatic weights -> every vertex weighted (nearest bone),
max 4 influences, normalised -> VRM 1.0 humanoid + meta -> export.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy  # noqa: E402
import numpy as np  # noqa: E402  (ships with Blender and with pip bpy)

from _job import JobError, Timer, run_job  # noqa: E402
from _rig_fit import BONES, fit_skeleton  # noqa: E402
from _vrm_common import (bone_shapes, check_meta, enable_vrm_addon, finish_weights, import_file,  # noqa: E402
                         input_ext, join_meshes, pose_and_export, set_vrm)
from _vrm_common import tris as _tris  # noqa: E402
from _vrm_common import verts as _verts  # noqa: E402


def import_mesh(path: str) -> bpy.types.Object:
    """Import, drop everything but meshes, bake world transforms, join into one object."""
    import_file(path, "mesh")
    shapes = bone_shapes()  # a rigged input's bone-shape mesh is not part of the figure
    meshes = [o for o in bpy.data.objects if o.type == "MESH" and len(o.data.polygons) > 0 and o not in shapes]
    if not meshes:
        raise JobError(f"mesh: {os.path.basename(path)} contains no mesh with faces "
                       "(a point cloud or an empty scene cannot be rigged)")
    for obj in meshes:
        for mod in list(obj.modifiers):  # an imported skin or other modifiers: drop them
            obj.modifiers.remove(mod)
        obj.data = obj.data.copy() if obj.data.users > 1 else obj.data
        obj.data.transform(obj.matrix_world)
        obj.parent = None
        obj.matrix_world.identity()
        for vg in list(obj.vertex_groups):
            obj.vertex_groups.remove(vg)
    for obj in list(bpy.data.objects):
        if obj not in meshes:
            bpy.data.objects.remove(obj, do_unlink=True)
    for obj in meshes:
        obj.shape_key_clear()
    return join_meshes(meshes)


def normalise_placement(obj: bpy.types.Object, target_height: float) -> dict:
    """Stand the figure on Z=0, centred in X/Y, in metres. Returns what was changed."""
    me = obj.data
    v = _verts(me)
    dims = v.max(axis=0) - v.min(axis=0)
    changes: dict = {}
    if dims[1] > 1.5 * dims[2] and dims[1] >= dims[0]:
        # Lying along Blender Y: authored Z-up and written without axis conversion.
        import mathutils
        me.transform(mathutils.Matrix.Rotation(-np.pi / 2, 4, "X"))
        changes["rotated_upright"] = True
        v = _verts(me)
        dims = v.max(axis=0) - v.min(axis=0)
    height = float(dims[2])
    if height <= 0:
        raise JobError("mesh: the figure has no height (all vertices at one Z)")
    if not 0.3 <= height <= 3.0:
        scale = target_height / height
        v = v * scale
        changes["rescaled_from_height_m"] = round(height, 4)
        changes["scale"] = scale
    lo, hi = v.min(axis=0), v.max(axis=0)
    offset = np.array([-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, -lo[2]])
    me.vertices.foreach_set("co", (v + offset).ravel())
    me.update()
    return changes


def closed_single_surface(me: bpy.types.Mesh) -> tuple[bool, int, int]:
    """(every edge has exactly two faces and there is one connected piece, boundary edges, pieces)."""
    n_edges = len(me.edges)
    loop_edges = np.empty(len(me.loops), dtype=np.int64)
    me.loops.foreach_get("edge_index", loop_edges)
    uses = np.bincount(loop_edges, minlength=n_edges)
    bad_edges = int((uses != 2).sum())
    ev = np.empty(n_edges * 2, dtype=np.int64)
    me.edges.foreach_get("vertices", ev)
    ev = ev.reshape(-1, 2)
    parent = np.arange(len(me.vertices))
    while True:  # label propagation with pointer jumping
        pa, pb = parent[ev[:, 0]], parent[ev[:, 1]]
        m = np.minimum(pa, pb)
        before = parent.copy()
        np.minimum.at(parent, pa, m)
        np.minimum.at(parent, pb, m)
        parent = parent[parent]
        if np.array_equal(parent, before):
            break
    used = np.unique(ev.ravel()) if len(ev) else np.arange(0)
    pieces = len(np.unique(parent[used])) if len(used) else 0
    return bad_edges == 0 and pieces == 1, bad_edges, pieces


def _surface_uvs(src_verts: np.ndarray, src_tris: np.ndarray, src_tri_uvs: list[np.ndarray],
                 points: np.ndarray) -> list[np.ndarray]:
    """UVs at ``points`` from the nearest point of the source surface (barycentric interpolation)."""
    from mathutils import Vector
    from mathutils.bvhtree import BVHTree

    tree = BVHTree.FromPolygons(src_verts.tolist(), src_tris.tolist(), all_triangles=True)
    near = np.empty((len(points), 3))
    tri = np.zeros(len(points), dtype=np.int64)
    for i, p in enumerate(points):
        loc, _normal, index, _dist = tree.find_nearest(Vector(p))
        if index is not None:
            near[i] = loc
            tri[i] = index
        else:
            near[i] = p
    a, b, c = (src_verts[src_tris[tri, k]] for k in range(3))
    v0, v1, v2 = b - a, c - a, near - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = np.where(np.abs(d00 * d11 - d01 * d01) > 1e-20, d00 * d11 - d01 * d01, 1.0)
    wb = np.clip((d11 * d20 - d01 * d21) / den, 0, 1)
    wc = np.clip((d00 * d21 - d01 * d20) / den, 0, 1)
    wa = np.clip(1 - wb - wc, 0, 1)
    total = wa + wb + wc
    wa, wb, wc = wa / total, wb / total, wc / total
    return [uv[tri, 0] * wa[:, None] + uv[tri, 1] * wb[:, None] + uv[tri, 2] * wc[:, None] for uv in src_tri_uvs]


def remesh(obj: bpy.types.Object, voxel: float) -> None:
    """Voxel remesh to one closed surface; UVs are re-projected from the original surface.

    The remesher's own attribute transfer copies the nearest original corner (blocky texture on
    coarse inputs), so each UV map is re-sampled from the original surface at the nearest point
    (barycentric); a Data Transfer modifier does the same but 5-20x slower. Colour attributes
    and material indices: preserved by the remesher.
    """
    me = obj.data
    src_uvs: list[np.ndarray] = []
    if me.uv_layers:
        src_verts, src_tris = _verts(me), _tris(me)
        loops = np.empty(len(me.loop_triangles) * 3, dtype=np.int64)
        me.loop_triangles.foreach_get("loops", loops)
        for layer in me.uv_layers:
            uv = np.empty(len(me.loops) * 2)
            layer.data.foreach_get("uv", uv)
            src_uvs.append(uv.reshape(-1, 2)[loops].reshape(-1, 3, 2))
        names = [layer.name for layer in me.uv_layers]
    me.remesh_voxel_size = voxel
    me.use_remesh_preserve_attributes = True
    me.use_remesh_fix_poles = True
    result = bpy.ops.object.voxel_remesh()
    if result != {"FINISHED"} or len(obj.data.polygons) == 0:
        raise JobError(f"mesh: voxel remesh at {voxel:.4f} m produced no surface "
                       "(set remesh_voxel smaller than the thinnest limb)")
    if src_uvs:
        me = obj.data
        per_vertex = _surface_uvs(src_verts, src_tris, src_uvs, _verts(me))
        loop_verts = np.empty(len(me.loops), dtype=np.int64)
        me.loops.foreach_get("vertex_index", loop_verts)
        for name, uv in zip(names, per_vertex):
            layer = me.uv_layers.get(name) or me.uv_layers.new(name=name)
            layer.data.foreach_set("uv", uv[loop_verts].astype(np.float32).ravel())
        me.update()


def decimate(obj: bpy.types.Object, max_triangles: int) -> None:
    """Collapse-decimate to at most ``max_triangles`` triangles (what the VRM will hold)."""
    obj.data.calc_loop_triangles()
    n = len(obj.data.loop_triangles)
    if max_triangles <= 0 or n <= max_triangles:
        return
    mod = obj.modifiers.new("Decimate", "DECIMATE")
    mod.ratio = 0.995 * max_triangles / n
    bpy.ops.object.modifier_apply(modifier=mod.name)


def build_armature(skeleton) -> bpy.types.Object:
    arm_data = bpy.data.armatures.new("Armature")
    arm = bpy.data.objects.new("Armature", arm_data)
    bpy.context.scene.collection.objects.link(arm)
    bpy.ops.object.select_all(action="DESELECT")
    arm.select_set(True)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    edit = arm_data.edit_bones
    for name, parent, connected in BONES:
        head, tail = skeleton.bones[name]
        b = edit.new(name)
        b.head = tuple(float(x) for x in head)
        b.tail = tuple(float(x) for x in tail)
        b.roll = 0.0
        if parent:
            b.parent = edit[parent]
            b.use_connect = connected
    bpy.ops.object.mode_set(mode="OBJECT")
    return arm


def weight_vertices(body: bpy.types.Object, arm: bpy.types.Object) -> dict:
    """Automatic weights, then nearest-bone for any vertex left out, max 4 influences, normalised."""
    bpy.ops.object.select_all(action="DESELECT")
    body.select_set(True)
    arm.select_set(True)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.parent_set(type="ARMATURE_AUTO")
    return finish_weights(body, arm)


def main(args: dict, work_dir: str) -> dict:
    timer = Timer()
    mesh_path = str(args.get("mesh") or "")
    out = str(args.get("out") or "")
    if not out.lower().endswith(".vrm"):
        raise JobError(f"out: {out!r} must be a path ending in .vrm")
    input_ext(mesh_path, "mesh")
    meta = check_meta(dict(args.get("meta") or {}))

    bpy.ops.wm.read_factory_settings(use_empty=True)
    enable_vrm_addon()
    timer.lap("setup")

    body = import_mesh(mesh_path)
    faces_in = len(body.data.polygons)
    verts_in = len(body.data.vertices)
    timer.lap("import")

    placement = normalise_placement(body, float(args.get("target_height") or 1.6))
    closed, bad_edges, pieces = closed_single_surface(body.data)
    height = float(_verts(body.data)[:, 2].max())
    voxel = float(args.get("remesh_voxel") or 0.0)
    remeshed = False
    if voxel > 0 or (voxel == 0 and not closed):
        voxel = voxel if voxel > 0 else height / 110.0
        remesh(body, voxel)
        remeshed = True
    timer.lap("watertight")

    decimate(body, int(args.get("decimate_faces") or 0))
    # Smooth shading: remeshed faces come out flat, and flat faces make the exporter split
    # every vertex per face (3x the vertices, a faceted look). Imported custom normals stay.
    body.data.shade_smooth()
    timer.lap("decimate")

    me = body.data
    skeleton = fit_skeleton(_verts(me), _tris(me))
    arm = build_armature(skeleton)
    timer.lap("fit_skeleton")

    weights = weight_vertices(body, arm)
    timer.lap("weights")

    set_vrm(arm, meta, {name: name for name, _parent, _c in BONES})
    timer.lap("vrm_setup")
    written = pose_and_export(body, arm, out, timer, face=args.get("face"), work_dir=work_dir)
    return {
        **written,
        "input": {"vertices": verts_in, "faces": faces_in, "closed_single_surface": closed,
                  "boundary_or_nonmanifold_edges": bad_edges, "pieces": pieces},
        "remeshed": remeshed,
        "remesh_voxel": voxel if remeshed else 0.0,
        "placement": placement,
        "skeleton": skeleton.to_dict(),
        **weights,
        "timings_s": timer.steps,
    }


if __name__ == "__main__":
    run_job(main)
