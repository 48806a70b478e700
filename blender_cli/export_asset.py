"""Export one asset to GLB/FBX/OBJ/.blend at several levels of detail, with previews, in one Blender launch.

    python export_asset.py -- --job JOB.json          (pip bpy runtime)
    blender --background --factory-startup --python export_asset.py -- --job JOB.json

args:
    src       a .glb/.gltf/.vrm/.fbx/.obj/.blend file (a .vrm needs the VRM add-on, io_scene_vrm)
    out_dir   folder for the outputs
    stem      base name of the outputs: <stem>.<ext> when lods == [1.0], else <stem>_lod<i>.<ext>
              (i = position in lods, largest ratio first); previews <stem>_<view>.png
    formats   subset of ["glb", "fbx", "obj", "blend"]
    lods      ratios in (0, 1]: 1.0 = the source as is; 0.5 = about half the triangles (a Decimate
              modifier first in each mesh's stack, applied: vertex groups, hence skin weights, stay)
    preview   {"size": 256, "views": ["front", "side", "three_quarter"]} or null: Workbench renders of
              the full-detail asset, orthographic camera framed on the posed vertices, transparent
    metadata  JSON-safe dict (checked by core/export/asset.py): custom properties on the scene and on each
              root object (.blend; FBX user properties) and the GLB's asset.extras

Every output is written into a staging folder inside out_dir first and renamed into out_dir only
after all of them succeeded, so a failure leaves no partial set (the staging folder is removed).
An OBJ comes with its .mtl and the textures it names (<obj stem>_<image>.png).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy  # noqa: E402
import numpy as np  # noqa: E402  (ships with Blender and with pip bpy)
from _job import JobError, Timer, run_job  # noqa: E402
from _pack import glb  # noqa: E402

FORMATS = ("glb", "fbx", "obj", "blend")
SOURCES = (".glb", ".gltf", ".vrm", ".fbx", ".obj", ".blend")
# Direction from the model to the camera, Blender axes (the model faces -Y, its left arm on +X).
VIEWS = {
    "front": (0.0, -1.0, 0.0),
    "side": (1.0, 0.0, 0.0),
    "three_quarter": (0.70710678, -0.70710678, 0.4),
    "back": (0.0, 1.0, 0.0),
    "top": (0.0, -0.0001, 1.0),
}
MAX_PREVIEW = 2048
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


# ---------------------------------------------------------------- arguments


def check_args(args: dict) -> dict:
    src = str(args.get("src") or "")
    if not src or not os.path.isfile(src):
        raise JobError(f"src: file {src!r} does not exist")
    ext = os.path.splitext(src)[1].lower()
    if ext not in SOURCES:
        raise JobError(
            f"src: {os.path.basename(src)} has an unsupported extension {ext!r} (use one of {', '.join(SOURCES)})"
        )
    out_dir = str(args.get("out_dir") or "")
    if not out_dir:
        raise JobError("out_dir: not given")
    stem = str(args.get("stem") or "")
    if not stem or _SAFE.search(stem) or stem.startswith("."):
        raise JobError(f"stem: {stem!r} must be a plain file name (letters, digits, . _ -)")
    formats = list(args.get("formats") or [])
    bad = [f for f in formats if f not in FORMATS]
    if not formats or bad:
        raise JobError(f"formats: {formats!r} must be a non-empty subset of {', '.join(FORMATS)}")
    lods = [float(r) for r in (args.get("lods") or [1.0])]
    if any(not (0.0 < r <= 1.0) for r in lods):
        raise JobError(f"lods: every ratio must be in (0, 1], got {lods}")
    preview = args.get("preview")
    if preview:
        size = int(preview.get("size") or 256)
        views = list(preview.get("views") or ["front"])
        if not 16 <= size <= MAX_PREVIEW:
            raise JobError(f"preview.size: {size} must be between 16 and {MAX_PREVIEW}")
        unknown = [v for v in views if v not in VIEWS]
        if unknown:
            raise JobError(f"preview.views: unknown {unknown} (use {', '.join(VIEWS)})")
        preview = {"size": size, "views": views}
    metadata = args.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise JobError("metadata: must be a JSON object")
    return {
        "src": os.path.abspath(src),
        "ext": ext,
        "out_dir": os.path.abspath(out_dir),
        "stem": stem,
        "formats": list(dict.fromkeys(formats)),
        "lods": sorted(set(lods), reverse=True),
        "preview": preview or None,
        "metadata": metadata,
    }


# ---------------------------------------------------------------- import


def enable_vrm_addon(required: bool) -> bool:
    if "vrm" in dir(bpy.ops.import_scene):
        return True
    problem = ""
    try:
        bpy.ops.preferences.addon_enable(module="io_scene_vrm")
    except Exception as e:  # a missing module raises (ModuleNotFoundError) or only logs
        problem = f" ({str(e).strip()})"
    ok = "vrm" in dir(bpy.ops.import_scene)
    if required and not ok:
        raise JobError(
            "Blender runtime: the VRM add-on (io_scene_vrm, pip bpy-vrm-format) is not available "
            f"in this Blender{problem}; run install.py to add it"
        )
    return ok


def import_source(src: str, ext: str) -> None:
    name = os.path.basename(src)
    try:
        if ext == ".blend":
            result = bpy.ops.wm.open_mainfile(filepath=src, load_ui=False)
        elif ext in (".glb", ".gltf"):
            result = bpy.ops.import_scene.gltf(filepath=src)
        elif ext == ".vrm":
            result = bpy.ops.import_scene.vrm(filepath=src)
        elif ext == ".fbx":
            result = bpy.ops.import_scene.fbx(filepath=src)
        else:
            result = bpy.ops.wm.obj_import(filepath=src)
    except Exception as e:  # importers raise RuntimeError with their own message
        raise JobError(f"src: {name} could not be read as {ext[1:].upper()} ({str(e).strip()})") from None
    if result != {"FINISHED"}:
        raise JobError(f"src: the {ext[1:].upper()} importer gave {result} for {name}")


def scene_meshes() -> list[bpy.types.Object]:
    meshes = [o for o in bpy.context.scene.objects if o.type == "MESH" and len(o.data.polygons) > 0]
    if not meshes:
        raise JobError("src: the file contains no mesh with faces (nothing to export)")
    return meshes


def evaluated_stats(meshes: list[bpy.types.Object]) -> tuple[int, int, np.ndarray]:
    """(triangles, vertices, world-space vertex positions) of the meshes as exporters see them."""
    dg = bpy.context.evaluated_depsgraph_get()
    tris = verts = 0
    points = []
    for obj in meshes:
        ev = obj.evaluated_get(dg)
        me = ev.to_mesh()
        try:
            me.calc_loop_triangles()
            tris += len(me.loop_triangles)
            verts += len(me.vertices)
            co = np.empty(len(me.vertices) * 3, dtype=np.float64)
            me.vertices.foreach_get("co", co)
            co = co.reshape(-1, 3)
            m = np.array(ev.matrix_world)
            points.append(co @ m[:3, :3].T + m[:3, 3])
        finally:
            ev.to_mesh_clear()
    return tris, verts, np.concatenate(points) if points else np.zeros((0, 3))


# ---------------------------------------------------------------- metadata


def _idprop(value):
    """IDProperties hold str/int/float/bool (and flat number lists); anything else goes in as JSON."""
    if isinstance(value, (str, bool, int, float)):
        return value
    return json.dumps(value, sort_keys=True)


def set_metadata(metadata: dict) -> list[str]:
    """Custom properties on the scene and on every root object; returns the objects touched."""
    scene = bpy.context.scene
    roots = [o for o in scene.objects if o.parent is None and o.type in ("MESH", "ARMATURE", "EMPTY")]
    for key, value in metadata.items():
        v = _idprop(value)
        scene[key] = v
        for obj in roots:
            obj[key] = v
    return [o.name for o in roots]


def custom_properties() -> dict:
    """Plain custom properties (str/number/bool) already on the scene and its objects: what a
    .blend or FBX source carries (e.g. metadata an earlier export wrote)."""

    def plain(idblock) -> dict:
        return {
            k: idblock[k]
            for k in idblock.keys()  # noqa: SIM118 - a Blender ID iterates its data, not its keys
            if not k.startswith("_") and isinstance(idblock[k], (str, int, float, bool))
        }

    scene = bpy.context.scene
    objects = {o.name: props for o in scene.objects if (props := plain(o))}
    return {"scene": plain(scene), "objects": objects}


def patch_glb_extras(path: str, extras: dict) -> None:
    """Write ``extras`` into the GLB's asset.extras (JSON chunk rewritten, BIN chunk untouched)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        doc, blob = glb.read_glb(data)
    except glb.GltfError as e:
        raise JobError(
            f"export: {os.path.basename(path)} is not a GLB the exporter should have written ({e})"
        ) from None
    asset = doc.setdefault("asset", {"version": "2.0"})
    asset["extras"] = {**(asset.get("extras") or {}), **extras}
    with open(path, "wb") as f:
        f.write(glb.pack_glb(doc, blob))


