"""Export stage: one asset -> GLB/FBX/OBJ/.blend at several levels of detail + previews + metadata.

    assets = await export_asset(Path("avatar.vrm"), Path("out"), stem="avatar",
                                formats=["glb", "fbx"], lods=[1.0, 0.5, 0.25],
                                preview={"size": 256, "views": ["front", "side", "three_quarter"]},
                                metadata={"title": "My avatar"})

One Blender job (blender_cli/export_asset.py) imports the source once (.vrm through the VRM
add-on, so the armature and skin reach the GLB/FBX), decimates per LOD with a Decimate modifier
first in the stack (skin weights survive), renders Workbench previews and writes every file into a
staging folder; only when all succeeded are they renamed into ``out_dir`` (a failure leaves none).

Returns one Asset per file: kind = the format ("glb", "fbx", "obj", "blend") with meta lod,
lod_ratio, triangles, vertices, bytes, companions (an OBJ's .mtl and textures), skins/joints
(GLB); then one "image" Asset per preview (meta view, size). Each Asset's meta["export"] holds the
job's input summary, warnings and timings. Names: <stem>.<ext> for a single LOD of 1.0, else
<stem>_lod<i>.<ext> (i = 0 for the largest ratio); previews <stem>_<view>.png. Existing files of
those names are replaced.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..assets import Asset, require_input_file
from ..config import Settings, load_settings
from ..errors import AvatarError, BlenderError
from ..secrets import contains_secret, is_secret_name, secret_values

log = logging.getLogger("comfy_avatar.export")

SCRIPT = "export_asset.py"
FORMATS = ("glb", "fbx", "obj", "blend")
SOURCE_EXTENSIONS = (".glb", ".gltf", ".vrm", ".fbx", ".obj", ".blend")
VIEWS = ("front", "side", "three_quarter", "back", "top")
DEFAULT_VIEWS = ("front", "side", "three_quarter")
MAX_LODS = 8
PREVIEW_SIZES = (16, 2048)
MAX_METADATA_BYTES = 64 * 1024
MAX_KEY_CHARS = 63  # Blender custom property names are at most 63 bytes
_STEM = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


# ---------------------------------------------------------------- input checks


def check_source(src: Path) -> Path:
    src = Path(src).absolute()
    require_input_file(
        src, "src", SOURCE_EXTENSIONS, "format", "connect a mesh/VRM node's output or give the path of an existing file"
    )
    return src


def check_stem(stem: str) -> str:
    stem = str(stem or "").strip()
    if not _STEM.match(stem) or len(stem) > 120:
        raise AvatarError(
            "stem",
            f"{stem!r} is not a plain file name",
            "use letters, digits, '.', '_' and '-' only (no folders), e.g. 'avatar_00001'",
        )
    return stem


def check_formats(formats: Sequence[str] | str) -> list[str]:
    items = formats.split(",") if isinstance(formats, str) else list(formats or [])
    clean = list(dict.fromkeys(str(f).strip().lower().lstrip(".") for f in items if str(f).strip()))
    if not clean:
        raise AvatarError("formats", "no format chosen", f"pick at least one of {', '.join(FORMATS)}")
    bad = [f for f in clean if f not in FORMATS]
    if bad:
        raise AvatarError("formats", f"{', '.join(map(repr, bad))} not supported", f"use {', '.join(FORMATS)}")
    return clean


def check_lods(lods: Sequence[float] | str) -> list[float]:
    """Ratios in (0, 1], largest first, duplicates dropped; a string is split at commas."""
    items: Sequence[Any] = (
        [p for p in lods.replace(";", ",").split(",") if p.strip()] if isinstance(lods, str) else list(lods or [])
    )
    ratios: list[float] = []
    for item in items:
        try:
            r = float(item)
        except (TypeError, ValueError):
            raise AvatarError(
                "lods",
                f"{str(item).strip()!r} is not a number",
                "give ratios like '1.0, 0.5, 0.25' (1.0 = full detail)",
            ) from None
        if not (0.0 < r <= 1.0) or math.isnan(r):
            raise AvatarError(
                "lods",
                f"ratio {r:g} is outside (0, 1]",
                "use ratios above 0 and at most 1 (0.5 keeps about half the triangles)",
            )
        ratios.append(r)
    if not ratios:
        raise AvatarError("lods", "no ratio given", "give at least one ratio, e.g. '1.0'")
    ratios = sorted(set(ratios), reverse=True)
    if len(ratios) > MAX_LODS:
        raise AvatarError("lods", f"{len(ratios)} ratios given", f"use at most {MAX_LODS} levels of detail")
    return ratios


def check_preview(preview: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not preview:
        return None
    if not isinstance(preview, Mapping):
        raise AvatarError(
            "preview",
            f"expected a dict like {{'size': 256, 'views': [...]}}, got {type(preview).__name__}",
            "pass None for no previews",
        )
    try:
        size = int(preview.get("size", 256))
    except (TypeError, ValueError):
        raise AvatarError(
            "preview.size", f"{preview.get('size')!r} is not a number", "give the image size in pixels"
        ) from None
    lo, hi = PREVIEW_SIZES
    if not lo <= size <= hi:
        raise AvatarError("preview.size", f"{size} px is outside {lo}-{hi}", "use e.g. 256")
    views = list(dict.fromkeys(preview.get("views") or DEFAULT_VIEWS))
    bad = [v for v in views if v not in VIEWS]
    if bad:
        raise AvatarError("preview.views", f"unknown view(s) {', '.join(map(repr, bad))}", f"use {', '.join(VIEWS)}")
    return {"size": size, "views": views}


def _walk(value: Any, path: str) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str) or not k.strip():
                raise AvatarError(f"metadata{path}", f"key {k!r} is not a non-empty string", "use text keys")
            where = f"{path}.{k}"
            if is_secret_name(k):
                raise AvatarError(
                    f"metadata{where}",
                    "looks like a secret (key/token/secret/password) and is refused",
                    "never put credentials in exported files; remove that key",
                )
            _walk(v, where)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _walk(v, f"{path}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise AvatarError(f"metadata{path}", f"{value} is not valid JSON", "use finite numbers")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise AvatarError(
            f"metadata{path}",
            f"a {type(value).__name__} is not JSON-safe",
            "use strings, numbers, booleans, lists and objects only",
        )


def check_metadata(metadata: Mapping[str, Any] | None, settings: Settings | None = None) -> dict[str, Any]:
    """A JSON-safe copy; secret-looking keys and values equal to a configured secret are refused."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise AvatarError("metadata", f"expected a JSON object, got {type(metadata).__name__}", "pass a dict")
    _walk(metadata, "")
    for key in metadata:
        if len(key.encode("utf-8")) > MAX_KEY_CHARS:
            raise AvatarError(
                f"metadata.{key[:20]}...",
                f"top-level key is longer than {MAX_KEY_CHARS} bytes",
                "use a shorter key (Blender custom property names are limited)",
            )
    text = json.dumps(metadata, sort_keys=True, allow_nan=False)
    if len(text.encode("utf-8")) > MAX_METADATA_BYTES:
        raise AvatarError("metadata", f"{len(text)} bytes of JSON", f"keep it under {MAX_METADATA_BYTES // 1024} KiB")
    values = secret_values(settings)
    if contains_secret(text, values):
        leaking = [k for k in metadata if contains_secret(json.dumps(metadata[k]), values)]
        raise AvatarError(
            f"metadata.{leaking[0] if leaking else '?'}",
            "contains the value of a configured secret",
            "remove it; secrets stay in environment variables",
        )
    return json.loads(text)


