"""Image(s) -> textured mesh with TRELLIS (microsoft/TRELLIS-image-large) in its own warm GPU worker.

Several views of one figure (a turnaround: front, side, back) go to TRELLIS's multi-image mode
(``run_multi_image``): every view conditions the sampling, ``stochastic`` (one view per step, in turn)
or ``multidiffusion`` (the views' predictions averaged at every step), TRELLIS's own two modes.

The model runs in workers/trellis_worker.py under the TRELLIS env's Python (config
``trellis.python``), loaded once from a local weights folder (``trellis.weights_dir``) with
Hugging Face forced offline, and kept warm between jobs (core/runtime/workers.py). Nothing here
imports torch. Output: a GLB, Y-up, textured (baked from the Gaussians), centred in a unit
cube (TRELLIS's own normalisation, not metres).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..assets import Asset
from ..config import Settings, load_settings, setting_name
from ..errors import AvatarError, ConfigError
from ..images import load_image
from ..runtime.model_env import model_dir, model_python, worker_spec
from ..runtime.workers import WorkerError, WorkerSpec, get_worker, job_dir

log = logging.getLogger("comfy_avatar.trellis")

NO_GPU = "TRELLIS needs an NVIDIA GPU with >= 16 GB"
CPU_FIX = "use the CPU silhouette node (Image to Mesh (CPU silhouette inflation)) on this machine"
BUILD_ENV = (
    "build the TRELLIS env (README 'GPU paths'): git clone --recurse-submodules https://github.com/microsoft/TRELLIS; "
    "cd TRELLIS; . ./setup.sh --new-env --basic --xformers --flash-attn --diffoctreerast --spconv --mipgaussian "
    "--kaolin --nvdiffrast; then set trellis.python to that env's python and trellis.repo_dir to the checkout"
)
WEIGHT_FILES = "pipeline.json + ckpts/*.json and *.safetensors of microsoft/TRELLIS-image-large"
GET_WEIGHTS = (
    "on a machine with Hugging Face access run `huggingface-cli download microsoft/TRELLIS-image-large "
    "--local-dir DIR`, copy DIR here and set trellis.weights_dir to it"
)
ATTN_BACKENDS = ("flash_attn", "xformers", "sdpa", "naive")
SPARSE_BACKENDS = ("spconv", "torchsparse")
MULTIVIEW_MODES = ("stochastic", "multidiffusion")  # TrellisImageTo3DPipeline.run_multi_image's modes


@dataclass(frozen=True)
class TrellisParams:
    """Sampler and export settings (defaults: the TRELLIS demo's)."""

    seed: int = 1
    ss_steps: int = 12
    ss_cfg: float = 7.5
    slat_steps: int = 12
    slat_cfg: float = 3.0
    simplify: float = 0.95
    texture_size: int = 1024
    multiview_mode: str = "stochastic"  # several views: TRELLIS's run_multi_image mode

    def check(self) -> TrellisParams:
        rules = {
            "seed": (0, 2**31 - 1),
            "ss_steps": (1, 100),
            "ss_cfg": (0.0, 20.0),
            "slat_steps": (1, 100),
            "slat_cfg": (0.0, 20.0),
            "simplify": (0.0, 0.99),
            "texture_size": (256, 4096),
        }
        for name, (lo, hi) in rules.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise AvatarError(name, f"{value} is outside {lo}..{hi}", f"pick a {name} between {lo} and {hi}")
        if self.multiview_mode not in MULTIVIEW_MODES:
            raise AvatarError(
                "multiview_mode",
                f"{self.multiview_mode!r} is not a TRELLIS multi-image mode",
                f"use {' or '.join(MULTIVIEW_MODES)}",
            )
        return self


def trellis_spec(settings: Settings | None = None) -> WorkerSpec:
    """The worker spec from the trellis and workers settings; checks what can be checked without starting it."""
    settings = settings or load_settings()
    t = settings.trellis
    python = model_python(t.python, "trellis.python", "TRELLIS", BUILD_ENV)
    weights = model_dir(
        t.weights_dir,
        "trellis.weights_dir",
        required=True,
        problem="is not set: no local TRELLIS weights",
        fix=f"it must hold {WEIGHT_FILES}; {GET_WEIGHTS}",
    )
    if not (Path(weights) / "pipeline.json").is_file():
        raise ConfigError(
            setting_name("trellis.weights_dir"),
            f"{weights} has no pipeline.json",
            f"it must hold {WEIGHT_FILES}; {GET_WEIGHTS}",
        )
    repo = model_dir(t.repo_dir, "trellis.repo_dir", required=False, fix=BUILD_ENV)
    if t.attn_backend not in ATTN_BACKENDS:
        raise ConfigError(
            setting_name("trellis.attn_backend"),
            f"{t.attn_backend!r} is not a TRELLIS attention backend",
            f"use one of {', '.join(ATTN_BACKENDS)}",
        )
    if t.sparse_backend not in SPARSE_BACKENDS:
        raise ConfigError(
            setting_name("trellis.sparse_backend"),
            f"{t.sparse_backend!r} is not a TRELLIS sparse backend",
            f"use one of {', '.join(SPARSE_BACKENDS)}",
        )
    env = {
        "ATTN_BACKEND": t.attn_backend,
        "SPARSE_BACKEND": t.sparse_backend,
        "SPCONV_ALGO": t.spconv_algo,
        "TORCH_HOME": str(Path(t.torch_home).expanduser()) if t.torch_home else "",
        "U2NET_HOME": str(Path(t.u2net_home).expanduser()) if t.u2net_home else "",
    }
    args = ["--weights-dir", weights, "--min-vram-gb", f"{t.min_vram_gb:g}"]
    if repo:
        args += ["--repo-dir", repo]
    if t.checkpoint_sha256:
        args += ["--checkpoint-pins", str(Path(t.checkpoint_sha256).expanduser().absolute())]
    return worker_spec("trellis", "TRELLIS", python, args, env, repo, settings.workers)


def explain_start_failure(err: WorkerError, spec: WorkerSpec) -> AvatarError:
    """Turn the worker's handshake problems into the one error a user can act on first."""
    by_kind: dict[str, list[str]] = {}
    for p in err.problems:
        by_kind.setdefault(str(p.get("kind")), []).append(str(p.get("message")))
    detail = err.detail
    if "no_cuda" in by_kind or "low_vram" in by_kind:
        reason = "; ".join(by_kind.get("no_cuda", []) + by_kind.get("low_vram", []))
        return AvatarError("Image to 3D (TRELLIS)", f"{NO_GPU} ({reason})", CPU_FIX, detail=detail)
    if "missing_repo" in by_kind or "missing_package" in by_kind:
        msg = "; ".join(by_kind.get("missing_repo", []) + by_kind.get("missing_package", []))
        return AvatarError(setting_name("trellis.python") + f" = {spec.python}", msg, BUILD_ENV, detail=detail)
    if "missing_weights" in by_kind:
        return AvatarError(
            setting_name("trellis.weights_dir"),
            "; ".join(by_kind["missing_weights"]),
            f"it must hold {WEIGHT_FILES}, and trellis.torch_home the DINOv2 hub cache "
            f"(hub/facebookresearch_dinov2_main + hub/checkpoints); {GET_WEIGHTS}",
            detail=detail,
        )
    if "load_error" in by_kind:
        return AvatarError(
            "TRELLIS model load",
            "; ".join(by_kind["load_error"]),
            "fix the TRELLIS env (flash_attn/spconv/xformers must match its torch and the GPU; "
            "trellis.attn_backend=xformers or sdpa avoids flash_attn)",
            detail=detail,
        )
    return err


async def image_to_mesh_trellis(
    image_path: str | Path,
    out: str | Path,
    params: TrellisParams | None = None,
    settings: Settings | None = None,
    *,
    progress: Callable[[float, str], None] | None = None,
    more_views: dict[str, str | Path] | None = None,
) -> Asset:
    """Run TRELLIS on one picture, or on it and ``more_views`` (name -> picture: side, back, ...) with
    TRELLIS's multi-image mode, and write a textured GLB to ``out`` (atomically)."""
    settings = settings or load_settings()
    params = (params or TrellisParams()).check()
    out = Path(out)
    if out.suffix.lower() != ".glb":
        raise AvatarError(str(out), "TRELLIS writes GLB files", "give the output a .glb name")
    pictures = {"image": load_image(image_path, "image")}  # decodes and size-checks; EXIF rotation applied
    for name, path in (more_views or {}).items():
        pictures[name] = load_image(path, name)
    spec = trellis_spec(settings)
    with job_dir(spec) as work:
        from PIL import Image

        pngs = []
        for name, rgba in pictures.items():
            pngs.append(work / f"{name}.png")
            Image.fromarray(rgba, "RGBA").save(pngs[-1])
        worker = get_worker(spec)
        request = {
            "image": str(pngs[0]),
            "images": [str(p) for p in pngs],
            "output": str(out.absolute()),
            **asdict(params),
        }
        try:
            result = await worker.call(
                "image_to_mesh", request, timeout_s=settings.trellis.timeout_s, progress=progress
            )
        except WorkerError as e:
            if e.kind == "preflight":
                raise explain_start_failure(e, spec) from None
            if e.response.get("error_kind") == "missing_weights":
                raise AvatarError(
                    "image",
                    e.problem,
                    "give a picture with a transparent background (or connect a "
                    f"MASK), or put u2net.onnx in {setting_name('trellis.u2net_home')}",
                    detail=e.detail,
                ) from None
            raise
    meta: dict[str, Any] = {k: result.get(k) for k in ("vertices", "faces", "peak_vram_gb", "timings_s")}
    meta["views"] = list(pictures)
    meta["method"] = "trellis-multi-image" if len(pictures) > 1 else "trellis-image"
    return Asset.from_file(
        out,
        "mesh",
        source="trellis-image-large",
        params=asdict(params),
        device=(worker.info.get("device") or {}).get("name"),
        **meta,
    )