def glb_summary(path: str) -> dict:
    with open(path, "rb") as f:
        doc, _blob = glb.read_glb(f.read())
    skins = doc.get("skins") or []
    return {
        "skins": len(skins),
        "joints": sum(len(s.get("joints") or []) for s in skins),
        "meshes": len(doc.get("meshes") or []),
        "images": len(doc.get("images") or []),
    }


# ---------------------------------------------------------------- previews


def render_previews(meshes: list[bpy.types.Object], preview: dict, staging: str, stem: str) -> list[dict]:
    scene = bpy.context.scene
    render = scene.render
    render.engine = "BLENDER_WORKBENCH"
    render.resolution_x = render.resolution_y = preview["size"]
    render.resolution_percentage = 100
    render.film_transparent = True
    render.use_file_extension = False
    render.image_settings.file_format = "PNG"
    render.image_settings.color_mode = "RGBA"
    render.image_settings.color_depth = "8"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "TEXTURE"
    scene.view_settings.view_transform = "Standard"
    _tris, _verts, points = evaluated_stats(meshes)
    lo, hi = points.min(axis=0), points.max(axis=0)
    center = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo)) / 2 or 1.0

    import mathutils

    cam_data = bpy.data.cameras.new("comfy_avatar_preview")
    cam_data.type = "ORTHO"
    cam = bpy.data.objects.new("comfy_avatar_preview", cam_data)
    scene.collection.objects.link(cam)
    old_camera = scene.camera
    scene.camera = cam
    out = []
    try:
        for view in preview["views"]:
            d = mathutils.Vector(VIEWS[view]).normalized()
            rot = d.to_track_quat("Z", "Y")  # the camera looks down its -Z: +Z points back at it
            r = np.array(rot.to_matrix())
            local = (points - center) @ r  # camera axes: x right, y up
            lo2, hi2 = local[:, :2].min(axis=0), local[:, :2].max(axis=0)
            mid = (lo2 + hi2) / 2
            cam_data.ortho_scale = float(max(hi2 - lo2)) * 1.1 or 1.0
            cam_data.clip_start = 0.01
            cam_data.clip_end = 4 * radius + 1.0
            cam.location = mathutils.Vector(center + r @ np.array([mid[0], mid[1], 0.0])) + d * (2 * radius + 0.5)
            cam.rotation_euler = rot.to_euler()
            path = os.path.join(staging, f"{stem}_{view}.png")
            render.filepath = path
            bpy.ops.render.render(write_still=True)
            if not os.path.isfile(path) or os.path.getsize(path) == 0:
                raise JobError(f"preview: the {view} render wrote no image")
            out.append({"view": view, "path": path, "size": preview["size"]})
    finally:
        scene.camera = old_camera
        bpy.data.objects.remove(cam, do_unlink=True)
        bpy.data.cameras.remove(cam_data)
    return out


