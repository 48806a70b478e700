"""Render a model from several directions with orthographic cameras (runs INSIDE Blender; tests only).

    run_blender(Path("tests/_blender_render_views.py"), {"mesh": "figure.glb", "out_dir": DIR,
                "views": [{"name": "front", "azimuth_deg": 0}, ...], "size": 512}, work_dir=...)

The tests' turnaround sheets: a model sheet is a set of orthographic views, so the cameras here are
orthographic, all with the same scale and framing (the figure's feet on one line, as artists draw them).
Azimuth 0 is the front (camera on glTF +Z), 90 the model's left side (camera on +X, the figure faces
picture-left), 180 the back. Workbench with flat lighting and the Standard view transform writes the
texture's colours unshaded, on a transparent background: what the texture checks compare against.
"""

from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "blender_cli"))

import bpy  # noqa: E402
from _job import run_job  # noqa: E402
from mathutils import Vector  # noqa: E402


def main(args: dict, work_dir: str) -> dict:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=args["mesh"])
    meshes = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    pts = [o.matrix_world @ v.co for o in meshes for v in o.data.vertices]
    lo = Vector([min(p[i] for p in pts) for i in range(3)])
    hi = Vector([max(p[i] for p in pts) for i in range(3)])
    centre = Vector(args["centre"]) if args.get("centre") else (lo + hi) / 2  # Blender axes
    size = int(args.get("size", 512))
    scale = float(args.get("ortho_scale") or 1.15 * max(hi.z - lo.z, hi.x - lo.x, hi.y - lo.y))
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = args.get("light", "FLAT")  # STUDIO shows the shape
    scene.display.shading.color_type = args.get("color_type", "TEXTURE")
    scene.display_settings.display_device = "sRGB"
    scene.view_settings.view_transform = "Standard"
    scene.render.film_transparent = True
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    cam_data = bpy.data.cameras.new("cam")
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = scale
    cam = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    out = {}
    os.makedirs(args["out_dir"], exist_ok=True)
    for view in args["views"]:
        az = math.radians(float(view["azimuth_deg"]))
        # glTF +Z (the front) is Blender -Y; azimuth turns towards glTF +X (Blender +X)
        direction = Vector((math.sin(az), -math.cos(az), 0.0))
        cam.location = centre + direction * 10.0
        cam.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
        path = os.path.join(args["out_dir"], f"{view['name']}.png")
        scene.render.filepath = path
        bpy.ops.render.render(write_still=True)
        out[view["name"]] = path
    return {"images": out, "ortho_scale": scale, "size": size, "bounds": [list(lo), list(hi)]}


if __name__ == "__main__":
    run_job(main)
