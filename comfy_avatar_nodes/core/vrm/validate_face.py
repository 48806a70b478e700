"""The face part of the VRM validator (core/vrm/validate.py calls check_face): expressions, lookAt,
firstPerson, MToon and the face finder's verdict.

Per VRM 1.0 preset other than neutral: bound or not, which morph targets, and where and how far they
move vertices, measured in the head frame (y: 0 at the head bone, 1 at the top of the head; x: head
widths from the head axis, + on the avatar's left): visemes must move the lower face, blink and gaze
the eye band, nothing may move below the neck, and a bound preset must move something visible but not
absurdly far (core/vrm/expressions.py holds the numbers). Why measured and not trusted: a preset
bound to an empty or misplaced morph target passes every schema check and still gives an avatar that
blinks with its chin. Also reported: lookAt (an expression lookAt needs the look presets bound, a bone
lookAt needs eye bones), firstPerson annotations, MToon on the materials, and asset.extras'
``comfy_avatar_face`` (written by our exporter): when the finder found no face the expressions were
placed by proportions, and the report says so instead of calling them a working face.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .expressions import (
    BELOW_NECK,
    BLINKS,
    EMOTIONS,
    EYES_ABOVE_MOUTH,
    LOOKS,
    MAX_MOVE,
    MIN_MOVE,
    PRESETS,
    REGIONS,
    VISEMES,
)
from .gltf import accessor

MOVED_M = 1e-5
MOUTH_SHARE = 0.15
"""At most this share of a blink's or a glance's movement may be at the mouth's height (aa's centre)."""


def _targets(gltf: Any, blob: bytes, node: int, index: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rest positions, offsets) of morph target ``index`` on every primitive of the node's mesh."""
    n = gltf.nodes[node]
    if n.mesh is None:
        raise ValueError(f"node {node} has no mesh")
    out = []
    for prim in gltf.meshes[n.mesh].primitives:
        targets = prim.targets or []
        if index >= len(targets):
            raise ValueError(f"mesh {n.mesh} has {len(targets)} morph targets, the bind names index {index}")
        t = targets[index]
        pos_acc = t.get("POSITION") if isinstance(t, dict) else getattr(t, "POSITION", None)
        if pos_acc is None:
            continue
        out.append((accessor(gltf, blob, prim.attributes.POSITION), accessor(gltf, blob, pos_acc)))
    return out


def _target_names(gltf: Any, node: int) -> list[str]:
    n = gltf.nodes[node]
    extras = gltf.meshes[n.mesh].extras if n.mesh is not None else None
    names = extras.get("targetNames") if isinstance(extras, dict) else None
    return list(names) if isinstance(names, list) else []


HeadFrame = tuple[float, float, float, float]


def _head_frame(nodes: dict[str, int], world: list[np.ndarray], pts: np.ndarray) -> HeadFrame | None:
    """(head bone y, head height, head width, lowest y a face morph may move) or None without a head
    bone or vertices above it. The limit is half way down the neck bone (rigs put the head joint
    anywhere from the chin to the mouth, the chin hangs below it), else BELOW_NECK head heights."""
    if "head" not in nodes or not len(pts):
        return None
    y0 = float(world[nodes["head"]][1, 3])
    above = pts[pts[:, 1] >= y0]
    if len(above) < 4:
        return None
    height = float(above[:, 1].max() - y0)
    width = float(np.ptp(above[:, 0]))
    if height <= 1e-4 or width <= 1e-4:
        return None
    limit = y0 + BELOW_NECK * height
    if "neck" in nodes:
        limit = min(limit, (y0 + float(world[nodes["neck"]][1, 3])) / 2)
    return y0, height, width, limit