# ---------------------------------------------------------------- levels of detail


class Lod:
    """Decimate every mesh to ``ratio`` on copies of their data; restore the originals on exit."""

    def __init__(self, meshes: list[bpy.types.Object], ratio: float) -> None:
        self.meshes, self.ratio = meshes, ratio
        self.saved: list[tuple[bpy.types.Object, bpy.types.Mesh]] = []
        self.dropped_shape_keys: list[str] = []

    def __enter__(self) -> Lod:
        if self.ratio >= 1.0:
            return self
        for obj in self.meshes:
            orig = obj.data
            obj.data = orig.copy()
            self.saved.append((obj, orig))
            if obj.data.shape_keys:  # a modifier cannot be applied to a mesh with shape keys
                obj.shape_key_clear()
                self.dropped_shape_keys.append(obj.name)
            mod = obj.modifiers.new("comfy_avatar_lod", "DECIMATE")
            mod.decimate_type = "COLLAPSE"
            mod.ratio = self.ratio
            mod.use_collapse_triangulate = True
            obj.modifiers.move(len(obj.modifiers) - 1, 0)  # first: it sees the rest-pose mesh
            with bpy.context.temp_override(object=obj, active_object=obj, selected_objects=[obj]):
                result = bpy.ops.object.modifier_apply(modifier=mod.name)
            if result != {"FINISHED"}:
                raise JobError(f"lods: decimating {obj.name} to {self.ratio} failed ({result})")
        return self

    def __exit__(self, *exc) -> None:
        for obj, orig in self.saved:
            lod_mesh = obj.data
            obj.data = orig
            if lod_mesh.users == 0:
                bpy.data.meshes.remove(lod_mesh)
        # shape_key_clear() on the copy leaves its Key datablock behind with no owner; the next
        # .blend save then fails ("ShapeKey ... has an invalid 'from' pointer"). Remove those.
        stale = [k for k in bpy.data.shape_keys if k.user is None]
        if stale:
            bpy.data.batch_remove(stale)
        self.saved.clear()


