"""Turn a mesh that already has a skeleton and skin weights into a VRM 1.0 avatar, in one Blender launch.

    python rigged_to_vrm.py -- --job JOB.json          (pip bpy runtime)
    blender --background --factory-startup --python rigged_to_vrm.py -- --job JOB.json

args:
    rigged          a .glb/.gltf/.fbx with an armature and a skinned mesh (UniRig's merged output:
                    bones bone_0..bone_N), any axes and size
    humanoid        {VRM humanoid bone name: bone name in the file}, the 15 required bones at least
                    (checked by core/vrm/export.py; bone names are checked here)
    out             final .vrm path (written to a temp name beside it, then renamed)
    meta            VRM meta (see _vrm_common.check_meta)
    target_height   > 0: scale the figure to this height in metres (TRELLIS/UniRig output sits in a
                    unit cube); 0: keep the file's size
    rename_bones    true: mapped bones take their VRM names (hips, leftUpperArm ...), so the VRM
                    reads well in any tool; unmapped bones keep theirs
    max_triangles   the triangle budget (default 30000, 0 = none): a collapse Decimate of the joined,
                    skinned mesh before the weights are finished (weights kept; see meet_budget)

Steps: empty scene -> import -> the armature and its meshes, pose cleared, world transforms baked
-> mapped bones renamed -> orientation from the mapped bones (hips->head is up, right->left is
+X; snapped to the nearest axes when within 30 degrees) so the figure faces +Z in glTF, scaled
to the target height, hips over the origin, feet on the floor -> meshes joined -> the existing
weights kept; vertices without a weight get the nearest bone, <= 4 influences, normalised ->
VRM humanoid (optional bones the add-on refuses are dropped and reported) + meta -> the add-on's
T-pose made the rest pose -> export.
"""

from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy  # noqa: E402
import numpy as np  # noqa: E402  (ships with Blender and with pip bpy)
from _budget import decimate, triangle_count  # noqa: E402
from _job import JobError, Timer, run_job  # noqa: E402
from _pack import vrm_spec  # noqa: E402
from _vrm_common import (  # noqa: E402
    IMPORTERS,
    assign_humanoid,
    check_meta,
    enable_vrm_addon,
    finish_weights,
    import_file,
    input_ext,
    join_meshes,
    pose_and_export,
    scene_meshes,
    set_meta,
    verts,
)

RIGGED_IMPORTERS = {ext: IMPORTERS[ext] for ext in (".glb", ".gltf", ".fbx")}
SNAP_DEG = 30.0


def check_humanoid(humanoid: object) -> dict[str, str]:
    if not isinstance(humanoid, dict) or not humanoid:
        raise JobError("mapping: no humanoid bone map given")
    missing = [b for b in vrm_spec.REQUIRED_BONES if not humanoid.get(b)]
    if missing:
        raise JobError(f"mapping: misses the required VRM bones {', '.join(missing)}")
    return {str(k): str(v) for k, v in humanoid.items()}


# ---------------------------------------------------------------- import


def load_rig(path: str, humanoid: dict[str, str]) -> tuple[bpy.types.Object, list[bpy.types.Object], list[str]]:
    """The armature holding the mapped bones and the meshes that go with it (+ warnings)."""
    name = os.path.basename(path)
    import_file(path, "rigged", RIGGED_IMPORTERS)
    scene_objects = set(bpy.context.scene.objects)
    arms = [o for o in bpy.data.objects if o.type == "ARMATURE" and o in scene_objects and len(o.data.bones)]
    if not arms:
        raise JobError(
            f"rigged: {name} contains no armature (no skeleton with bones); rig the mesh first "
            "(Auto-rig (UniRig) or Rig + Export VRM (CPU template rig))"
        )
    arm = max(arms, key=lambda a: sum(1 for b in humanoid.values() if b in a.data.bones))
    absent = [f"{vrm} -> {bone}" for vrm, bone in humanoid.items() if bone not in arm.data.bones]
    if absent:
        have = [b.name for b in arm.data.bones]
        shown = ", ".join(have[:12]) + (f" ... ({len(have)} in all)" if len(have) > 12 else "")
        raise JobError(
            f"mapping: names bones that are not in the armature of {name}: {', '.join(absent)} (its bones: {shown})"
        )
    warnings: list[str] = []
    meshes = []
    for obj in scene_meshes():
        others = [m.object for m in obj.modifiers if m.type == "ARMATURE" and m.object and m.object != arm]
        if others and not any(m.type == "ARMATURE" and m.object == arm for m in obj.modifiers):
            warnings.append(f"mesh {obj.name} is skinned to another armature ({others[0].name}): left out")
            continue
        meshes.append(obj)
    if not meshes:
        raise JobError(f"rigged: {name} has an armature but no mesh with faces")
    for other in arms:
        if other is not arm:
            warnings.append(f"armature {other.name} does not hold the mapped bones: left out")
    return arm, meshes, warnings


