"""3D inputs our rig, VRM and export nodes accept: our own handle, and ComfyUI's own 3D types.

One socket takes any of them, detected at run time by what the value is, with no import of a ComfyUI
class that an older server lacks (no hard dependency):

- our AVATAR_MESH / AVATAR_VRM handle (a dict: path, kind, sha256, meta);
- a core MESH (comfy_api IO.Mesh; ComfyUI 0.3.64 and 0.8.0: Hunyuan3D's VAE decode, VoxelToMesh): an
  object with ``vertices`` and ``faces`` tensors, batched; the first mesh of the batch is written to a
  GLB (core/mesh/arrays.py);
- a File3D (the FILE_3D* types of newer servers: Load3D's and SaveGLB's 3D file): an object holding a
  file's bytes and its format, saved with its own ``save_to`` (or read from ``data``/``get_data()``);
- a path to a .glb/.gltf/.obj/.fbx (+ .vrm for export): Load3D's ``mesh_path`` output, a Primitive
  string, or typed in the API prompt; relative paths are resolved as ComfyUI resolves annotated file
  names ("3d/figure.glb" in the input folder, "figure.glb [output]" in the output folder).

The socket's type lists AVATAR_MESH, MESH, every FILE_3D* type this server defines and STRING, so
the editor lets each of them connect.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from comfy_api.latest import io

from ..core.assets import Asset
from ..core.config import Settings
from ..core.errors import AvatarError
from ._common import AvatarMesh, AvatarVRM, output_path

log = logging.getLogger("comfy_avatar.nodes")

MESH_FILES = (".glb", ".gltf", ".obj", ".fbx")
FILE3D_TYPES = ("File3DAny", "File3DGLB", "File3DGLTF", "File3DFBX", "File3DOBJ")  # newer comfy_api names


def core_3d_types() -> list[Any]:
    """ComfyUI's own 3D socket types this server has: IO.Mesh and the File3D family (newer servers)."""
    found = [t for t in (getattr(io, "Mesh", None),) if t is not None]
    found += [t for name in FILE3D_TYPES if (t := getattr(io, name, None)) is not None]
    return found


def mesh_input(name: str, tooltip: str, *, vrm: bool = False, optional: bool = False) -> io.MultiType.Input:
    """One socket for our handles, a core MESH, a File3D and a file path (see the module docstring)."""
    types = [AvatarMesh, *([AvatarVRM] if vrm else []), *core_3d_types(), io.String]
    return io.MultiType.Input(name, types=types, optional=optional, tooltip=tooltip)


def _is_core_mesh(value: Any) -> bool:
    return hasattr(value, "vertices") and hasattr(value, "faces") and not isinstance(value, dict)


def _is_file3d(value: Any) -> bool:
    return any(hasattr(value, a) for a in ("save_to", "get_data")) or (
        hasattr(value, "data") and hasattr(value, "format")
    )


def _numpy(t: Any):
    import numpy as np

    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.asarray(t)


def _from_core_mesh(value: Any, input_name: str, settings: Settings) -> Asset:
    from ..core.mesh.arrays import arrays_to_glb

    verts, faces = _numpy(value.vertices), _numpy(value.faces)
    batch = 1
    if verts.ndim == 3:  # (batch, n, 3): SaveGLB writes one file per item; we rig the first
        batch = verts.shape[0]
        if batch == 0 or faces.ndim != 3 or faces.shape[0] == 0:
            raise AvatarError(
                input_name,
                f"is an empty batch of meshes (vertices {tuple(verts.shape)}, faces {tuple(faces.shape)})",
                "check the node that made the MESH: it produced no mesh (e.g. a decode that found no surface)",
            )
        verts, faces = verts[0], faces[0]
        if batch > 1:
            log.warning("comfy-avatar: %s is a batch of %d meshes; using the first", input_name, batch)
    out = output_path("avatar/core_mesh", "glb", settings)
    info = arrays_to_glb(verts, faces, out, what=input_name)
    return Asset.from_file(out, "mesh", source="comfyui-core-mesh", batch=batch, **info)