def check_preset(
    name: str, expr: dict, gltf: Any, blob: bytes, frame: HeadFrame | None, axis_x: float
) -> dict[str, Any]:
    """One preset's entry of the report (``problems`` lists what is wrong with it)."""
    binds = expr.get("morphTargetBinds") or [] if isinstance(expr, dict) else []
    entry: dict[str, Any] = {"bound": bool(binds), "targets": [], "problems": []}
    if not binds:
        return entry
    moved_pos, moved_d = [], []
    for b in binds:
        try:
            node, index, weight = int(b["node"]), int(b["index"]), float(b.get("weight", 1.0))
            names = _target_names(gltf, node)
            entry["targets"].append(names[index] if index < len(names) else f"node {node} target {index}")
            for pos, d in _targets(gltf, blob, node, index):
                moved_pos.append(pos)
                moved_d.append(d * weight)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            entry["problems"].append(f"bind {b!r} is broken ({e})")
    if not moved_pos:
        entry["problems"].append("its binds point at no morph target")
        return entry
    pos = np.concatenate(moved_pos)
    d = np.concatenate(moved_d)
    mag = np.linalg.norm(d, axis=1)
    moved = mag > MOVED_M
    entry["vertices_moved"] = int(moved.sum())
    if frame is None:
        entry["problems"].append("no head bone with vertices above it: cannot tell where it moves the face")
        return entry
    y0, height, width, limit = frame
    top = float(mag.max(initial=0.0)) / height
    entry["max_move_head_heights"] = round(top, 4)
    if top < MIN_MOVE:
        entry["problems"].append(f"moves nothing visible (at most {top:.4f} head heights)")
        return entry
    if top > MAX_MOVE:
        entry["problems"].append(f"moves vertices {top:.2f} head heights: absurd for a face expression")
    rel_y = (pos[moved, 1] - y0) / height
    low = float(pos[moved, 1].min())
    if low < limit - 0.01 * height:
        entry["problems"].append(
            f"moves vertices below the neck (down to {(y0 - low) / height:.2f} head heights under the head bone)"
        )
    w = mag[moved]
    cy = float((rel_y * w).sum() / w.sum())
    cx = float(((pos[moved, 0] - axis_x) / width * w).sum() / w.sum())
    entry["centre"] = [round(cx, 3), round(cy, 3)]
    entry["_rel_y"], entry["_weight"] = rel_y, w  # for _eyes_above_mouth; dropped before the report
    lo, hi = REGIONS.get(name, (BELOW_NECK, 1.2))
    if not lo <= cy <= hi:
        want = "the lower face (mouth, jaw)" if name in VISEMES else "the face" if name in EMOTIONS else "the eyes"
        entry["problems"].append(
            f"moves the wrong part of the head (centre at {cy:.2f} head heights above the head "
            f"bone; expected {lo:.2f}..{hi:.2f}, {want})"
        )
    if name == "blinkLeft" and cx <= 0:
        entry["problems"].append("closes an eye on the avatar's right (-X): left and right are swapped")
    if name == "blinkRight" and cx >= 0:
        entry["problems"].append("closes an eye on the avatar's left (+X): left and right are swapped")
    return entry


def _eyes_above_mouth(entries: dict[str, dict]) -> None:
    """Blink and gaze must move something above what aa moves (the eyes are above the mouth on every
    head, wherever the rig put its head joint): a blink bound to a mouth morph, or placed on the chin,
    is caught here even where the head frame's band alone would let it pass."""
    aa = entries.get("aa") or {}
    if "centre" in aa and not aa["problems"]:
        mouth_y = aa["centre"][1]
        for name in (*BLINKS, *LOOKS):
            e = entries.get(name) or {}
            if "centre" not in e or e["problems"]:
                continue
            if e["centre"][1] < mouth_y + EYES_ABOVE_MOUTH:
                e["problems"].append(
                    f"moves the wrong part of the head (centre at {e['centre'][1]:.2f} head heights, not above "
                    f"the mouth that aa moves at {mouth_y:.2f}: expected the eyes, at least "
                    f"{EYES_ABOVE_MOUTH:.2f} higher)"
                )
                continue
            # a centre can sit at the eyes while half of it moves the chin and half the hair: a share too
            low = float(e["_weight"][e["_rel_y"] < mouth_y + EYES_ABOVE_MOUTH / 2].sum() / e["_weight"].sum())
            if low > MOUTH_SHARE:
                e["problems"].append(
                    f"moves the mouth as well as the eyes ({low:.0%} of its movement is at the height of the "
                    "mouth that aa moves): a blink or a glance must leave the mouth still"
                )
    for e in entries.values():
        e.pop("_rel_y", None)
        e.pop("_weight", None)


