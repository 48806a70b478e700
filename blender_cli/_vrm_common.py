"""What every VRM-writing script in blender_cli/ shares (runs INSIDE Blender: bpy + numpy).

Used by rig_vrm.py (template rig of a bare mesh) and rigged_to_vrm.py (a mesh that already
has a skeleton and skin weights):
    import_file          importer by extension, read errors as "<what>: ..." JobErrors
    check_meta / set_vrm VRM 1.0 meta and the humanoid bone assignment (explicit, never the
                         add-on's automatic search)
    finish_weights       every vertex weighted (nearest bone for any left out), <= 4
                         influences, normalised, verified
    apply_t_pose         the add-on's estimated T-pose made the rest pose, feet back on Z=0
    export_vrm           VRM export to a temp name beside the target, then rename
    pose_and_export      the T-pose + export + result summary both scripts end with
Errors are JobErrors whose message starts with the input's name ("mesh: ...", "meta.name: ..."):
core/ turns that prefix into the AvatarError's "what".
"""

from __future__ import annotations

import os

import bpy
import numpy as np
from _expressions import add_face, face_summary
from _job import JobError
from _mtoon import finish_file
from _pack import vrm_spec
from _shape_keys import carry_shape_keys

IMPORTERS = {
    ".glb": lambda p: bpy.ops.import_scene.gltf(filepath=p, merge_vertices=True),
    ".gltf": lambda p: bpy.ops.import_scene.gltf(filepath=p, merge_vertices=True),
    ".obj": lambda p: bpy.ops.wm.obj_import(filepath=p),
    ".fbx": lambda p: bpy.ops.import_scene.fbx(filepath=p),
}

META_TEXT = {
    "name": "vrm_name",
    "version": "version",
    "copyright_information": "copyright_information",
    "contact_information": "contact_information",
    "third_party_licenses": "third_party_licenses",
    "other_license_url": "other_license_url",
}


# ---------------------------------------------------------------- input files


def input_ext(path: str, what: str, importers: dict | None = None) -> str:
    """The file's extension after checking it exists and can be imported; JobError "<what>: ..." if not."""
    importers = importers or IMPORTERS
    if not path:
        raise JobError(f"{what}: no path given")
    if not os.path.isfile(path):
        raise JobError(f"{what}: file {path} does not exist")
    ext = os.path.splitext(path)[1].lower()
    if ext not in importers:
        raise JobError(
            f"{what}: {os.path.basename(path)} has an unsupported extension {ext!r} "
            f"(use one of {', '.join(sorted(importers))})"
        )
    return ext


def import_file(path: str, what: str, importers: dict | None = None) -> None:
    """Run the importer for ``path`` into the current scene."""
    importers = importers or IMPORTERS
    ext = input_ext(path, what, importers)
    try:
        result = importers[ext](path)
    except Exception as e:  # importers raise RuntimeError with their own message
        raise JobError(
            f"{what}: {os.path.basename(path)} could not be read as {ext[1:].upper()} ({str(e).strip()})"
        ) from None
    if result != {"FINISHED"}:
        raise JobError(f"{what}: the {ext[1:].upper()} importer gave {result} for {os.path.basename(path)}")


def bone_shapes() -> set[bpy.types.Object]:
    """Objects drawn as bone shapes (the glTF importer adds an "Icosphere" for them): not part of the model."""
    return {pb.custom_shape for o in bpy.data.objects if o.type == "ARMATURE" for pb in o.pose.bones if pb.custom_shape}


def scene_meshes() -> list[bpy.types.Object]:
    """Mesh objects with faces that are in the scene, bone shapes left out."""
    scene_objects, shapes = set(bpy.context.scene.objects), bone_shapes()
    return [
        o
        for o in bpy.data.objects
        if o.type == "MESH" and o in scene_objects and o not in shapes and len(o.data.polygons) > 0
    ]


