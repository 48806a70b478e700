#!/usr/bin/env python3
"""comfy-avatar installer (stdlib only). ComfyUI-Manager runs `python install.py` with
ComfyUI's Python from the pack folder; developers and CI run `python3.11 install.py --dev`.

Steps
  1. pip-install the pack's light runtime deps ([project].dependencies of pyproject.toml)
     into the Python running this script (never torch, never bpy).
  2. Provide a Blender runtime, unless BLENDER_BIN (a Blender >= 4.2) or
     COMFY_AVATAR_BLENDER_PYTHON is set and valid: a Python 3.11 venv at
     <runtime_dir>/blender-venv with pip bpy + bpy-vrm-format (bpy pins numpy<2, so it
     cannot share ComfyUI's env). With a valid BLENDER_BIN the VRM add-on is put in
     <runtime_dir>/blender-addons instead, where the runner finds it.
     Skipped when the runtime already imports bpy >= 4.2 and enables io_scene_vrm.
  3. Verify: import bpy and enable the io_scene_vrm add-on in the runtime.

Flags
  --no-deps     skip step 1            --no-blender  skip steps 2-3
  --dev         also make <pack>/.venv (Python 3.11) with `pip install -e .[test]`;
                step 1 is skipped (the editable install brings the deps into .venv)
  --comfyui     also provide a ComfyUI: COMFYUI_DIR's (the pack's deps go into its Python) or, when
                COMFYUI_DIR is unset, an embedded one cloned from COMFYUI_REPO at COMFYUI_REF into
                <runtime_dir>/ComfyUI (or --comfyui-dir) with its own venv: torch from COMFYUI_TORCH
                (pip arguments, default "torch torchvision"), ComfyUI's requirements.txt, the pack's
                deps, and custom_nodes/comfy-avatar linked to this pack. `comfy-avatar run --local`
                starts it when COMFYUI_DIR is unset. Reused when already there.
  --check       report what is installed and change nothing (exit 1 if no usable runtime); also
                whether bubblewrap isolation works for model-written scripts and the model workers

Environment: BLENDER_BIN, COMFY_AVATAR_BLENDER_PYTHON, COMFY_AVATAR__BLENDER__RUNTIME_DIR
(default <pack>/.runtime), COMFY_AVATAR_PYTHON311 (a python3.11 to build venvs with),
COMFYUI_DIR, COMFYUI_PYTHON, COMFYUI_REPO, COMFYUI_REF, COMFYUI_TORCH.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BPY_VERSION = "5.0.1"
VRM_ADDON_VERSION = "4.10.2"
BLENDER_PINS = [f"bpy=={BPY_VERSION}", f"bpy-vrm-format=={VRM_ADDON_VERSION}"]
MIN_BLENDER = (4, 2)
NEVER_INSTALL = {"torch", "torchvision", "torchaudio", "bpy"}
PACK_DIR = Path(__file__).resolve().parent
WINDOWS = os.name == "nt"

CHECK_SCRIPT = r"""
import json, os, sys
out = {"python": sys.version.split()[0]}
try:
    import bpy
    out["bpy"] = bpy.app.version_string
    bpy.ops.preferences.addon_enable(module="io_scene_vrm")
    bpy.ops.export_scene.vrm.get_rna_type()
    out["vrm"] = "io_scene_vrm" in bpy.context.preferences.addons
except BaseException as e:
    out["error"] = f"{type(e).__name__}: {e}"