# ---------------------------------------------------------------- exporters


def _image_bytes(img: bpy.types.Image) -> tuple[bytes, str] | None:
    """The image file as stored (packed bytes or the file on disk) and its extension."""
    data = b""
    if img.packed_file is not None:
        data = bytes(img.packed_file.data)
    else:
        path = bpy.path.abspath(img.filepath) if img.filepath else ""
        if path and os.path.isfile(path):
            with open(path, "rb") as f:
                data = f.read()
    if data.startswith(b"\x89PNG"):
        return data, ".png"
    if data.startswith(b"\xff\xd8"):
        return data, ".jpg"
    if data:
        return data, os.path.splitext(img.filepath or "")[1].lower() or ".img"
    return None


def name_packed_images() -> list[str]:
    """Give packed images without a file path one ("//<name>.<ext>"): the OBJ exporter skips a texture
    with an empty path and the FBX exporter cannot name the file it embeds (glTF imports leave it empty)."""
    named = []
    for img in bpy.data.images:
        if img.packed_file is not None and not img.filepath:
            stored = _image_bytes(img)
            ext = stored[1] if stored else ".png"
            img.filepath_raw = f"//{_SAFE.sub('_', os.path.splitext(img.name)[0]) or 'texture'}{ext}"
            named.append(img.name)
    return named