def join_meshes(meshes: list[bpy.types.Object], name: str = "Body") -> bpy.types.Object:
    """Join into the mesh with the most faces (vertex groups merge by name), renamed ``name``."""
    target = max(meshes, key=lambda o: len(o.data.polygons))
    bpy.ops.object.select_all(action="DESELECT")
    for obj in meshes:
        obj.select_set(True)
    bpy.context.view_layer.objects.active = target
    if len(meshes) > 1:
        bpy.ops.object.join()
    target.name = name
    target.data.name = name
    return target


def verts(me: bpy.types.Mesh) -> np.ndarray:
    co = np.empty(len(me.vertices) * 3, dtype=np.float64)
    me.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def tris(me: bpy.types.Mesh) -> np.ndarray:
    me.calc_loop_triangles()
    t = np.empty(len(me.loop_triangles) * 3, dtype=np.int64)
    me.loop_triangles.foreach_get("vertices", t)
    return t.reshape(-1, 3)


# ---------------------------------------------------------------- weights


def segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def _deform_sums(body: bpy.types.Object, bone_groups: set[int]) -> np.ndarray:
    sums = np.zeros(len(body.data.vertices))
    for v in body.data.vertices:
        sums[v.index] = sum(g.weight for g in v.groups if g.group in bone_groups)
    return sums


def finish_weights(body: bpy.types.Object, arm: bpy.types.Object) -> dict:
    """Make the skin what a VRM needs, keeping the weights that are there.

    Vertices without any weight on a deforming bone get the nearest deforming bone (weight 1);
    then weights below 1e-4 are dropped, at most 4 influences kept (the largest) and each
    vertex normalised to sum 1. Raises if any vertex still does not sum to 1.
    """
    me = body.data
    deform = [b for b in arm.data.bones if b.use_deform]
    if not deform:
        raise JobError("weights: the armature has no deforming bone")
    bone_names = [b.name for b in deform]
    for name in bone_names:
        if name not in body.vertex_groups:
            body.vertex_groups.new(name=name)
    groups = {vg.index for vg in body.vertex_groups if vg.name in bone_names}
    sums = _deform_sums(body, groups)
    unweighted = np.flatnonzero(sums <= 1e-6)
    if len(unweighted):
        co = verts(me)[unweighted]
        dists = np.stack([segment_distance(co, np.array(b.head_local), np.array(b.tail_local)) for b in deform], axis=1)
        nearest = dists.argmin(axis=1)
        for bi, name in enumerate(bone_names):
            idx = unweighted[nearest == bi]
            if len(idx):
                body.vertex_groups[name].add(idx.tolist(), 1.0, "REPLACE")
    bpy.ops.object.select_all(action="DESELECT")
    body.select_set(True)
    bpy.context.view_layer.objects.active = body
    bpy.ops.object.vertex_group_clean(group_select_mode="BONE_DEFORM", limit=1e-4, keep_single=True)
    bpy.ops.object.vertex_group_limit_total(group_select_mode="BONE_DEFORM", limit=4)
    bpy.ops.object.vertex_group_normalize_all(group_select_mode="BONE_DEFORM", lock_active=False)
    sums = _deform_sums(body, {vg.index for vg in body.vertex_groups if vg.name in bone_names})
    bad = int((np.abs(sums - 1.0) > 1e-3).sum())
    if bad:
        raise JobError(f"weights: {bad} vertices still have weights not summing to 1 after the fix")
    return {
        "unweighted_before_fix": int(len(unweighted)),
        "weight_sum_min": float(sums.min()),
        "weight_sum_max": float(sums.max()),
    }


# ---------------------------------------------------------------- VRM humanoid + meta