def bake_transforms(arm: bpy.types.Object, meshes: list[bpy.types.Object]) -> dict:
    """Rest pose, every object at the origin with identity transform, its placement baked into its data.

    A mesh parented to a bone (a rigid attachment) gets that bone as its only weight.
    """
    if arm.animation_data:
        arm.animation_data_clear()
    for pb in arm.pose.bones:
        pb.matrix_basis.identity()
        for c in list(pb.constraints):
            pb.constraints.remove(c)
    bpy.context.view_layer.update()
    shape_keys = 0
    bone_parented = 0
    for obj in meshes:
        world = obj.matrix_world.copy()
        parent_bone = obj.parent_bone if obj.parent is arm and obj.parent_type == "BONE" else ""
        obj.parent = None
        obj.data = obj.data.copy() if obj.data.users > 1 else obj.data
        obj.data.transform(world, shape_keys=True)
        obj.matrix_world.identity()
        if obj.data.shape_keys:  # kept: face keys (ARKit, VRoid) win over generated ones (_expressions.py)
            shape_keys += len(obj.data.shape_keys.key_blocks) - 1
        for mod in [m for m in obj.modifiers if m.type != "ARMATURE"]:
            obj.modifiers.remove(mod)
        if parent_bone:
            vg = obj.vertex_groups.get(parent_bone) or obj.vertex_groups.new(name=parent_bone)
            vg.add(list(range(len(obj.data.vertices))), 1.0, "REPLACE")
            bone_parented += 1
        arm_mods = [m for m in obj.modifiers if m.type == "ARMATURE"]
        for extra in arm_mods[1:]:
            obj.modifiers.remove(extra)
        mod = arm_mods[0] if arm_mods else obj.modifiers.new("Armature", "ARMATURE")
        mod.object = arm
    world = arm.matrix_world.copy()
    arm.parent = None
    arm.data.transform(world)
    arm.matrix_world.identity()
    for obj in list(bpy.context.scene.objects):
        if obj is not arm and obj not in meshes:
            bpy.data.objects.remove(obj, do_unlink=True)
    bpy.context.view_layer.update()
    return {
        "shape_keys_in": shape_keys,
        "bone_parented_meshes": bone_parented,
        "armature_scale_in": round(float(world.to_scale()[0]), 6),
    }


def rename_bones(arm: bpy.types.Object, humanoid: dict[str, str]) -> dict[str, str]:
    """Mapped bones take their VRM names (vertex groups follow); an unmapped bone already named like a
    VRM bone becomes <name>_unmapped. Returns VRM name -> final bone name."""
    bones = arm.data.bones
    for i, bone in enumerate(humanoid.values()):
        bones[bone].name = f"__vrm_tmp_{i}"
    for b in bones:
        if b.name in humanoid:
            b.name = f"{b.name}_unmapped"
    for i, vrm in enumerate(humanoid):
        bones[f"__vrm_tmp_{i}"].name = vrm
    return {vrm: vrm for vrm in humanoid}


# ---------------------------------------------------------------- placement


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if n < 1e-9:
        raise JobError(
            "mapping: the mapped bones do not span the figure (hips and head, or left and right, sit at one point)"
        )
    return v / n


def _snap(v: np.ndarray) -> np.ndarray | None:
    i = int(np.argmax(np.abs(v)))
    if math.degrees(math.acos(min(1.0, abs(float(v[i]))))) > SNAP_DEG:
        return None
    axis = np.zeros(3)
    axis[i] = math.copysign(1.0, float(v[i]))
    return axis


