"""Start a private ComfyUI from a checkout (COMFYUI_DIR, else the embedded one that
`install.py --comfyui` made in .runtime/ComfyUI) for one driver session.

``with LocalComfy() as comfy: ComfyClient(comfy.url)...`` starts
``python main.py --cpu --listen 127.0.0.1 --port P --base-directory D
--disable-auto-launch`` in its own process group, with a temp base directory whose
custom_nodes/ links the checkout's custom nodes plus this pack, waits until
/system_stats answers, and stops the whole process group on exit.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import requests

from .errors import DriverError

log = logging.getLogger("comfy_avatar.driver.local")

PACK_LINK_NAME = "comfy-avatar"
REQUIRED_FLAGS = ("--listen", "--port", "--base-directory", "--disable-auto-launch", "--cpu")


def pack_root() -> Path | None:
    """The repository folder holding driver/ when it is the pack (has __init__.py +
    comfy_avatar_nodes/); None for a driver installed without the pack."""
    root = Path(__file__).resolve().parent.parent
    if (root / "__init__.py").is_file() and (root / "comfy_avatar_nodes").is_dir():
        return root
    return None


def embedded_comfyui_dir() -> Path | None:
    """The ComfyUI that `install.py --comfyui` makes when COMFYUI_DIR is unset
    (<pack>/.runtime/ComfyUI, or under COMFY_AVATAR__BLENDER__RUNTIME_DIR as install.py puts it)."""
    root = pack_root()
    if root is None:
        return None
    runtime = os.environ.get("COMFY_AVATAR__BLENDER__RUNTIME_DIR") or str(root / ".runtime")
    return Path(runtime).expanduser() / "ComfyUI"


def find_comfyui_dir(comfyui_dir: str | os.PathLike[str] | None = None) -> Path:
    """comfyui_dir arg, else COMFYUI_DIR, else the embedded ComfyUI from `install.py --comfyui`."""
    raw = comfyui_dir if comfyui_dir is not None else os.environ.get("COMFYUI_DIR")
    if not raw:
        embedded = embedded_comfyui_dir()
        if embedded is not None and (embedded / "main.py").is_file():
            return embedded.resolve()
        raise DriverError(
            "COMFYUI_DIR",
            "is not set and there is no embedded ComfyUI, so --local has none to start",
            "run `python3.11 install.py --comfyui` (clones ComfyUI into .runtime/ComfyUI), set "
            "COMFYUI_DIR to a ComfyUI checkout (the folder with main.py), "
            "or pass --server URL of a running ComfyUI",
        )
    path = Path(raw).expanduser()
    if not (path / "main.py").is_file():
        raise DriverError(
            f"COMFYUI_DIR={raw}",
            "has no main.py: not a ComfyUI checkout",
            "point COMFYUI_DIR at the folder that contains ComfyUI's main.py",
        )
    return path.resolve()


def find_python(comfyui_dir: Path, python: str | os.PathLike[str] | None = None) -> Path:
    """python arg, else COMFYUI_PYTHON, else <dir>/venv or .venv, else this interpreter."""
    raw = python or os.environ.get("COMFYUI_PYTHON")
    if raw:
        p = Path(raw).expanduser()
        if not p.exists():
            raise DriverError(
                f"COMFYUI_PYTHON={raw}", "does not exist", "point COMFYUI_PYTHON at the python of ComfyUI's environment"
            )
        # absolute, not resolved: ComfyUI starts from its own folder, and resolving a venv's
        # python symlink would leave the venv
        return p.absolute()
    for venv in ("venv", ".venv"):
        for rel in ("bin/python", "Scripts/python.exe"):
            cand = comfyui_dir / venv / rel
            if cand.exists():
                return cand.absolute()
    return Path(sys.executable)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_flags(comfyui_dir: Path) -> set[str]:
    """Flags this ComfyUI accepts (read from comfy/cli_args.py; importing it would
    pull in torch). Raises when a flag the driver needs is missing."""
    src = comfyui_dir / "comfy" / "cli_args.py"
    text = src.read_text(encoding="utf-8", errors="replace") if src.is_file() else ""
    known = {f for f in (*REQUIRED_FLAGS, "--database-url") if f'"{f}"' in text}
    missing = [f for f in REQUIRED_FLAGS if f not in known]
    if text and missing:
        raise DriverError(
            f"ComfyUI at {comfyui_dir}",
            f"main.py lacks {', '.join(missing)} (too old)",
            "update the checkout (git pull) to ComfyUI 0.3.x or newer",
        )
    return known if text else set(REQUIRED_FLAGS)


class LocalComfy:
    """A private ComfyUI server for the duration of a ``with`` block."""

    def __init__(
        self,
        comfyui_dir: str | os.PathLike[str] | None = None,
        python: str | os.PathLike[str] | None = None,
        port: int | None = None,
        extra_custom_nodes: Sequence[str | os.PathLike[str]] | None = None,
        cpu: bool = True,
        *,
        start_timeout: float = 300.0,
        extra_args: Sequence[str] = (),
        log_path: str | os.PathLike[str] | None = None,
        keep_base_dir: bool = False,
    ) -> None:
        self.comfyui_dir = find_comfyui_dir(comfyui_dir)
        self.python = find_python(self.comfyui_dir, python)
        self.port = port
        if extra_custom_nodes is None:
            root = pack_root()
            extra_custom_nodes = [root] if root is not None else []
        self.extra_custom_nodes = [Path(p).resolve() for p in extra_custom_nodes]
        self.cpu = cpu
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args)
        self.keep_base_dir = keep_base_dir
        self._log_path_arg = Path(log_path) if log_path else None
        self.base_dir: Path | None = None
        self.log_path: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("LocalComfy is not started")
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LocalComfy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        flags = check_flags(self.comfyui_dir)
        self.base_dir = Path(tempfile.mkdtemp(prefix="comfy-avatar-local-"))
        self._prepare_base_dir(self.base_dir)
        self.port = self.port or free_port()
        self.log_path = self._log_path_arg or self.base_dir / "comfyui.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(self.python),
            str(self.comfyui_dir / "main.py"),
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--base-directory",
            str(self.base_dir),
            "--disable-auto-launch",
        ]
        if self.cpu:
            cmd.append("--cpu")
        if "--database-url" in flags:
            cmd += ["--database-url", f"sqlite:///{self.base_dir / 'user' / 'comfyui.db'}"]
        cmd += self.extra_args
        log.info("starting ComfyUI: %s (log: %s)", " ".join(cmd), self.log_path)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as logf:
            self.process = subprocess.Popen(
                cmd,
                cwd=self.comfyui_dir,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _prepare_base_dir(self, base: Path) -> None:
        for sub in ("custom_nodes", "input", "output", "temp", "user"):
            (base / sub).mkdir()
        models = self.comfyui_dir / "models"
        if models.is_dir():
            (base / "models").symlink_to(models, target_is_directory=True)
        ours = {p.name: p for p in self.extra_custom_nodes}
        our_real = {p.resolve() for p in self.extra_custom_nodes}
        src = self.comfyui_dir / "custom_nodes"
        for entry in sorted(src.iterdir()) if src.is_dir() else []:
            if entry.name == "__pycache__" or entry.resolve() in our_real:
                continue
            if entry.name == PACK_LINK_NAME or entry.name in ours:
                continue
            (base / "custom_nodes" / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
        root = pack_root()
        for p in self.extra_custom_nodes:
            name = PACK_LINK_NAME if root is not None and p == root else p.name
            (base / "custom_nodes" / name).symlink_to(p, target_is_directory=p.is_dir())

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise DriverError(
                    f"ComfyUI from {self.comfyui_dir}",
                    f"exited with code {code} while starting",
                    "see the log below (a missing dependency in COMFYUI_PYTHON's environment is common)",
                    detail=self.log_tail(),
                )
            try:
                if requests.get(self.url + "/system_stats", timeout=2).status_code == 200:
                    log.info("ComfyUI ready at %s", self.url)
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise DriverError(
                    f"ComfyUI from {self.comfyui_dir}",
                    f"did not answer on {self.url} within {self.start_timeout:g} s",
                    "raise --start-timeout on slow machines, or read the log below",
                    detail=self.log_tail(),
                )
            time.sleep(0.5)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(["--- ComfyUI log tail ---", *text[-lines:]])

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self.base_dir is not None and not self.keep_base_dir:
            # custom_nodes entries are symlinks: rmtree removes the links, not their targets.
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
