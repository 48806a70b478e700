"""Auto-rigging with UniRig (skeleton + skinning + merge) in its own GPU worker; the rigged file
comes with a HEURISTIC map from UniRig's bone_0..bone_N to VRM humanoid bone names (humanoid.py).

The rig runs in workers/unirig_worker.py under the UniRig env's Python (config
``unirig.python``), which drives UniRig's own CLI steps in its checkout (``unirig.repo_dir``)
with Hugging Face forced offline. The released checkpoint (Articulation-XL2.0) names bones
bone_0..bone_N in an order that says nothing about anatomy, so :func:`humanoid.humanoid_map` guesses
the VRM humanoid bones from the merged skeleton's joint positions and hierarchy. It is a
geometric heuristic, labelled as one in its output; check it before relying on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..assets import Asset, write_json_atomic
from ..config import Settings, load_settings, setting_name
from ..errors import AvatarError, ConfigError
from ..runtime.model_env import model_dir, model_python, worker_spec
from ..runtime.workers import WorkerError, WorkerSpec, get_worker, job_dir
from ..vrm.gltf import read_skeleton
from .humanoid import humanoid_map

log = logging.getLogger("comfy_avatar.unirig")

NO_GPU = "UniRig needs an NVIDIA GPU with >= 8 GB"
CPU_FIX = "use the CPU template rig node (Rig + Export VRM (CPU template rig)) on this machine"
BUILD_ENV = (
    "build the UniRig env (README 'GPU paths'): git clone https://github.com/VAST-AI-Research/UniRig; "
    "make a Python 3.11 env; pip install torch torchvision (CUDA); pip install -r requirements.txt; "
    "pip install spconv-cu1xx torch_scatter torch_cluster (pyg wheels) numpy==1.26.4 and flash_attn; "
    "then set unirig.python to that env's python and unirig.repo_dir to the checkout"
)
GET_WEIGHTS = (
    "on a machine with Hugging Face access: `huggingface-cli download VAST-AI/UniRig "
    "skeleton/articulation-xl_quantization_256/model.ckpt skin/articulation-xl/model.ckpt --local-dir DIR` "
    "(set unirig.weights_dir to DIR) and `HF_HOME=H huggingface-cli download facebook/opt-350m config.json` "
    "(set unirig.hf_home to H)"
)
MESH_SUFFIXES = (".glb", ".obj", ".fbx", ".vrm")
OUTPUT_FORMATS = ("glb", "fbx")


@dataclass(frozen=True)
class UniRigParams:
    seed: int = 12345  # generate_skeleton.sh's default
    seed_retries: int = 3
    output_format: str = "glb"
    faces_target_count: int = 50000

    def check(self) -> UniRigParams:
        if not 0 <= self.seed <= 2**31 - 1:
            raise AvatarError("seed", f"{self.seed} is outside 0..2147483647", "pick a smaller seed")
        if not 0 <= self.seed_retries <= 20:
            raise AvatarError("seed_retries", f"{self.seed_retries} is outside 0..20", "use 0..20 extra seeds")
        if self.output_format not in OUTPUT_FORMATS:
            raise AvatarError(
                "output_format", f"{self.output_format!r} is not one of {OUTPUT_FORMATS}", "use glb or fbx"
            )
        if not 1000 <= self.faces_target_count <= 500_000:
            raise AvatarError(
                "faces_target_count", f"{self.faces_target_count} is outside 1000..500000", "UniRig's default is 50000"
            )
        return self


def unirig_spec(settings: Settings | None = None) -> WorkerSpec:
    """The worker spec from the unirig and workers settings; checks what can be checked without starting it."""
    settings = settings or load_settings()
    u = settings.unirig
    python = model_python(u.python, "unirig.python", "UniRig", BUILD_ENV)
    repo = model_dir(
        u.repo_dir, "unirig.repo_dir", required=True, problem="is not set: no UniRig checkout", fix=BUILD_ENV
    )
    if not (Path(repo) / "run.py").is_file():
        raise ConfigError(
            setting_name("unirig.repo_dir"), f"{repo} has no run.py, so it is not a UniRig checkout", BUILD_ENV
        )
    weights = model_dir(u.weights_dir, "unirig.weights_dir", required=False, fix=GET_WEIGHTS)
    hf_home = model_dir(u.hf_home, "unirig.hf_home", required=False, fix=GET_WEIGHTS)
    args = ["--repo-dir", repo, "--min-vram-gb", f"{u.min_vram_gb:g}"]
    if weights:
        args += ["--weights-dir", weights]
    if u.checkpoint_sha256:
        args += ["--checkpoint-pins", str(Path(u.checkpoint_sha256).expanduser().absolute())]
    return worker_spec("unirig", "UniRig", python, args, {"HF_HOME": hf_home}, repo, settings.workers)


def explain_start_failure(err: WorkerError, spec: WorkerSpec) -> AvatarError:
    by_kind: dict[str, list[str]] = {}
    for p in err.problems:
        by_kind.setdefault(str(p.get("kind")), []).append(str(p.get("message")))
    if "no_cuda" in by_kind or "low_vram" in by_kind:
        reason = "; ".join(by_kind.get("no_cuda", []) + by_kind.get("low_vram", []))
        return AvatarError("Auto-rig (UniRig)", f"{NO_GPU} ({reason})", CPU_FIX, detail=err.detail)
    if "missing_repo" in by_kind:
        return AvatarError(
            setting_name("unirig.repo_dir"), "; ".join(by_kind["missing_repo"]), BUILD_ENV, detail=err.detail
        )
    if "missing_package" in by_kind:
        return AvatarError(
            setting_name("unirig.python") + f" = {spec.python}",
            "; ".join(by_kind["missing_package"]),
            BUILD_ENV,
            detail=err.detail,
        )
    if "missing_weights" in by_kind:
        return AvatarError(
            f"{setting_name('unirig.weights_dir')} / {setting_name('unirig.hf_home')}",
            "; ".join(by_kind["missing_weights"]),
            GET_WEIGHTS,
            detail=err.detail,
        )
    return err


async def rig_unirig(
    mesh: Asset | str | Path,
    out: str | Path,
    params: UniRigParams | None = None,
    settings: Settings | None = None,
    *,
    progress: Callable[[float, str], None] | None = None,
) -> Asset:
    """Rig ``mesh`` with UniRig; write the rigged GLB/FBX to ``out`` and a humanoid map beside it
    (``<out stem>.humanoid.json``, heuristic). Returns a ``rigged_mesh`` asset."""
    settings = settings or load_settings()
    params = (params or UniRigParams()).check()
    src = Path(mesh.require("mesh", "mesh").path) if isinstance(mesh, Asset) else Path(mesh)
    if not src.is_file():
        raise AvatarError("mesh", f"{src} does not exist", "connect a mesh from an image-to-mesh node")
    if src.suffix.lower() not in MESH_SUFFIXES:
        raise AvatarError(
            "mesh",
            f"{src.name}: UniRig here reads {', '.join(MESH_SUFFIXES)}",
            "export the mesh as GLB (a .gltf's separate buffers would be left behind)",
        )
    out = Path(out).absolute()
    if out.suffix.lower() != f".{params.output_format}":
        raise AvatarError(str(out), f"does not end in .{params.output_format}", "name the output after output_format")
    spec = unirig_spec(settings)
    worker = get_worker(spec)
    with job_dir(spec, keep_on_error=True) as work:
        try:
            result = await worker.call(
                "rig",
                {
                    "input": str(src.absolute()),
                    "output": str(out),
                    "work_dir": str(work),
                    "seed": params.seed,
                    "seed_retries": params.seed_retries,
                    "faces_target_count": params.faces_target_count,
                },
                timeout_s=settings.unirig.timeout_s,
                progress=progress,
            )
        except WorkerError as e:
            if e.kind == "preflight":
                raise explain_start_failure(e, spec) from None
            kind = e.response.get("error_kind")
            if kind == "bad_sample":
                raise AvatarError(
                    "seed", e.problem, "change the seed (or raise seed_retries)", detail=e.detail
                ) from None
            if kind == "oom":
                raise AvatarError(
                    "Auto-rig (UniRig)",
                    f"{e.problem}: the GPU ran out of memory",
                    "lower faces_target_count or free the GPU (other models)",
                    detail=e.detail,
                ) from None
            raise
        skeleton = read_skeleton(result["skeleton_glb"])
    mapping = humanoid_map(skeleton)
    map_path = out.with_name(f"{out.stem}.humanoid.json")
    write_json_atomic(map_path, mapping)
    if not mapping["complete"]:
        log.warning("UniRig humanoid map for %s is incomplete: missing %s", out.name, mapping["missing_required"])
    return Asset.from_file(
        out,
        "rigged_mesh",
        source="unirig-articulation-xl",
        format=params.output_format,
        params=asdict(params),
        seed_used=result.get("seed"),
        seeds_tried=result.get("seeds_tried"),
        bone_count=len(skeleton.names),
        humanoid_map=str(map_path),
        humanoid_complete=mapping["complete"],
        device=(worker.info.get("device") or {}).get("name"),
    )
