"""The avatar's face inside Blender (bpy + numpy): the head from the rig, a front picture of it, and the
face finder's landmarks placed on the mesh.

    head = head_region(body, arm)                  # head bone, per-vertex head weight, head box
    rgb, mask, source, head_px = head_picture(body, head, work_dir)
    face = vrm_face.find_face(rgb, mask, overrides, head_px)  # comfy_avatar_nodes/core/vrm/face.py, loaded by path
    points = place_landmarks(body, head, face)       # 3D points on the front of the head

Why two picture sources: the CPU path's mesh carries the source front picture as its texture,
projected along the view (the silhouette mesh), so the head's part of that picture is cut out of the
texture directly (no render, a few milliseconds). Any other mesh (TRELLIS, UniRig, a rigged input, a
texture atlas) gets an orthographic Workbench render of the head from the front, in this same run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import bpy
import numpy as np
from _job import JobError
from _pack import load

vrm_face = load("comfy_avatar_vrm_face", "vrm/face.py")
"""The face finder (stdlib + numpy; cv2 used when this Blender has it)."""

UV_FIT_TOLERANCE = 0.03  # RMS residual of the view -> UV fit, as a share of the head's UV extent
RENDER_SIDE = 192  # pixels on the long side of the head render


def verts(me: bpy.types.Mesh) -> np.ndarray:
    """Vertex positions (V, 3). Not _vrm_common's: that module imports this one (no cycles)."""
    co = np.empty(len(me.vertices) * 3, dtype=np.float64)
    me.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


@dataclass
class Head:
    bone: str
    weight: np.ndarray  # (V,) how much each vertex follows the head (0..1)
    box: tuple[float, float, float, float]  # x0, x1, z0 (head bone / neck), z1 (top), Blender axes
    y_front: float  # the frontmost Y of the head (Blender front is -Y)
    neck_z: float

    @property
    def width(self) -> float:
        return self.box[1] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[2]


def head_bone_name(arm: bpy.types.Object) -> str:
    return arm.data.vrm_addon_extension.vrm1.humanoid.human_bones.head.node.bone_name


def head_region(body: bpy.types.Object, arm: bpy.types.Object) -> Head:
    """Vertices that follow the head bone (and bones below it: jaw, eyes, hair) and their box."""
    name = head_bone_name(arm)
    bone = arm.data.bones[name]
    names = {name} | {b.name for b in bone.children_recursive}
    groups = {vg.index for vg in body.vertex_groups if vg.name in names}
    me = body.data
    weight = np.zeros(len(me.vertices))
    for v in me.vertices:
        for g in v.groups:
            if g.group in groups:
                weight[v.index] += g.weight
    weight = np.clip(weight, 0.0, 1.0)
    co = verts(me)
    core = co[weight > 0.5]
    bone_z = float(bone.head_local[2])
    if len(core) < 8:
        raise JobError(
            f"face: only {len(core)} vertices follow the head bone {name!r}, so there is no head to "
            "put expressions on (set expressions off, or check the humanoid bone map)"
        )
    z1 = float(core[:, 2].max())
    chin = _chin(co, weight, bone_z, z1)
    head = core[core[:, 2] >= chin]
    x0, x1 = float(head[:, 0].min()), float(head[:, 0].max())
    return Head(bone=name, weight=weight, box=(x0, x1, chin, z1), y_front=float(head[:, 1].min()), neck_z=bone_z)


