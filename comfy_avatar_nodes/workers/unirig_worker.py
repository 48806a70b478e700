"""UniRig skeleton + skinning + merge, as a persistent worker driving UniRig's own CLI steps.

Started by core/runtime/workers.py with the UniRig env's own Python (never ComfyUI's)::

    python unirig_worker.py --repo-dir /src/UniRig [--weights-dir /models/UniRig] [--min-vram-gb 8]

UniRig is driven exactly as its launch/inference/*.sh scripts do, as child processes of
this worker (same Python, cwd = the UniRig checkout, same process group, so a timeout or
cancel in the parent kills them too)::

    extract   python -m src.data.extract --config=configs/data/quick_inference.yaml ... --input=MESH --output_dir=NPZ
    skeleton  python run.py --task=configs/task/quick_inference_skeleton_articulationxl_ar_256.yaml --seed=S
                     --input=MESH --output=skeleton.fbx --npz_dir=NPZ
    extract   (again, on skeleton.fbx, --force_override=true)
    skin      python run.py --task=configs/task/quick_inference_unirig_skin.yaml --seed=S --input=skeleton.fbx
                     --output=skin.fbx --npz_dir=NPZ --data_name=raw_data.npz
    merge     python -m src.inference.merge --require_suffix=... --num_runs=1 --id=0 --source=skin.fbx
                     --target=MESH --output=rigged.glb   (again with rigged.fbx when FBX is asked for)

run.py insists on --output ending in .fbx; merge picks the format by extension (the GLB is
always made: the parent reads the merged skeleton from it). Note UniRig itself writes
logs/ and lightning_logs/ into its checkout (cwd). A bad
autoregressive sample makes run.py print "unexpected token found" and write nothing
(it still exits 0): the skeleton step is retried with the next seed. The model is loaded
by each run.py call (UniRig has no server mode); what stays warm here is the checked env.
Bones come out named bone_0..bone_N (the released Articulation-XL2.0 checkpoint).
Before the first step, both checkpoints and the opt-350m config are hashed and checked
against the pinned list (_provenance.py; ``--checkpoint-pins`` replaces the shipped one);
before each request a changed file (size, mtime, inode) is hashed again. ``--verify-checkpoints``
only does that check, ``--pin OUT`` writes a list from the files as they are.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _provenance  # noqa: E402
from _preflight import cuda_probe, gpu_problem, missing_modules, missing_problem, module_versions  # noqa: E402
from _protocol import Preflight, Request, WorkerFailure, problem, serve  # noqa: E402

DATA_CONFIG = "configs/data/quick_inference.yaml"
SKELETON_TASK = "configs/task/quick_inference_skeleton_articulationxl_ar_256.yaml"
SKIN_TASK = "configs/task/quick_inference_unirig_skin.yaml"
REQUIRE_SUFFIX = "obj,fbx,FBX,dae,glb,gltf,vrm"
INPUT_SUFFIXES = (".obj", ".fbx", ".glb", ".vrm", ".dae")  # self-contained files (a .gltf's buffers would not follow)
OUTPUT_SUFFIXES = (".glb", ".fbx")
REPO_FILES = (
    "run.py",
    "src/data/extract.py",
    "src/inference/merge.py",
    "src/inference/download.py",
    DATA_CONFIG,
    SKELETON_TASK,
    SKIN_TASK,
)
HF_REPO = "VAST-AI/UniRig"
# src/inference/download.py: the task's resume_from_checkpoint -> file in the VAST-AI/UniRig repo.
CHECKPOINTS = {
    SKELETON_TASK: (
        "experiments/skeleton/articulation-xl_quantization_256/model.ckpt",
        "skeleton/articulation-xl_quantization_256/model.ckpt",
    ),
    SKIN_TASK: ("experiments/skin/articulation-xl/model.ckpt", "skin/articulation-xl/model.ckpt"),
}
LLM_CONFIG = ("facebook/opt-350m", "config.json")  # configs/model/unirig_ar_350m_1024_81920_float32.yaml
BAD_SAMPLE = "unexpected token found"
PIP = "pip install -r requirements.txt in the UniRig env (README 'Installation')"
MODULES = [
    ("torch", "a CUDA build of torch >= 2.3.1"),
    ("lightning", PIP),
    ("transformers", "pip install transformers==4.51.3"),
    ("box", "pip install python-box"),
    ("yaml", PIP),
    ("numpy", "pip install numpy==1.26.4"),
    ("scipy", PIP),
    ("trimesh", PIP),
    ("fast_simplification", PIP),
    ("bpy", "pip install bpy==4.2"),
    ("einops", PIP),
    ("timm", PIP),
    ("addict", PIP),
    ("omegaconf", PIP),
    ("huggingface_hub", PIP),
    ("pyrender", PIP + " (the skin step voxelises with pyrender/EGL)"),
    ("spconv", "pip install spconv-cu1xx for your CUDA"),
    ("torch_scatter", "pip install torch_scatter -f https://data.pyg.org/whl/torch-<ver>+<cuda>.html"),
    ("torch_cluster", "pip install torch_cluster -f https://data.pyg.org/whl/torch-<ver>+<cuda>.html"),
    ("flash_attn", "see github.com/Dao-AILab/flash-attention (the skeleton model uses flash_attention_2)"),
]


def hf_hub_cache() -> Path:
    """huggingface_hub's cache folder, resolved the way it does (HF_HUB_CACHE, HF_HOME, XDG)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def hf_cached(repo_id: str, filename: str) -> Path | None:
    """The file an offline hf_hub_download(repo_id, filename) would return, if cached."""
    base = hf_hub_cache() / f"models--{repo_id.replace('/', '--')}"
    try:
        commit = (base / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    path = base / "snapshots" / commit / filename
    return path if path.is_file() else None


def resolve_checkpoint(task: str, repo_dir: Path, weights_dir: Path | None) -> tuple[Path | None, str]:
    """Where the checkpoint for ``task`` is: weights_dir, the HF cache, or <repo>/experiments/."""
    in_repo, in_hf = CHECKPOINTS[task]
    if weights_dir is not None:
        p = weights_dir / in_hf
        return (p, "weights_dir") if p.is_file() else (None, f"{p}")
    cached = hf_cached(HF_REPO, in_hf)
    if cached is not None:
        return cached, "hf_cache"
    p = repo_dir / in_repo
    if p.is_file():
        return p, "repo"  # download() falls back to the relative path when the hub lookup fails
    return None, f"{hf_hub_cache()}/models--VAST-AI--UniRig/snapshots/<rev>/{in_hf} or {p}"


def npz_dir_for(mesh: Path, npz_dir: Path) -> Path:
    """Where src.data.extract / run.py put raw_data.npz for ``mesh`` (get_files in extract.py:
    os.path.join(npz_dir, <input without suffix>); an absolute input wins the join)."""
    name = str(mesh).removeprefix("./")
    return Path(os.path.join(str(npz_dir), ".".join(name.split(".")[:-1])))


def extract_argv(
    python: str, mesh: Path, npz_dir: Path, *, force_override: bool, faces_target_count: int, time_tag: str
) -> list[str]:
    """launch/inference/extract.sh for one file (without its `pip install psutil`)."""
    return [
        python,
        "-m",
        "src.data.extract",
        f"--config={DATA_CONFIG}",
        f"--require_suffix={REQUIRE_SUFFIX}",
        f"--force_override={'true' if force_override else 'false'}",
        "--num_runs=1",
        "--id=0",
        f"--time={time_tag}",
        f"--faces_target_count={faces_target_count}",
        f"--input={mesh}",
        f"--output_dir={npz_dir}",
    ]


def skeleton_argv(python: str, task: str, seed: int, mesh: Path, output: Path, npz_dir: Path) -> list[str]:
    """Step 2 of launch/inference/generate_skeleton.sh."""
    return [
        python,
        "run.py",
        f"--task={task}",
        f"--seed={seed}",
        f"--input={mesh}",
        f"--output={output}",
        f"--npz_dir={npz_dir}",
    ]


def skin_argv(python: str, task: str, seed: int, skeleton: Path, output: Path, npz_dir: Path) -> list[str]:
    """Step 2 of launch/inference/generate_skin.sh."""
    return [
        python,
        "run.py",
        f"--task={task}",
        f"--seed={seed}",
        f"--input={skeleton}",
        f"--output={output}",
        f"--npz_dir={npz_dir}",
        "--data_name=raw_data.npz",
    ]


def merge_argv(python: str, source: Path, target: Path, output: Path) -> list[str]:
    """launch/inference/merge.sh."""
    return [
        python,
        "-m",
        "src.inference.merge",
        f"--require_suffix={REQUIRE_SUFFIX}",
        "--num_runs=1",
        "--id=0",
        f"--source={source}",
        f"--target={target}",
        f"--output={output}",
    ]


def task_with_checkpoint(repo_dir: Path, task: str, ckpt: Path, out_dir: Path) -> str:
    """A copy of ``task`` whose resume_from_checkpoint is the local ``ckpt`` (download() passes
    names it does not know through unchanged). Other config paths stay relative to the repo."""
    text = (repo_dir / task).read_text(encoding="utf-8")
    new, n = re.subn(r"(?m)^resume_from_checkpoint:.*$", f'resume_from_checkpoint: "{ckpt}"', text)
    if n != 1:
        raise WorkerFailure("missing_repo", f"{repo_dir / task} has no resume_from_checkpoint line to point at {ckpt}")
    out = out_dir / Path(task).name
    out.write_text(new, encoding="utf-8")
    return str(out)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        data = path.read_bytes()[-32768:].decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


@dataclass
class StepResult:
    name: str
    argv: list[str]
    returncode: int
    seconds: float
    log: str


def run_step(name: str, argv: list[str], cwd: Path, log: Path) -> StepResult:
    t0 = time.monotonic()
    with open(log, "ab") as f:
        f.write(f"$ {' '.join(argv)}\n".encode())
        f.flush()
        rc = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT).returncode
    return StepResult(name, argv, rc, round(time.monotonic() - t0, 3), str(log))


