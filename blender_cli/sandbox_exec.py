"""Run one untrusted (model-written) bpy script, then export the scene it built.

Started by core/executor/sandbox.py through the runner (protocol: _job.py). args:
    {"script": "generated_script.py", "formats": ["glb", "fbx", "blend"], "name": "asset",
     "guard": false, "allowed_imports": [...]}
With OS isolation (bubblewrap, the default) the script runs with ordinary Python: the kernel
contains it (see core/runtime/isolation.py), so nothing in this process pretends to. With
``guard`` true (sandbox.isolation: none) the in-process guards of _sandbox_guard.py are
installed BEFORE the script's code runs and stay for the rest of the process; they are a
best effort, not a boundary.

The contract the script sees (also stated in the coder prompt, core/llm/script_writer.py):
- the scene starts empty; the script builds objects; this file exports them afterwards to
  <work_dir>/out/<name>.<ext> for every format asked for;
- the main output path is in the environment variable COMFY_AVATAR_OUTPUT and in sys.argv
  (``sys.argv == [script, "--", "--output", PATH]``); its folder, COMFY_AVATAR_OUTPUT_DIR, and
  the current directory (the work dir) are writable, /tmp is scratch, everything else is
  read-only or absent; a script may export to PATH itself (the executor exports again from
  the same scene).
"""

from __future__ import annotations

import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _job import JobError, run_job  # noqa: E402

SCRIPT_NAME = "generated_script.py"
GEOMETRY_TYPES = ("MESH", "CURVE", "SURFACE", "META", "FONT")
DEFAULT_IMPORTS = ("bpy", "bmesh", "mathutils", "math", "random")
OUTPUT_ENV, OUTPUT_DIR_ENV = "COMFY_AVATAR_OUTPUT", "COMFY_AVATAR_OUTPUT_DIR"


def _script_line(exc: BaseException) -> int | None:
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.basename(frame.filename) == SCRIPT_NAME:
            line = frame.lineno
    return line


def _print_script_traceback(exc: BaseException) -> None:
    """The traceback from the script's first frame on (this file's frames dropped) to the log,
    so the log tail the repair loop sends back shows the failing line and its source."""
    frames = traceback.extract_tb(exc.__traceback__)
    start = next((i for i, f in enumerate(frames) if os.path.basename(f.filename) == SCRIPT_NAME), 0)
    lines = [
        "Traceback (most recent call last):\n",
        *traceback.format_list(frames[start:]),
        *traceback.format_exception_only(type(exc), exc),
    ]
    sys.stderr.write("".join(lines))
    sys.stderr.flush()


def _read_roots(bpy: object) -> list[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    roots = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        here,
        os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
        os.path.dirname(os.path.abspath(bpy.__file__)),  # type: ignore[attr-defined]
        "/usr/lib",
        "/usr/share",
        "/usr/local/lib",
        "/lib",
        "/lib64",
        "/etc/ssl",
        "/etc/localtime",
        "/etc/mime.types",
        "/etc/fonts",
        "/dev/null",
        "/dev/urandom",
        "/sys/devices/system/cpu",
    }
    try:  # a Blender binary keeps scripts/add-ons and data files beside, not inside, the bpy package
        import bpy as _bpy

        roots.update(
            p
            for p in (
                _bpy.utils.system_resource("SCRIPTS"),
                _bpy.utils.system_resource("DATAFILES"),
                _bpy.utils.resource_path("LOCAL"),
            )
            if p
        )
    except Exception:  # noqa: BLE001 - older/odd builds: the prefixes above still cover the bpy module
        pass
    for name in ("BLENDER_USER_RESOURCES", "BLENDER_USER_CONFIG", "BLENDER_USER_SCRIPTS", "BLENDER_USER_DATAFILES"):
        if os.environ.get(name):
            roots.add(os.environ[name])
    return sorted(r for r in roots if r)


