"""Fleet mode against a real ComfyUI (COMFYUI_DIR, this pack loaded, --cpu) and a real broker:

- the CPU avatar workflow (editor format: converted on the worker with its server's
  /object_info) submitted with `comfy-avatar submit`, run by a worker, the VRM stored in the
  shared folder with its manifest; the job page served by the API shows that VRM in the
  pack's three-vrm viewer (headless Chromium);
- the worker SIGKILLed while ComfyUI runs the job, a new worker started on the same box: it
  waits out the dead worker's lease, finds the prompt on ComfyUI by its prompt_id and adopts
  it; ComfyUI ran the job once (one VRM in its output folder).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from _driver_helpers import shared_comfy
from _fleet_helpers import ROOT, ApiServer, Chromium, Fleet, broker_fixture
from conftest import comfyui_dir, need

from driver.manifest import sha256_file
from driver.store import SUCCEEDED

pytestmark = pytest.mark.comfyui
pytest.importorskip("pika", reason="pika is not installed (pip install -e .[fleet])")

broker = broker_fixture()
WORKFLOW = ROOT / "workflows" / "image_to_vrm_cpu.json"
RIG = "Rig + Export VRM (CPU template rig)"


@pytest.fixture
def comfy():
    comfyui_dir()
    return shared_comfy()


def _submit(fleet: Fleet, *extra: str) -> str:
    # The fleet is under test, not the avatar: a validation finding must not fail the job here
    # (tests/test_workflows_vrm.py checks the VRM itself).
    cp = subprocess.run(
        [
            sys.executable,
            "-m",
            "driver",
            "submit",
            str(WORKFLOW),
            "--input",
            f"image={ROOT / 'workflows' / 'examples' / 'character_apose.png'}",
            "--set",
            "Validate VRM.fail_on_error=false",
            *extra,
        ],
        cwd=ROOT,
        env=fleet.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.strip()


def test_avatar_job_through_the_fleet_on_real_comfyui(broker, comfy, tmp_path: Path) -> None:
    fleet = Fleet(broker.url, tmp_path)
    try:
        fleet.worker(comfy.url, "real1")
        job = _submit(fleet, "--set", f"{RIG}.name=Fleet Ada", "--label", "ada")
        status = fleet.wait_terminal([job], timeout=240)[job]
        rec = fleet.store.get(job)
        assert status == SUCCEEDED, (rec.error, fleet.logs())
        vrms = [o for o in rec.outputs if o["filename"].endswith(".vrm")]
        assert len(vrms) == 1 and Path(vrms[0]["path"]).is_file()
        assert sha256_file(vrms[0]["path"]) == vrms[0]["sha256"]
        manifest = json.loads((fleet.out / job / "manifest.json").read_text())
        assert {o["filename"] for o in manifest["outputs"]} == {o["filename"] for o in rec.outputs}
        assert rec.server == comfy.url and rec.attempts == 1
        entry = requests.get(f"{comfy.url}/history/{rec.prompt_id}", timeout=10).json()[rec.prompt_id]
        assert entry["status"]["status_str"] == "success"
        _job_page_shows_the_vrm(fleet, job, tmp_path)
    finally:
        fleet.close()


def _job_page_shows_the_vrm(fleet: Fleet, job: str, tmp_path: Path) -> None:
    """The job page, served by the API, shows the finished VRM in the pack's three-vrm viewer
    (headless Chromium, WebGL on SwiftShader) and lists its files."""
    need(
        bool(shutil.which("chromium") or shutil.which("chromium-browser")),
        "chromium is not installed (apt-get install -y chromium): no headless browser",
    )
    key = "page-key-0123456789abcdef"
    srv = ApiServer(fleet, f"page:{key}", workflows=ROOT / "workflows", viewer=True)
    b = Chromium(webgl=True)
    try:
        b.call("Page.enable")
        b.call("Page.navigate", url=srv.url + "/")
        b.wait_js("document.readyState === 'complete' && typeof follow === 'function'")
        b.js(f"document.getElementById('key').value = {json.dumps(key)}; follow({json.dumps(job)}); true")
        b.wait_js("document.getElementById('status').textContent === 'succeeded'", 60)
        state = b.wait_js(
            "['shown', 'error', 'missing'].includes(document.getElementById('viewer').dataset.viewer)"
            " && document.getElementById('viewer').dataset.viewer",
            90,
        )
        detail = b.js("document.getElementById('viewer').textContent")
        files = b.js("[...document.querySelectorAll('#files a')].map(a => a.textContent)")
        time.sleep(1.0)  # a few frames of the idle motion
        shot = b.call("Page.captureScreenshot", format="png")["data"]
        (tmp_path / "job_page_vrm.png").write_bytes(base64.b64decode(shot))
        shutil.copy(tmp_path / "job_page_vrm.png", Path(tempfile.gettempdir()) / "comfy-avatar-job-page-vrm.png")
        bound = b.js("document.getElementById('viewer').dataset.bound")
    finally:
        b.close()
        srv.close()
    assert state == "shown", detail
    assert any(f.endswith(".vrm") for f in files), files
    assert bound is not None


def test_worker_killed_while_real_comfyui_runs_the_job(broker, comfy, tmp_path: Path) -> None:
    fleet = Fleet(broker.url, tmp_path)
    prefix = f"fleetkill{time.time_ns()}"
    try:
        a = fleet.worker(comfy.url, "doomed")
        job = _submit(fleet, "--set", f"{RIG}.filename_prefix={prefix}/avatar")
        pid = fleet.store.get(job).prompt_id
        deadline = time.monotonic() + 120
        while True:  # wait until ComfyUI has the prompt (queued or running)
            q = requests.get(f"{comfy.url}/queue", timeout=10).json()
            ids = [it[1] for it in q["queue_running"] + q["queue_pending"]]
            if pid in ids:
                break
            assert time.monotonic() < deadline, fleet.logs()
            time.sleep(0.1)
        a.kill()
        fleet.worker(comfy.url, "successor")  # the box's worker restarted
        status = fleet.wait_terminal([job], timeout=240)[job]
        rec = fleet.store.get(job)
        assert status == SUCCEEDED, (rec.error, fleet.logs())
        assert "adopted from" in rec.history[-1]["detail"], rec.history
        (vrm,) = [o for o in rec.outputs if o["filename"].endswith(".vrm")]
        assert Path(vrm["path"]).is_file() and prefix in vrm["subfolder"] + "/" + vrm["filename"]
        made = sorted(
            str(p.relative_to(comfy.base_dir))
            for p in (Path(comfy.base_dir) / "output").rglob("*.vrm")
            if prefix in str(p)
        )
        assert len(made) == 1, f"ComfyUI ran the job {len(made)} times: {made}"
    finally:
        fleet.close()
