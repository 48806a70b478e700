"""Helpers for the fleet tests: a fleet (its own queue names on a shared test broker, a job
database, worker processes) and trivial prompts for the fake ComfyUI.

Workers run as real processes (``python -m driver worker``) so that SIGKILL, SIGTERM and
broker restarts hit them as they would hit a worker on a GPU box; heartbeats, leases and
retry delays are short so the scenarios take seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

FAST_ENV = {
    "COMFY_AVATAR__FLEET__HEARTBEAT_S": "2",
    "COMFY_AVATAR__FLEET__LEASE_S": "3",
    "COMFY_AVATAR__FLEET__RETRY_BASE_S": "0.5",
    "COMFY_AVATAR__FLEET__RETRY_MAX_S": "2",
    "COMFY_AVATAR__FLEET__MAX_ATTEMPTS": "3",
    "COMFY_AVATAR__FLEET__RECONNECT_GIVE_UP_S": "3",
    "COMFY_AVATAR__FLEET__WS_SILENCE_S": "2",
    "COMFY_AVATAR__FLEET__POLL_INTERVAL_S": "0.5",
}


def trivial_prompt(tag: str = "t", steps: int = 0) -> dict[str, Any]:
    """EmptyImage -> (KSamplerLike with steps) -> SaveImage: one output file."""
    p: dict[str, Any] = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}
    }
    src = ["1", 0]
    if steps:
        p["2"] = {"class_type": "KSamplerLike", "inputs": {"image": src, "steps": steps}, "_meta": {"title": "sampler"}}
        src = ["2", 0]
    p["9"] = {"class_type": "SaveImage", "inputs": {"images": src, "filename_prefix": f"fleet/{tag}"}}
    return p


def slow_scenario(step_delay: float):
    """The fake ComfyUI's default run, with ``step_delay`` seconds per sampler step."""

    def run(job):
        job.start()
        for nid, node in job.prompt.items():
            out = None
            if node.get("class_type") == "SaveImage":
                prefix = str(node.get("inputs", {}).get("filename_prefix", "ComfyUI"))
                sub, _, base = prefix.rpartition("/")
                out = job.save_image(
                    nid, f"{base}_00001_.png", b"\x89PNG fake " + job.prompt_id.encode(), subfolder=sub
                )
            steps = node.get("inputs", {}).get("steps")
            job.node(nid, steps=steps if isinstance(steps, int) else 0, output=out, step_delay=step_delay)
        job.succeed()

    return run


def executions(*fakes: Any) -> dict[str, int]:
    """prompt_id -> how many times it was posted to any of the fake servers."""
    out: dict[str, int] = {}
    for fake in fakes:
        for body in fake.posted:
            pid = str(body.get("prompt_id"))
            out[pid] = out.get(pid, 0) + 1
    return out