@dataclass
class Pipeline:
    python: str
    repo_dir: Path
    work_dir: Path
    skeleton_task: str = SKELETON_TASK
    skin_task: str = SKIN_TASK
    faces_target_count: int = 50000
    progress: Callable[[float, str], None] = lambda f, m: None
    steps: list[StepResult] = field(default_factory=list)

    def _run(self, name: str, argv: list[str], expect: Path, fraction: float) -> StepResult:
        self.progress(fraction, name)
        log = self.work_dir / "logs" / f"{len(self.steps) + 1:02d}-{name}.log"
        res = run_step(name, argv, self.repo_dir, log)
        self.steps.append(res)
        if res.returncode != 0 or not expect.is_file():
            tail = log_tail(log)
            what = f"exited with code {res.returncode}" if res.returncode else f"exited 0 but wrote no {expect.name}"
            kind = "oom" if "CUDA out of memory" in tail or "OutOfMemoryError" in tail else "step_failed"
            if BAD_SAMPLE in tail and not expect.is_file():
                kind = "bad_sample"
            raise WorkerFailure(kind, f"UniRig step {name} {what}", step=name, log=str(log), log_tail=tail)
        return res

    def run(self, source: Path, output: Path, seed: int, seed_retries: int) -> dict:
        if output.suffix.lower() not in OUTPUT_SUFFIXES:
            raise WorkerFailure("bad_input", f"output {output.name} must end in {' or '.join(OUTPUT_SUFFIXES)}")
        if source.suffix.lower() not in INPUT_SUFFIXES:
            raise WorkerFailure("bad_input", f"{source.name}: UniRig reads {', '.join(INPUT_SUFFIXES)} here")
        if not source.is_file():
            raise WorkerFailure("bad_input", f"{source} does not exist")
        for p in (self.work_dir, output):
            if "," in str(p):  # run.py splits --input on commas
                raise WorkerFailure("bad_input", f"{p} contains a comma, which UniRig's run.py splits paths on")
        py, work = self.python, self.work_dir
        (work / "logs").mkdir(parents=True, exist_ok=True)
        mesh = work / "input" / f"mesh{source.suffix.lower()}"
        mesh.parent.mkdir(exist_ok=True)
        shutil.copyfile(source, mesh)
        npz = work / "npz"
        tag = time.strftime("%Y_%m_%d_%H_%M_%S")
        skeleton, skin, rigged_glb = work / "skeleton.fbx", work / "skin.fbx", work / "rigged.glb"

        self._run(
            "extract",
            extract_argv(py, mesh, npz, force_override=False, faces_target_count=self.faces_target_count, time_tag=tag),
            npz_dir_for(mesh, npz) / "raw_data.npz",
            0.05,
        )
        tried: list[int] = []
        for s in range(seed, seed + max(0, seed_retries) + 1):
            tried.append(s)
            try:
                self._run("skeleton", skeleton_argv(py, self.skeleton_task, s, mesh, skeleton, npz), skeleton, 0.15)
                break
            except WorkerFailure as e:
                if e.kind != "bad_sample":
                    raise
                last = e
        else:
            raise WorkerFailure(
                "bad_sample",
                f'UniRig made no valid skeleton with seeds {tried} ("{BAD_SAMPLE}" each time); try another seed',
                **last.extra,
            )
        self._run(
            "extract-skeleton",
            extract_argv(
                py, skeleton, npz, force_override=True, faces_target_count=self.faces_target_count, time_tag=tag
            ),
            npz_dir_for(skeleton, npz) / "raw_data.npz",
            0.45,
        )
        self._run("skin", skin_argv(py, self.skin_task, tried[-1], skeleton, skin, npz), skin, 0.55)
        # Always a GLB (the parent reads the skeleton from it); an FBX too when that is the output.
        self._run("merge", merge_argv(py, skin, mesh, rigged_glb), rigged_glb, 0.8)
        rigged = rigged_glb
        if output.suffix.lower() != ".glb":
            rigged = work / f"rigged{output.suffix.lower()}"
            self._run("merge-fbx", merge_argv(py, skin, mesh, rigged), rigged, 0.9)
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.stem}.{os.getpid()}.part{output.suffix}")
        try:
            shutil.copyfile(rigged, tmp)
            os.replace(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
        return {
            "path": str(output),
            "skeleton_glb": str(rigged_glb),
            "seed": tried[-1],
            "seeds_tried": tried,
            "work_dir": str(work),
            "steps": [s.__dict__ for s in self.steps],
        }


def checkpoint_files(
    checkpoints: dict[str, tuple[Path | None, str]], weights_dir: Path | None
) -> tuple[dict[str, Path], dict[str, Path | None]]:
    """{logical name: path} of what UniRig's steps load (names as in the released repos:
    VAST-AI/UniRig paths and ``facebook/opt-350m/config.json``), and each file's download root."""
    files: dict[str, Path] = {}
    roots: dict[str, Path | None] = {}
    for task, (path, source) in checkpoints.items():
        if path is not None:
            name = CHECKPOINTS[task][1]
            files[name], roots[name] = path, weights_dir if source == "weights_dir" else None
    cfg = hf_cached(*LLM_CONFIG)
    if cfg is not None:
        files["/".join(LLM_CONFIG)], roots["/".join(LLM_CONFIG)] = cfg, None
    return files, roots


class UniRigWorker:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.repo_dir = Path(opts.repo_dir).expanduser() if opts.repo_dir else None
        self.weights_dir = Path(opts.weights_dir).expanduser() if opts.weights_dir else None
        self.min_vram_gb = opts.min_vram_gb
        self.pins = opts.checkpoint_pins
        self.checkpoints: dict[str, tuple[Path | None, str]] = {}
        self.verified: tuple = ()

    def preflight(self) -> dict:
        problems = []
        if self.repo_dir is None:
            problems.append(problem("missing_repo", "no UniRig checkout was given (--repo-dir)"))
        else:
            lacking = [f for f in REPO_FILES if not (self.repo_dir / f).is_file()]
            if lacking:
                problems.append(
                    problem(
                        "missing_repo",
                        f"{self.repo_dir} is not a UniRig checkout: it lacks {', '.join(lacking)}",
                        missing=lacking,
                    )
                )
        dev = cuda_probe()
        if (gp := gpu_problem(dev, self.min_vram_gb)) is not None:
            problems.append(gp)
        missing = missing_modules(MODULES)
        if missing:
            problems.append(missing_problem("missing_package", f"the UniRig Python {sys.executable}", missing))
        if self.repo_dir is not None:
            for task in (SKELETON_TASK, SKIN_TASK):
                self.checkpoints[task] = resolve_checkpoint(task, self.repo_dir, self.weights_dir)
            absent = [where for path, where in self.checkpoints.values() if path is None]
            if absent:
                problems.append(
                    problem("missing_weights", f"UniRig checkpoint(s) not found: {'; '.join(absent)}", missing=absent)
                )
        if hf_cached(*LLM_CONFIG) is None:
            problems.append(
                problem(
                    "missing_weights",
                    f"the {LLM_CONFIG[0]} config the skeleton model is built from is "
                    f"not in the Hugging Face cache {hf_hub_cache()} (models--facebook--opt-350m)",
                    missing=[f"{hf_hub_cache()}/models--facebook--opt-350m/snapshots/<rev>/config.json"],
                )
            )
        info = {
            "model": "UniRig (Articulation-XL2.0 checkpoints)",
            "device": dev,
            "repo_dir": str(self.repo_dir or ""),
            "checkpoints": {t: {"path": str(p) if p else None, "source": s} for t, (p, s) in self.checkpoints.items()},
            "hf_hub_cache": str(hf_hub_cache()),
            "versions": module_versions(
                [
                    "torch",
                    "transformers",
                    "lightning",
                    "bpy",
                    "flash_attn",
                    "spconv",
                    "numpy",
                    "torch_scatter",
                    "torch_cluster",
                ]
            ),
        }
        if problems:
            raise Preflight(problems, info)
        return info

    def verify_checkpoints(self, info: dict) -> None:
        """Refuse (Preflight) unless every checkpoint file matches the pinned list."""
        files, _ = checkpoint_files(self.checkpoints, self.weights_dir)
        try:
            pins, source = _provenance.load_pins("unirig", self.pins)
        except ValueError as e:
            raise Preflight([problem("checkpoint_pins", str(e))], info) from None
        problems, hashes = _provenance.verify(files, pins, source)
        info["checkpoint_sha256"] = {"pinned_list": source, "sha256": hashes}
        if problems:
            raise Preflight(problems, info)
        self.verified = _provenance.fingerprint(files.values())

    def reverify(self) -> None:
        """Before a request: hash again any checkpoint that changed since it was verified."""
        files, _ = checkpoint_files(self.checkpoints, self.weights_dir)
        try:
            unchanged = _provenance.fingerprint(files.values()) == self.verified
        except OSError:
            unchanged = False
        if not unchanged:
            try:
                self.verify_checkpoints({})
            except Preflight as e:
                raise WorkerFailure(e.problems[0]["kind"], "; ".join(p["message"] for p in e.problems)) from None

    def rig(self, args: dict, req: Request) -> dict:
        self.reverify()
        work = Path(args["work_dir"])
        work.mkdir(parents=True, exist_ok=True)
        tasks = {}
        for task in (SKELETON_TASK, SKIN_TASK):
            path, source = self.checkpoints[task]
            tasks[task] = task_with_checkpoint(self.repo_dir, task, path, work) if source == "weights_dir" else task
        pipe = Pipeline(
            python=sys.executable,
            repo_dir=self.repo_dir,
            work_dir=work,
            skeleton_task=tasks[SKELETON_TASK],
            skin_task=tasks[SKIN_TASK],
            faces_target_count=int(args.get("faces_target_count", 50000)),
            progress=req.progress,
        )
        return pipe.run(
            Path(args["input"]), Path(args["output"]), int(args.get("seed", 12345)), int(args.get("seed_retries", 3))
        )


def checkpoints_cli(worker: UniRigWorker, opts: argparse.Namespace) -> int:
    if worker.repo_dir is None:
        print("cannot check: --repo-dir is needed to find the checkpoints", file=sys.stderr)
        return 2
    for task in (SKELETON_TASK, SKIN_TASK):
        worker.checkpoints[task] = resolve_checkpoint(task, worker.repo_dir, worker.weights_dir)
    absent = [where for path, where in worker.checkpoints.values() if path is None]
    if absent:
        print(f"cannot check: checkpoint(s) not found: {'; '.join(absent)}", file=sys.stderr)
        return 2
    if opts.pin:
        files, roots = checkpoint_files(worker.checkpoints, worker.weights_dir)
        return _provenance.write_pins("unirig", files, opts.pin, roots)
    try:
        worker.verify_checkpoints({})
    except Preflight as e:
        for p in e.problems:
            print(p["message"], file=sys.stderr)
        return 1
    print("every UniRig checkpoint file matches the pinned list")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo-dir", default="")
    ap.add_argument("--weights-dir", default="")
    ap.add_argument("--min-vram-gb", type=float, default=8.0)
    ap.add_argument("--checkpoint-pins", default="", help="a pinned sha256 list replacing the shipped one")
    ap.add_argument("--verify-checkpoints", action="store_true", help="only check the checkpoints' sha256; exit 0/1")
    ap.add_argument("--pin", default="", metavar="OUT", help="write the checkpoints' sha256 to OUT and exit")
    opts = ap.parse_args(argv)
    worker = UniRigWorker(opts)
    if opts.pin or opts.verify_checkpoints:
        return checkpoints_cli(worker, opts)

    def startup() -> tuple[dict, dict]:
        info = worker.preflight()
        worker.verify_checkpoints(info)
        return info, {"rig": worker.rig}

    return serve(startup)


if __name__ == "__main__":
    sys.exit(main())
