"""Ray (the cluster ADR-0063 uses): a comfy-avatar job placed on the node that carries the
custom resource ``3d_gen``, with the command the README documents:

    ray job submit --entrypoint-resources '{"3d_gen": 1}' -- comfy-avatar run ...

against a local ``ray start --head --resources '{"3d_gen": 1}'`` (its own ports and temp
folder, stopped afterwards by its process group), with the fake ComfyUI as the GPU box's
server. A job asking for a resource no node has stays pending: the resource is what places it.
Skipped with "not applicable:" where ray is not installed (it is in the test extra).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from _fleet_helpers import ROOT, fake_comfy, trivial_prompt

from driver.local import free_port

BIN = Path(sys.executable).parent
RAY = BIN / "ray"


@pytest.fixture(scope="module")
def ray_head():
    if not RAY.exists():
        pytest.skip("not applicable: ray is not installed in this environment (pip install -e .[ray])")
    tmp = Path(tempfile.mkdtemp(prefix="ray-ca-", dir="/tmp"))  # short: Ray's unix socket paths
    port, dash = free_port(), free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}
    log = open(tmp / "head.log", "wb")  # noqa: SIM115 - open for the head's life
    head = subprocess.Popen(
        [
            str(RAY),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}",
            "--num-cpus=1",
            "--num-gpus=0",
            "--object-store-memory=100000000",
            f"--temp-dir={tmp}",
            "--resources",
            json.dumps({"3d_gen": 1}),
            "--disable-usage-stats",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=tmp,
    )
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert head.poll() is None, (tmp / "head.log").read_text(errors="replace")[-3000:]
            try:
                if requests.get(f"{address}/api/version", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "ray head did not start: " + (tmp / "head.log").read_text()[-3000:]
            time.sleep(0.5)
        yield address, env
    finally:
        try:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(head.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_ray_job_runs_on_the_node_with_the_3d_gen_resource(ray_head, tmp_path: Path) -> None:
    address, env = ray_head
    wf = tmp_path / "wf.api.json"
    wf.write_text(json.dumps(trivial_prompt("ray", steps=2)))
    out = tmp_path / "out"
    with fake_comfy() as fake:
        cp = subprocess.run(
            [
                str(RAY),
                "job",
                "submit",
                "--address",
                address,
                "--entrypoint-resources",
                json.dumps({"3d_gen": 1}),
                "--",
                str(BIN / "comfy-avatar"),
                "run",
                str(wf),
                "--out",
                str(out),
                "--server",
                fake.url,
                "--progress",
                "log",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )
        assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
        assert "succeeded" in cp.stdout, cp.stdout[-3000:]
        assert len(fake.posted) == 1
    assert (out / "fleet" / "ray_00001_.png").is_file()


def test_ray_job_without_a_node_for_its_resource_stays_pending(ray_head) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    address, _env = ray_head
    client = JobSubmissionClient(address)
    job_id = client.submit_job(entrypoint=f"{BIN / 'comfy-avatar'} --help", entrypoint_resources={"4d_gen": 1})
    try:
        time.sleep(3)
        assert client.get_job_status(job_id) == JobStatus.PENDING
        ok = client.submit_job(entrypoint=f"{BIN / 'comfy-avatar'} --help", entrypoint_resources={"3d_gen": 1})
        deadline = time.monotonic() + 120
        while client.get_job_status(ok) not in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert client.get_job_status(ok) == JobStatus.SUCCEEDED
        assert client.get_job_status(job_id) == JobStatus.PENDING, "still no node for 4d_gen"
    finally:
        client.stop_job(job_id)