class WorkerProc:
    def __init__(
        self,
        env: dict[str, str],
        server: str,
        out: Path,
        db: str,
        name: str,
        log: Path,
        concurrency: int = 1,
        extra: list[str] | None = None,
    ) -> None:
        self.name, self.log_path = name, log
        cmd = [
            sys.executable,
            "-m",
            "driver",
            "-v",
            "worker",
            "--server",
            server,
            "--out",
            str(out),
            "--db",
            db,
            "--name",
            name,
            "--concurrency",
            str(concurrency),
            "--drain",
            "30",
            *(extra or []),
        ]
        self._log = open(log, "ab")  # noqa: SIM115 - open for the process's life
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Fleet:
    """One fleet under test: queue names of its own (prefix), a job database, workers."""

    def __init__(self, broker_url: str, tmp: Path, db: str | None = None, **env: str) -> None:
        from driver.fleet.settings import FleetSettings
        from driver.store import JobStore

        self.tmp = tmp
        self.prefix = "t" + uuid.uuid4().hex[:8]
        self.db = db or str(tmp / "jobs.db")
        self.out = tmp / "out"
        self.env = {
            **os.environ,
            **FAST_ENV,
            "COMFY_AVATAR_BROKER": broker_url,
            "COMFY_AVATAR_DB": self.db,
            "COMFY_AVATAR__FLEET__PREFIX": self.prefix,
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.settings = FleetSettings.load(env=self.env)
        self.store = JobStore(self.db)
        self.workers: list[WorkerProc] = []
        self._publisher: Any = None

    @property
    def publisher(self) -> Any:
        from driver.fleet.broker import Publisher

        if self._publisher is None:
            self._publisher = Publisher(self.settings, "test-submit")
        return self._publisher

    def worker(
        self, server: str, name: str | None = None, concurrency: int = 1, extra: list[str] | None = None, **env: str
    ) -> WorkerProc:
        name = name or f"w{len(self.workers) + 1}"
        w = WorkerProc(
            {**self.env, **env}, server, self.out, self.db, name, self.tmp / f"{name}.log", concurrency, extra
        )
        self.workers.append(w)
        return w

    def submit(self, prompt: dict[str, Any], **kw: Any) -> str:
        from driver.fleet.messages import make_job
        from driver.fleet.submit import submit_job

        msg = make_job(prompt, workflow_name=kw.pop("workflow_name", "trivial.api.json"), **kw)
        submit_job(msg, self.publisher, self.store)
        return msg.job_id

    def wait_terminal(self, job_ids: list[str], timeout: float = 60.0) -> dict[str, str]:
        from driver.store import TERMINAL

        deadline = time.monotonic() + timeout
        while True:
            status = {j: self.store.status_of(j)[0] for j in job_ids}
            if all(s in TERMINAL for s in status.values()) or time.monotonic() > deadline:
                return status
            time.sleep(0.2)

    def logs(self) -> str:
        return "\n".join(f"--- {w.name} ---\n{w.log()[-6000:]}" for w in self.workers)

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        if self._publisher is not None:
            self._publisher.close()
        self.store.close()


_broker: Any = None


def shared_broker() -> Any:
    """One RabbitMQ for every fleet test module of this pytest process (like shared_comfy in
    _driver_helpers): started on first use (~10 s on two cores), stopped at exit."""
    import atexit

    from _rabbitmq import RabbitServer

    global _broker
    if _broker is None:
        _broker = RabbitServer().start()
        atexit.register(_broker.stop)
    return _broker


def broker_fixture():
    """The module fixture ``broker``: the shared broker, skipped (failed under CI) where
    rabbitmq-server is not installed."""
    import pytest
    from _rabbitmq import available
    from conftest import need

    @pytest.fixture(scope="module")
    def broker():
        reason = available()
        need(reason is None, reason or "")
        return shared_broker()

    return broker


class ApiServer:
    """``comfy-avatar serve``'s app on uvicorn in a thread, on a free 127.0.0.1 port."""

    def __init__(
        self,
        fleet: Fleet,
        keys: str,
        *,
        workflows: Path,
        max_upload_bytes: int = 4 << 20,
        rate: float = 50.0,
        burst: int = 150,
        viewer: bool = False,
    ) -> None:
        import threading

        import uvicorn

        from driver.fleet.api import ApiSettings, Services, create_app
        from driver.fleet.broker import Publisher
        from driver.fleet.hub import EventHub
        from driver.fleet.uploads import parse_api_keys
        from driver.local import free_port

        self.hub = EventHub(fleet.settings)
        self.hub.start()
        self.publisher = Publisher(fleet.settings, "test-serve")
        api = ApiSettings(
            workflows_dir=workflows,
            max_upload_bytes=max_upload_bytes,
            rate=rate,
            burst=burst,
            file_roots=(Path(fleet.out),),
            viewer_dir=ROOT / "comfy_avatar_nodes" / "web" if viewer else None,
        )
        self.services = Services(fleet.settings, api, fleet.store, self.publisher, parse_api_keys(keys), self.hub)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(self.services),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            limit_concurrency=500,
            backlog=512,
            proxy_headers=False,  # as serve runs it without --trust-proxy
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.hub.stop()
        self.publisher.close()


class Chromium:
    """A headless Chromium tab driven over the DevTools protocol (websocket-client)."""

    def __init__(self, webgl: bool = False) -> None:
        import itertools

        from _devtools import WEBGL_FLAGS, open_tab

        # WebGL on the CPU for the three-vrm viewer (no GPU here)
        self.tab = open_tab("--window-size=1000,1300", *(WEBGL_FLAGS if webgl else ()), start_s=30.0, ws_timeout_s=60.0)
        self.ws = self.tab.ws
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        import json

        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == i:
                assert "error" not in msg, msg
                return msg.get("result", {})

    def js(self, expr: str):
        res = self.call("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
        assert "exceptionDetails" not in res, res
        return res["result"].get("value")

    def wait_js(self, expr: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.2)
        raise AssertionError(f"page never satisfied {expr}: {self.js('document.body.innerText')}")

    def close(self) -> None:
        self.tab.close()


def fake_comfy(**kw: Any) -> Any:
    """tests/_fake_comfy.FakeComfy with TCP_NODELAY on its sockets (as bench/driver_overhead.py
    runs it): without it every small HTTP answer waits out the client's delayed ACK (~40 ms),
    which made each fleet job here ~0.3 s slower than it is."""
    from _fake_comfy import FakeComfy

    fake = FakeComfy(**kw)
    fake._httpd.RequestHandlerClass.disable_nagle_algorithm = True
    return fake
