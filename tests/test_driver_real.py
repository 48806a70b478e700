"""Batch driver against a real ComfyUI (COMFYUI_DIR; skipped with the reason otherwise):
- a 200-prompt batch: 0 lost and 0 duplicated results;
- the websocket killed mid-run (a TCP proxy drops every connection): the job completes;
- the server killed (SIGKILL) and restarted mid-queue: every job ends exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import comfyui_dir

from driver.batch import BatchJob, BatchOptions, BatchRunner, job_prompt_id
from driver.events import BatchEvent
from driver.pool import ServerPool
from driver.store import SUCCEEDED, TERMINAL, JobStore

pytestmark = pytest.mark.comfyui


@pytest.fixture(autouse=True)
def _needs_comfyui():
    comfyui_dir()


from tests._driver_helpers import comfyui_python, shared_comfy  # noqa: E402


def _trivial(i: int, prefix: str, size: int = 8) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1, "color": i}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"{prefix}/j{i:04d}"}},
    }


def _slow(i: int, prefix: str) -> dict:
    """A few seconds of CPU work in ComfyUI (a big blur), distinct per job."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 2048, "height": 2048, "batch_size": 1, "color": 1000 + i},
        },
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 25, "sigma": 6.0}},
        "3": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["2", 0],
                "upscale_method": "nearest-exact",
                "width": 16,
                "height": 16,
                "crop": "disabled",
            },
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": f"{prefix}/s{i:03d}"}},
    }


def _jobs(tmp: Path, batch: str, prompts: list[dict]) -> list[BatchJob]:
    return [
        BatchJob(i, f"{batch}-{i:04d}", job_prompt_id(batch, i), p, tmp / "out" / f"{i:04d}")
        for i, p in enumerate(prompts)
    ]


def test_200_prompt_batch_no_lost_no_duplicated_results(tmp_path: Path) -> None:
    comfy = shared_comfy()
    batch = f"real200-{int(time.time())}"
    jobs = _jobs(tmp_path, batch, [_trivial(i, batch) for i in range(200)])
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    summary = BatchRunner(jobs, ServerPool([comfy.url]), BatchOptions(batch_id=batch, concurrency=8), store=store).run()
    assert summary.succeeded == 200, summary.to_dict()
    # every job has exactly its own output, downloaded once, with a matching sha256
    names = []
    for j in jobs:
        m = json.loads((j.out_dir / "manifest.json").read_text())
        assert len(m["outputs"]) == 1, j.id
        names.append(m["outputs"][0]["filename"])
        assert m["outputs"][0]["filename"].startswith(f"j{j.index:04d}_")
    assert len(set(names)) == 200
    # the server ran each prompt exactly once: one output file per job, no _00002_ duplicates
    produced = sorted(p.name for p in (comfy.base_dir / "output" / batch).iterdir())
    assert len(produced) == 200 and all(n.endswith("_00001_.png") for n in produced)
    assert store.counts(batch) == {SUCCEEDED: 200}


class _Proxy:
    """TCP proxy 127.0.0.1:port -> target; kill() drops every open connection."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            u = socket.create_connection(self.target)
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def kill(self) -> int:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
            except OSError:
                pass
        return len(conns)

    def close(self) -> None:
        self.srv.close()
        self.kill()


def test_websocket_killed_mid_run_job_still_completes(tmp_path: Path) -> None:
    comfy = shared_comfy()
    proxy = _Proxy(comfy.port)
    batch = f"realws-{int(time.time())}"
    jobs = _jobs(tmp_path, batch, [_slow(0, batch)])
    events: list[BatchEvent] = []
    killed: list[int] = []

    def on_event(e: BatchEvent) -> None:
        events.append(e)
        if e.type == "job_progress" and e.data.get("node") == "2" and not killed:
            killed.append(proxy.kill())  # every connection, the websocket included, dies now

    try:
        summary = BatchRunner(
            jobs,
            ServerPool([f"http://127.0.0.1:{proxy.port}"]),
            BatchOptions(batch_id=batch, concurrency=1, ws_silence_s=2.0, poll_interval_s=0.5),
            on_event=on_event,
        ).run()
    finally:
        proxy.close()
    assert killed and killed[0] >= 1
    assert summary.succeeded == 1, summary.jobs[0].error
    kinds = [e.type for e in events]
    assert "job_ws_reconnected" in kinds, kinds  # reconnected with the same client id and resynced
    assert len(summary.jobs[0].files) == 1 and kinds.count("job_submitted") == 1


def test_server_killed_and_restarted_mid_queue_every_job_ends_exactly_once(tmp_path: Path) -> None:
    from driver.local import LocalComfy, free_port

    port = free_port()
    comfy = LocalComfy(os.environ["COMFYUI_DIR"], python=comfyui_python(), port=port, start_timeout=300)
    comfy.start()
    restarted: list[LocalComfy] = []
    batch = f"realrestart-{int(time.time())}"
    jobs = _jobs(tmp_path, batch, [_slow(i, batch) for i in range(5)])
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    done_before_kill: list[str] = []
    lock = threading.Lock()

    def on_event(e: BatchEvent) -> None:
        with lock:
            if e.type == "job_finished" and not restarted:
                done_before_kill.append(e.job)
                if len(done_before_kill) == 1:
                    threading.Thread(target=kill_and_restart, daemon=True).start()
                    restarted.append(comfy)

    def kill_and_restart() -> None:
        time.sleep(1.0)  # the next prompt is running, the rest queued
        assert comfy.process is not None
        os.killpg(comfy.process.pid, signal.SIGKILL)  # a crash: queue and history are gone
        comfy.process.wait(30)
        comfy.process = None
        again = LocalComfy(os.environ["COMFYUI_DIR"], python=comfyui_python(), port=port, start_timeout=300)
        again.start()
        restarted.append(again)

    try:
        options = BatchOptions(
            batch_id=batch,
            concurrency=5,
            give_up_s=400,
            retries=6,
            backoff_max_s=5.0,
            ws_silence_s=5.0,
            poll_interval_s=1.0,
            reconnect_give_up_s=20.0,
        )
        summary = BatchRunner(
            jobs, ServerPool([comfy.url], backoff_max_s=5.0), options, store=store, on_event=on_event
        ).run()
    finally:
        for c in [comfy, *restarted[1:]]:
            c.stop()
    assert len(restarted) == 2, "the server was killed and started again"
    assert summary.succeeded == 5, [j.error for j in summary.jobs]
    for j in jobs:
        hist = [h["status"] for h in store.get(j.id).history]
        assert sum(h in TERMINAL for h in hist) == 1 and hist[-1] == SUCCEEDED, (j.id, hist)
        assert j.resubmits <= 1
        assert len(j.files) == 1, "each job's result exactly once"
    assert done_before_kill[0] in {j.id for j in jobs if j.resubmits == 0}
    assert any(j.resubmits == 1 for j in jobs), "jobs lost in the crash were resubmitted"
