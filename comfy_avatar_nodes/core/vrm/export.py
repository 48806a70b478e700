"""Writing VRM 1.0 files: the Blender job runner every VRM-writing script shares (run_vrm_job: the
CPU template rig in rig/cpu.py uses it too), and a mesh that already has a skeleton and skin
weights -> VRM 1.0 (one Blender job, blender_cli/rigged_to_vrm.py).

    asset = await rigged_to_vrm(Path("unirig_00001.glb"), Path("unirig_00001.humanoid.json"),
                                Path("out/avatar.vrm"), VrmMeta(name="Ada"))

The GPU path's last step: UniRig's merged GLB/FBX (bones bone_0..bone_N) plus its humanoid map,
or any rigged GLB/FBX with a map from VRM humanoid names to its bone names. The skin weights are
kept; mapped bones are renamed to their VRM names; the figure is turned to face +Z standing on
Y=0 (from the mapped bones), scaled to ``target_height_m`` (TRELLIS/UniRig output sits in a unit
cube) and put into the VRM T-pose. Bad maps fail before Blender starts where they can (format,
unknown names, required bones missing, a bone used twice); bone names the file lacks, a skeleton
that is not chained like a humanoid and a file without armature fail in Blender, before anything
is written.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any

from ..assets import Asset, require_input_file
from ..config import BlenderSettings, Settings, load_settings
from ..errors import AvatarError, BlenderError
from ..jsontext import parse_object, require_object
from .face_inputs import FaceOptions, log_face
from .meta import VrmMeta
from .spec import HUMAN_BONES, REQUIRED_BONES

log = logging.getLogger("comfy_avatar.vrm_export")

SCRIPT = "rigged_to_vrm.py"
RIGGED_EXTENSIONS = (".glb", ".gltf", ".fbx")
MIN_HEIGHT_M, MAX_HEIGHT_M = 0.3, 3.0
MAP_EXAMPLE = (
    '{"hips": "<bone name>", "leftUpperArm": "<bone name>", ...} '
    '(or UniRig\'s <name>.humanoid.json, whose "humanBones" holds it)'
)
MAP_FIX = f"give a JSON object {MAP_EXAMPLE}"
_INPUT_FIXES = {
    "rigged": "give a .glb/.fbx with an armature and a skinned mesh, e.g. the output of Auto-rig (UniRig)",
    "mapping": "fix the humanoid map: each VRM bone must name a bone of the rigged file, chained hips -> spine -> "
    "head, hips -> upper leg -> lower leg -> foot, spine -> upper arm -> lower arm -> hand",
    "meta": "fix the VRM meta inputs",
    "out": "name the output file <name>.vrm",
}


def check_vrm_out(out: Path, meta: Any) -> None:
    """What every VRM-writing job needs besides its input file: a .vrm target and a VrmMeta."""
    if out.suffix.lower() != ".vrm":
        raise AvatarError("out", f"{out} does not end in .vrm", "name the output file <name>.vrm")
    if not isinstance(meta, VrmMeta):
        raise AvatarError("meta", f"expected VrmMeta, got {type(meta).__name__}", "build it with VrmMeta(name=...)")


def remove_partial_vrms(out: Path) -> None:
    """Temp files the script leaves only when Blender dies mid-export (it cleans up otherwise)."""
    for p in out.parent.glob(f".{out.stem}.*.part.vrm"):
        with contextlib.suppress(OSError):
            p.unlink()


async def run_vrm_job(
    script: str,
    args: dict[str, Any],
    out: Path,
    *,
    fixes: dict[str, str],
    file_input: str,
    file: Path,
    blender: BlenderSettings,
    work_dir: Path | None,
    timeout_s: float | None,
    prefix: str,
) -> dict[str, Any]:
    """Run a VRM-writing Blender script in ``work_dir`` (a temp dir when None) with the runtime the
    blender settings name. Bad inputs become AvatarErrors naming ``file_input``; no partial .vrm
    is left beside ``out``. Returns the script's result with ``blender_s`` added."""
    from ..runtime.blender import find_runtime, input_error, run_blender

    runtime = find_runtime(blender)

    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        try:
            res = await run_blender(
                script, args, work_dir=work_dir, timeout_s=timeout_s, runtime=runtime, blender=blender
            )
        except BlenderError as e:
            raise input_error(e, fixes, file_input, file) from None
        finally:
            remove_partial_vrms(out)
    if not out.is_file():
        raise AvatarError("out", f"the Blender job finished but {out} is missing", "see the Blender log")
    result = dict(res.result)
    result["blender_s"] = round(res.duration_s, 3)
    return result