def _obj_textures(obj_path: str) -> list[str]:
    """Write the images the .mtl names beside the OBJ (<obj stem>_<image>.<ext>) and point the .mtl at them.

    The OBJ exporter only names images (path_mode STRIP): glTF/VRM textures are packed, so
    there is no file to reference. Returns the .mtl and the texture files."""
    mtl = os.path.splitext(obj_path)[0] + ".mtl"
    if not os.path.isfile(mtl):
        return []
    base = os.path.splitext(os.path.basename(obj_path))[0]
    images: dict[str, bpy.types.Image] = {}
    for img in bpy.data.images:
        images.setdefault(img.name, img)
        if img.filepath:
            images.setdefault(os.path.basename(bpy.path.abspath(img.filepath)), img)
    written: dict[str, str] = {}
    lines = []
    with open(mtl, encoding="utf-8") as f:
        for line in f.read().splitlines():
            parts = line.split()
            img = images.get(parts[-1]) if len(parts) >= 2 and parts[0].startswith("map_") else None
            stored = _image_bytes(img) if img is not None else None
            if stored is not None:
                if img.name not in written:
                    data, ext = stored
                    name = f"{base}_{_SAFE.sub('_', os.path.splitext(img.name)[0])}{ext}"
                    with open(os.path.join(os.path.dirname(obj_path), name), "wb") as out:
                        out.write(data)
                    written[img.name] = name
                line = " ".join([*parts[:-1], written[img.name]])
            lines.append(line)
    with open(mtl, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return [mtl, *(os.path.join(os.path.dirname(obj_path), n) for n in written.values())]


def export_one(fmt: str, path: str) -> list[str]:
    """Write ``path`` (staging) in ``fmt``; returns companion files written beside it."""
    if fmt == "glb":
        result = bpy.ops.export_scene.gltf(
            filepath=path,
            export_format="GLB",
            export_yup=True,
            export_apply=True,
            export_skins=True,
            export_extras=False,
            export_cameras=False,
            export_lights=False,
        )
    elif fmt == "fbx":
        result = bpy.ops.export_scene.fbx(
            filepath=path,
            object_types={"ARMATURE", "MESH", "EMPTY"},
            use_custom_props=True,
            add_leaf_bones=False,
            bake_anim=False,
            path_mode="COPY",
            embed_textures=True,
            mesh_smooth_type="FACE",
        )
    elif fmt == "obj":
        result = bpy.ops.wm.obj_export(
            filepath=path,
            export_materials=True,
            path_mode="STRIP",
            apply_modifiers=True,
            export_uv=True,
            export_normals=True,
        )
    else:
        bpy.ops.file.pack_all()
        result = bpy.ops.wm.save_as_mainfile(filepath=path, copy=True, compress=True, check_existing=False)
    if result != {"FINISHED"} or not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise JobError(f"export: the {fmt.upper()} exporter gave {result} and wrote no file")
    return _obj_textures(path) if fmt == "obj" else []


def file_name(stem: str, index: int, n_lods: int, ext: str) -> str:
    return f"{stem}.{ext}" if n_lods == 1 else f"{stem}_lod{index}.{ext}"


def main(args: dict, work_dir: str) -> dict:
    timer = Timer()
    a = check_args(args)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    enable_vrm_addon(required=a["ext"] == ".vrm")
    timer.lap("setup")

    import_source(a["src"], a["ext"])
    if bpy.context.object and bpy.context.object.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    meshes = scene_meshes()
    armatures = [o.name for o in bpy.context.scene.objects if o.type == "ARMATURE"]
    tris_in, verts_in, _ = evaluated_stats(meshes)
    props_in = custom_properties()
    roots = set_metadata(a["metadata"])
    name_packed_images()
    timer.lap("import")

    os.makedirs(a["out_dir"], exist_ok=True)
    staging = os.path.join(a["out_dir"], f".{a['stem']}.export-{os.getpid()}.part")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    files: list[dict] = []
    previews: list[dict] = []
    warnings: list[str] = []
    try:
        if a["preview"]:
            previews = render_previews(meshes, a["preview"], staging, a["stem"])
            timer.lap("preview")
        for i, ratio in enumerate(a["lods"]):
            with Lod(meshes, ratio) as lod:
                if lod.dropped_shape_keys:
                    warnings.append(f"LOD {ratio}: shape keys dropped on {', '.join(lod.dropped_shape_keys)}")
                tris, verts, _ = evaluated_stats(meshes)
                timer.lap("decimate")
                for fmt in a["formats"]:
                    path = os.path.join(staging, file_name(a["stem"], i, len(a["lods"]), fmt))
                    t0 = time.perf_counter()
                    companions = export_one(fmt, path)
                    entry = {
                        "format": fmt,
                        "lod": i,
                        "lod_ratio": ratio,
                        "triangles": tris,
                        "vertices": verts,
                        "path": path,
                        "companions": companions,
                    }
                    if fmt == "glb":
                        patch_glb_extras(path, a["metadata"])
                        entry.update(glb_summary(path))
                    entry["seconds"] = round(time.perf_counter() - t0, 4)
                    files.append(entry)
                    timer.lap(f"export_{fmt}")

        # Everything is written: move it into out_dir (one rename per file, same folder tree).
        def commit(path: str) -> str:
            final = os.path.join(a["out_dir"], os.path.basename(path))
            os.replace(path, final)
            return final

        for entry in files:
            entry["path"] = commit(entry["path"])
            entry["companions"] = [commit(p) for p in entry["companions"]]
            entry["bytes"] = os.path.getsize(entry["path"])
        for p in previews:
            p["path"] = commit(p["path"])
            p["bytes"] = os.path.getsize(p["path"])
        timer.lap("commit")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "src": a["src"],
        "files": files,
        "previews": previews,
        "input": {
            "triangles": tris_in,
            "vertices": verts_in,
            "meshes": [o.name for o in meshes],
            "armatures": armatures,
            "custom_properties": props_in,
        },
        "metadata_on": roots,
        "warnings": warnings,
        "timings_s": timer.steps,
    }


if __name__ == "__main__":
    run_job(main)
