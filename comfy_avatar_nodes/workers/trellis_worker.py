"""TRELLIS image -> textured GLB, as a persistent worker that keeps the pipeline on the GPU.

Started by core/runtime/workers.py with the TRELLIS env's own Python (never ComfyUI's)::

    python trellis_worker.py --weights-dir /models/TRELLIS-image-large [--repo-dir /src/TRELLIS]

The parent sets ATTN_BACKEND / SPARSE_BACKEND / SPCONV_ALGO (trellis reads them at import),
TORCH_HOME (DINOv2 via torch.hub), U2NET_HOME (rembg) and HF_HUB_OFFLINE=1.
Startup checks everything it can without the model (CUDA, packages, every weight file
pipeline.json names, the DINOv2 hub cache) and reports ALL problems in the handshake;
then it loads TrellisImageTo3DPipeline.from_pretrained(<local dir>) once and serves
``image_to_mesh`` requests: run(image, seed, sampler params) -> postprocessing_utils.to_glb
-> GLB written to a temp name beside the output, then renamed. Several pictures (``images``, a
turnaround's views) go to run_multi_image(images, ..., mode=multiview_mode) instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _provenance  # noqa: E402
from _preflight import cuda_probe, gpu_problem, missing_modules, missing_problem, module_versions  # noqa: E402
from _protocol import Preflight, Request, WorkerFailure, problem, serve  # noqa: E402

BASIC = "TRELLIS setup.sh --basic"
# Errors huggingface_hub raises when TRELLIS's bare `except:` retries a local component as a repo id.
HUB_MARKERS = (
    "Repository Not Found",
    "RepositoryNotFoundError",
    "LocalEntryNotFoundError",
    "OfflineModeIsEnabled",
    "outgoing traffic has been disabled",
    "HFValidationError",
    "Repo id must",
    "401 Client Error",
)
DEFAULTS = {
    "seed": 1,
    "ss_steps": 12,
    "ss_cfg": 7.5,
    "slat_steps": 12,
    "slat_cfg": 3.0,
    "simplify": 0.95,
    "texture_size": 1024,
    "multiview_mode": "stochastic",
}


def required_modules(attn: str, sparse: str) -> list[tuple[str, str]]:
    mods = [
        ("torch", "a CUDA build of torch + torchvision (setup.sh --new-env, or pip from download.pytorch.org)"),
        ("torchvision", "installed with torch"),
        ("PIL", BASIC),
        ("numpy", BASIC),
        ("trimesh", BASIC),
        ("rembg", BASIC),
        ("easydict", BASIC),
        ("utils3d", BASIC),
        ("xatlas", BASIC),
        ("pyvista", BASIC),
        ("pymeshfix", BASIC),
        ("igraph", BASIC),
        ("cv2", BASIC),
        ("plyfile", "pip install plyfile"),
        ("safetensors", "pip install safetensors"),
        ("nvdiffrast", "setup.sh --nvdiffrast"),
        ("diff_gaussian_rasterization", "setup.sh --mipgaussian (to_glb bakes the texture from the Gaussians)"),
        (
            "trellis",
            "set trellis.repo_dir to a TRELLIS checkout (git clone --recurse-submodules "
            "https://github.com/microsoft/TRELLIS)",
        ),
    ]
    mods += {
        "flash_attn": [("flash_attn", "setup.sh --flash-attn, or set trellis.attn_backend to xformers/sdpa")],
        "xformers": [("xformers", "setup.sh --xformers")],
    }.get(attn, [])
    mods += {
        "spconv": [("spconv", "setup.sh --spconv (spconv-cu118 / spconv-cu120)")],
        "torchsparse": [("torchsparse", "pip install torchsparse")],
    }.get(sparse, [])
    return mods


def check_weights(weights_dir: Path) -> tuple[list[str], dict]:
    """Files missing from a local TRELLIS-image-large copy, and its parsed pipeline.json.

    from_pretrained reads {dir}/pipeline.json, then for every args.models entry
    {dir}/{entry}.json and {dir}/{entry}.safetensors (trellis/models/__init__.py).
    """
    if not weights_dir.is_dir():
        return [f"{weights_dir} itself (the folder does not exist)"], {}
    pj = weights_dir / "pipeline.json"
    if not pj.is_file():
        return ["pipeline.json", "ckpts/ (the *.json + *.safetensors checkpoints pipeline.json names)"], {}
    try:
        cfg = json.loads(pj.read_text(encoding="utf-8"))
        models = dict(cfg["args"]["models"])
    except (ValueError, KeyError, TypeError) as e:
        return [f"a valid pipeline.json (it has no args.models: {type(e).__name__}: {e})"], {}
    missing = [
        f"{rel}{ext}"
        for rel in models.values()
        for ext in (".json", ".safetensors")
        if not (weights_dir / f"{rel}{ext}").is_file()
    ]
    return missing, cfg


def torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch: $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(home).expanduser() / "hub"


def dinov2_files(image_cond_model: str) -> list[Path]:
    """What torch.hub.load('facebookresearch/dinov2', name, pretrained=True) reads when offline."""
    hub = torch_hub_dir()
    reg = image_cond_model.endswith("_reg")
    arch = image_cond_model[: -len("_reg")] if reg else image_cond_model  # dinov2_vitl14
    return [
        hub / "facebookresearch_dinov2_main" / "hubconf.py",
        hub / "checkpoints" / f"{arch}{'_reg4' if reg else ''}_pretrain.pth",
    ]


def u2net_path() -> Path:
    """Where rembg looks for u2net.onnx (U2NET_HOME, else ~/.u2net)."""
    home = os.environ.get("U2NET_HOME") or os.path.join(os.environ.get("XDG_DATA_HOME") or "~", ".u2net")
    return Path(home).expanduser() / "u2net.onnx"


def needs_background_removal(img: Any) -> bool:
    """TrellisImageTo3DPipeline.preprocess_image uses the alpha channel only for RGBA pictures
    with at least one pixel below 255; anything else goes through rembg (u2net)."""
    if img.mode != "RGBA":
        return True
    low, _ = img.getchannel("A").getextrema()
    return low >= 255


def explain_load_error(exc: BaseException, weights_dir: Path, cfg: dict) -> str:
    """TRELLIS's Pipeline.from_pretrained wraps each local component load in a bare `except:`
    and retries it as a Hugging Face repo, so a real local error (a missing flash_attn, a
    corrupt .safetensors) surfaces as "Repository Not Found"/offline errors. Load each
    component directly to find the real one."""
    text = f"{type(exc).__name__}: {exc}"
    if not any(m in text for m in HUB_MARKERS):
        return text
    from trellis import models  # the real loader, without the fallback

    for key, rel in cfg.get("args", {}).get("models", {}).items():
        try:
            models.from_pretrained(str(weights_dir / rel))
        except Exception as e:  # noqa: BLE001 - this is the error TRELLIS hid
            return (
                f"loading component {key!r} ({rel}) failed with {type(e).__name__}: {e} "
                f"(TRELLIS then retried it as a Hugging Face repo id, which is why the first error read "
                f"{text[:160]!r})"
            )
    return (
        f"{text} (every component loads on its own, so the failure is in the image-conditioning model or the samplers)"
    )


def checkpoint_files(weights_dir: Path, cfg: dict) -> tuple[dict[str, Path], dict[str, Path | None]]:
    """{logical name: path} of every file the pipeline will load (names as in the released repos:
    microsoft/TRELLIS-image-large paths, ``dinov2/<file>`` and ``u2net/u2net.onnx``), and the
    download root of each (for the Hugging Face record of its hash)."""
    files: dict[str, Path] = {"pipeline.json": weights_dir / "pipeline.json"}
    for rel in dict(cfg.get("args", {}).get("models", {})).values():
        for ext in (".json", ".safetensors"):
            files[f"{rel}{ext}"] = weights_dir / f"{rel}{ext}"
    roots: dict[str, Path | None] = {name: weights_dir for name in files}
    name = cfg.get("args", {}).get("image_cond_model")
    if name:
        pth = dinov2_files(name)[1]
        if pth.is_file():
            files[f"dinov2/{pth.name}"], roots[f"dinov2/{pth.name}"] = pth, None
    if u2net_path().is_file():
        files["u2net/u2net.onnx"], roots["u2net/u2net.onnx"] = u2net_path(), None
    return {k: v for k, v in files.items() if v.is_file()}, roots


class TrellisWorker:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.weights_dir = Path(opts.weights_dir).expanduser() if opts.weights_dir else None
        self.repo_dir = Path(opts.repo_dir).expanduser() if opts.repo_dir else None
        self.min_vram_gb = opts.min_vram_gb
        self.pins = opts.checkpoint_pins
        self.pipeline: Any = None
        self.postprocessing: Any = None
        self.cfg: dict = {}

    def preflight(self) -> dict:
        attn = os.environ.get("ATTN_BACKEND", "flash_attn")
        sparse = os.environ.get("SPARSE_BACKEND", "spconv")
        problems = []
        if self.repo_dir is not None:
            if not (self.repo_dir / "trellis" / "__init__.py").is_file():
                problems.append(
                    problem("missing_repo", f"{self.repo_dir} is not a TRELLIS checkout (no trellis/__init__.py)")
                )
            sys.path.insert(0, str(self.repo_dir))
        dev = cuda_probe()
        if (gp := gpu_problem(dev, self.min_vram_gb)) is not None:
            problems.append(gp)
        missing = missing_modules(required_modules(attn, sparse))
        if missing:
            problems.append(missing_problem("missing_package", f"the TRELLIS Python {sys.executable}", missing))
        if self.weights_dir is None:
            problems.append(problem("missing_weights", "no weights folder was given (--weights-dir)"))
        else:
            lacking, self.cfg = check_weights(self.weights_dir)
            if lacking:
                problems.append(
                    problem("missing_weights", f"{self.weights_dir} lacks {', '.join(lacking)}", missing=lacking)
                )
            name = self.cfg.get("args", {}).get("image_cond_model")
            if name:
                hub_missing = [str(p) for p in dinov2_files(name) if not p.is_file()]
                if hub_missing:
                    problems.append(
                        problem(
                            "missing_weights",
                            f"the DINOv2 image encoder {name} is not in the torch hub "
                            f"cache: missing {', '.join(hub_missing)}",
                            missing=hub_missing,
                        )
                    )
        info = {
            "model": "TRELLIS-image-large",
            "device": dev,
            "backends": {"attn": attn, "sparse": sparse, "spconv_algo": os.environ.get("SPCONV_ALGO", "")},
            "weights_dir": str(self.weights_dir or ""),
            "torch_hub": str(torch_hub_dir()),
            "u2net": str(u2net_path()),
            "u2net_present": u2net_path().is_file(),
            "versions": module_versions(
                [
                    "torch",
                    "torchvision",
                    "spconv",
                    "spconv-cu118",
                    "spconv-cu120",
                    "flash_attn",
                    "xformers",
                    "rembg",
                    "trimesh",
                ]
            ),
        }
        if problems:
            raise Preflight(problems, info)
        return info

    def verify_checkpoints(self, info: dict) -> None:
        """Refuse (Preflight) unless every checkpoint file matches the pinned list."""
        files, _ = checkpoint_files(self.weights_dir, self.cfg)
        try:
            pins, source = _provenance.load_pins("trellis", self.pins)
        except ValueError as e:
            raise Preflight([problem("checkpoint_pins", str(e))], info) from None
        problems, hashes = _provenance.verify(files, pins, source)
        info["checkpoint_sha256"] = {"pinned_list": source, "sha256": hashes}
        if problems:
            raise Preflight(problems, info)

    def load(self, info: dict) -> float:
        import traceback

        t0 = time.monotonic()
        try:
            from trellis.pipelines import TrellisImageTo3DPipeline
            from trellis.utils import postprocessing_utils  # imports nvdiffrast/xatlas now, not mid-request

            pipeline = TrellisImageTo3DPipeline.from_pretrained(str(self.weights_dir))
            pipeline.cuda()
        except Exception as e:  # noqa: BLE001 - explained, then reported in the handshake
            raise Preflight(
                [
                    problem(
                        "load_error",
                        explain_load_error(e, self.weights_dir, self.cfg),
                        traceback=traceback.format_exc(),
                    )
                ],
                info,
            ) from e
        self.pipeline, self.postprocessing = pipeline, postprocessing_utils
        return round(time.monotonic() - t0, 3)

    def image_to_mesh(self, args: dict, req: Request) -> dict:
        import torch
        from PIL import Image

        p = {**DEFAULTS, **{k: v for k, v in args.items() if k in DEFAULTS}}
        paths, output = [Path(x) for x in (args.get("images") or [args["image"]])], Path(args["output"])
        imgs = []
        for image_path in paths:
            try:
                img = Image.open(image_path)
                img.load()
            except OSError as e:
                raise WorkerFailure("bad_input", f"cannot read {image_path}: {e}") from e
            if needs_background_removal(img) and not u2net_path().is_file():
                raise WorkerFailure(
                    "missing_weights",
                    f"{image_path.name} has no transparent background, so TRELLIS would "
                    f"cut it out with rembg's u2net model, and {u2net_path()} is missing (no downloads "
                    "offline)",
                )
            imgs.append(img)
        torch.cuda.reset_peak_memory_stats()
        t0 = time.monotonic()
        sampler = {
            "seed": int(p["seed"]),
            "sparse_structure_sampler_params": {"steps": int(p["ss_steps"]), "cfg_strength": float(p["ss_cfg"])},
            "slat_sampler_params": {"steps": int(p["slat_steps"]), "cfg_strength": float(p["slat_cfg"])},
            "formats": ["gaussian", "mesh"],
        }
        if len(imgs) > 1:
            req.progress(0.05, f"sampling from {len(imgs)} views ({p['multiview_mode']})")
            outputs = self.pipeline.run_multi_image(imgs, mode=str(p["multiview_mode"]), **sampler)
        else:
            req.progress(0.05, "sampling sparse structure and structured latent")
            outputs = self.pipeline.run(imgs[0], **sampler)
        t1 = time.monotonic()
        req.progress(0.6, "simplifying, unwrapping and baking the texture (to_glb)")
        glb = self.postprocessing.to_glb(
            outputs["gaussian"][0],
            outputs["mesh"][0],
            simplify=float(p["simplify"]),
            texture_size=int(p["texture_size"]),
            verbose=False,
        )
        t2 = time.monotonic()
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.stem}.{os.getpid()}.part{output.suffix}")
        try:
            glb.export(str(tmp))
            os.replace(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
        peak = torch.cuda.max_memory_allocated() / 2**30
        del outputs
        torch.cuda.empty_cache()
        return {
            "path": str(output),
            "vertices": int(len(glb.vertices)),
            "faces": int(len(glb.faces)),
            "params": p,
            "views": len(imgs),
            "peak_vram_gb": round(peak, 2),
            "timings_s": {"sample": round(t1 - t0, 3), "to_glb": round(t2 - t1, 3)},
        }


def checkpoints_cli(worker: TrellisWorker, opts: argparse.Namespace) -> int:
    lacking, worker.cfg = check_weights(worker.weights_dir) if worker.weights_dir else (["--weights-dir"], {})
    if lacking:
        print(f"cannot check: {worker.weights_dir} lacks {', '.join(lacking)}", file=sys.stderr)
        return 2
    if opts.pin:
        files, roots = checkpoint_files(worker.weights_dir, worker.cfg)
        return _provenance.write_pins("trellis", files, opts.pin, roots)
    try:
        worker.verify_checkpoints({})
    except Preflight as e:
        for p in e.problems:
            print(p["message"], file=sys.stderr)
        return 1
    print("every TRELLIS checkpoint file matches the pinned list")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights-dir", default="")
    ap.add_argument("--repo-dir", default="")
    ap.add_argument("--min-vram-gb", type=float, default=16.0)
    ap.add_argument("--checkpoint-pins", default="", help="a pinned sha256 list replacing the shipped one")
    ap.add_argument("--verify-checkpoints", action="store_true", help="only check the checkpoints' sha256; exit 0/1")
    ap.add_argument("--pin", default="", metavar="OUT", help="write the checkpoints' sha256 to OUT and exit")
    opts = ap.parse_args(argv)
    worker = TrellisWorker(opts)
    if opts.pin or opts.verify_checkpoints:
        return checkpoints_cli(worker, opts)

    def startup() -> tuple[dict, dict]:
        info = worker.preflight()
        worker.verify_checkpoints(info)
        info["load_s"] = worker.load(info)
        return info, {"image_to_mesh": worker.image_to_mesh}

    return serve(startup)


if __name__ == "__main__":
    sys.exit(main())