def check_meta(meta: dict) -> dict:
    """Validated meta values (before any work is done): name, authors, enums, flags, texts."""
    name = str(meta.get("name", "")).strip()
    if not name:
        raise JobError("meta.name: empty (a VRM needs an avatar name)")
    authors = [str(a).strip() for a in (meta.get("authors") or []) if str(a).strip()]
    if not authors:
        raise JobError("meta.authors: empty (a VRM needs at least one author)")
    clean: dict = {"name": name, "authors": authors}
    for key, allowed in vrm_spec.META_ENUMS.items():
        value = meta.get(key, allowed[0])
        if value not in allowed:
            raise JobError(f"meta.{key}: {value!r} is not one of {', '.join(allowed)}")
        clean[key] = value
    for key in vrm_spec.META_FLAGS:
        clean[key] = bool(meta.get(key, False))
    for key in META_TEXT:
        if key != "name" and meta.get(key):
            clean[key] = str(meta[key])
    return clean


def snake(vrm_bone: str) -> str:
    """VRM humanoid name -> the add-on's property name: leftUpperArm -> left_upper_arm."""
    return "".join("_" + c.lower() if c.isupper() else c for c in vrm_bone)


def assign_humanoid(arm: bpy.types.Object, humanoid: dict[str, str]) -> list[str]:
    """Assign VRM humanoid name -> bone name (and nothing else); the add-on's objections ([] = accepted)."""
    ext = arm.data.vrm_addon_extension
    ext.spec_version = "1.0"
    # We assign every bone ourselves: stop the add-on's structure search (seconds) at export.
    ext.vrm0.humanoid.initial_automatic_bone_assignment = False
    human_bones = ext.vrm1.humanoid.human_bones
    human_bones.initial_automatic_bone_assignment = False
    for bone in human_bones.human_bone_name_to_human_bone().values():
        bone.node.bone_name = ""
    for vrm_name, bone_name in humanoid.items():
        getattr(human_bones, snake(vrm_name)).node.bone_name = bone_name
    return [str(m) for m in human_bones.error_messages()]


def set_meta(arm: bpy.types.Object, meta: dict) -> None:
    m = arm.data.vrm_addon_extension.vrm1.meta
    for key, attr in META_TEXT.items():
        if meta.get(key):
            setattr(m, attr, meta[key])
    m.authors.clear()
    for a in meta["authors"]:
        m.authors.add().value = a
    for key in (*vrm_spec.META_ENUMS, *vrm_spec.META_FLAGS):
        setattr(m, key, meta[key])


def set_vrm(arm: bpy.types.Object, meta: dict, humanoid: dict[str, str]) -> None:
    """VRM 1.0 humanoid (every bone assigned explicitly) and meta (from check_meta)."""
    problems = assign_humanoid(arm, humanoid)
    if problems:
        raise JobError(f"humanoid: the VRM add-on rejected the bone assignment ({' '.join(problems)})")
    set_meta(arm, meta)


def apply_t_pose(body: bpy.types.Object, arm: bpy.types.Object) -> dict:
    """Pose the figure into the VRM T-pose (the add-on's estimate), make that the rest pose, re-ground.

    VRM 1.0's rest pose is a T-pose on Y=0; doing it here (instead of letting the exporter pose
    the armature on the fly) keeps feet on the floor and gives every consumer the same rest pose.
    """
    import mathutils

    result = bpy.ops.vrm.make_estimated_humanoid_t_pose(armature_object_name=arm.name)
    if result != {"FINISHED"}:
        raise JobError(f"humanoid: the VRM add-on could not make a T-pose ({result})")
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.ops.object.select_all(action="DESELECT")
    body.select_set(True)
    bpy.context.view_layer.objects.active = body
    restore_keys = carry_shape_keys(body)  # a rigged input's face keys survive the apply
    for mod in [m for m in body.modifiers if m.type == "ARMATURE"]:
        bpy.ops.object.modifier_apply(modifier=mod.name)
    kept_keys = restore_keys()
    bpy.ops.object.select_all(action="DESELECT")
    arm.select_set(True)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="POSE")
    bpy.ops.pose.armature_apply(selected=False)
    bpy.ops.object.mode_set(mode="OBJECT")
    mod = body.modifiers.new("Armature", "ARMATURE")
    mod.object = arm
    # Stand on the floor again (straightened legs may reach lower than before).
    lift = -float(verts(body.data)[:, 2].min())
    body.data.transform(mathutils.Matrix.Translation((0.0, 0.0, lift)), shape_keys=True)
    body.data.update()
    bpy.ops.object.mode_set(mode="EDIT")
    for eb in arm.data.edit_bones:
        eb.head.z += lift
        eb.tail.z += lift
    bpy.ops.object.mode_set(mode="OBJECT")
    ext = arm.data.vrm_addon_extension
    ext.vrm1.humanoid.pose = ext.vrm1.humanoid.POSE_REST_POSITION_POSE.identifier
    return {"t_pose_lift_m": round(lift, 5), "shape_keys_kept": kept_keys}


