"""The driver against a real ComfyUI started with --local (COMFYUI_DIR; COMFYUI_PYTHON
when ComfyUI's python is not <COMFYUI_DIR>/venv). Trivial core-node workflow:
EmptyImage -> SaveImage, through the real CLI."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import comfyui_dir

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.comfyui


def test_cli_local_runs_a_core_workflow(tmp_path: Path) -> None:
    comfyui_dir()
    from PIL import Image

    wf = tmp_path / "wf.json"
    wf.write_text(
        json.dumps(
            {
                "1": {
                    "class_type": "EmptyImage",
                    "inputs": {"width": 40, "height": 24, "batch_size": 1, "color": 0x00FF00},
                    "_meta": {"title": "Blank"},
                },
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "driver_e2e/green"}},
            }
        )
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "driver",
            "run",
            str(wf),
            "--local",
            "--out",
            str(out),
            "--local-log",
            str(tmp_path / "comfyui.log"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr + (tmp_path / "comfyui.log").read_text(errors="replace")[-3000:]
    files = [Path(line) for line in proc.stdout.splitlines()]
    assert len(files) == 1 and files[0].parent == out.resolve() / "driver_e2e"
    with Image.open(files[0]) as im:
        assert im.size == (40, 24) and im.convert("RGB").getpixel((5, 5)) == (0, 255, 0)

    # the private server is gone afterwards
    port = int(re.search(r"ComfyUI is up at http://127\.0\.0\.1:(\d+)", proc.stderr).group(1))
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
