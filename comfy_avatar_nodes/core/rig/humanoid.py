"""HEURISTIC map from a skeleton whose bone names carry no meaning (UniRig's bone_0..bone_N) to
VRM humanoid bone names, from joint positions and hierarchy only. Labelled as a guess in its
output ("heuristic": true); check it before relying on it. The names come from vrm/spec.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..vrm.gltf import Skeleton
from ..vrm.spec import REQUIRED_BONES


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else v


def humanoid_map(sk: Skeleton, up: tuple[float, float, float] = (0.0, 1.0, 0.0)) -> dict[str, Any]:
    """HEURISTIC VRM humanoid bone names for a skeleton whose names carry no meaning.

    Geometry and hierarchy only (positions are bone heads):
    1. lateral axis = main horizontal spread of the joints (arms in T/A pose); the lowest
       leaf on each side is a foot (or toe); the hips are their lowest common ancestor;
    2. front = the horizontal direction the toe segments point in, else +Z (glTF/VRM);
       the character's left = up x front;
    3. the spine runs from the hips to the highest leaf above them; each arm is the chain
       branching off the spine that reaches furthest to that side; the higher arm branch
       point splits the torso (spine/chest/upperChest) from neck/head;
    4. along each limb: a branching joint (fingers) is the hand, a short last segment is an
       end bone, the knee/elbow is the joint nearest half way, a first arm joint before
       three more is the shoulder, and a mostly horizontal last leg segment is the toes.
    """
    names, parents, P = sk.names, sk.parents, np.asarray(sk.positions, float)
    n = len(names)
    up_v = _unit(np.asarray(up, float))
    out: dict[str, Any] = {
        "heuristic": True,
        "method": "geometric guess from joint positions and hierarchy "
        "(UniRig's released checkpoint names bones bone_N); check before use",
        "bone_count": n,
        "humanBones": {},
        "warnings": [],
    }
    bones: dict[str, int] = {}

    def finish() -> dict[str, Any]:
        out["humanBones"] = {k: names[v] for k, v in bones.items()}
        out["missing_required"] = [b for b in REQUIRED_BONES if b not in bones]
        out["complete"] = not out["missing_required"]
        return out

    if n < 10 or P.shape != (n, 3):
        out["warnings"].append(f"only {n} joints: too few for a humanoid")
        return finish()
    children: list[list[int]] = [[] for _ in range(n)]
    for i, p in enumerate(parents):
        if p is not None:
            children[p].append(i)
    leaves = [i for i in range(n) if not children[i]]
    height = P @ up_v

    def ancestors(i: int) -> list[int]:  # i, parent, ..., root
        chain = [i]
        while parents[chain[-1]] is not None:
            chain.append(parents[chain[-1]])  # type: ignore[arg-type]
        return chain

    def path(top: int, leaf: int) -> list[int]:
        """Joints below ``top`` down to ``leaf`` (``top`` excluded), or [] if leaf is not under top."""
        chain = ancestors(leaf)
        return list(reversed(chain[: chain.index(top)])) if top in chain else []

    horiz = P - np.outer(height, up_v)
    centred = horiz - horiz.mean(axis=0)
    _, vecs = np.linalg.eigh(centred.T @ centred)
    lateral = _unit(vecs[:, -1] - (vecs[:, -1] @ up_v) * up_v)
    side0 = (P - P.mean(axis=0)) @ lateral
    feet = []
    for sign in (1, -1):
        cands = [i for i in leaves if sign * side0[i] > 0]
        if not cands:
            out["warnings"].append("no leaf joints on one side: cannot find two legs")
            return finish()
        feet.append(min(cands, key=lambda i: height[i]))
    anc0 = ancestors(feet[0])
    hips = next(a for a in ancestors(feet[1]) if a in anc0)
    bones["hips"] = hips

    # front: toe segments, else the glTF convention (+Z)
    perp = _unit(np.cross(lateral, up_v))
    toe_dirs = []
    for f in feet:
        par = parents[f]
        if par is not None:
            seg = P[f] - P[par]
            flat = seg - (seg @ up_v) * up_v
            if np.linalg.norm(flat) > abs(seg @ up_v):
                toe_dirs.append(_unit(flat))
    score = float(np.mean([d @ perp for d in toe_dirs])) if len(toe_dirs) == 2 else 0.0
    if abs(score) > 0.5:
        front, out["front_source"] = perp * np.sign(score), "toe direction"
    else:
        z = np.array([0.0, 0.0, 1.0])
        s = perp @ z
        front = perp * (np.sign(s) if abs(s) > 1e-6 else 1.0)
        out["front_source"] = "assumed +Z (glTF/VRM convention): no toe segments to tell front from back"
    left = _unit(np.cross(up_v, front))
    out["up"], out["front"], out["left"] = (
        [round(float(x), 4) for x in up_v],
        [round(float(x), 4) for x in front],
        [round(float(x), 4) for x in left],
    )
    side = (P - P[hips]) @ left

    # legs
    for f in feet:
        prefix = "left" if side[f] > 0 else "right"
        chain = path(hips, f)
        foot_i = len(chain) - 1
        for k in range(1, len(chain) - 1):
            seg = P[chain[k + 1]] - P[chain[k]]
            if np.linalg.norm(seg - (seg @ up_v) * up_v) > abs(seg @ up_v):
                foot_i = k
                break
        if foot_i < 2:
            out["warnings"].append(f"{prefix} leg has {len(chain)} joints: too few for thigh, shin and foot")
            continue
        bones[f"{prefix}UpperLeg"], bones[f"{prefix}Foot"] = chain[0], chain[foot_i]
        mid = (height[chain[0]] + height[chain[foot_i]]) / 2
        bones[f"{prefix}LowerLeg"] = min(chain[1:foot_i], key=lambda j: abs(height[j] - mid))
        if foot_i + 1 < len(chain):
            bones[f"{prefix}Toes"] = chain[foot_i + 1]

    # spine to the top of the head
    leg_joints = {j for f in feet for j in path(hips, f)}
    above = [i for i in leaves if hips in ancestors(i) and i != hips and i not in leg_joints]
    if not above:
        out["warnings"].append("nothing above the hips: no spine")
        return finish()
    top = max(above, key=lambda i: height[i])
    spine = path(hips, top)
    on_spine = set(spine)

    # arms: the chain off the spine reaching furthest to each side
    attach: dict[str, int] = {}
    arms: dict[str, list[int]] = {}
    for prefix, sign in (("left", 1), ("right", -1)):
        cands = [
            i
            for i in leaves
            if i not in on_spine
            and any(a in on_spine for a in ancestors(i)[1:])
            and i not in leg_joints
            and sign * side[i] > 0
        ]
        if not cands:
            out["warnings"].append(f"no {prefix} arm branch off the spine")
            continue
        tip = max(cands, key=lambda i: sign * side[i])
        branch = next(a for a in ancestors(tip)[1:] if a in on_spine)
        attach[prefix], arms[prefix] = spine.index(branch), path(branch, tip)
    for prefix, chain in arms.items():
        _map_arm(prefix, chain, children, P, bones, out["warnings"])

    # torso and neck/head, split at the higher arm branch point
    b = max(attach.values()) if attach else max(0, len(spine) - 3)
    torso, neck_head = spine[: b + 1], spine[b + 1 :]
    for name, j in zip(("spine", "chest"), torso):
        bones[name] = j
    if len(torso) >= 3:
        bones["upperChest"] = torso[-1]
    if len(neck_head) == 1:
        bones["head"] = neck_head[0]
    elif len(neck_head) >= 2:
        bones["neck"] = neck_head[0]
        h0, h_top = height[neck_head[0]], height[neck_head[-1]]
        bones["head"] = next((j for j in neck_head[1:] if height[j] - h0 >= 0.2 * (h_top - h0)), neck_head[1])
    if len(set(bones.values())) != len(bones):
        out["warnings"].append("one joint got two humanoid names; the skeleton does not look humanoid")
    return finish()


def _map_arm(
    prefix: str, chain: list[int], children: list[list[int]], P: np.ndarray, bones: dict[str, int], warnings: list[str]
) -> None:
    hand_i = next((k for k, j in enumerate(chain) if k >= 2 and len(children[j]) >= 2), None)
    if hand_i is None:
        seg = [float(np.linalg.norm(P[chain[k + 1]] - P[chain[k]])) for k in range(len(chain) - 1)]
        short_end = len(seg) >= 3 and seg[-1] < 0.5 * float(np.mean(seg[:-1]))
        hand_i = len(chain) - 2 if short_end else len(chain) - 1
    limb = chain[: hand_i + 1]
    if len(limb) >= 4:
        bones[f"{prefix}Shoulder"], limb = limb[0], limb[1:]
    if len(limb) < 3:
        warnings.append(f"{prefix} arm has {len(limb)} joints up to the hand: too few for upper arm, forearm and hand")
        return
    arc = np.concatenate(
        [[0.0], np.cumsum([np.linalg.norm(P[limb[k + 1]] - P[limb[k]]) for k in range(len(limb) - 1)])]
    )
    bones[f"{prefix}UpperArm"], bones[f"{prefix}Hand"] = limb[0], limb[-1]
    bones[f"{prefix}LowerArm"] = limb[1 + int(np.argmin(np.abs(arc[1:-1] - arc[-1] / 2)))]
