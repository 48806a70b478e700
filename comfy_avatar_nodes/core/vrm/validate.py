"""Validate a VRM 1.0 file in plain Python (pygltflib + numpy; no bpy, no ComfyUI).

Checks what a VRM application would trip over: the glTF binary container, VRMC_vrm with
specVersion "1.0", meta (name, authors, licenseUrl), the 15 required humanoid bones
(present, valid, unique, in humanoid order), skin weights (every vertex of every skinned
primitive sums to 1), orientation (model faces +Z: leftUpperArm on +X, head above hips),
feet on Y=0 and a plausible height in metres (measured on the skinned rest pose, i.e. what
a viewer shows), plus sizes, and a quality section (core/vrm/quality.py: landmark confidence,
T-pose triangle stretch, left/right symmetry, thin and torn parts; warnings only).

    report = validate_vrm(path)      # never raises for a bad file: the report says what is wrong
    report.ok, report.errors, report.warnings, report.facts, report.summary(), report.to_dict()
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .gltf import GltfError, accessor, load_glb, world_matrices
from .quality import check_quality
from .quality import summary_lines as quality_summary_lines
from .spec import HUMAN_BONES, META_ENUMS, META_JSON_NAMES, REQUIRED_ANCESTOR, REQUIRED_BONES, VRM_LICENSE_URL
from .validate_face import check_face
from .validate_face import summary_lines as face_summary_lines

log = logging.getLogger("comfy_avatar.vrm_check")

WEIGHT_TOLERANCE = 0.01
MIN_HEIGHT_M, MAX_HEIGHT_M = 0.3, 3.0
FLOOR_WARN_M = 0.01
FLOOR_ERROR_FRACTION = 0.05


@dataclass
class VrmReport:
    path: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "facts": self.facts,
        }

    def summary(self) -> str:
        f = self.facts
        lines = [
            f"{Path(self.path).name}: {'OK' if self.ok else 'INVALID'} "
            f"({len(self.errors)} errors, {len(self.warnings)} warnings)"
        ]
        if "spec_version" in f:
            lines.append(
                f'VRM {f["spec_version"]}: "{f.get("meta_name", "")}" by {", ".join(f.get("authors", []))}; '
                f"license {f.get('license_url', '?')}"
            )
        if "humanoid_bones" in f:
            lines.append(
                f"humanoid: {len(f['humanoid_bones'])} bones, required "
                f"{len(REQUIRED_BONES) - len(f.get('missing_required_bones', []))}/{len(REQUIRED_BONES)}"
            )
        if "skinned_vertices" in f:
            lines.append(
                f"skin: {f['skinned_vertices']} skinned vertices, {f.get('bad_weight_vertices', 0)} with "
                f"weights not summing to 1, {f.get('unskinned_vertices', 0)} in unskinned meshes"
            )
        if "height_m" in f:
            lines.append(
                f"size: {f['height_m']:.3f} m tall, feet at Y={f.get('min_y_m', 0):+.3f} m, "
                f"faces {'+Z' if f.get('faces_plus_z') else '-Z/unknown'}"
            )
        if "triangles" in f:
            lines.append(
                f"mesh: {f['vertices']} vertices, {f['triangles']} triangles, {f.get('textures', 0)} textures, "
                f"{f.get('file_size', 0) / 1e6:.2f} MB"
            )
        lines += face_summary_lines(f)
        lines += quality_summary_lines(f)
        lines += [f"ERROR: {e}" for e in self.errors]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# ------------------------------------------------------------------ checks


def _check_vrm_extension(gltf: Any, report: VrmReport) -> dict[str, Any] | None:
    exts = gltf.extensions or {}
    used = list(gltf.extensionsUsed or [])
    report.facts["extensions_used"] = used
    if "VRMC_vrm" not in exts:
        if "VRM" in exts:
            report.errors.append("this is a VRM 0.x file (extension 'VRM'); expected VRM 1.0 (VRMC_vrm)")
        else:
            report.errors.append("no VRMC_vrm extension: this is a plain glTF/GLB, not a VRM 1.0 avatar")
        return None
    if "VRMC_vrm" not in used:
        report.errors.append("VRMC_vrm is present but not listed in extensionsUsed")
    vrm = exts["VRMC_vrm"]
    if not isinstance(vrm, dict):
        report.errors.append("VRMC_vrm is not a JSON object")
        return None
    spec = vrm.get("specVersion")
    report.facts["spec_version"] = spec
    if spec != "1.0":
        report.errors.append(f"VRMC_vrm.specVersion is {spec!r}, expected '1.0'")
    return vrm


def _check_meta(vrm: dict[str, Any], report: VrmReport) -> None:
    meta = vrm.get("meta")
    if not isinstance(meta, dict):
        report.errors.append("VRMC_vrm.meta is missing")
        return
    name = meta.get("name")
    authors = meta.get("authors")
    license_url = meta.get("licenseUrl")
    report.facts.update(
        meta_name=name or "",
        authors=list(authors) if isinstance(authors, list) else [],
        license_url=license_url or "",
        version=meta.get("version", ""),
    )
    for field_name, allowed in META_ENUMS.items():
        key = META_JSON_NAMES[field_name]
        value = meta.get(key)
        report.facts[key] = value
        if value is not None and value not in allowed:
            report.errors.append(f"meta.{key} is {value!r}, not one of {', '.join(allowed)}")
    if not isinstance(name, str) or not name.strip():
        report.errors.append("meta.name is missing or empty")
    if not isinstance(authors, list) or not authors or not all(isinstance(a, str) and a.strip() for a in authors):
        report.errors.append("meta.authors must list at least one author")
    if not isinstance(license_url, str) or not license_url:
        report.errors.append("meta.licenseUrl is missing")
    elif license_url != VRM_LICENSE_URL:
        report.warnings.append(
            f"meta.licenseUrl {license_url!r} is not the VRM Public License URL "
            f"({VRM_LICENSE_URL}); three-vrm refuses it by default"
        )


def _check_humanoid(vrm: dict[str, Any], gltf: Any, parent: list[int | None], report: VrmReport) -> dict[str, int]:
    bones = ((vrm.get("humanoid") or {}).get("humanBones")) if isinstance(vrm.get("humanoid"), dict) else None
    if not isinstance(bones, dict):
        report.errors.append("VRMC_vrm.humanoid.humanBones is missing")
        report.facts["missing_required_bones"] = list(REQUIRED_BONES)
        return {}
    n_nodes = len(gltf.nodes)
    nodes: dict[str, int] = {}
    for name, bone in bones.items():
        if name not in HUMAN_BONES:
            report.warnings.append(f"humanoid bone {name!r} is not a VRM 1.0 bone name")
        node = bone.get("node") if isinstance(bone, dict) else None
        if not isinstance(node, int) or not 0 <= node < n_nodes:
            report.errors.append(
                f"humanoid bone {name!r} points at node {node!r}, but the file has nodes 0..{n_nodes - 1}"
            )
            continue
        nodes[name] = node
    missing = [b for b in REQUIRED_BONES if b not in bones]
    if missing:
        report.errors.append(f"required humanoid bones missing: {', '.join(missing)}")
    seen: dict[int, str] = {}
    for name, node in nodes.items():
        if node in seen:
            report.errors.append(f"humanoid bones {seen[node]!r} and {name!r} share node {node} (each needs its own)")
        seen.setdefault(node, name)

    def ancestors(i: int) -> set[int]:
        out: set[int] = set()
        p = parent[i]
        while p is not None and p not in out:
            out.add(p)
            p = parent[p]
        return out

    for child, anc in REQUIRED_ANCESTOR.items():
        if child in nodes and anc in nodes and nodes[anc] not in ancestors(nodes[child]):
            report.errors.append(f"humanoid bone {child!r} is not below {anc!r} in the node hierarchy")
    report.facts["humanoid_bones"] = sorted(nodes)
    report.facts["missing_required_bones"] = missing
    report.facts["bone_nodes"] = {k: gltf.nodes[v].name or f"node{v}" for k, v in sorted(nodes.items())}
    return nodes


def _skinned_geometry(gltf: Any, blob: bytes, world: list[np.ndarray], report: VrmReport) -> np.ndarray:
    """All rest-pose vertex positions as displayed (skinned), checking weights on the way."""
    positions: list[np.ndarray] = []
    skinned_vertices = unskinned_vertices = bad_weights = bad_joints = 0
    triangles = vertices = 0
    worst = 0.0
    mesh_nodes = [(i, n) for i, n in enumerate(gltf.nodes) if n.mesh is not None]
    if not mesh_nodes:
        report.errors.append("the file has no mesh nodes")
    for ni, node in mesh_nodes:
        mesh = gltf.meshes[node.mesh]
        skin = gltf.skins[node.skin] if node.skin is not None and node.skin < len(gltf.skins or []) else None
        joint_mats = None
        if skin is not None:
            ibm = (
                accessor(gltf, blob, skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
                if skin.inverseBindMatrices is not None
                else np.tile(np.eye(4), (len(skin.joints), 1, 1))
            )
            joint_mats = np.stack([world[j] for j in skin.joints]) @ ibm
        for pi, prim in enumerate(mesh.primitives):
            attrs = prim.attributes
            if attrs.POSITION is None:
                continue
            pos = accessor(gltf, blob, attrs.POSITION)
            vertices += len(pos)
            mode = 4 if prim.mode is None else prim.mode
            if mode == 4:
                triangles += (gltf.accessors[prim.indices].count if prim.indices is not None else len(pos)) // 3
            where = f"mesh {mesh.name or node.mesh} primitive {pi}"
            if skin is None or joint_mats is None or attrs.JOINTS_0 is None or attrs.WEIGHTS_0 is None:
                unskinned_vertices += len(pos)
                positions.append(pos @ world[ni][:3, :3].T + world[ni][:3, 3])
                continue
            joints = [accessor(gltf, blob, attrs.JOINTS_0)]
            weights = [accessor(gltf, blob, attrs.WEIGHTS_0)]
            if getattr(attrs, "JOINTS_1", None) is not None and getattr(attrs, "WEIGHTS_1", None) is not None:
                joints.append(accessor(gltf, blob, attrs.JOINTS_1))
                weights.append(accessor(gltf, blob, attrs.WEIGHTS_1))
            j = np.concatenate(joints, axis=1).astype(np.int64)
            w = np.concatenate(weights, axis=1)
            sums = w.sum(axis=1)
            dev = np.abs(sums - 1.0)
            worst = max(worst, float(dev.max(initial=0.0)))
            bad = int((dev > WEIGHT_TOLERANCE).sum())
            bad_weights += bad
            out_of_range = int(((j >= len(skin.joints)) & (w > 0)).any(axis=1).sum())
            bad_joints += out_of_range
            skinned_vertices += len(pos)
            if bad:
                report.errors.append(
                    f"{where}: {bad} of {len(pos)} vertices have skin weights not summing to 1 "
                    f"({int((sums <= 1e-6).sum())} with no weight at all)"
                )
            if out_of_range:
                report.errors.append(
                    f"{where}: {out_of_range} vertices use joint indices beyond the skin's {len(skin.joints)} joints"
                )
                continue
            hom = np.concatenate([pos, np.ones((len(pos), 1))], axis=1)
            skinned = np.zeros((len(pos), 3))
            for k in range(j.shape[1]):
                m = joint_mats[j[:, k]]  # (n, 4, 4)
                skinned += w[:, k : k + 1] * np.einsum("nij,nj->ni", m, hom)[:, :3]
            positions.append(skinned / np.where(sums > 1e-6, sums, 1.0)[:, None])
    if unskinned_vertices:
        report.warnings.append(
            f"{unskinned_vertices} vertices are in meshes without a skin: they will not follow the bones"
        )
    report.facts.update(
        vertices=vertices,
        triangles=triangles,
        skinned_vertices=skinned_vertices,
        unskinned_vertices=unskinned_vertices,
        bad_weight_vertices=bad_weights,
        max_weight_sum_error=round(worst, 6),
    )
    return np.concatenate(positions) if positions else np.zeros((0, 3))


def _check_orientation(nodes: dict[str, int], world: list[np.ndarray], pts: np.ndarray, report: VrmReport) -> None:
    pos = {k: world[v][:3, 3] for k, v in nodes.items()}
    if len(pts):
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        height = float(hi[1] - lo[1])
        report.facts.update(
            height_m=round(height, 4),
            min_y_m=round(float(lo[1]), 4),
            bounds_min=[round(float(x), 4) for x in lo],
            bounds_max=[round(float(x), 4) for x in hi],
        )
        if not MIN_HEIGHT_M <= height <= MAX_HEIGHT_M:
            report.errors.append(
                f"the model is {height:.3f} units tall; a humanoid in metres should be "
                f"{MIN_HEIGHT_M}-{MAX_HEIGHT_M} m (wrong units?)"
            )
        if abs(lo[1]) > max(FLOOR_ERROR_FRACTION * height, FLOOR_WARN_M):
            report.errors.append(f"the feet are at Y={lo[1]:+.3f} m; VRM models stand on Y=0")
        elif abs(lo[1]) > FLOOR_WARN_M:
            report.warnings.append(f"the feet are at Y={lo[1]:+.3f} m, not quite on Y=0")
    if {"leftUpperArm", "rightUpperArm", "hips", "head"} <= pos.keys():
        left = pos["leftUpperArm"] - pos["rightUpperArm"]
        up = pos["head"] - pos["hips"]
        forward = np.cross(left, up)
        report.facts["left_arm_at_plus_x"] = bool(left[0] > 0)
        report.facts["head_above_hips"] = bool(up[1] > 0)
        report.facts["faces_plus_z"] = bool(left[0] > 0 and up[1] > 0 and forward[2] > 0)
        if up[1] <= 0:
            report.errors.append("the head is not above the hips: the model is not upright (Y up)")
        if left[0] <= 0:
            report.errors.append(
                "leftUpperArm is not on +X: the model faces -Z (VRM 0.x orientation?) "
                "or left and right are swapped; VRM 1.0 models face +Z"
            )
        # Geometry cue: feet usually reach further forward than the ankles.
        feet = [pos[f] for f in ("leftFoot", "rightFoot") if f in pos]
        if feet and len(pts) and report.facts.get("height_m"):
            h = report.facts["height_m"]
            low = pts[pts[:, 1] < pts[:, 1].min() + 0.05 * h]
            if len(low):
                ankle_z = float(np.mean([f[2] for f in feet]))
                reach_front = float(low[:, 2].max() - ankle_z)
                reach_back = float(ankle_z - low[:, 2].min())
                report.facts["toes_forward_m"] = round(reach_front - reach_back, 4)
                if reach_back - reach_front > 0.03 * h:
                    report.warnings.append(
                        "the feet reach further back (-Z) than forward: the mesh may face -Z "
                        "while the skeleton faces +Z"
                    )


def _check_sizes(gltf: Any, path: Path, report: VrmReport) -> None:
    report.facts.update(
        file_size=path.stat().st_size,
        nodes=len(gltf.nodes or []),
        meshes=len(gltf.meshes or []),
        skins=len(gltf.skins or []),
        joints=sum(len(s.joints) for s in gltf.skins or []),
        materials=len(gltf.materials or []),
        textures=len(gltf.textures or []),
        images=len(gltf.images or []),
    )
    if not gltf.skins:
        report.errors.append("the file has no skin: the mesh is not bound to the skeleton")
    if not gltf.textures:
        report.warnings.append("no textures: the avatar shows plain material colours")


def validate_vrm(path: str | Path) -> VrmReport:
    """Check a .vrm file; every problem lands in the report (nothing raised for bad files)."""
    path = Path(path)
    report = VrmReport(path=str(path))
    if not path.is_file():
        report.errors.append(f"{path} does not exist")
        return report
    try:
        gltf, blob = load_glb(path)
        report.facts["generator"] = (gltf.asset.generator if gltf.asset else None) or ""
        _check_sizes(gltf, path, report)
        world, parent = world_matrices(gltf)
        vrm = _check_vrm_extension(gltf, report)
        nodes: dict[str, int] = {}
        if vrm is not None:
            _check_meta(vrm, report)
            nodes = _check_humanoid(vrm, gltf, parent, report)
        pts = _skinned_geometry(gltf, blob, world, report)
        _check_orientation(nodes, world, pts, report)
        check_quality(gltf, blob, nodes, world, pts, report)
        if vrm is not None:
            check_face(vrm, gltf, blob, nodes, world, pts, report)
    except GltfError as e:
        report.errors.append(str(e))
    except (IndexError, KeyError, TypeError, ValueError, AttributeError) as e:
        log.debug("vrm_check failed on %s", path, exc_info=True)
        report.errors.append(f"the glTF data is inconsistent ({type(e).__name__}: {e})")
    log.info("validated %s: %s errors, %s warnings", path.name, len(report.errors), len(report.warnings))
    return report
