"""The validation report's quality section: how good an avatar is, beyond whether it is valid.

A VRM can pass every spec check and still be a poor avatar: a profile rigged as a front view (torn,
stretched triangles), a one-sided figure, limbs too thin to hold a bone, bits floating off the body.
The section gathers:

- landmark confidence: how many of the skeleton fit's landmarks were read off the figure rather than
  guessed, and the humanoid gate's confidence (from ``asset.extras.comfy_avatar_quality``, which the
  CPU rig job writes: blender_cli/_quality.py; "not recorded" for VRMs made elsewhere);
- triangle stretch between the mesh as made and its T-pose rest, max and mean (same source);
- left/right symmetry: the share of the skinned rest-pose surface whose mirror image about the hips
  lies within 2% of the height of the surface (a front-view figure is nearly symmetric);
- thin parts: limb bones whose vertices lie on average closer than 1% of the height to the bone;
- torn parts: separate pieces of the mesh (after welding vertices the exporter split at UV seams) and
  the share of triangles the T-pose stretched more than 3x.

Everything here warns; nothing is an error (the avatar may still be what the user wants).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from .gltf import accessor

log = logging.getLogger("comfy_avatar.vrm_quality")

EXTRAS_KEY = "comfy_avatar_quality"
SYMMETRY_TOLERANCE = 0.02  # share of the height a mirrored point may lie from the surface
THIN_RADIUS = 0.01  # share of the height: a limb thinner than this around its bone is "thin"
LOOSE_PIECE = 0.01  # pieces with fewer than this share of the triangles are "loose bits"
STRETCH_WARN = 6.0  # worst triangle stretch worth a warning
SYMMETRY_WARN = 0.6
CONFIDENCE_WARN = 0.6
LIMBS = (
    "neck",
    "head",
    "leftUpperArm",
    "leftLowerArm",
    "rightUpperArm",
    "rightLowerArm",
    "leftUpperLeg",
    "leftLowerLeg",
    "rightUpperLeg",
    "rightLowerLeg",
    "spine",
    "chest",
)
CHILD = {
    "neck": "head",
    "leftUpperArm": "leftLowerArm",
    "leftLowerArm": "leftHand",
    "rightUpperArm": "rightLowerArm",
    "rightLowerArm": "rightHand",
    "leftUpperLeg": "leftLowerLeg",
    "leftLowerLeg": "leftFoot",
    "rightUpperLeg": "rightLowerLeg",
    "rightLowerLeg": "rightFoot",
    "spine": "chest",
    "chest": "neck",
}


def _recorded(gltf: Any) -> dict[str, Any]:
    extras = getattr(getattr(gltf, "asset", None), "extras", None)
    value = extras.get(EXTRAS_KEY) if isinstance(extras, dict) else None
    if isinstance(value, str):  # tolerate a JSON string (asset.extras values written as text)
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    return value if isinstance(value, dict) else {}


def _geometry(gltf: Any, blob: bytes, n_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(triangles (t, 3) into the validator's point list, dominant node per point, point count) for the
    skinned primitives, in the order validate._skinned_geometry lists their points; None if it cannot
    line up with those points."""
    tris, dominant = [], []
    offset = 0
    for node in gltf.nodes:
        if node.mesh is None:
            continue
        skin = gltf.skins[node.skin] if node.skin is not None and node.skin < len(gltf.skins or []) else None
        for prim in gltf.meshes[node.mesh].primitives:
            if prim.attributes.POSITION is None:
                continue
            count = gltf.accessors[prim.attributes.POSITION].count
            if (prim.mode is None or prim.mode == 4) and prim.indices is not None:
                tris.append(accessor(gltf, blob, prim.indices).astype(np.int64).reshape(-1, 3) + offset)
            if skin is not None and prim.attributes.JOINTS_0 is not None and prim.attributes.WEIGHTS_0 is not None:
                j = accessor(gltf, blob, prim.attributes.JOINTS_0).astype(np.int64)
                w = accessor(gltf, blob, prim.attributes.WEIGHTS_0)
                k = j[np.arange(len(j)), w.argmax(1)]
                dominant.append(np.asarray(skin.joints)[np.clip(k, 0, len(skin.joints) - 1)])
            else:
                dominant.append(np.full(count, -1))
            offset += count
    if offset != n_points or not tris:
        return None
    return np.concatenate(tris), np.concatenate(dominant), np.array(offset)


