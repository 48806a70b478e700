"""CPU humanoid rig + VRM 1.0 export: one Blender job (blender_cli/rig_vrm.py) per avatar.

    meta = VrmMeta(name="Avatar", authors=["me"])
    asset = await rig_to_vrm(Path("figure.glb"), Path("out/avatar.vrm"), meta)
    asset.meta["bone_count"], asset.meta["timings_s"], ...

The Blender script fits a VRM humanoid template skeleton to the mesh's silhouette, makes
the mesh watertight when needed (voxel remesh, texture kept), skins it with automatic
weights (every vertex weighted, <= 4 influences, normalised), poses it into the VRM
T-pose and exports VRM 1.0 facing +Z on Y=0. See blender_cli/rig_vrm.py.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..assets import Asset, require_input_file
from ..config import Config
from ..errors import AvatarError, BlenderError

log = logging.getLogger("comfy_avatar.rig")

SCRIPT = "rig_vrm.py"
MESH_EXTENSIONS = (".glb", ".gltf", ".obj", ".fbx")
VRM_LICENSE_URL = "https://vrm.dev/licenses/1.0/"
"""The VRM Public License 1.0: the add-on always writes it as licenseUrl, and three-vrm
accepts only it by default. Any other licence goes into other_license_url."""

AVATAR_PERMISSION = ("onlyAuthor", "onlySeparatelyLicensedPerson", "everyone")
COMMERCIAL_USAGE = ("personalNonProfit", "personalProfit", "corporation")
MODIFICATION = ("prohibited", "allowModification", "allowModificationRedistribution")
CREDIT_NOTATION = ("required", "unnecessary")


@dataclass
class VrmMeta:
    """VRM 1.0 meta (VRMC_vrm.meta); validated on construction."""

    name: str
    version: str = "1.0"
    authors: Sequence[str] = field(default_factory=lambda: ["comfy-avatar"])
    avatar_permission: str = "onlyAuthor"
    commercial_usage: str = "personalNonProfit"
    modification: str = "prohibited"
    credit_notation: str = "required"
    allow_redistribution: bool = False
    allow_excessively_violent_usage: bool = False
    allow_excessively_sexual_usage: bool = False
    allow_political_or_religious_usage: bool = False
    allow_antisocial_or_hate_usage: bool = False
    license_url: str = VRM_LICENSE_URL
    other_license_url: str = ""
    copyright_information: str = ""
    contact_information: str = ""
    third_party_licenses: str = ""

    def __post_init__(self) -> None:
        self.name = (self.name or "").strip()
        if not self.name:
            raise AvatarError("meta.name", "is empty", "give the avatar a name (shown in VRM apps)")
        if isinstance(self.authors, str):
            self.authors = [a.strip() for a in self.authors.split(",")]
        self.authors = [str(a).strip() for a in self.authors if str(a).strip()]
        if not self.authors:
            raise AvatarError("meta.authors", "no author given", "list at least one author (comma separated)")
        self.version = str(self.version or "").strip()
        for key, allowed in (("avatar_permission", AVATAR_PERMISSION), ("commercial_usage", COMMERCIAL_USAGE),
                             ("modification", MODIFICATION), ("credit_notation", CREDIT_NOTATION)):
            value = getattr(self, key)
            if value not in allowed:
                raise AvatarError(f"meta.{key}", f"{value!r} is not a VRM 1.0 value", f"use one of {', '.join(allowed)}")
        if self.license_url.rstrip("/") != VRM_LICENSE_URL.rstrip("/"):
            raise AvatarError("meta.license_url", f"{self.license_url!r} is not supported",
                              f"VRM 1.0 files name the VRM Public License ({VRM_LICENSE_URL}); put another "
                              "licence's URL in other_license_url")
        self.license_url = VRM_LICENSE_URL
        if self.other_license_url and not self.other_license_url.startswith(("http://", "https://")):
            raise AvatarError("meta.other_license_url", f"{self.other_license_url!r} is not a URL",
                              "give an http(s) URL or leave it empty")

    def to_args(self) -> dict[str, Any]:
        d = asdict(self)
        d["authors"] = list(self.authors)
        return d


def check_vrm_out(out: Path, meta: Any) -> None:
    """What every VRM-writing job needs besides its input file: a .vrm target and a VrmMeta."""
    if out.suffix.lower() != ".vrm":
        raise AvatarError("out", f"{out} does not end in .vrm", "name the output file <name>.vrm")
    if not isinstance(meta, VrmMeta):
        raise AvatarError("meta", f"expected VrmMeta, got {type(meta).__name__}", "build it with VrmMeta(name=...)")


def _check_inputs(mesh: Path, out: Path, meta: Any) -> None:
    require_input_file(mesh, "mesh", MESH_EXTENSIONS, "mesh format", "connect the output of an image-to-mesh "
                       "node or give the path of an existing .glb/.obj/.fbx")
    check_vrm_out(out, meta)


def remove_partial_vrms(out: Path) -> None:
    """Temp files the script leaves only when Blender dies mid-export (it cleans up otherwise)."""
    for p in out.parent.glob(f".{out.stem}.*.part.vrm"):
        with contextlib.suppress(OSError):
            p.unlink()


_INPUT_FIXES = {
    "mesh": "give a mesh with faces (a .glb/.obj/.fbx of one standing figure), e.g. the image-to-mesh node's output",
    "meta": "fix the VRM meta inputs",
    "out": "name the output file <name>.vrm",
}


async def run_vrm_job(script: Path, args: dict[str, Any], out: Path, *, fixes: dict[str, str], file_input: str,
                      file: Path, runtime: Any, work_dir: Path | None, timeout_s: float | None,
                      prefix: str) -> dict[str, Any]:
    """Run a VRM-writing Blender script in ``work_dir`` (a temp dir when None). Bad inputs become
    AvatarErrors naming ``file_input``; no partial .vrm is left beside ``out``. Returns the script's
    result with ``blender_s`` added."""
    from ..runtime.blender import input_error, run_blender

    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        try:
            res = await run_blender(script, args, work_dir=work_dir, timeout_s=timeout_s, runtime=runtime)
        except BlenderError as e:
            raise input_error(e, fixes, file_input, file) from None
        finally:
            remove_partial_vrms(out)
    if not out.is_file():
        raise AvatarError("out", f"the Blender job finished but {out} is missing", "see the Blender log")
    result = dict(res.result)
    result["blender_s"] = round(res.duration_s, 3)
    return result


async def rig_to_vrm(mesh: Path, out: Path, meta: VrmMeta, *, cfg: Config | None = None,
                     work_dir: Path | None = None, remesh_voxel: float = 0.0, decimate_faces: int = 0,
                     timeout_s: float | None = None) -> Asset:
    """Rig ``mesh`` and write a VRM 1.0 avatar to ``out`` (atomically); returns the "vrm" Asset.

    remesh_voxel: 0 = remesh only when the mesh is not one closed surface (voxel = height/110),
    > 0 = always remesh at this size (m), < 0 = never. decimate_faces: > 0 caps the triangle count.
    Asset.meta holds the script's result: bone_count, bone_names, vertices, faces, triangles,
    unweighted_before_fix, dimensions_m, skeleton, timings_s, blender_s.
    """
    from ..runtime.blender import find_runtime

    mesh, out = Path(mesh).absolute(), Path(out).absolute()
    _check_inputs(mesh, out, meta)
    runtime = find_runtime(cfg)
    args = {"mesh": str(mesh), "out": str(out), "meta": meta.to_args(), "remesh_voxel": float(remesh_voxel),
            "decimate_faces": int(decimate_faces or 0)}
    result = await run_vrm_job(SCRIPT, args, out, fixes=_INPUT_FIXES, file_input="mesh", file=mesh,
                               runtime=runtime, work_dir=work_dir, timeout_s=timeout_s, prefix="comfy-avatar-rig-")
    log.info("rigged %s -> %s: %s bones, %s faces in %.2f s", mesh.name, out.name, result.get("bone_count"),
             result.get("faces"), result["blender_s"])
    return Asset.from_file(out, "vrm", source_mesh=str(mesh), vrm_meta=meta.to_args(), **result)


def rig_to_vrm_sync(mesh: Path, out: Path, meta: VrmMeta, **kwargs: Any) -> Asset:
    """Blocking wrapper (scripts, tests, bench); safe to call while an event loop runs."""
    from ..runtime.blender import run_sync

    return run_sync(lambda: rig_to_vrm(mesh, out, meta, **kwargs), "rig-vrm")


__all__ = ["VrmMeta", "rig_to_vrm", "rig_to_vrm_sync", "run_vrm_job", "remove_partial_vrms", "VRM_LICENSE_URL", "AVATAR_PERMISSION",
           "COMMERCIAL_USAGE", "MODIFICATION"]
