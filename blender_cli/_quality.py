"""What the rig job knows about an avatar's quality, written into the VRM for the validator (numpy + stdlib).

Two measures only the rig job can take, because they need the mesh as it was made:

- landmark confidence: which of the skeleton fit's landmarks were read off the figure and which had to
  fall back to standard proportions (blender_cli/_rig_fit.py lists the fallbacks), plus the humanoid
  gate's confidence in the head, the legs and the front view (core/rig/gate.py);
- triangle stretch between the mesh as made and its VRM T-pose rest: per triangle the largest factor
  by which an edge grew or shrank. A well-fitted rig bends limbs at joints, so triangles keep their
  size (max ~2 near an elbow); a bone through the wrong part (a profile read as a front view) tears a
  triangle out to many times its length.

They go into the VRM's glTF ``asset.extras.comfy_avatar_quality`` (the file carries its own report,
whatever reads it later); core/vrm/quality.py reads them back for the validation report and adds what
the file alone tells (left/right symmetry, thin and torn parts).
"""

from __future__ import annotations

import json
import os

import numpy as np
from _pack import glb

EXTRAS_KEY = "comfy_avatar_quality"
STRETCH_WARN = 3.0  # a triangle whose edge changed more than 3x is torn out of shape
LANDMARKS = {  # landmark -> the fallback text _rig_fit writes when it could not measure it
    "crotch": "crotch:",
    "neck": "neck:",
    "torso_width": "torso width:",
    "left_arm": "left arm:",
    "right_arm": "right arm:",
}


def landmark_confidence(skeleton: dict, gate: dict | None) -> dict:
    """0..1 per landmark: 1 measured off the figure, 0.3 guessed from proportions; the gate's own
    confidences (head, legs, upright, front_view) when it ran; ``overall`` the mean."""
    fallbacks = " | ".join(skeleton.get("fallbacks", []))
    out = {name: (0.3 if marker in fallbacks else 1.0) for name, marker in LANDMARKS.items()}
    for k, v in ((gate or {}).get("confidence") or {}).items():
        if k != "overall":
            out[f"gate_{k}"] = round(float(v), 3)
    out["overall"] = round(float(np.mean(list(out.values()))), 3)
    return out


def triangle_stretch(before: np.ndarray, after: np.ndarray, tris: np.ndarray) -> dict:
    """Per triangle, max over its edges of max(l'/l, l/l'); max, mean, 99th percentile, share above
    STRETCH_WARN. ``before``/``after``: the same vertices before and after the T-pose."""
    if before.shape != after.shape or not len(tris):
        return {"measured": False, "why": "the vertex count changed between the fit and the T-pose"}
    ratios = []
    for i, j in ((0, 1), (1, 2), (2, 0)):
        l0 = np.linalg.norm(before[tris[:, i]] - before[tris[:, j]], axis=1)
        l1 = np.linalg.norm(after[tris[:, i]] - after[tris[:, j]], axis=1)
        ok = (l0 > 1e-7) & (l1 > 1e-7)
        r = np.ones_like(l0)
        r[ok] = np.maximum(l1[ok] / l0[ok], l0[ok] / l1[ok])
        ratios.append(r)
    s = np.max(ratios, axis=0)
    return {
        "measured": True,
        "max": round(float(s.max()), 3),
        "mean": round(float(s.mean()), 4),
        "p99": round(float(np.percentile(s, 99)), 3),
        "torn_share": round(float((s > STRETCH_WARN).mean()), 5),
        "threshold": STRETCH_WARN,
    }


def embed_quality(vrm_path: str, quality: dict) -> None:
    """Merge ``quality`` into the VRM's asset.extras[EXTRAS_KEY] (BIN chunk kept; temp file + rename)."""
    with open(vrm_path, "rb") as f:
        doc, blob = glb.read_glb(f.read())
    asset = doc.setdefault("asset", {"version": "2.0"})
    extras = asset.get("extras") if isinstance(asset.get("extras"), dict) else {}
    extras[EXTRAS_KEY] = json.loads(json.dumps(quality, default=float))
    asset["extras"] = extras
    tmp = f"{vrm_path}.{os.getpid()}.quality.part"
    with open(tmp, "wb") as f:
        f.write(glb.pack_glb(doc, blob))
    os.replace(tmp, vrm_path)