def _pieces(pts: np.ndarray, tris: np.ndarray) -> list[int]:
    """Triangle counts of the connected pieces, vertices welded by position (1e-5 units)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    _, weld = np.unique(np.round(pts / 1e-5).astype(np.int64), axis=0, return_inverse=True)
    weld = weld.ravel()
    t = weld[tris]
    n = int(weld.max()) + 1
    rows = np.concatenate([t[:, 0], t[:, 1]])
    cols = np.concatenate([t[:, 1], t[:, 2]])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    counts = np.bincount(labels[t[:, 0]])
    return sorted((int(c) for c in counts if c), reverse=True)


def _symmetry(pts: np.ndarray, mid_x: float, height: float) -> float:
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(0)
    sample = pts[rng.choice(len(pts), size=min(len(pts), 20000), replace=False)]
    mirrored = sample * [-1.0, 1.0, 1.0] + [2.0 * mid_x, 0.0, 0.0]
    dist, _ = cKDTree(pts).query(mirrored)
    return float((dist <= SYMMETRY_TOLERANCE * height).mean())


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def check_quality(
    gltf: Any, blob: bytes, nodes: dict[str, int], world: list[np.ndarray], pts: np.ndarray, report: Any
) -> None:
    """Add report.facts["quality"] and its warnings (see the module docstring); never raises for a bad file."""
    q: dict[str, Any] = {}
    rec = _recorded(gltf)
    q["landmark_confidence"] = rec.get("landmark_confidence", "not recorded (not made by the CPU rig)")
    q["stretch"] = rec.get("stretch", "not recorded (not made by the CPU rig)")
    if rec.get("humanoid_kind"):
        q["humanoid_kind"] = rec["humanoid_kind"]
    height = float(np.ptp(pts[:, 1])) if len(pts) else 0.0
    geo = _geometry(gltf, blob, len(pts)) if len(pts) else None
    if height > 0 and "hips" in nodes:
        q["symmetry"] = round(_symmetry(pts, float(world[nodes["hips"]][0, 3]), height), 4)
    if geo is not None:
        tris, dominant, _ = geo
        pieces = _pieces(pts, tris)
        total = sum(pieces)
        q["pieces"] = len(pieces)
        q["largest_piece_share"] = round(pieces[0] / total, 4) if total else 0.0
        q["loose_bits"] = sum(1 for c in pieces if c < LOOSE_PIECE * total)
        thin = {}
        radii = {}
        for bone in LIMBS:
            if bone not in nodes or CHILD.get(bone) not in nodes:
                continue
            sel = dominant == nodes[bone]
            if sel.sum() < 8:
                continue
            a, b = world[nodes[bone]][:3, 3], world[nodes[CHILD[bone]]][:3, 3]
            r = float(np.median(_seg_dist(pts[sel], a, b)))
            radii[bone] = round(r, 4)
            if height > 0 and r < THIN_RADIUS * height:
                thin[bone] = round(r, 4)
        q["limb_radius_m"] = radii
        q["thin_parts"] = thin
    report.facts["quality"] = q
    _warn(q, report)


def _warn(q: dict[str, Any], report: Any) -> None:
    conf = q.get("landmark_confidence")
    if isinstance(conf, dict) and conf.get("overall", 1.0) < CONFIDENCE_WARN:
        guessed = [k for k, v in conf.items() if k != "overall" and v < 0.5]
        report.warnings.append(
            f"quality: landmark confidence {conf['overall']:.2f}: guessed from proportions, not "
            f"seen: {', '.join(guessed)}"
        )
    st = q.get("stretch")
    if isinstance(st, dict) and st.get("measured") and st.get("max", 0) > STRETCH_WARN:
        report.warnings.append(
            f"quality: the T-pose stretched triangles up to {st['max']:.1f}x (mean {st['mean']:.2f}, "
            f"{st.get('torn_share', 0):.1%} torn past {st.get('threshold', 3)}x): a bone runs through "
            "the wrong part of the mesh?"
        )
    if q.get("symmetry") is not None and q["symmetry"] < SYMMETRY_WARN:
        report.warnings.append(
            f"quality: left/right symmetry {q['symmetry']:.0%}: the figure is lopsided (a three-quarter "
            "view made into a front?)"
        )
    if q.get("loose_bits"):
        report.warnings.append(
            f"quality: {q['loose_bits']} loose bits float apart from the body ({q['pieces']} pieces)"
        )
    if q.get("thin_parts"):
        report.warnings.append(
            "quality: thin parts (median distance of their vertices to the bone): "
            + ", ".join(f"{k} {v * 100:.1f} cm" for k, v in q["thin_parts"].items())
        )


def summary_lines(facts: dict[str, Any]) -> list[str]:
    q = facts.get("quality")
    if not isinstance(q, dict):
        return []
    conf = q.get("landmark_confidence")
    st = q.get("stretch")
    parts = [
        f"landmarks {conf['overall']:.2f}" if isinstance(conf, dict) else "landmarks not recorded",
        f"T-pose stretch max {st['max']:.2f} / mean {st['mean']:.3f}"
        if isinstance(st, dict) and st.get("measured")
        else "stretch not recorded",
    ]
    if q.get("symmetry") is not None:
        parts.append(f"symmetry {q['symmetry']:.0%}")
    if "pieces" in q:
        parts.append(
            f"{q['pieces']} piece{'s' if q['pieces'] != 1 else ''}"
            + (f" ({q['loose_bits']} loose)" if q.get("loose_bits") else "")
        )
        parts.append("thin: " + (", ".join(q["thin_parts"]) if q.get("thin_parts") else "none"))
    return ["quality: " + ", ".join(parts)]