# ---------------------------------------------------------------- export


def export_vrm(arm: bpy.types.Object, out: str) -> int:
    out_dir = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(out))[0]
    tmp = os.path.join(out_dir, f".{stem}.{os.getpid()}.part.vrm")
    try:
        result = bpy.ops.export_scene.vrm(filepath=tmp, armature_object_name=arm.name)
        if result != {"FINISHED"} or not os.path.isfile(tmp) or os.path.getsize(tmp) == 0:
            raise JobError(f"export: the VRM exporter gave {result} and wrote no file")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return os.path.getsize(out)


def pose_and_export(
    body: bpy.types.Object, arm: bpy.types.Object, out: str, timer, face: dict | None = None, work_dir: str = ""
) -> dict:
    """The last steps every VRM-writing script shares: the VRM T-pose made the rest pose, the face
    (expressions, lookAt, firstPerson: _expressions.add_face) and the material (MToon unless
    face["material"] is "pbr"), the VRM export, then what the written avatar is (the result keys
    both scripts report; glTF axes for dimensions_m: width X, height Y, depth Z)."""
    pose = apply_t_pose(body, arm)
    timer.lap("t_pose")
    face = dict(face or {})
    extras, morphs = {}, None
    if face.get("expressions", True):
        pose["face"], morphs = add_face(body, arm, face, work_dir or os.path.dirname(os.path.abspath(out)))
        extras["comfy_avatar_face"] = face_summary(pose["face"])
        timer.lap("face")
    size = export_vrm(arm, out)
    timer.lap("export")
    pose["material"] = finish_file(out, mtoon=face.get("material", "mtoon") == "mtoon", extras=extras, morphs=morphs)
    size = os.path.getsize(out)
    timer.lap("material")
    me = body.data
    v = verts(me)
    dims = (v.max(axis=0) - v.min(axis=0)).tolist()
    me.calc_loop_triangles()
    return {
        "out": os.path.abspath(out),
        "file_size": size,
        "bone_count": len(arm.data.bones),
        "bone_names": [b.name for b in arm.data.bones],
        "vertices": len(me.vertices),
        "faces": len(me.polygons),
        "triangles": len(me.loop_triangles),
        "dimensions_m": {"x": round(dims[0], 4), "y": round(dims[2], 4), "z": round(dims[1], 4)},
        "materials": [m.name for m in me.materials if m],
        "uv_layers": [uv.name for uv in me.uv_layers],
        **pose,
    }


def enable_vrm_addon() -> None:
    if "vrm" in dir(bpy.ops.export_scene):
        return
    problem = ""
    try:
        bpy.ops.preferences.addon_enable(module="io_scene_vrm")
    except Exception as e:  # a missing module raises (ModuleNotFoundError) or only logs
        problem = f" ({str(e).strip()})"
    if "vrm" not in dir(bpy.ops.export_scene):
        raise JobError(
            "Blender runtime: the VRM add-on (io_scene_vrm, pip bpy-vrm-format) is not available "
            f"in this Blender{problem}; run install.py to add it"
        )