def load_mapping(mapping: dict[str, Any] | str | Path) -> dict[str, str]:
    """VRM humanoid name -> bone name, from a dict, a JSON file or JSON text; checked.

    Accepts the plain map or UniRig's humanoid map file ({"humanBones": {...}, "heuristic": ...}).
    Raises AvatarError("mapping", ...) naming unknown VRM names, missing required bones and
    bones given twice.
    """
    if isinstance(mapping, (str, Path)):
        text = str(mapping).strip()
        if isinstance(mapping, str) and text.startswith("{"):
            source = "the JSON text"
        else:
            path = Path(mapping)
            if not path.is_file():
                raise AvatarError(
                    "mapping",
                    f"file {path} does not exist",
                    "connect the rigged handle of Auto-rig (UniRig) (it carries its humanoid map) "
                    "or give the map's JSON",
                )
            text, source = path.read_text(encoding="utf-8"), path.name
        mapping = parse_object(text, "mapping", MAP_EXAMPLE, source=source)
    require_object(mapping, "mapping", MAP_EXAMPLE)
    bones = mapping.get("humanBones", mapping)
    if not isinstance(bones, dict):
        raise AvatarError("mapping", f"humanBones must be an object, got {type(bones).__name__}", MAP_FIX)
    unknown = sorted(k for k in bones if k not in HUMAN_BONES)
    if unknown:
        raise AvatarError(
            "mapping",
            f"{', '.join(map(repr, unknown))} are not VRM 1.0 humanoid bone names",
            f"use VRM names such as hips, spine, leftUpperArm, rightFoot ({MAP_FIX})",
        )
    bad = [k for k, v in bones.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise AvatarError("mapping", f"{', '.join(bad)} must each name a bone (a non-empty string)", MAP_FIX)
    clean = {b: bones[b].strip() for b in HUMAN_BONES if b in bones}  # VRM order: required first
    missing = [b for b in REQUIRED_BONES if b not in clean]
    if missing:
        raise AvatarError(
            "mapping",
            f"misses the required VRM bones {', '.join(missing)}",
            "add them with the bone names of the rigged file, or rig again (another UniRig seed) "
            "until the humanoid map is complete",
        )
    used: dict[str, list[str]] = {}
    for vrm, bone in clean.items():
        used.setdefault(bone, []).append(vrm)
    twice = [f"{bone} for {' and '.join(vrms)}" for bone, vrms in used.items() if len(vrms) > 1]
    if twice:
        raise AvatarError(
            "mapping",
            f"gives one bone to several VRM bones: {'; '.join(twice)}",
            "give each VRM bone a bone of its own",
        )
    return clean


def _check_inputs(rigged: Path, out: Path, meta: VrmMeta, target_height_m: float) -> None:
    require_input_file(
        rigged,
        "rigged",
        RIGGED_EXTENSIONS,
        "rigged format",
        "connect the rigged output of Auto-rig (UniRig) or give an existing rigged .glb/.fbx",
    )
    check_vrm_out(out, meta)
    if target_height_m != 0 and not MIN_HEIGHT_M <= target_height_m <= MAX_HEIGHT_M:
        raise AvatarError(
            "target_height_m",
            f"{target_height_m:g} m is not a plausible avatar height",
            f"use {MIN_HEIGHT_M:g}-{MAX_HEIGHT_M:g} m, or 0 to keep the file's size",
        )


async def rigged_to_vrm(
    rigged: str | Path,
    mapping: dict[str, Any] | str | Path,
    out: str | Path,
    meta: VrmMeta,
    *,
    target_height_m: float = 1.7,
    rename_bones: bool = True,
    settings: Settings | None = None,
    work_dir: Path | None = None,
    timeout_s: float | None = None,
    face: FaceOptions | None = None,
    max_triangles: int | None = None,
) -> Asset:
    """Write ``rigged`` (GLB/FBX with armature + skin) as a VRM 1.0 avatar to ``out`` (atomically).

    mapping: VRM humanoid name -> bone name (dict, JSON file or JSON text; UniRig's humanoid map
    works as is). target_height_m: scale to this height (0 = keep the file's size).
    rename_bones: mapped bones take their VRM names. max_triangles: the triangle budget (default the
    ``rig.max_triangles`` setting, 0 = none; a Decimate that keeps the weights). face: expressions,
    material and landmark overrides (default: the ``face`` settings). Returns the "vrm" Asset; its meta holds the
    script's result (humanoid, placement, unweighted_before_fix, dropped_optional_bones, timings_s ...).
    """
    rigged, out = Path(rigged).absolute(), Path(out).absolute()
    _check_inputs(rigged, out, meta, float(target_height_m))
    humanoid = load_mapping(mapping)
    settings = settings or load_settings()
    blender = settings.blender
    args = {
        "rigged": str(rigged),
        "out": str(out),
        "meta": meta.to_args(),
        "humanoid": humanoid,
        "target_height": float(target_height_m),
        "rename_bones": bool(rename_bones),
        "face": (face or FaceOptions.from_inputs(settings.face)).to_args(),
        "max_triangles": int(settings.rig.max_triangles if max_triangles is None else max_triangles),
    }
    result = await run_vrm_job(
        SCRIPT,
        args,
        out,
        fixes=_INPUT_FIXES,
        file_input="rigged",
        file=rigged,
        blender=blender,
        work_dir=work_dir,
        timeout_s=timeout_s,
        prefix="comfy-avatar-vrm-",
    )
    for w in result.get("warnings", []):
        log.warning("%s: %s", rigged.name, w)
    if result.get("budget"):
        log.info("%s: %s", rigged.name, result["budget"]["summary"])
    log.info(
        "rigged %s -> %s: %d humanoid bones, %s vertices in %.2f s",
        rigged.name,
        out.name,
        len(result.get("humanoid", {})),
        result.get("vertices"),
        result["blender_s"],
    )
    log_face(log, rigged.name, result)
    return Asset.from_file(out, "vrm", source_rigged=str(rigged), vrm_meta=meta.to_args(), **result)


def rigged_to_vrm_sync(
    rigged: str | Path, mapping: dict[str, Any] | str | Path, out: str | Path, meta: VrmMeta, **kwargs: Any
) -> Asset:
    """Blocking wrapper (scripts, tests); safe to call while an event loop runs."""
    from ..runtime.blender import run_sync

    return run_sync(lambda: rigged_to_vrm(rigged, mapping, out, meta, **kwargs), "rigged-vrm")


__all__ = [
    "rigged_to_vrm",
    "rigged_to_vrm_sync",
    "load_mapping",
    "run_vrm_job",
    "check_vrm_out",
    "remove_partial_vrms",
    "RIGGED_EXTENSIONS",
]