# ---------------------------------------------------------------- the job

_FIXES = {
    "src": "give a .glb/.vrm/.fbx/.obj/.blend file with at least one mesh",
    "lods": "use ratios in (0, 1]",
    "preview": "check the preview size and views",
    "formats": f"use {', '.join(FORMATS)}",
    "export": "see the Blender log; try fewer formats to find the one that fails",
}


def _remove_staging(out_dir: Path, stem: str) -> None:
    """Staging folders a killed job leaves (the script removes its own otherwise)."""
    for p in out_dir.glob(f".{stem}.export-*.part"):
        shutil.rmtree(p, ignore_errors=True)


async def export_asset(
    src: Path,
    out_dir: Path,
    *,
    stem: str,
    formats: Sequence[str] | str = ("glb",),
    lods: Sequence[float] | str = (1.0,),
    preview: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
    work_dir: Path | None = None,
    timeout_s: float | None = None,
) -> list[Asset]:
    """Export ``src`` to ``out_dir`` (see the module docstring); all inputs are checked first."""
    from ..runtime.blender import find_runtime, input_error, run_blender

    settings = settings or load_settings()
    src = check_source(src)
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise AvatarError("out_dir", f"{out_dir} is a file", "give a folder")
    stem = check_stem(stem)
    args = {
        "src": str(src),
        "out_dir": str(out_dir),
        "stem": stem,
        "formats": check_formats(formats),
        "lods": check_lods(lods),
        "preview": check_preview(preview),
        "metadata": check_metadata(metadata, settings),
    }
    runtime = find_runtime(settings.blender)
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="comfy-avatar-export-")))
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        try:
            res = await run_blender(
                SCRIPT, args, work_dir=work_dir, timeout_s=timeout_s, runtime=runtime, blender=settings.blender
            )
        except BlenderError as e:
            raise input_error(e, _FIXES, "src", src) from None
        finally:
            _remove_staging(out_dir, stem)
    result = res.result
    job = {
        "input": result.get("input", {}),
        "warnings": result.get("warnings", []),
        "timings_s": result.get("timings_s", {}),
        "blender_s": round(res.duration_s, 3),
        "src": str(src),
    }
    assets: list[Asset] = []
    for f in result.get("files", []):
        info = {k: v for k, v in f.items() if k not in ("path", "format")}
        assets.append(Asset.from_file(f["path"], f["format"], format=f["format"], export=job, **info))
    for p in result.get("previews", []):
        assets.append(
            Asset.from_file(p["path"], "image", view=p["view"], size=p["size"], bytes=p.get("bytes"), export=job)
        )
    for w in job["warnings"]:
        log.warning("export %s: %s", src.name, w)
    log.info(
        "exported %s -> %d files + %d previews in %.2f s",
        src.name,
        len(result.get("files", [])),
        len(result.get("previews", [])),
        res.duration_s,
    )
    return assets


def export_asset_sync(src: Path, out_dir: Path, **kwargs: Any) -> list[Asset]:
    """Blocking wrapper (scripts, tests, bench); safe to call while an event loop runs."""
    from ..runtime.blender import run_sync

    return run_sync(lambda: export_asset(src, out_dir, **kwargs), "export-asset")


__all__ = [
    "export_asset",
    "export_asset_sync",
    "check_formats",
    "check_lods",
    "check_metadata",
    "check_preview",
    "FORMATS",
    "SOURCE_EXTENSIONS",
    "VIEWS",
    "DEFAULT_VIEWS",
]
