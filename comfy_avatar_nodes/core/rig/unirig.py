"""Auto-rigging with UniRig (skeleton + skinning + merge) in its own GPU worker, plus a
HEURISTIC map from UniRig's bone_0..bone_N to VRM humanoid bone names.

The rig runs in workers/unirig_worker.py under the UniRig env's Python (config
``unirig.python``), which drives UniRig's own CLI steps in its checkout (``unirig.repo_dir``)
with Hugging Face forced offline. The released checkpoint (Articulation-XL2.0) names bones
bone_0..bone_N in an order that says nothing about anatomy, so :func:`humanoid_map` guesses
the VRM humanoid bones from the merged skeleton's joint positions and hierarchy. It is a
geometric heuristic, labelled as one in its output; check it before relying on it.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..assets import Asset, write_json_atomic
from ..config import Config, load_config
from ..errors import AvatarError, ConfigError
from ..mesh.trellis import _existing_dir, _key, model_python
from ..runtime.workers import WORKERS_DIR, WorkerError, WorkerSpec, get_worker, job_dir

log = logging.getLogger("comfy_avatar.unirig")

NO_GPU = "UniRig needs an NVIDIA GPU with >= 8 GB"
CPU_FIX = "use the CPU template rig node (Rig + Export VRM (CPU template rig)) on this machine"
BUILD_ENV = ("build the UniRig env (README 'GPU paths'): git clone https://github.com/VAST-AI-Research/UniRig; "
             "make a Python 3.11 env; pip install torch torchvision (CUDA); pip install -r requirements.txt; "
             "pip install spconv-cu1xx torch_scatter torch_cluster (pyg wheels) numpy==1.26.4 and flash_attn; "
             "then set unirig.python to that env's python and unirig.repo_dir to the checkout")
GET_WEIGHTS = ("on a machine with Hugging Face access: `huggingface-cli download VAST-AI/UniRig "
               "skeleton/articulation-xl_quantization_256/model.ckpt skin/articulation-xl/model.ckpt --local-dir DIR` "
               "(set unirig.weights_dir to DIR) and `HF_HOME=H huggingface-cli download facebook/opt-350m config.json` "
               "(set unirig.hf_home to H)")
MESH_SUFFIXES = (".glb", ".obj", ".fbx", ".vrm")
OUTPUT_FORMATS = ("glb", "fbx")
REQUIRED_BONES = ("hips", "spine", "head", "leftUpperLeg", "leftLowerLeg", "leftFoot", "rightUpperLeg", "rightLowerLeg",
                  "rightFoot", "leftUpperArm", "leftLowerArm", "leftHand", "rightUpperArm", "rightLowerArm", "rightHand")


@dataclass(frozen=True)
class UniRigParams:
    seed: int = 12345  # generate_skeleton.sh's default
    seed_retries: int = 3
    output_format: str = "glb"
    faces_target_count: int = 50000

    def check(self) -> "UniRigParams":
        if not 0 <= self.seed <= 2**31 - 1:
            raise AvatarError("seed", f"{self.seed} is outside 0..2147483647", "pick a smaller seed")
        if not 0 <= self.seed_retries <= 20:
            raise AvatarError("seed_retries", f"{self.seed_retries} is outside 0..20", "use 0..20 extra seeds")
        if self.output_format not in OUTPUT_FORMATS:
            raise AvatarError("output_format", f"{self.output_format!r} is not one of {OUTPUT_FORMATS}", "use glb or fbx")
        if not 1000 <= self.faces_target_count <= 500_000:
            raise AvatarError("faces_target_count", f"{self.faces_target_count} is outside 1000..500000",
                              "UniRig's default is 50000")
        return self


def unirig_spec(cfg: Config | None = None) -> WorkerSpec:
    cfg = cfg or load_config()
    python = model_python(cfg, "unirig.python", "UniRig", BUILD_ENV)
    repo = _existing_dir(cfg, "unirig.repo_dir", required=True, problem="is not set: no UniRig checkout", fix=BUILD_ENV)
    if not (Path(repo) / "run.py").is_file():
        raise ConfigError(_key("unirig.repo_dir"), f"{repo} has no run.py, so it is not a UniRig checkout", BUILD_ENV)
    weights = _existing_dir(cfg, "unirig.weights_dir", required=False, problem="", fix=GET_WEIGHTS)
    hf_home = _existing_dir(cfg, "unirig.hf_home", required=False, problem="", fix=GET_WEIGHTS)
    args = ["--repo-dir", repo, "--min-vram-gb", f"{float(cfg.get('unirig.min_vram_gb')):g}"]
    if weights:
        args += ["--weights-dir", weights]
    return WorkerSpec(name="unirig", python=python, script=str(WORKERS_DIR / "unirig_worker.py"), args=tuple(args),
                      env=(("HF_HOME", hf_home),) if hf_home else (), cwd=repo,
                      start_timeout_s=float(cfg.get("workers.start_timeout_s")),
                      idle_timeout_s=float(cfg.get("workers.idle_timeout_s")),
                      log_dir=str(cfg.get("workers.log_dir") or ""), label="UniRig")


def explain_start_failure(err: WorkerError, spec: WorkerSpec) -> AvatarError:
    by_kind: dict[str, list[str]] = {}
    for p in err.problems:
        by_kind.setdefault(str(p.get("kind")), []).append(str(p.get("message")))
    if "no_cuda" in by_kind or "low_vram" in by_kind:
        reason = "; ".join(by_kind.get("no_cuda", []) + by_kind.get("low_vram", []))
        return AvatarError("Auto-rig (UniRig)", f"{NO_GPU} ({reason})", CPU_FIX, detail=err.detail)
    if "missing_repo" in by_kind:
        return AvatarError(_key("unirig.repo_dir"), "; ".join(by_kind["missing_repo"]), BUILD_ENV, detail=err.detail)
    if "missing_package" in by_kind:
        return AvatarError(_key("unirig.python") + f" = {spec.python}", "; ".join(by_kind["missing_package"]), BUILD_ENV,
                           detail=err.detail)
    if "missing_weights" in by_kind:
        return AvatarError(f"{_key('unirig.weights_dir')} / {_key('unirig.hf_home')}", "; ".join(by_kind["missing_weights"]),
                           GET_WEIGHTS, detail=err.detail)
    return err


async def rig_unirig(mesh: Asset | str | Path, out: str | Path, params: UniRigParams | None = None,
                     cfg: Config | None = None, *, progress: Callable[[float, str], None] | None = None) -> Asset:
    """Rig ``mesh`` with UniRig; write the rigged GLB/FBX to ``out`` and a humanoid map beside it
    (``<out stem>.humanoid.json``, heuristic). Returns a ``rigged_mesh`` asset."""
    cfg = cfg or load_config()
    params = (params or UniRigParams()).check()
    src = Path(mesh.require("mesh", "mesh").path) if isinstance(mesh, Asset) else Path(mesh)
    if not src.is_file():
        raise AvatarError("mesh", f"{src} does not exist", "connect a mesh from an image-to-mesh node")
    if src.suffix.lower() not in MESH_SUFFIXES:
        raise AvatarError("mesh", f"{src.name}: UniRig here reads {', '.join(MESH_SUFFIXES)}",
                          "export the mesh as GLB (a .gltf's separate buffers would be left behind)")
    out = Path(out).absolute()
    if out.suffix.lower() != f".{params.output_format}":
        raise AvatarError(str(out), f"does not end in .{params.output_format}", "name the output after output_format")
    spec = unirig_spec(cfg)
    worker = get_worker(spec)
    with job_dir(spec, keep_on_error=True) as work:
        try:
            result = await worker.call("rig", {"input": str(src.absolute()), "output": str(out), "work_dir": str(work),
                                               "seed": params.seed, "seed_retries": params.seed_retries,
                                               "faces_target_count": params.faces_target_count},
                                       timeout_s=float(cfg.get("unirig.timeout_s")), progress=progress)
        except WorkerError as e:
            if e.kind == "preflight":
                raise explain_start_failure(e, spec) from None
            kind = e.response.get("error_kind")
            if kind == "bad_sample":
                raise AvatarError("seed", e.problem, "change the seed (or raise seed_retries)", detail=e.detail) from None
            if kind == "oom":
                raise AvatarError("Auto-rig (UniRig)", f"{e.problem}: the GPU ran out of memory",
                                  "lower faces_target_count or free the GPU (other models)", detail=e.detail) from None
            raise
        skeleton = read_gltf_skeleton(result["skeleton_glb"])
    mapping = humanoid_map(skeleton)
    map_path = out.with_name(f"{out.stem}.humanoid.json")
    write_json_atomic(map_path, mapping)
    if not mapping["complete"]:
        log.warning("UniRig humanoid map for %s is incomplete: missing %s", out.name, mapping["missing_required"])
    return Asset.from_file(out, "rigged_mesh", source="unirig-articulation-xl", format=params.output_format,
                           params=asdict(params), seed_used=result.get("seed"), seeds_tried=result.get("seeds_tried"),
                           bone_count=len(skeleton.names), humanoid_map=str(map_path),
                           humanoid_complete=mapping["complete"], device=(worker.info.get("device") or {}).get("name"))


# ---------------------------------------------------------------------- skeleton from a GLB

@dataclass
class Skeleton:
    names: list[str]
    parents: list[int | None]
    positions: np.ndarray  # (J, 3) joint (bone head) positions in scene space


def _node_matrix(node: Any) -> np.ndarray:
    if node.matrix:
        return np.array(node.matrix, dtype=float).reshape(4, 4).T  # glTF stores column-major
    t = np.array(node.translation or (0, 0, 0), float)
    x, y, z, w = node.rotation or (0, 0, 0, 1)
    s = np.array(node.scale or (1, 1, 1), float)
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    m = np.eye(4)
    m[:3, :3] = r * s
    m[:3, 3] = t
    return m


def read_gltf_skeleton(path: str | Path) -> Skeleton:
    """Joint names, parents and world positions of the first skin in a .glb/.gltf/.vrm."""
    import pygltflib

    path = Path(path)
    try:
        gltf = pygltflib.GLTF2().load_binary(str(path)) if path.suffix.lower() in (".glb", ".vrm") else \
            pygltflib.GLTF2().load(str(path))
    except Exception as e:  # noqa: BLE001 - pygltflib raises many types on bad files
        raise AvatarError(str(path), f"is not a readable glTF file ({type(e).__name__}: {e})",
                          "re-run the rig node") from None
    if not gltf.skins or not gltf.skins[0].joints:
        raise AvatarError(str(path), "has no skinned skeleton", "UniRig's merge step must have failed; see its log")
    parent_of: dict[int, int] = {}
    for i, node in enumerate(gltf.nodes):
        for c in node.children or []:
            parent_of[c] = i
    world: dict[int, np.ndarray] = {}

    def world_of(i: int) -> np.ndarray:
        if i not in world:
            local = _node_matrix(gltf.nodes[i])
            world[i] = world_of(parent_of[i]) @ local if i in parent_of else local
        return world[i]

    joints = list(gltf.skins[0].joints)
    index = {node: k for k, node in enumerate(joints)}
    parents: list[int | None] = []
    for node in joints:
        p = parent_of.get(node)
        while p is not None and p not in index:
            p = parent_of.get(p)
        parents.append(index[p] if p is not None else None)
    names = [gltf.nodes[n].name or f"joint_{k}" for k, n in enumerate(joints)]
    positions = np.array([world_of(n)[:3, 3] for n in joints], dtype=float)
    return Skeleton(names, parents, positions)


# ---------------------------------------------------------------------- humanoid map (heuristic)

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
    out: dict[str, Any] = {"heuristic": True, "method": "geometric guess from joint positions and hierarchy "
                           "(UniRig's released checkpoint names bones bone_N); check before use",
                           "bone_count": n, "humanBones": {}, "warnings": []}
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
        return list(reversed(chain[:chain.index(top)])) if top in chain else []

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
    out["up"], out["front"], out["left"] = [round(float(x), 4) for x in up_v], [round(float(x), 4) for x in front], \
        [round(float(x), 4) for x in left]
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
        cands = [i for i in leaves if i not in on_spine and any(a in on_spine for a in ancestors(i)[1:])
                 and i not in leg_joints and sign * side[i] > 0]
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
    torso, neck_head = spine[:b + 1], spine[b + 1:]
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


def _map_arm(prefix: str, chain: list[int], children: list[list[int]], P: np.ndarray, bones: dict[str, int],
             warnings: list[str]) -> None:
    hand_i = next((k for k, j in enumerate(chain) if k >= 2 and len(children[j]) >= 2), None)
    if hand_i is None:
        seg = [float(np.linalg.norm(P[chain[k + 1]] - P[chain[k]])) for k in range(len(chain) - 1)]
        short_end = len(seg) >= 3 and seg[-1] < 0.5 * float(np.mean(seg[:-1]))
        hand_i = len(chain) - 2 if short_end else len(chain) - 1
    limb = chain[:hand_i + 1]
    if len(limb) >= 4:
        bones[f"{prefix}Shoulder"], limb = limb[0], limb[1:]
    if len(limb) < 3:
        warnings.append(f"{prefix} arm has {len(limb)} joints up to the hand: too few for upper arm, forearm and hand")
        return
    arc = np.concatenate([[0.0], np.cumsum([np.linalg.norm(P[limb[k + 1]] - P[limb[k]]) for k in range(len(limb) - 1)])])
    bones[f"{prefix}UpperArm"], bones[f"{prefix}Hand"] = limb[0], limb[-1]
    bones[f"{prefix}LowerArm"] = limb[1 + int(np.argmin(np.abs(arc[1:-1] - arc[-1] / 2)))]