def orientation(arm: bpy.types.Object, humanoid: dict[str, str]) -> tuple[np.ndarray, dict]:
    """Rotation (3x3) that makes the figure stand up along +Z with its left on +X, facing -Y
    (Blender's front; +Z once written to glTF/VRM)."""
    head = {vrm: np.array(arm.data.bones[bone].head_local, dtype=float) for vrm, bone in humanoid.items()}
    up = _unit(head["head"] - head["hips"])
    across = (head["leftUpperLeg"] + head["leftUpperArm"]) - (head["rightUpperLeg"] + head["rightUpperArm"])
    left = _unit(across - (across @ up) * up)
    snapped_up, snapped_left = _snap(up), _snap(left)
    snapped = snapped_up is not None and snapped_left is not None and abs(float(snapped_up @ snapped_left)) < 0.5
    if snapped:
        up, left = snapped_up, snapped_left
    front = np.cross(left, up)
    src = np.stack([left, front, up], axis=1)  # columns: the figure's left, front, up
    rot = np.diag([1.0, -1.0, 1.0]) @ src.T  # -> +X, -Y (front), +Z
    info = {
        "up_in": [round(float(x), 4) for x in up],
        "left_in": [round(float(x), 4) for x in left],
        "front_in": [round(float(x), 4) for x in front],
        "snapped_to_axes": bool(snapped),
        "rotated": not np.allclose(rot, np.eye(3), atol=1e-6),
    }
    return rot, info


def place(body: bpy.types.Object, arm: bpy.types.Object, humanoid: dict[str, str], target_height: float) -> dict:
    """Rotate, scale to the target height, hips over the origin, lowest vertex on Z=0 (mesh and bones alike)."""
    import mathutils

    rot, info = orientation(arm, humanoid)
    v = verts(body.data) @ rot.T
    height = float(v[:, 2].max() - v[:, 2].min())
    if height <= 1e-9:
        raise JobError("rigged: the mesh has no height (all vertices at one level)")
    scale = target_height / height if target_height > 0 else 1.0
    hips = (rot @ np.array(arm.data.bones[humanoid["hips"]].head_local, dtype=float)) * scale
    offset = np.array([-hips[0], -hips[1], -float(v[:, 2].min()) * scale])
    m = np.eye(4)
    m[:3, :3] = rot * scale
    m[:3, 3] = offset
    matrix = mathutils.Matrix(m.tolist())
    body.data.transform(matrix, shape_keys=True)
    body.data.update()
    arm.data.transform(matrix)
    bpy.context.view_layer.update()
    info.update(
        {
            "height_in": round(height, 5),
            "scale": round(scale, 6),
            "rotation": [[round(float(x), 4) for x in row] for row in rot],
        }
    )
    return info


# ---------------------------------------------------------------- humanoid


def hierarchy_problems(arm: bpy.types.Object, humanoid: dict[str, str]) -> list[str]:
    """Required bones whose VRM parent bone is not above them in the skeleton."""
    problems = []
    for child, parent in vrm_spec.REQUIRED_ANCESTOR.items():
        bone = arm.data.bones[humanoid[child]]
        above = {b.name for b in bone.parent_recursive}
        if humanoid[parent] not in above:
            problems.append(f"{child} ({humanoid[child]}) is not below {parent} ({humanoid[parent]})")
    return problems


