"""The humanoid gate inside the rig job (bpy + numpy): core/rig/gate.py's verdict on the imported figure.

The verdict is taken here, after import, joining and placement, so it sees every input format (FBX
too) the way the rig will; core/rig/gate.py itself is numpy-only and loaded by path (_pack.load). A
refusal is raised as ``humanoid_check: <verdict JSON>``: core/rig/cpu.py turns the JSON back into an
AvatarError whose problem and fix depend on what the figure looks like.
"""

from __future__ import annotations

import json

import numpy as np
from _job import JobError
from _pack import load

gate = load("comfy_avatar_gate", "rig/gate.py")
PREFIX = "humanoid_check: "


def check_humanoid(verts_blender: np.ndarray, tris: np.ndarray, mode: str) -> dict | None:
    """The verdict as a dict (None when ``mode`` is off); raises the refusal in refuse mode.

    Blender axes (Z up, facing -Y) are turned into the gate's glTF axes (Y up, facing +Z).
    """
    if mode not in gate.GATE_MODES:
        raise JobError(f"humanoid_check: {mode!r} is not one of {', '.join(gate.GATE_MODES)}")
    if mode == "off":
        return None
    v = np.asarray(verts_blender, float)
    verdict = gate.assess_humanoid(np.stack([v[:, 0], v[:, 2], -v[:, 1]], 1), tris)
    data = {**verdict.to_dict(), "mode": mode}
    if not verdict.ok and mode == "refuse":
        problem, fix = gate.gate_error_parts(verdict)
        raise JobError(PREFIX + json.dumps({"problem": problem, "fix": fix, "verdict": data}))
    return data