def _from_file3d(value: Any, input_name: str, settings: Settings) -> Asset:
    fmt = str(getattr(value, "format", "") or getattr(value, "_format", "") or "glb").lower().lstrip(".")
    if f".{fmt}" not in (*MESH_FILES, ".vrm"):
        raise AvatarError(input_name, f"is a 3D file in format {fmt!r}", f"give one of {', '.join(MESH_FILES)}")
    out = output_path("avatar/file3d", fmt, settings)
    if hasattr(value, "save_to"):
        value.save_to(str(out))
    else:
        data = value.get_data() if hasattr(value, "get_data") else value.data
        if hasattr(data, "seek"):
            data.seek(0)
        out.write_bytes(data.read() if hasattr(data, "read") else bytes(data))
    return Asset.from_file(out, "vrm" if fmt == "vrm" else "mesh", source="comfyui-file3d", format=fmt)


def resolve_path(text: str, input_name: str, extensions: tuple[str, ...]) -> Path:
    """An absolute path, or a name relative to ComfyUI's input/output folders (annotations honoured)."""
    raw = text.strip().strip('"')
    if not raw:
        raise AvatarError(
            input_name,
            "is an empty path",
            "connect a mesh, or give the path of a .glb/.obj/.fbx file (Load3D's mesh_path)",
        )
    candidates = [Path(raw).expanduser()]
    if not candidates[0].is_absolute():
        try:
            import folder_paths  # ComfyUI's module

            candidates = [
                Path(folder_paths.get_annotated_filepath(raw)),
                Path(folder_paths.get_output_directory()) / raw,
            ]
        except ImportError:
            pass
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise AvatarError(
            input_name,
            f"no file {raw!r} (looked at {', '.join(str(c) for c in candidates)})",
            "give an absolute path, or a name in ComfyUI's input folder such as 3d/figure.glb "
            "(what Load3D's mesh_path gives)",
        )
    if found.suffix.lower() not in extensions:
        raise AvatarError(input_name, f"{found.name} is not a supported 3D file", f"use one of {', '.join(extensions)}")
    problem = _content_problem(found)
    if problem:
        raise AvatarError(
            input_name,
            f"{found} {problem}",
            "give the file itself (re-export it from the program that made it); an empty or half-copied "
            "file fails only later, inside Blender, with a less clear message",
        )
    return found


def _content_problem(path: Path) -> str | None:
    """What is wrong with a 3D file's first bytes for its extension, or None. A cheap look (the first
    KiB), so an empty file, a text or HTML page saved as .glb (a failed download) or a renamed
    picture is named here rather than by the importer."""
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes)"
    with path.open("rb") as fh:
        head = fh.read(1024)
    ext = path.suffix.lower()
    if ext in (".glb", ".vrm"):
        if head[:4] != b"glTF":
            return f"is not a binary glTF: it starts with {head[:12]!r}, not b'glTF'"
        return None
    if ext == ".fbx":
        if head.startswith(b"Kaydara FBX Binary") or b"FBXHeaderExtension" in head or head.lstrip().startswith(b";"):
            return None
        return f"is not an FBX file: it starts with {head[:12]!r}"
    text = head.lstrip()
    if ext == ".gltf":
        return None if text.startswith(b"{") else f"is not glTF JSON: it starts with {head[:12]!r}"
    if ext == ".obj" and (b"\0" in head or text[:1] in (b"{", b"<")):
        return f"is not a text OBJ file: it starts with {head[:12]!r}"
    return None


def to_asset(value: Any, input_name: str, settings: Settings, *, vrm: bool = False) -> Asset:
    """Whatever came into a mesh socket -> our file handle (writing a file where the value is in memory)."""
    if isinstance(value, dict) and "path" in value and "kind" in value:
        return Asset.from_dict(value)
    if isinstance(value, (str, Path)):
        path = resolve_path(str(value), input_name, (*MESH_FILES, *((".vrm",) if vrm else ())))
        kind = "vrm" if path.suffix.lower() == ".vrm" else "mesh"
        return Asset.from_file(path, kind, source="path")
    if _is_core_mesh(value):
        return _from_core_mesh(value, input_name, settings)
    if _is_file3d(value):
        return _from_file3d(value, input_name, settings)
    raise AvatarError(
        input_name,
        f"got a {type(value).__name__}, which is not a 3D input this node reads",
        "connect an avatar mesh handle, a core MESH, a 3D file (File3D) or a .glb/.obj/.fbx path",
    )