def assign(arm: bpy.types.Object, humanoid: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Assign the humanoid; optional bones the add-on refuses are left out. (assigned, dropped -> why)."""
    problems = assign_humanoid(arm, humanoid)
    if not problems:
        return dict(humanoid), {}
    required = {k: v for k, v in humanoid.items() if k in vrm_spec.REQUIRED_BONES}
    base = assign_humanoid(arm, required)
    if base:
        raise JobError(f"mapping: the VRM add-on refuses the required bones ({' '.join(base)})")
    kept, dropped = dict(required), {}
    for name, bone in humanoid.items():
        if name in required:
            continue
        refused = assign_humanoid(arm, {**kept, name: bone})
        if refused:
            dropped[name] = " ".join(refused)
        else:
            kept[name] = bone
    if assign_humanoid(arm, kept):  # leave the accepted set assigned
        raise JobError("mapping: the VRM add-on refused the bone assignment it had accepted")
    return kept, dropped


# ---------------------------------------------------------------- triangle budget

DEFAULT_MAX_TRIANGLES = 30000  # rig.max_triangles' default, for a job written without the argument


def meet_budget(body: bpy.types.Object, max_triangles: int, warnings: list[str]) -> dict:
    """The same triangle budget as the CPU rig's, for a mesh that comes rigged (UniRig's output of a
    500k-face TRELLIS mesh, a rigged GLB/FBX file): web VRM viewers choke on it all the same.

    Only a collapse Decimate: it keeps the vertex groups (the skin weights are interpolated along the
    collapsed edges), UVs and materials. The voxel remesh the CPU rig uses far over budget would
    throw the weights away. A mesh with shape keys (its own face expressions, which win over generated
    ones) cannot take a modifier without losing them, so it is left as it is, with a warning.
    """
    n = triangle_count(body.data)
    info = {"triangles_in": n, "max_triangles": max_triangles, "decimated": False, "triangles": n}
    if max_triangles <= 0 or n <= max_triangles:
        info["summary"] = f"{n} triangles (budget {max_triangles or 'none'}: nothing to do)"
        return info
    if body.data.shape_keys and len(body.data.shape_keys.key_blocks) > 1:
        keys = len(body.data.shape_keys.key_blocks) - 1
        info["summary"] = f"{n} triangles kept over the budget {max_triangles}: the mesh has {keys} shape keys"
        warnings.append(
            f"budget: the mesh has {n} triangles, over the budget of {max_triangles}, and was not decimated: "
            f"its {keys} shape keys (face expressions) would be lost; decimate it in the program that made it, "
            "or set max_triangles to 0 to silence this"
        )
        return info
    decimate(body, max_triangles)
    info.update(decimated=True, triangles=triangle_count(body.data))
    info["summary"] = f"{n} -> {info['triangles']} triangles (decimated, skin weights kept; budget {max_triangles})"
    return info


# ---------------------------------------------------------------- main


def main(args: dict, work_dir: str) -> dict:
    timer = Timer()
    rigged = str(args.get("rigged") or "")
    out = str(args.get("out") or "")
    if not out.lower().endswith(".vrm"):
        raise JobError(f"out: {out!r} must be a path ending in .vrm")
    input_ext(rigged, "rigged", RIGGED_IMPORTERS)
    meta = check_meta(dict(args.get("meta") or {}))
    source_map = check_humanoid(args.get("humanoid"))
    target_height = float(args.get("target_height") or 0.0)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    enable_vrm_addon()
    timer.lap("setup")

    arm, meshes, warnings = load_rig(rigged, source_map)
    bones_in = len(arm.data.bones)
    verts_in = sum(len(o.data.vertices) for o in meshes)
    timer.lap("import")

    baked = bake_transforms(arm, meshes)
    body = join_meshes(meshes)
    problems = hierarchy_problems(arm, source_map)
    if problems:
        raise JobError("mapping: the bones are not chained like a VRM humanoid: " + "; ".join(problems))
    humanoid = rename_bones(arm, source_map) if args.get("rename_bones", True) else dict(source_map)
    placement = place(body, arm, humanoid, target_height)
    timer.lap("placement")

    budget = meet_budget(body, int(args.get("max_triangles", DEFAULT_MAX_TRIANGLES)), warnings)
    timer.lap("budget")

    weights = finish_weights(body, arm)
    timer.lap("weights")

    assigned, dropped = assign(arm, humanoid)
    for name in dropped:  # a bone left out of the humanoid gets its own name back
        if humanoid[name] != source_map[name]:
            arm.data.bones[humanoid[name]].name = source_map[name]
    set_meta(arm, meta)
    timer.lap("vrm_setup")
    written = pose_and_export(body, arm, out, timer, face=args.get("face"), work_dir=work_dir)
    return {
        **written,
        "bones_in": bones_in,
        "humanoid": assigned,
        "humanoid_source": {k: source_map[k] for k in assigned},
        "dropped_optional_bones": dropped,
        "renamed_bones": bool(args.get("rename_bones", True)),
        "meshes_in": len(meshes),
        "vertices_in": verts_in,
        "placement": placement,
        **baked,
        **weights,
        "budget": budget,
        "warnings": warnings,
        "timings_s": timer.steps,
    }


if __name__ == "__main__":
    run_job(main)
