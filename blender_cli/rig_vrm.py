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
    max_triangles   the triangle budget (0 = none): met before weighting by a Decimate, or a voxel
                    remesh sized to it when the mesh is far over it (_budget.py); UVs kept
    decimate_faces  older name of max_triangles (used when max_triangles is not given)
    humanoid_check  refuse (default) | warn | off: the humanoid gate (_gate.py, core/rig/gate.py)
    target_height   height (m) to scale to when the input is not 0.3-3 m tall (default 1.6)

Steps: empty scene -> import -> join to one mesh, transforms applied -> orientation/units
-> humanoid gate -> watertight and within the triangle budget (_budget.make_ready: voxel
remesh with UVs projected back, Decimate) -> fit the humanoid skeleton (_rig_fit) ->
automatic weights -> every vertex weighted (nearest bone), max 4 influences, normalised ->
VRM 1.0 humanoid + meta -> export -> quality facts into the file (_quality.py).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy  # noqa: E402
import numpy as np  # noqa: E402  (ships with Blender and with pip bpy)
from _budget import make_ready  # noqa: E402
from _gate import check_humanoid  # noqa: E402
from _job import JobError, Timer, run_job  # noqa: E402
from _quality import embed_quality, landmark_confidence, triangle_stretch  # noqa: E402
from _rig_fit import BONES, fit_skeleton  # noqa: E402
from _vrm_common import (  # noqa: E402
    bone_shapes,
    check_meta,
    enable_vrm_addon,
    finish_weights,
    import_file,
    input_ext,
    join_meshes,
    pose_and_export,
    set_vrm,
)
from _vrm_common import tris as _tris  # noqa: E402
from _vrm_common import verts as _verts  # noqa: E402


def import_mesh(path: str) -> bpy.types.Object:
    """Import, drop everything but meshes, bake world transforms, join into one object."""
    import_file(path, "mesh")
    shapes = bone_shapes()  # a rigged input's bone-shape mesh is not part of the figure
    meshes = [o for o in bpy.data.objects if o.type == "MESH" and len(o.data.polygons) > 0 and o not in shapes]
    if not meshes:
        raise JobError(
            f"mesh: {os.path.basename(path)} contains no mesh with faces "
            "(a point cloud or an empty scene cannot be rigged)"
        )
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
    cpu0 = time.process_time()  # this job's CPU seconds (all its threads), whatever else loads the machine
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
    humanoid = check_humanoid(_verts(body.data), _tris(body.data), str(args.get("humanoid_check") or "refuse"))
    timer.lap("humanoid_check")
    closed, bad_edges, pieces = closed_single_surface(body.data)
    height = float(_verts(body.data)[:, 2].max())
    budget = make_ready(
        body,
        closed=closed,
        height=height,
        remesh_voxel=float(args.get("remesh_voxel") or 0.0),
        max_triangles=int(args.get("max_triangles", args.get("decimate_faces")) or 0),
    )
    # Smooth shading: remeshed faces come out flat, and flat faces make the exporter split
    # every vertex per face (3x the vertices, a faceted look). Imported custom normals stay.
    body.data.shade_smooth()
    timer.lap("watertight")  # remesh and decimate: one step now

    me = body.data
    skeleton = fit_skeleton(_verts(me), _tris(me))
    arm = build_armature(skeleton)
    timer.lap("fit_skeleton")

    weights = weight_vertices(body, arm)
    timer.lap("weights")

    set_vrm(arm, meta, {name: name for name, _parent, _c in BONES})
    timer.lap("vrm_setup")
    rest = _verts(body.data), _tris(body.data)
    written = pose_and_export(body, arm, out, timer, face=args.get("face"), work_dir=work_dir)
    quality = {
        "landmark_confidence": landmark_confidence(skeleton.to_dict(), humanoid),
        "stretch": triangle_stretch(rest[0], _verts(body.data), rest[1]),
        "humanoid_kind": (humanoid or {}).get("kind", "not checked"),
        "budget": budget["summary"],
    }
    embed_quality(out, quality)
    timer.lap("quality")
    return {
        **written,
        "input": {
            "vertices": verts_in,
            "faces": faces_in,
            "closed_single_surface": closed,
            "boundary_or_nonmanifold_edges": bad_edges,
            "pieces": pieces,
        },
        "remeshed": budget["remeshed"],
        "remesh_voxel": budget["remesh_voxel"],
        "budget": budget,
        "humanoid": humanoid,
        "quality": quality,
        "placement": placement,
        "skeleton": skeleton.to_dict(),
        **weights,
        "timings_s": timer.steps,
        "cpu_s": round(time.process_time() - cpu0, 3),
    }


if __name__ == "__main__":
    run_job(main)