def _scene_stats(bpy: object) -> dict:
    import bpy as _bpy  # same module; typed access
    import numpy as np

    dg = _bpy.context.evaluated_depsgraph_get()
    objects, verts, tris = [], 0, 0
    lo, hi = [float("inf")] * 3, [float("-inf")] * 3
    for obj in _bpy.context.scene.objects:
        entry = {"name": obj.name, "type": obj.type}
        if obj.type in GEOMETRY_TYPES:
            ev = obj.evaluated_get(dg)
            mesh = ev.to_mesh()
            try:
                entry["vertices"] = len(mesh.vertices)
                entry["triangles"] = sum(len(p.vertices) - 2 for p in mesh.polygons)
                if mesh.vertices:
                    co = np.empty(len(mesh.vertices) * 3, dtype=np.float64)
                    mesh.vertices.foreach_get("co", co)
                    co = co.reshape(-1, 3)
                    mw = np.array(ev.matrix_world, dtype=np.float64)
                    w = co @ mw[:3, :3].T + mw[:3, 3]
                    for i in range(3):
                        lo[i], hi[i] = min(lo[i], float(w[:, i].min())), max(hi[i], float(w[:, i].max()))
            finally:
                ev.to_mesh_clear()
            verts += entry["vertices"]
            tris += entry["triangles"]
        objects.append(entry)
    has = tris > 0
    return {
        "objects": objects[:100],
        "object_count": len(objects),
        "mesh_objects": sum(1 for o in objects if o.get("triangles")),
        "vertices": verts,
        "triangles": tris,
        "bbox_min": lo if has else None,
        "bbox_max": hi if has else None,
        "dimensions_m": [hi[i] - lo[i] for i in range(3)] if has else None,
    }


def _export(fmt: str, path: str) -> None:
    import bpy

    if fmt == "glb":
        res = bpy.ops.export_scene.gltf(filepath=path, export_format="GLB", export_apply=True, export_yup=True)
    elif fmt == "fbx":
        res = bpy.ops.export_scene.fbx(
            filepath=path, use_mesh_modifiers=True, add_leaf_bones=False, axis_forward="-Z", axis_up="Y"
        )
    elif fmt == "blend":
        # uncompressed: the parent checks the file's blocks (no text blocks, scripted drivers or
        # library links) without decompressing or loading it (core/executor/output_check.py)
        res = bpy.ops.wm.save_as_mainfile(filepath=path, copy=True, compress=False)
    else:
        raise JobError(f"unknown output format {fmt!r} (use glb, fbx or blend)")
    if "FINISHED" not in res or not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise JobError(f"exporting {fmt} failed ({sorted(res)})")


def main(args: dict, work_dir: str) -> dict:
    import bpy

    work = os.path.realpath(work_dir)
    os.chdir(work)
    formats = [str(f).lower() for f in args.get("formats") or ["glb"]]
    name = str(args.get("name") or "asset")
    script_path = os.path.join(work, args.get("script", SCRIPT_NAME))
    with open(script_path, encoding="utf-8") as f:
        source = f.read()
    try:
        code = compile(source, script_path, "exec")
    except SyntaxError as e:
        raise JobError(f"the script has a syntax error at line {e.lineno}: {e.msg}") from None
    out_dir = os.path.join(work, "out")
    os.makedirs(out_dir, exist_ok=True)
    output = os.path.join(out_dir, f"{name}.{formats[0]}")
    os.environ[OUTPUT_ENV], os.environ[OUTPUT_DIR_ENV] = output, out_dir

    bpy.ops.wm.read_factory_settings(use_empty=True)
    script_globals: dict = {"__name__": "__main__", "__file__": script_path}
    if args.get("guard", True):
        from _sandbox_guard import install_audit_hook, install_ops_guard, restricted_builtins

        scripts_root = bpy.utils.system_resource("SCRIPTS")
        install_audit_hook(work, read_roots=_read_roots(bpy), dll_roots=[scripts_root])
        install_ops_guard(work)
        script_globals["__builtins__"] = restricted_builtins(args.get("allowed_imports") or DEFAULT_IMPORTS)
    sys.argv = [script_path, "--", "--output", output]
    try:
        exec(code, script_globals)  # noqa: S102 - the point of this file; guarded above
    except MemoryError:
        raise JobError("the script ran out of memory (MemoryError): the sandbox's memory limit was reached") from None
    except SystemExit as e:
        if e.code not in (None, 0):
            raise JobError(f"the script called exit({e.code!r})") from None
    except Exception as e:  # noqa: BLE001 - reported with the script's line number
        _print_script_traceback(e)
        line = _script_line(e)
        where = f" at line {line}" if line else ""
        raise JobError(f"the script failed{where}: {type(e).__name__}: {e}") from e
    script_globals.clear()

    if bpy.context.object is not None and bpy.context.object.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    stats = _scene_stats(bpy)
    if not stats["triangles"]:
        kinds = ", ".join(sorted({o["type"] for o in stats["objects"]})) or "nothing"
        raise JobError(f"the script finished but the scene has no mesh faces (empty scene; it holds: {kinds})")
    files = {}
    for fmt in formats:
        path = os.path.join(out_dir, f"{name}.{fmt}")
        _export(fmt, path)
        files[fmt] = os.path.relpath(path, work)
    stats["files"] = files
    stats["blender"] = bpy.app.version_string
    return stats


if __name__ == "__main__":
    run_job(main)