def _chin(co: np.ndarray, weight: np.ndarray, bone_z: float, top: float) -> float:
    """Where the head ends below: scanning down from its widest row, the first row no wider than the
    neck (60% of the head). Rigs put the head joint anywhere between the chin and the mouth, so the
    head box cannot simply start at the head bone."""
    length = top - bone_z
    lo = bone_z - 0.45 * length
    axis = float(np.median(co[weight > 0.5, 0]))
    upper = co[(weight > 0.5) & (co[:, 2] >= bone_z)]
    half = float(np.abs(upper[:, 0] - axis).max()) if len(upper) else 1.0
    # every vertex near the head axis (T-pose arms and shoulders are cut off at 1.2 head widths)
    pts = co[(co[:, 2] >= lo) & (np.abs(co[:, 0] - axis) < 1.2 * half)]
    bins = 40
    edges = np.linspace(lo, top, bins + 1)
    row = np.clip(np.digitize(pts[:, 2], edges) - 1, 0, bins - 1)
    width = np.zeros(bins)
    for r in range(bins):
        xs = pts[row == r, 0]
        if len(xs):
            width[r] = 2 * np.percentile(np.abs(xs - axis), 95)
    widest = int(np.argmax(width[bins // 3 :])) + bins // 3
    below = width[: widest + 1]
    filled = np.flatnonzero(below > 0)
    if not len(filled):
        return float(bone_z)
    neck = int(filled[np.argmin(below[filled])])  # the narrowest row under the widest: the neck
    for r in range(neck, widest + 1):
        if width[r] > 1.3 * width[neck]:
            return float(min(edges[r], bone_z + 0.3 * length))
    return float(bone_z)


# ---------------------------------------------------------------- the front picture of the head


def _base_image(body: bpy.types.Object):
    for mat in body.data.materials:
        if not mat or not mat.node_tree:
            continue
        for node in mat.node_tree.nodes:
            if (
                node.type == "TEX_IMAGE"
                and node.image is not None
                and node.image.size[0] > 0
                and any(link.to_socket.name == "Base Color" for out in node.outputs for link in out.links)
            ):
                return node.image
    return None


def _vertex_uvs(me: bpy.types.Mesh) -> np.ndarray | None:
    if not me.uv_layers:
        return None
    uv = np.empty(len(me.loops) * 2)
    me.uv_layers.active.data.foreach_get("uv", uv)
    lv = np.empty(len(me.loops), dtype=np.int64)
    me.loops.foreach_get("vertex_index", lv)
    out = np.zeros((len(me.vertices), 2))
    out[lv] = uv.reshape(-1, 2)
    return out


def _normals(me: bpy.types.Mesh) -> np.ndarray:
    n = np.empty(len(me.vertices) * 3)
    me.vertices.foreach_get("normal", n)
    return n.reshape(-1, 3)


def _grid_mask(points: np.ndarray, h: int, w: int, radius: float) -> np.ndarray:
    """Pixels within ``radius`` pixels of any point (points in pixel units, x right, y down)."""
    mask = np.zeros((h, w), bool)
    r = max(1, int(np.ceil(radius)))
    px = np.clip(np.round(points).astype(int), [0, 0], [w - 1, h - 1])
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dx * dx + dy * dy <= radius * radius + 0.5:
                mask[np.clip(px[:, 1] + dy, 0, h - 1), np.clip(px[:, 0] + dx, 0, w - 1)] = True
    return mask


def _from_texture(body: bpy.types.Object, head: Head) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The head's part of the base colour texture when the texture is a front projection (else None),
    with how many texture pixels tall the head is (the cut-out is enlarged to at least 16: the finder
    must know when it looks at a few pixels blown up)."""
    me = body.data
    image = _base_image(body)
    uv = _vertex_uvs(me)
    if image is None or uv is None:
        return None
    co, nrm = verts(me), _normals(me)
    x0, x1, z0, z1 = head.box
    front = (head.weight > 0.5) & (nrm[:, 1] < -0.3) & (co[:, 2] >= z0)
    if front.sum() < 12:
        return None
    A = np.stack([co[front, 0], co[front, 2], np.ones(int(front.sum()))], axis=1)
    coef, *_ = np.linalg.lstsq(A, uv[front], rcond=None)
    resid = uv[front] - A @ coef
    extent = float(np.ptp(uv[front], axis=0).max())
    if extent <= 0 or float(np.sqrt((resid**2).sum(axis=1).mean())) > UV_FIT_TOLERANCE * extent:
        return None
    tw, th = image.size
    # pixel size of the head box in the texture: the box corners through the fit
    corners = np.array([[x0, z0, 1], [x1, z0, 1], [x0, z1, 1]]) @ coef
    head_px = float(abs(corners[2, 1] - corners[0, 1]) * th)
    w = int(np.clip(round(abs(corners[1, 0] - corners[0, 0]) * tw), 16, 512))
    h = int(np.clip(round(head_px), 16, 512))
    px = np.empty(tw * th * image.channels, dtype=np.float32)
    image.pixels.foreach_get(px)
    tex = px.reshape(th, tw, image.channels)
    gx = x0 + (np.arange(w) + 0.5) / w * (x1 - x0)
    gz = z1 - (np.arange(h) + 0.5) / h * (z1 - z0)
    X, Z = np.meshgrid(gx, gz)
    u, v = (np.stack([X.ravel(), Z.ravel(), np.ones(X.size)], axis=1) @ coef).T
    cols = np.clip((u % 1.0) * tw, 0, tw - 1).astype(int)
    rows = np.clip((v % 1.0) * th, 0, th - 1).astype(int)
    rgb = tex[rows, cols, :3].reshape(h, w, 3)
    if image.colorspace_settings.name == "sRGB" and image.is_float:
        rgb = np.where(rgb <= 0.0031308, rgb * 12.92, 1.055 * np.power(np.clip(rgb, 0, None), 1 / 2.4) - 0.055)
    rgb = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    pts = np.stack([(co[front, 0] - x0) / (x1 - x0) * w, (z1 - co[front, 2]) / (z1 - z0) * h], axis=1)
    spacing = np.sqrt(0.8 * w * h / max(1, int(front.sum())))  # pixels between neighbouring vertices
    mask = _grid_mask(pts, h, w, max(1.5, 0.8 * spacing))
    return rgb, mask, head_px


def _render(body: bpy.types.Object, head: Head, work_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """An orthographic, flat-lit, texture-coloured Workbench render of the head box from the front."""
    x0, x1, z0, z1 = head.box
    scene = bpy.context.scene
    cam_data = bpy.data.cameras.new("face_camera")
    cam_data.type = "ORTHO"
    bw, bh = x1 - x0, z1 - z0
    cam_data.ortho_scale = max(bw, bh)
    cam = bpy.data.objects.new("face_camera", cam_data)
    scene.collection.objects.link(cam)
    cam.location = ((x0 + x1) / 2, head.y_front - 2.0, (z0 + z1) / 2)
    cam.rotation_euler = (np.pi / 2, 0.0, 0.0)  # looks along +Y, at the avatar's front
    cam_data.clip_end = 10.0
    old = (
        scene.camera,
        scene.render.engine,
        scene.render.resolution_x,
        scene.render.resolution_y,
        scene.render.filepath,
        scene.render.film_transparent,
    )
    scene.camera = cam
    scene.render.engine = "BLENDER_WORKBENCH"
    scale = RENDER_SIDE / max(bw, bh)
    scene.render.resolution_x, scene.render.resolution_y = max(8, round(bw * scale)), max(8, round(bh * scale))
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    shading = scene.display.shading
    shading.light, shading.color_type = "FLAT", "TEXTURE"
    scene.view_settings.view_transform = "Standard"
    path = os.path.join(work_dir, "face_front.png")
    scene.render.filepath = path
    try:
        bpy.ops.render.render(write_still=True)
        img = bpy.data.images.load(path)
        w, h = img.size
        px = np.empty(w * h * 4, dtype=np.float32)
        img.pixels.foreach_get(px)
        bpy.data.images.remove(img)
    finally:
        (
            scene.camera,
            scene.render.engine,
            scene.render.resolution_x,
            scene.render.resolution_y,
            scene.render.filepath,
            scene.render.film_transparent,
        ) = old
        bpy.data.objects.remove(cam, do_unlink=True)
        bpy.data.cameras.remove(cam_data)
    rgba = px.reshape(h, w, 4)[::-1]
    return (np.clip(rgba[..., :3], 0, 1) * 255).astype(np.uint8), rgba[..., 3] > 0.5


def save_png(path: str, rgb: np.ndarray, mask: np.ndarray) -> None:
    """The picture the finder saw (the job's work dir keeps it for a look when a face is missed)."""
    h, w = mask.shape
    img = bpy.data.images.new("face_front", w, h, alpha=True)
    px = np.concatenate([rgb.astype(np.float32) / 255.0, mask[..., None].astype(np.float32)], axis=-1)[::-1]
    img.pixels.foreach_set(px.ravel())
    img.filepath_raw = path
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)


def head_picture(
    body: bpy.types.Object, head: Head, work_dir: str, source: str = "auto"
) -> tuple[np.ndarray, np.ndarray, str, float | None]:
    """(rgb, mask, "texture" | "render", the head's height in source pixels or None for a render): the
    texture cut-out when it is a front projection, else a render (always RENDER_SIDE pixels)."""
    if source in ("auto", "texture"):
        got = _from_texture(body, head)
        if got is not None:
            save_png(os.path.join(work_dir, "face_front.png"), got[0], got[1])
            return got[0], got[1], "texture", got[2]
    rgb, mask = _render(body, head, work_dir)
    return rgb, mask, "render", None


# ---------------------------------------------------------------- landmarks on the mesh


def place_landmarks(body: bpy.types.Object, head: Head, face: dict) -> dict[str, dict]:
    """Each landmark as a point on the front of the head (ray cast from the front), with its size in metres."""
    from mathutils import Vector
    from mathutils.bvhtree import BVHTree

    me = body.data
    co = verts(me)
    me.calc_loop_triangles()
    tris = np.empty(len(me.loop_triangles) * 3, dtype=np.int64)
    me.loop_triangles.foreach_get("vertices", tris)
    tris = tris.reshape(-1, 3)
    keep = (head.weight[tris] > 0.05).any(axis=1)
    tree = BVHTree.FromPolygons(co.tolist(), tris[keep].tolist(), all_triangles=True)
    x0, x1, z0, z1 = head.box
    out: dict[str, dict] = {}
    for name, lm in face["landmarks"].items():
        x = x0 + lm["x"] * (x1 - x0)
        z = z1 - lm["y"] * (z1 - z0)
        hit = tree.ray_cast(Vector((x, head.y_front - 1.0, z)), Vector((0.0, 1.0, 0.0)), 3.0)
        if hit[0] is not None:
            y = float(hit[0][1])
        else:  # a hole in the surface: the nearest head vertex in the view plane
            near = np.argmin(np.where(head.weight > 0.5, (co[:, 0] - x) ** 2 + (co[:, 2] - z) ** 2, np.inf))
            y = float(co[near, 1])
        out[name] = {
            "co": np.array([x, y, z]),
            "w": lm["w"] * (x1 - x0),
            "h": lm["h"] * (z1 - z0),
            "source": lm["source"],
        }
        if lm.get("lid"):  # the bare skin above an eye, up to the brow or the fringe (metres)
            out[name]["lid"] = lm["lid"] * (z1 - z0)
    return out