def check_face(
    vrm: dict[str, Any],
    gltf: Any,
    blob: bytes,
    nodes: dict[str, int],
    world: list[np.ndarray],
    pts: np.ndarray,
    report: Any,
) -> None:
    """Add the face facts, errors and warnings to ``report`` (a VrmReport)."""
    frame = _head_frame(nodes, world, pts)
    axis_x = float(world[nodes["head"]][0, 3]) if "head" in nodes else 0.0
    raw_exprs = vrm.get("expressions")
    exprs: dict = raw_exprs if isinstance(raw_exprs, dict) else {}
    raw_preset = exprs.get("preset")
    preset: dict = raw_preset if isinstance(raw_preset, dict) else {}
    entries: dict[str, dict] = {}
    for name in PRESETS:
        entries[name] = check_preset(name, preset.get(name) or {}, gltf, blob, frame, axis_x)
    _eyes_above_mouth(entries)
    for name in PRESETS:
        for p in entries[name]["problems"]:
            report.errors.append(f"expression {name}: {p}")
    bound = [n for n, e in entries.items() if e["bound"]]
    unbound = [n for n in PRESETS if n not in bound]
    report.facts["expressions"] = entries
    report.facts["expressions_bound"] = len(bound)
    report.facts["expressions_unbound"] = unbound
    if unbound:
        report.warnings.append(
            f"{len(unbound)} of {len(PRESETS)} expression presets have no morph target "
            f"({', '.join(unbound)}): the avatar cannot lip-sync, blink or emote with those"
        )
    if frame is not None:
        report.facts["head_frame_m"] = {
            "head_bone_y": round(frame[0], 4),
            "height": round(frame[1], 4),
            "width": round(frame[2], 4),
            "lowest_moving_y": round(frame[3], 4),
        }

    look = vrm.get("lookAt") if isinstance(vrm.get("lookAt"), dict) else None
    report.facts["look_at"] = look.get("type") if look else None
    if not look:
        report.warnings.append("no lookAt: the avatar cannot look at the camera or the user")
    elif look.get("type") == "bone" and not {"leftEye", "rightEye"} <= nodes.keys():
        report.warnings.append(
            "lookAt is of type bone but the humanoid has no eye bones: the gaze does nothing "
            "(use type expression with the look presets bound)"
        )
    elif look.get("type") == "expression":
        missing = [n for n in ("lookUp", "lookDown", "lookLeft", "lookRight") if n in unbound]
        if missing:
            report.warnings.append(f"lookAt is of type expression but {', '.join(missing)} are not bound")
    raw_fp = vrm.get("firstPerson")
    fp: dict = raw_fp if isinstance(raw_fp, dict) else {}
    annotations = fp.get("meshAnnotations") or []
    report.facts["first_person_annotations"] = len(annotations)
    if not annotations:
        report.warnings.append("no firstPerson mesh annotations: first-person views may show the inside of the head")

    materials = gltf.materials or []
    mtoon = sum(1 for m in materials if "VRMC_materials_mtoon" in (m.extensions or {}))
    report.facts["mtoon_materials"] = mtoon
    if materials and not mtoon:
        report.warnings.append("no MToon material (VRMC_materials_mtoon): VRM apps show plain PBR")

    extras = gltf.asset.extras if gltf.asset is not None and isinstance(gltf.asset.extras, dict) else {}
    verdict = extras.get("comfy_avatar_face")
    if isinstance(verdict, dict):
        report.facts["face_found"] = bool(verdict.get("found"))
        report.facts["face_confidence"] = verdict.get("confidence")
        report.facts["face_source"] = verdict.get("source")
        if not verdict.get("found"):
            report.warnings.append(
                "the face finder found no face ("
                + str(verdict.get("reason") or "no reason given")
                + "): the expressions were placed by standard proportions, not on a face it saw"
            )


def summary_lines(facts: dict[str, Any]) -> list[str]:
    """The face lines of VrmReport.summary()."""
    if "expressions_bound" not in facts:
        return []
    lines = [
        f"expressions: {facts['expressions_bound']}/{len(PRESETS)} presets bound to morph targets; "
        f"lookAt {facts.get('look_at') or 'none'}; firstPerson {facts.get('first_person_annotations', 0)} "
        f"annotation(s); MToon on {facts.get('mtoon_materials', 0)} material(s)"
    ]
    if "face_found" in facts:
        lines.append(
            f"face: {'found' if facts['face_found'] else 'NOT found'} by the finder"
            + (
                f" (confidence {facts.get('face_confidence')}, from the {facts.get('face_source')})"
                if facts["face_found"]
                else ""
            )
        )
    for name, e in facts.get("expressions", {}).items():
        if e.get("bound"):
            lines.append(
                f"  {name:<10} {', '.join(e['targets'])}: {e.get('vertices_moved', 0)} vertices, "
                f"max {e.get('max_move_head_heights', 0):.3f} head heights, centre {e.get('centre')}"
            )
    return lines