print("COMFY_AVATAR_CHECK=" + json.dumps(out), flush=True)
os._exit(0)
"""


class InstallError(Exception):
    pass


def say(msg: str) -> None:
    print(f"[comfy-avatar] {msg}", flush=True)


def run(cmd: list[str], **kw) -> None:
    say("$ " + " ".join(str(c) for c in cmd))
    proc = subprocess.run([str(c) for c in cmd], **kw)
    if proc.returncode != 0:
        raise InstallError(f"command failed (exit {proc.returncode}): {' '.join(str(c) for c in cmd)}")


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if WINDOWS else "bin/python")


def runtime_dir() -> Path:
    return Path(os.environ.get("COMFY_AVATAR__BLENDER__RUNTIME_DIR") or PACK_DIR / ".runtime").expanduser()


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


# ---------------------------------------------------------------- step 1: pack deps


def read_dependencies(pyproject: Path = PACK_DIR / "pyproject.toml") -> list[str]:
    text = pyproject.read_text(encoding="utf-8")
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:
        return _parse_dependencies(text)
    return list(tomllib.loads(text).get("project", {}).get("dependencies", []))


def _parse_dependencies(text: str) -> list[str]:
    """Enough TOML for `[project] dependencies = ["a>=1", "b[x]"]` (Python 3.10 has no tomllib)."""
    m = re.search(r"^\[project\][ \t]*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    d = re.search(r"^dependencies\s*=\s*\[", m.group(1), re.M) if m else None
    if not d:
        return []
    body, deps, i, quote, item = m.group(1)[d.end() :], [], 0, "", ""
    while i < len(body):
        c = body[i]
        if quote:
            if c == quote:
                deps.append(item)
                quote, item = "", ""
            else:
                item += c
        elif c in "\"'":
            quote = c
        elif c == "#":
            i = body.find("\n", i)
            if i < 0:
                break
        elif c == "]":
            break
        i += 1
    return deps


def requirement_name(req: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return m.group(1).lower().replace("_", "-") if m else req


def pip_command(python: str) -> list[str]:
    probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [python, "-m", "pip"]
    uv = shutil.which("uv")
    if uv:  # ComfyUI Desktop / uv-made envs may have no pip
        return [uv, "pip", "--python", python]
    raise InstallError(
        f"{python} has no pip (and no `uv` on PATH): install pip into it "
        f"(`{python} -m ensurepip`) and run install.py again"
    )


def install_deps(python: str = sys.executable) -> None:
    deps = [d for d in read_dependencies() if requirement_name(d) not in NEVER_INSTALL]
    if not deps:
        say("no pack dependencies listed in pyproject.toml")
        return
    say(f"installing {len(deps)} pack dependencies into {python}")
    run(pip_command(python) + ["install", *deps])


def comfyui_python() -> str | None:
    """The Python of the ComfyUI in COMFYUI_DIR, found as `comfy-avatar run --local` finds it:
    COMFYUI_PYTHON, else <COMFYUI_DIR>/venv or .venv. None when COMFYUI_DIR is unset."""
    if os.environ.get("COMFYUI_PYTHON"):
        return os.environ["COMFYUI_PYTHON"]
    root = os.environ.get("COMFYUI_DIR")
    if not root:
        return None
    for venv in ("venv", ".venv"):
        cand = venv_python(Path(root).expanduser() / venv)
        if cand.exists():
            return str(cand)
    raise InstallError(
        f"COMFYUI_DIR={root} has no venv/ or .venv/: set COMFYUI_PYTHON to the python "
        "that runs that ComfyUI so the pack's dependencies can be installed into it"
    )


# ---------------------------------------------------------------- step 2-3: Blender runtime


def check_runtime(cmd: list[str], addon: Path | None = None) -> dict:
    """Run CHECK_SCRIPT with isolated Blender user folders; returns its report (or an error)."""
    with tempfile.TemporaryDirectory(prefix="comfy-avatar-check-") as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.update(
            BLENDER_USER_RESOURCES=tmp,
            BLENDER_USER_CONFIG=os.path.join(tmp, "config"),
            BLENDER_USER_SCRIPTS=os.path.join(tmp, "scripts"),
            BLENDER_USER_DATAFILES=os.path.join(tmp, "datafiles"),
            PYTHONNOUSERSITE="1",
        )
        addons = Path(tmp, "scripts", "addons")
        addons.mkdir(parents=True)
        if addon is not None and addon.is_dir():  # what the runner does for a Blender binary
            try:
                (addons / addon.name).symlink_to(addon, target_is_directory=True)
            except OSError:
                shutil.copytree(addon, addons / addon.name)
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                errors="replace",
                env=env,
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                timeout=300,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return {"error": f"could not run {cmd[0]}: {e}"}
    m = re.search(r"COMFY_AVATAR_CHECK=(\{.*\})", proc.stdout)
    if not m:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        return {"error": f"exit code {proc.returncode}\n{tail}"}
    return json.loads(m.group(1))


def runtime_ok(report: dict) -> bool:
    return "error" not in report and version_tuple(report.get("bpy", "0")) >= MIN_BLENDER and bool(report.get("vrm"))


def describe(report: dict) -> str:
    if "error" in report:
        return f"NOT usable ({report['error']})"
    parts = [
        f"bpy {report.get('bpy')}",
        f"Python {report.get('python')}",
        "io_scene_vrm enabled" if report.get("vrm") else "io_scene_vrm MISSING",
    ]
    if version_tuple(report.get("bpy", "0")) < MIN_BLENDER:
        parts.append("too old (needs >= 4.2)")
    return ", ".join(parts) + (" -> OK" if runtime_ok(report) else " -> NOT usable")


def blender_bin_version(binary: str) -> str:
    path = shutil.which(binary) or binary
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        raise InstallError(f"BLENDER_BIN={binary} does not exist or is not executable")
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, errors="replace", timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InstallError(f"BLENDER_BIN={binary}: `--version` failed ({e})") from None
    m = re.search(r"Blender\s+(\d+\.\d+(?:\.\d+)?)", out)
    if not m:
        raise InstallError(f"BLENDER_BIN={binary}: `--version` printed no Blender version")
    if version_tuple(m.group(1)) < MIN_BLENDER:
        raise InstallError(f"BLENDER_BIN={binary} is Blender {m.group(1)}; the VRM add-on needs >= 4.2")
    return m.group(1)


def binary_check(binary: str) -> dict:
    addons = runtime_dir() / "blender-addons" / "io_scene_vrm"
    cmd = [
        shutil.which(binary) or binary,
        "--background",
        "--factory-startup",
        "--python-exit-code",
        "1",
        "--python-expr",
        CHECK_SCRIPT,
    ]
    return check_runtime(cmd, addons)


def provide_binary_addon(binary: str) -> None:
    version = blender_bin_version(binary)
    say(f"BLENDER_BIN={binary}: Blender {version}")
    target = runtime_dir() / "blender-addons"
    if runtime_ok(binary_check(binary)):
        say(f"VRM add-on already available to Blender from {target}")
        return
    say(f"installing the VRM add-on (bpy-vrm-format {VRM_ADDON_VERSION}) into {target}")
    tmp = target.with_name("blender-addons.part")
    shutil.rmtree(tmp, ignore_errors=True)
    run(pip_command(sys.executable) + ["install", "--no-deps", "--target", str(tmp), BLENDER_PINS[1]])
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    report = binary_check(binary)
    say(f"Blender binary: {describe(report)}")
    if not runtime_ok(report):
        raise InstallError("Blender could not enable the VRM add-on; see the message above")


def python311_candidates() -> list[str]:
    found: list[str] = []
    if os.environ.get("COMFY_AVATAR_PYTHON311"):
        found.append(os.environ["COMFY_AVATAR_PYTHON311"])
    if sys.version_info[:2] == (3, 11):
        found.append(sys.executable)
    for name in ("python3.11", "python3", "python"):
        if shutil.which(name):
            found.append(shutil.which(name))
    if WINDOWS and shutil.which("py"):
        found.append("py -3.11")
    return found


def find_python311() -> list[str]:
    """A Python 3.11 that can make venvs (bpy ships cp311 wheels only)."""
    for cand in python311_candidates():
        cmd = cand.split(" ") if cand.startswith("py ") else [cand]
        try:
            out = subprocess.run(
                cmd + ["-c", "import sys, venv, ensurepip; print(sys.version_info[:2] == (3, 11))"],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out == "True":
            return cmd
    raise InstallError(
        "no Python 3.11 found (the bpy wheels need CPython 3.11). Install Python 3.11 "
        "with venv support (e.g. apt install python3.11-venv, or python.org), put python3.11 "
        "on PATH or set COMFY_AVATAR_PYTHON311=/path/to/python3.11, and run install.py again; "
        "or set BLENDER_BIN to a Blender >= 4.2 executable"
    )


def make_venv(venv: Path) -> Path:
    py = venv_python(venv)
    if py.exists():
        ver = subprocess.run(
            [str(py), "-c", "import sys; print(sys.version_info[:2] == (3, 11))"], capture_output=True, text=True
        ).stdout.strip()
        if ver == "True":
            return py
        say(f"{venv} is broken or not Python 3.11: recreating it")
    run(find_python311() + ["-m", "venv", "--clear", str(venv)])
    return py


def provide_bpy_venv(python: Path | None = None) -> None:
    venv = runtime_dir() / "blender-venv"
    py = python or venv_python(venv)
    if py.exists() and runtime_ok(check_runtime([str(py), "-c", CHECK_SCRIPT])):
        say(f"Blender runtime already installed: {py}")
        return
    if python is not None:
        raise InstallError(
            f"COMFY_AVATAR_BLENDER_PYTHON={python} cannot import bpy >= 4.2 with io_scene_vrm: "
            f"run `{python} -m pip install {' '.join(BLENDER_PINS)}` or unset it"
        )
    say(f"creating the Blender runtime {venv} (pip {' '.join(BLENDER_PINS)}; ~400 MB download)")
    py = make_venv(venv)
    run([str(py), "-m", "pip", "install", "--disable-pip-version-check", *BLENDER_PINS])
    report = check_runtime([str(py), "-c", CHECK_SCRIPT])
    say(f"Blender runtime {py}: {describe(report)}")
    if not runtime_ok(report):
        raise InstallError("the new Blender runtime failed its check; see the message above")


def provide_blender() -> None:
    binary = os.environ.get("BLENDER_BIN", "").strip()
    if binary:
        try:
            provide_binary_addon(binary)
            return
        except InstallError as e:
            say(
                f"WARNING: {e}. BLENDER_BIN wins over the bpy runtime: fix or unset it. "
                "Installing the bpy runtime anyway."
            )
            provide_bpy_venv()
            raise InstallError(f"BLENDER_BIN is set but unusable ({e}); unset it to use the bpy runtime") from None
    custom = os.environ.get("COMFY_AVATAR_BLENDER_PYTHON", "").strip()
    provide_bpy_venv(Path(custom) if custom else None)


# ---------------------------------------------------------------- --dev


def provide_dev_venv() -> None:
    venv = PACK_DIR / ".venv"
    stamp = venv / ".comfy-avatar-dev"
    want = hashlib.sha256((PACK_DIR / "pyproject.toml").read_bytes()).hexdigest()
    py = make_venv(venv)
    if stamp.is_file() and stamp.read_text().strip() == want:
        say(f"dev venv up to date: {venv}")
        return
    say(f"installing the pack (editable) with the test extra into {venv}")
    run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-e", ".[test]"], cwd=PACK_DIR)
    stamp.write_text(want + "\n")


# ---------------------------------------------------------------- --comfyui (embedded ComfyUI)

COMFYUI_REPO_DEFAULT = "https://github.com/Comfy-Org/ComfyUI"
# The newest ComfyUI release the test suite runs against (tests/run.sh also runs 0.3.64).
COMFYUI_REF_DEFAULT = "v0.8.0"
# torch for ComfyUI's own venv; never the pack's env. Override with COMFYUI_TORCH (pip arguments),
# e.g. "torch==2.14.1 torchvision==0.29.1" or "--index-url https://download.pytorch.org/whl/cpu torch torchvision".
COMFYUI_TORCH_DEFAULT = "torch torchvision"
# Requirements ComfyUI imports but its requirements.txt does not always list (0.3.64 lacks both).
COMFYUI_EXTRA = ["torchsde", "requests"]
EMBEDDED_STAMP = ".comfy-avatar-embedded.json"


def embedded_comfyui_dir() -> Path:
    """Where `install.py --comfyui` puts a ComfyUI when COMFYUI_DIR is unset; `--local` looks here."""
    return runtime_dir() / "ComfyUI"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _is_local_source(repo: str) -> bool:
    return Path(repo).expanduser().exists()


def clone_comfyui(target: Path, repo: str, ref: str) -> str:
    """Check out `repo` at `ref` (a tag, branch or commit) into `target`, atomically: fetched into
    `<target>.part` and renamed, so an interrupted clone never looks like a checkout. Returns the commit."""
    stamp = _read_json(target / EMBEDDED_STAMP)
    if (target / "main.py").is_file() and stamp.get("repo") == repo and stamp.get("ref") == ref:
        say(f"ComfyUI {ref} already checked out in {target}")
        return str(stamp.get("commit", ""))
    if (target / "main.py").is_file() and not stamp:
        raise InstallError(
            f"{target} holds a ComfyUI that install.py did not make: set COMFYUI_DIR={target} "
            "to use it as it is, or move it away"
        )
    if shutil.which("git") is None:
        raise InstallError("git is not on PATH: install git (it clones ComfyUI) or set COMFYUI_DIR to a checkout")
    part = target.with_name(target.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.parent.mkdir(parents=True, exist_ok=True)
    source = str(Path(repo).expanduser().resolve()) if _is_local_source(repo) else repo
    say(f"cloning ComfyUI {ref} from {repo} into {target}")
    run(["git", "init", "-q", str(part)])
    depth = [] if _is_local_source(repo) else ["--depth", "1"]  # a bundle or local repo ignores --depth
    try:
        run(["git", "-C", str(part), "fetch", "-q", *depth, source, ref])
    except InstallError:
        raise InstallError(
            f"could not fetch {ref!r} from COMFYUI_REPO={repo}: check that the repository is "
            "reachable and that COMFYUI_REF names a tag, branch or commit in it"
        ) from None
    run(["git", "-C", str(part), "-c", "advice.detachedHead=false", "checkout", "-q", "FETCH_HEAD"])
    commit = subprocess.run(
        ["git", "-C", str(part), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    (part / EMBEDDED_STAMP).write_text(json.dumps({"repo": repo, "ref": ref, "commit": commit}) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    part.rename(target)
    return commit


def comfyui_requirements(comfy_dir: Path) -> list[str]:
    """ComfyUI's requirements.txt without torch/torchvision/torchaudio (installed first, from
    COMFYUI_TORCH; torchaudio is optional: only the audio nodes need it), plus COMFYUI_EXTRA."""
    reqs: list[str] = []
    for line in (comfy_dir / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and requirement_name(line) not in {"torch", "torchvision", "torchaudio"}:
            reqs.append(line)
    return reqs + [r for r in COMFYUI_EXTRA if r not in {requirement_name(x) for x in reqs}]


def provide_comfyui_venv(comfy_dir: Path) -> Path:
    """<comfy_dir>/venv with torch (COMFYUI_TORCH), ComfyUI's requirements and the pack's light deps.
    Skipped when its stamp says the same requirements were installed already."""
    venv = comfy_dir / "venv"
    torch_args = os.environ.get("COMFYUI_TORCH", COMFYUI_TORCH_DEFAULT).split()
    reqs = comfyui_requirements(comfy_dir)
    pack = [d for d in read_dependencies() if requirement_name(d) not in NEVER_INSTALL]
    want = hashlib.sha256(json.dumps([torch_args, reqs, pack]).encode()).hexdigest()
    stamp = venv / ".comfy-avatar-venv"
    py = make_venv(venv)
    if stamp.is_file() and stamp.read_text().strip() == want:
        say(f"ComfyUI venv up to date: {venv}")
        return py
    stamp.unlink(missing_ok=True)
    say(f"installing torch ({' '.join(torch_args)}) into ComfyUI's venv {venv} (several GB, once)")
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check"]
    run(pip + torch_args)
    say("installing ComfyUI's requirements and the pack's dependencies")
    run(pip + reqs + pack)
    stamp.write_text(want + "\n")
    return py


def link_pack(comfy_dir: Path) -> None:
    """custom_nodes/comfy-avatar -> this pack, so the embedded ComfyUI loads it when started by hand too."""
    link = comfy_dir / "custom_nodes" / "comfy-avatar"
    link.parent.mkdir(exist_ok=True)
    if link.is_symlink() and link.resolve() == PACK_DIR:
        return
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.exists():
        raise InstallError(f"{link} exists and is not a link to this pack: move it away")
    link.symlink_to(PACK_DIR, target_is_directory=True)


def provide_comfyui(target: Path | None = None) -> Path:
    """A ComfyUI to run the pack in. COMFYUI_DIR set: install the pack's deps into its Python.
    Else clone COMFYUI_REPO at COMFYUI_REF into `target` (default .runtime/ComfyUI) with its own venv."""
    if target is None and os.environ.get("COMFYUI_DIR"):
        py = comfyui_python()
        assert py is not None
        install_deps(py)
        return Path(os.environ["COMFYUI_DIR"]).expanduser()
    target = (target or embedded_comfyui_dir()).expanduser().absolute()
    repo = os.environ.get("COMFYUI_REPO") or COMFYUI_REPO_DEFAULT
    ref = os.environ.get("COMFYUI_REF") or COMFYUI_REF_DEFAULT
    clone_comfyui(target, repo, ref)
    provide_comfyui_venv(target)
    link_pack(target)
    note = (
        " (`comfy-avatar run --local` uses it when COMFYUI_DIR is unset)"
        if target == embedded_comfyui_dir().absolute()
        else ""
    )
    say(f"ComfyUI {ref} ready in {target}{note}")
    return target


# ---------------------------------------------------------------- --check


def isolation_report(runtime: tuple[str, str] | None) -> list[str]:
    """Whether model-written scripts can run under bubblewrap here, and whether the model workers
    get their network unshared (comfy_avatar_nodes/core/runtime/isolation.py; stdlib only).
    ``runtime``: (kind, executable) of the Blender runtime, whose folders are checked too."""
    try:
        if str(PACK_DIR) not in sys.path:
            sys.path.insert(0, str(PACK_DIR))
        import logging

        from comfy_avatar_nodes.core.config import load_settings
        from comfy_avatar_nodes.core.runtime import isolation

        logging.getLogger("comfy_avatar").addHandler(logging.NullHandler())  # the lines below say it all
        settings = load_settings()
    except Exception as e:  # noqa: BLE001 - a report, not a crash
        return [f"sandbox isolation: could not be checked ({type(e).__name__}: {e})"]
    lines = []
    mode = settings.sandbox.isolation.strip().lower()
    st = isolation.check(settings.sandbox.bwrap)
    if mode == "none":
        lines.append(
            "sandbox isolation: OFF (sandbox.isolation: none): model-written scripts run WITHOUT OS "
            f"isolation, warned on every run; bubblewrap here: {st.describe()}"
        )
    elif st.ok:
        line = f"sandbox isolation: OK: {st.describe()}"
        if runtime is not None:
            try:
                roots = isolation.runtime_roots(*runtime)
                line += f"; the Blender runtime is bound read-only from {', '.join(roots)}"
            except isolation.IsolationUnavailable as e:
                line = f"sandbox isolation: NOT usable with this Blender runtime: {e}"
        lines.append(line)
    else:
        lines.append(
            f"sandbox isolation: NOT available: {st.problem}. The Blender Executor refuses model-written "
            f"scripts until it works. Fix: {st.fix}"
        )
    if mode != "none":  # RLIMIT_NPROC does not bind root; say which limit a job's thread/process count has here
        lines.append(f"sandbox task limit: {isolation.pids_limit_kind()}, sandbox.nproc={settings.sandbox.nproc}")
        lines.append(f"sandbox memory limit: {isolation.memory_limit_kind()}")
    if settings.workers.isolation.strip().lower() == "none":
        lines.append("model workers: host network (workers.isolation: none)")
    else:
        bwrap, why = isolation.check_net(settings.sandbox.bwrap)
        lines.append(
            "model workers: network unshared with bubblewrap" if bwrap else f"model workers: host network ({why})"
        )
    return lines


def check() -> int:
    say(f"pack: {PACK_DIR}")
    say(f"installer Python: {sys.executable} ({sys.version.split()[0]})")
    deps = [d for d in read_dependencies() if requirement_name(d) not in NEVER_INSTALL]
    from importlib import metadata

    missing = []
    for dep in deps:
        try:
            metadata.version(requirement_name(dep))
        except metadata.PackageNotFoundError:
            missing.append(dep)
    say(
        f"pack dependencies in this Python: {len(deps) - len(missing)}/{len(deps)} installed"
        + (f" (missing: {', '.join(missing)})" if missing else "")
    )
    usable = False
    binary = os.environ.get("BLENDER_BIN", "").strip()
    custom = os.environ.get("COMFY_AVATAR_BLENDER_PYTHON", "").strip()
    if binary:
        try:
            version = blender_bin_version(binary)
            report = binary_check(binary)
            say(f"BLENDER_BIN={binary}: Blender {version}, {describe(report)}")
            usable = runtime_ok(report)
        except InstallError as e:
            say(f"BLENDER_BIN: {e}")
    else:
        say("BLENDER_BIN: not set")
    py = Path(custom) if custom else venv_python(runtime_dir() / "blender-venv")
    label = "COMFY_AVATAR_BLENDER_PYTHON" if custom else "bpy runtime"
    if py.exists():
        report = check_runtime([str(py), "-c", CHECK_SCRIPT])
        say(f"{label}: {py}: {describe(report)}")
        usable = usable or (not binary and runtime_ok(report))
    else:
        say(f"{label}: {py} not found")
    dev = venv_python(PACK_DIR / ".venv")
    say(f"dev venv: {dev if dev.exists() else 'not made (install.py --dev)'}")
    used = f"BLENDER_BIN={binary}" if binary else str(py)
    runtime = ("binary", binary) if binary and usable else ("python", str(py)) if usable else None
    for line in isolation_report(runtime):
        say(line)
    if usable:
        say(f"Blender runtime: OK (jobs run with {used})")
    elif binary:
        say(
            "Blender runtime: NOT usable: BLENDER_BIN wins over the bpy runtime. Fix: point BLENDER_BIN "
            "at a Blender >= 4.2 (then run install.py for the VRM add-on), or unset it"
        )
    else:
        say(
            f"Blender runtime: NONE usable ({used}). Fix: run `python install.py` "
            "(or set BLENDER_BIN to a Blender >= 4.2)"
        )
    return 0 if usable else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Install comfy-avatar's dependencies and Blender runtime.")
    ap.add_argument("--no-deps", action="store_true", help="do not pip-install the pack's dependencies")
    ap.add_argument("--no-blender", action="store_true", help="do not provide a Blender runtime")
    ap.add_argument("--dev", action="store_true", help="also make .venv (Python 3.11) with `pip install -e .[test]`")
    ap.add_argument("--check", action="store_true", help="report what is installed; change nothing")
    ap.add_argument(
        "--comfyui",
        action="store_true",
        help="also provide a ComfyUI: install the pack's dependencies into COMFYUI_DIR's Python, or, "
        "when COMFYUI_DIR is unset, clone COMFYUI_REPO at COMFYUI_REF into .runtime/ComfyUI with "
        "its own venv (torch from COMFYUI_TORCH) and link this pack into its custom_nodes",
    )
    ap.add_argument(
        "--comfyui-dir",
        metavar="DIR",
        type=Path,
        help="with --comfyui: where to put the embedded ComfyUI (default .runtime/ComfyUI)",
    )
    ap.add_argument(
        "--comfyui-python",
        metavar="PY",
        help="also install the pack's dependencies into this ComfyUI Python (with --dev the "
        "default is the ComfyUI in COMFYUI_DIR, when set)",
    )
    opts = ap.parse_args(argv)
    try:
        if opts.check:
            return check()
        if not opts.no_deps and not opts.dev:
            install_deps()
        if not opts.no_blender:
            provide_blender()
        if opts.dev:
            provide_dev_venv()
        if opts.comfyui:
            provide_comfyui(opts.comfyui_dir)
        else:
            target = opts.comfyui_python or (comfyui_python() if opts.dev and not opts.no_deps else None)
            if target:
                install_deps(target)
    except InstallError as e:
        say(f"ERROR: {e}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
