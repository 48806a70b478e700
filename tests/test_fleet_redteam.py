"""Fleet mode attacked from outside (issue 11's red-team pass), each case against a real
rabbitmq-server, the real HTTP API on uvicorn and real worker processes (``python -m driver
worker``) beside the fake ComfyUI.

What each test asserts is what a user (or the operator) would notice: a clear 4xx and nothing
stored for a refused request; a worker that stays up whatever lands on its queue; each job
ending exactly once, on another box when its own is gone; no secret in what the API shows.

Found by this pass and fixed (each has its test here):
- a message nested deeper than the JSON parser's stack ("[[[[...") escaped the worker's delivery
  callback, stopped the worker, and, unacked, went on to stop every worker it reached;
- POST /jobs answered 500 to deep JSON, to a seed of Infinity and to an id prefix shared by
  several jobs, and took a NaN or negative timeout; the 404 named the job database's host;
- a "workflow" that is no workflow ({"a": 1}) got 201 and a record, and then died on the
  worker as "driver error ... report this as a bug";
- wrong API keys were never rate limited (unlimited guessing);
- an input URL's password or presigned query (its credential) was kept in the job record and
  shown by GET /jobs/{id}; its query became the input's file name on ComfyUI;
- s3:// inputs were fetched from any bucket the workers' rclone can read, and http(s) inputs
  from the worker's own box (its ComfyUI on 127.0.0.1, cloud metadata on 169.254.169.254);
- the job page put node titles and output names (chosen by whoever submitted the workflow)
  into innerHTML: script in a title ran in the page of whoever opened the job, where the API
  key is;
- two workers started with the same --name shared one lease owner, so the second could take
  over a job the first was still running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from _fleet_helpers import ROOT, ApiServer, Chromium, Fleet, broker_fixture, executions, fake_comfy, trivial_prompt

from driver.store import FAILED, SUCCEEDED

pytest.importorskip("pika", reason="pika is not installed (pip install -e .[fleet])")
pytest.importorskip("fastapi", reason="fastapi is not installed (pip install -e .[fleet])")

broker = broker_fixture()
KEY = "redteam-key-0123456789abcdef"
PNG = (ROOT / "workflows" / "examples" / "character_apose.png").read_bytes()
SECRET = "hunter2-presigned-SIG"


@pytest.fixture
def workflows(tmp_path: Path) -> Path:
    d = tmp_path / "workflows"
    d.mkdir()
    (d / "picture.api.json").write_text(
        json.dumps(
            {
                "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}, "_meta": {"title": "image"}},
                "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "rt/pic"}},
            }
        )
    )
    return d


@pytest.fixture
def fleet(broker, tmp_path):
    f = Fleet(broker.url, tmp_path, COMFY_AVATAR__FLEET__INPUT_BUCKETS="inbox")
    yield f
    f.close()


@pytest.fixture
def api(fleet: Fleet, workflows: Path):
    srv = ApiServer(fleet, f"web:{KEY}", workflows=workflows, rate=20.0, burst=30)
    yield srv
    srv.close()


H = {"Authorization": f"Bearer {KEY}"}


def _nothing_stored(fleet: Fleet, broker, before: int) -> None:
    assert len(fleet.store.list(limit=1000)) == before, "a refused request left a job record"
    depth = broker.queue_depths().get(fleet.settings.jobs_queue, (0, 0))[0]
    assert depth == 0, "a refused request left a message on the queue"


# -- the HTTP API --------------------------------------------------------------------------------


def test_hostile_bodies_get_a_clear_4xx_and_leave_nothing(api: ApiServer, fleet: Fleet, broker) -> None:
    """Bodies that used to answer 500 (or 201 for garbage) now get a 400 saying what is wrong."""
    post = lambda **kw: requests.post(f"{api.url}/jobs", headers=H, timeout=30, **kw)  # noqa: E731
    js = {"content-type": "application/json", **H}
    cases = {
        "deep JSON": (requests.post(f"{api.url}/jobs", data="[" * 100_000, headers=js, timeout=30), "not valid JSON"),
        "seed Infinity": (
            requests.post(f"{api.url}/jobs", data='{"workflow": "picture", "seed": Infinity}', headers=js, timeout=30),
            "seed",
        ),
        "seed 1.5": (post(json={"workflow": "picture", "seed": 1.5}), "whole number"),
        "timeout NaN": (
            requests.post(f"{api.url}/jobs", data='{"workflow": "picture", "timeout": NaN}', headers=js, timeout=30),
            "positive number",
        ),
        "timeout -5": (post(json={"workflow": "picture", "timeout": -5}), "positive number"),
        "not a workflow": (post(json={"workflow": {"a": 1}}), "neither an API prompt"),
        "nodes without class_type": (post(json={"workflow": {"1": {"inputs": {}}}}), "neither an API prompt"),
        "bucket outside": (
            post(json={"workflow": "picture", "inputs": {"image": "s3://payroll/secret.png"}}),
            "not one the fleet reads inputs from",
        ),
        "s3 key ..": (post(json={"workflow": "picture", "inputs": {"image": "s3://inbox/a/../b.png"}}), "BUCKET/KEY"),
        "file:// input": (post(json={"workflow": "picture", "inputs": {"image": "file:///etc/passwd"}}), "URL"),
        "form URL outside": (
            post(data={"workflow": "picture", "image": "s3://payroll/secret.png"}),
            "not one the fleet reads inputs from",
        ),
        "form params deep JSON": (post(data={"workflow": "picture", "params": "[" * 200_000}), "is not JSON"),
        "form workflow deep JSON": (post(data={"workflow": "{" + '"a":[' * 30_000}), "not valid JSON"),
        "upload ../": (
            post(data={"workflow": "picture"}, files={"image": ("../x.png", PNG, "image/png")}),
            "not a plain file name",
        ),
        "upload NUL": (
            post(data={"workflow": "picture"}, files={"image": ("a\x00.png", PNG, "image/png")}),
            "not a plain file name",
        ),
        "upload RTL override": (
            post(data={"workflow": "picture"}, files={"image": ("\u202egnp.exe", PNG, "image/png")}),
            "not a plain file name",
        ),
    }
    for what, (r, says) in cases.items():
        assert r.status_code == 400, (what, r.status_code, r.text[:300])
        assert says in r.json()["error"] and "Fix:" in r.json()["error"], (what, r.text[:300])
    _nothing_stored(fleet, broker, 0)


def test_missing_jobs_are_one_plain_404(api: ApiServer, fleet: Fleet) -> None:
    """An id prefix several jobs share was a 500; no 404 names the job database."""
    ids = [fleet.submit(trivial_prompt(f"p{i}")) for i in range(20)]
    shared = next(c for c in "0123456789abcdef" if sum(j.startswith(c) for j in ids) >= 2)
    for path in (f"/jobs/{shared}", f"/jobs/{ids[0][:8]}", "/jobs/nope", "/jobs/%2e%2e"):
        for method in ("GET", "DELETE"):
            r = requests.request(method, api.url + path, headers=H, timeout=10)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert "jobs.db" not in r.text and "sqlite" not in r.text, r.text
    assert requests.get(f"{api.url}/jobs/{ids[0]}/files/../../../etc/passwd", headers=H, timeout=10).status_code == 404


def test_wrong_keys_are_rate_limited_by_address(fleet: Fleet, workflows: Path) -> None:
    """Guessing keys costs the same budget as using one; X-Forwarded-For does not reset it."""
    api = ApiServer(fleet, f"web:{KEY}", workflows=workflows, rate=1.0, burst=10)
    try:
        _guess(api)
    finally:
        api.close()


def _guess(api: ApiServer) -> None:
    codes = [
        requests.get(
            f"{api.url}/jobs", headers={"X-API-Key": f"guess-{i:024d}", "X-Forwarded-For": f"10.0.0.{i}"}, timeout=10
        )
        for i in range(30)
    ]
    assert {r.status_code for r in codes} == {401, 429}, {r.status_code for r in codes}
    limited = next(r for r in codes if r.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    # the real key has its own bucket: the guessing did not lock its owner out
    assert requests.get(f"{api.url}/jobs", headers=H, timeout=10).status_code == 200


def test_no_input_credential_in_records_the_api_or_metrics(api: ApiServer, fleet: Fleet) -> None:
    url = f"https://user:{SECRET}@images.example.com/in/ada.png?X-Amz-Signature={SECRET}"
    r = requests.post(f"{api.url}/jobs", headers=H, json={"workflow": "picture", "inputs": {"image": url}}, timeout=30)
    assert r.status_code == 201, r.text
    job = r.json()["job_id"]
    shown = requests.get(f"{api.url}/jobs/{job}", headers=H, timeout=10).text
    listed = requests.get(f"{api.url}/jobs", headers=H, timeout=10).text
    record = json.dumps(fleet.store.get(job).to_dict())
    metrics = requests.get(f"{api.url}/metrics", timeout=10).text
    for where, text in {"GET /jobs/{id}": shown, "GET /jobs": listed, "record": record, "/metrics": metrics}.items():
        assert SECRET not in text and KEY not in text, where
    inp = fleet.store.get(job).to_dict()["params"]["inputs"][0]
    # a label is printed by `list` on terminals: no escape sequence survives into the record
    r = requests.post(
        f"{api.url}/jobs", headers=H, json={"workflow": "picture", "label": "ok\x1b]0;pwned\x07\x1b[2J"}, timeout=30
    )
    assert r.status_code == 201 and fleet.store.get(r.json()["job_id"]).label == "ok ]0;pwned  [2J"
    assert inp["filename"] == "ada.png" and inp["url"] == "https://***@images.example.com/in/ada.png?***"


def test_websocket_of_a_missing_job_and_cancel_of_ended_jobs(api: ApiServer, fleet: Fleet) -> None:
    import websocket

    ws = websocket.create_connection(api.url.replace("http", "ws") + "/jobs/" + "0" * 32 + "/events", timeout=10)
    ws.send(json.dumps({"key": KEY}))
    assert "not in the job database" in json.loads(ws.recv())["error"]
    ws.close()
    job = fleet.submit(trivial_prompt("c"))
    first = requests.delete(f"{api.url}/jobs/{job}", headers=H, timeout=10).json()
    second = requests.delete(f"{api.url}/jobs/{job}", headers=H, timeout=10).json()
    assert first["cancelled"] is True and second == {"job_id": job, "status": "cancelled", "cancelled": False}
    done = fleet.submit(trivial_prompt("d"))
    fleet.store.finish(done, SUCCEEDED, [], detail="test")
    r = requests.delete(f"{api.url}/jobs/{done}", headers=H, timeout=10).json()
    assert r["cancelled"] is False and fleet.store.status_of(done)[0] == SUCCEEDED


def test_files_redirect_only_into_the_fleets_bucket(broker, tmp_path: Path, workflows: Path) -> None:
    """A workflow's text output that starts with a URL is recorded as a file; GET .../files/
    must not become an open redirect to wherever that points."""
    fleet = Fleet(broker.url, tmp_path, COMFY_AVATAR__FLEET__S3_PUBLIC_BASE_URL="https://cdn.example.com/avatars")
    api = ApiServer(fleet, f"web:{KEY}", workflows=workflows)
    try:
        job = fleet.submit(trivial_prompt("redirect"))
        out = {"node_id": "7", "key": "url", "subfolder": "", "type": "url", "sha256": None, "size": None}
        fleet.store.finish(
            job,
            SUCCEEDED,
            [
                {**out, "filename": "ada.vrm", "path": "https://cdn.example.com/avatars/j/ada.vrm"},
                {**out, "filename": "login", "path": "https://evil.example/login"},
                {**out, "filename": "x.vrm", "path": "https://cdn.example.com/avatars.evil.example/x.vrm"},
            ],
            detail="test",
        )
        get = lambda n: requests.get(  # noqa: E731
            f"{api.url}/jobs/{job}/files/{n}", headers=H, allow_redirects=False, timeout=10
        )
        ok = get("ada.vrm")
        assert ok.status_code == 307 and ok.headers["location"] == "https://cdn.example.com/avatars/j/ada.vrm"
        for name in ("login", "x.vrm"):
            r = get(name)
            assert r.status_code == 404 and "location" not in r.headers, (name, r.status_code, r.headers)
            assert "S3_PUBLIC_BASE_URL" in r.json()["error"]
    finally:
        api.close()
        fleet.close()


def test_job_page_shows_workflow_text_as_text(api: ApiServer) -> None:
    """A node title or an output name with markup is shown as text and runs nothing."""
    import shutil

    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        from conftest import need

        need(False, "chromium is not installed")
    b = Chromium()
    try:
        b.call("Page.navigate", url=api.url + "/")
        b.wait_js("document.readyState === 'complete' && typeof setNodes === 'function'", timeout=30)
        evil = '<img src=x onerror="window.pwned=1" id=pwn>'
        b.js(f"setNodes({{'7': ['LoadImage', {json.dumps(evil)}]}})")
        b.js(f"showModel([{{filename: {json.dumps(evil + '.vrm')}, url: '/x'}}])")
        b.wait_js("document.getElementById('viewer').dataset.viewer === 'missing'", timeout=20)
        assert b.js("document.getElementById('pwn') === null && !window.pwned")
        assert evil in b.js("document.getElementById('nodes').innerText")
        assert evil in b.js("document.getElementById('viewer').innerText")
        # and behind that, the page's Content-Security-Policy: markup that did get in runs nothing
        b.js("document.body.insertAdjacentHTML('beforeend', '<img src=x onerror=\"window.pwned2=1\">')")
        time.sleep(0.5)
        assert b.js("!window.pwned2"), "an inline event handler ran: no CSP"
    finally:
        b.close()


# -- the queue and the workers -------------------------------------------------------------------


def _publish_raw(fleet: Fleet, bodies: list[bytes]) -> None:
    import pika

    from driver.fleet.broker import connect, declare

    conn = connect(fleet.settings, "redteam-raw")
    try:
        ch = conn.channel()
        declare(ch, fleet.settings)
        for body in bodies:
            ch.basic_publish("", fleet.settings.jobs_queue, body, pika.BasicProperties(delivery_mode=2))
    finally:
        conn.close()


def _publish_control(fleet: Fleet, body: bytes) -> None:
    from driver.fleet.broker import connect, declare

    conn = connect(fleet.settings, "redteam-control")
    try:
        ch = conn.channel()
        declare(ch, fleet.settings)
        ch.basic_publish(fleet.settings.control_exchange, "", body)
    finally:
        conn.close()


def _wait_ended(fleet: Fleet, ids: list[str], timeout: float) -> dict[str, str]:
    """Like Fleet.wait_terminal, for jobs published straight to the queue (their record is
    made by the worker that takes them)."""
    from driver.store import TERMINAL, StoreError

    deadline = time.monotonic() + timeout
    while True:
        status = {}
        for j in ids:
            try:
                status[j] = fleet.store.status_of(j)[0]
            except StoreError:
                status[j] = "no record"
        if all(s in TERMINAL for s in status.values()) or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def test_poison_messages_are_dead_lettered_and_the_worker_stays_up(fleet: Fleet, broker, tmp_path: Path) -> None:
    from driver.fleet.broker import browse_dead
    from driver.fleet.messages import encode, make_job

    hits: list[str] = []

    class Local(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(PNG)

        def log_message(self, *a: object) -> None:
            pass

    local = ThreadingHTTPServer(("127.0.0.1", 0), Local)
    threading.Thread(target=local.serve_forever, daemon=True).start()
    not_a_workflow = make_job({"a": {"b": 1}})
    ssrf = make_job(
        {
            "1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "rt/ssrf"}},
        }
    )
    from driver.fleet.messages import InputFile

    ssrf = make_job(ssrf.workflow, inputs=[InputFile("1", "x.png", url=f"http://127.0.0.1:{local.server_port}/x.png")])
    with fake_comfy() as comfy:
        w = fleet.worker(comfy.url, "w1")
        _publish_raw(
            fleet,
            [
                b"[" * 200_000,  # stopped every worker before the fix
                b"not json",
                json.dumps({"v": 1, "job_id": "x"}).encode(),
                json.dumps({"v": 1, "job_id": "y", "prompt_id": "z", "workflow": {"1": {}}, "inputs": "abc"}).encode(),
                encode(not_a_workflow),
                encode(ssrf),
            ],
        )
        _publish_control(fleet, b"[" * 200_000)  # the control exchange: anyone on the broker can publish
        good = fleet.submit(trivial_prompt("after-poison"))
        status = _wait_ended(fleet, [good, not_a_workflow.job_id, ssrf.job_id], 90)
        assert w.proc.poll() is None, "the worker stopped:\n" + fleet.logs()
        assert status[good] == SUCCEEDED, fleet.logs()
        assert executions(comfy)[fleet.store.get(good).prompt_id] == 1
        nw = fleet.store.get(not_a_workflow.job_id)
        assert nw.status == FAILED and "neither an API prompt" in (nw.error or "")
        assert "report this as a bug" not in (nw.error or "")
        sr = fleet.store.get(ssrf.job_id)
        assert sr.status == FAILED and "points at 127.0.0.1" in (sr.error or ""), sr.error
        assert hits == [], "the worker fetched from its own box"
        dead = list(browse_dead(fleet.settings))
        assert len(dead) == 6, dead
        assert sum("is not JSON" in d["error"] for d in dead) == 2
    local.shutdown()


def test_two_workers_with_one_name_do_not_share_a_lease(fleet: Fleet) -> None:
    from driver.fleet.leases import Leases
    from driver.fleet.settings import WorkerSettings

    a = WorkerSettings(server="http://127.0.0.1:8188", out="/tmp/x", name="gpu")
    b = WorkerSettings(server="http://127.0.0.1:8188", out="/tmp/x", name="gpu")
    leases = Leases(fleet.store)
    assert leases.claim("job1", a.lease_owner, a.server, 30).ok
    second = leases.claim("job1", b.lease_owner, b.server, 30)
    assert not second.ok and second.holder.startswith("gpu#"), "the second 'gpu' took over a live lease"
    assert leases.renew(["job1"], b.lease_owner, 30) == ["job1"]


def test_a_box_gone_for_good_its_job_finishes_once_elsewhere(fleet: Fleet) -> None:
    """Worker and ComfyUI of box 1 die mid-job and never come back: box 2 takes the job after
    the lease runs out, finds box 1's server unreachable, runs it, and it ends once."""
    from _fleet_helpers import slow_scenario

    with fake_comfy() as c2:
        c1 = fake_comfy()
        c1.__enter__()
        c1.scenario = slow_scenario(0.5)
        w1 = fleet.worker(c1.url, "box1")
        job = fleet.submit(trivial_prompt("gone", steps=20))
        deadline = time.monotonic() + 60
        while not c1.running and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c1.running, fleet.logs()
        w2 = fleet.worker(c2.url, "box2")
        w1.kill()
        c1.__exit__(None, None, None)
        status = fleet.wait_terminal([job], 90)
        rec = fleet.store.get(job)
        assert status[job] == SUCCEEDED, fleet.logs()
        assert executions(c2) == {rec.prompt_id: 1}
        ended = [h for h in rec.to_dict()["history"] if h["status"] in ("succeeded", "failed", "cancelled")]
        assert len(ended) == 1 and "box2" in (ended[0]["detail"] or ""), rec.to_dict()["history"]
        time.sleep(2)  # a late copy would end it a second time
        assert len([h for h in fleet.store.get(job).to_dict()["history"] if h["status"] == "succeeded"]) == 1
        assert w2.proc.poll() is None


# -- submit in batches ---------------------------------------------------------------------------


def _submit_cmd(fleet: Fleet, wf: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "driver", "submit", str(wf), "--db", fleet.db, *extra]


def test_submit_count_publishes_in_confirmed_batches(fleet: Fleet, broker, tmp_path: Path) -> None:
    wf = tmp_path / "t.api.json"
    wf.write_text(json.dumps(trivial_prompt("batch")))
    t0 = time.monotonic()
    cp = subprocess.run(
        _submit_cmd(fleet, wf, "--count", "450", "--seed", "7"),
        cwd=ROOT,
        env=fleet.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    took = time.monotonic() - t0
    assert cp.returncode == 0, cp.stderr[-2000:]
    ids = cp.stdout.split()
    assert len(ids) == len(set(ids)) == 450
    assert broker.queue_depths()[fleet.settings.jobs_queue][0] == 450
    recs = {r.id: r for r in fleet.store.list(limit=1000)}
    assert set(recs) == set(ids) and {r.status for r in recs.values()} == {"pending"}
    assert sorted(r.to_dict()["params"]["seed"] for r in recs.values()) == list(range(7, 457))
    assert took < 120, f"submit --count 450 took {took:.1f} s"


def test_submit_killed_mid_batch_leaves_every_printed_job_queued(fleet: Fleet, broker, tmp_path: Path) -> None:
    """SIGKILL `submit --count` while it runs: every id it printed is on the queue; other jobs
    of the run are at most one batch of `pending` records (the batch in flight)."""
    from driver.fleet.broker import connect

    wf = tmp_path / "t.api.json"
    wf.write_text(json.dumps(trivial_prompt("crash")))
    proc = subprocess.Popen(
        _submit_cmd(fleet, wf, "--count", "3000"),
        cwd=ROOT,
        env=fleet.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    printed: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        printed.append(line.strip())
        if len(printed) >= 400:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(30)
    printed += [x.strip() for x in proc.stdout.read().split()]
    proc.stdout.close()
    conn = connect(fleet.settings, "redteam-count")
    on_queue: set[str] = set()
    try:
        ch = conn.channel()
        for method, props, _body in ch.consume(fleet.settings.jobs_queue, auto_ack=False, inactivity_timeout=2):
            if method is None:
                break
            on_queue.add(props.message_id)
    finally:
        conn.close()
    assert set(printed) <= on_queue, f"{len(set(printed) - on_queue)} printed jobs are not on the queue"
    recs = {r.id: r.status for r in fleet.store.list(limit=5000)}
    pending_without_message = {j for j, s in recs.items() if s == "pending"} - on_queue
    assert len(pending_without_message) <= 200, len(pending_without_message)
    assert len(recs) < 3000, "the kill came after the last batch; nothing was tested"


def test_submit_count_survives_a_broker_restart_mid_batch(tmp_path: Path) -> None:
    """The broker restarts while `submit --count` publishes: the command still ends with every
    id printed, and every printed job is on the queue after the restart (durable queue,
    persistent messages, a batch whose confirms were lost republished whole: copies of a job
    are possible, and workers drop them by job id)."""
    from _rabbitmq import RabbitServer, available
    from conftest import need

    reason = available()
    need(reason is None, reason or "")
    with RabbitServer() as rmq:
        fleet = Fleet(rmq.url, tmp_path)
        try:
            wf = tmp_path / "t.api.json"
            wf.write_text(json.dumps(trivial_prompt("restart")))
            proc = subprocess.Popen(
                _submit_cmd(fleet, wf, "--count", "15000"),
                cwd=ROOT,
                env=fleet.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None
            printed = [proc.stdout.readline().strip() for _ in range(200)]  # the first batch is confirmed
            rmq.restart()
            out, err = proc.communicate(timeout=300)
            printed += out.split()
            assert proc.returncode == 0, err[-3000:]
            assert len(set(printed)) == 15000
            assert "broker connection lost" in err, "the restart came after the last batch: " + err[-2000:]
            from driver.fleet.broker import connect

            conn = connect(fleet.settings, "redteam-restart")
            on_queue: list[str] = []
            try:
                ch = conn.channel()
                for method, props, _body in ch.consume(fleet.settings.jobs_queue, auto_ack=False, inactivity_timeout=3):
                    if method is None:
                        break
                    on_queue.append(props.message_id)
            finally:
                conn.close()
            assert set(printed) <= set(on_queue), f"{len(set(printed) - set(on_queue))} printed jobs lost"
            assert {r.status for r in fleet.store.list(limit=20000)} == {"pending"}
        finally:
            fleet.store.close()


def test_broker_down_post_is_503_and_leaves_no_record(tmp_path: Path, workflows: Path) -> None:
    """The API publishes before it writes the record: a broker that cannot take the job gets
    a 503 and leaves nothing (before, a record stayed behind; and a serve killed between
    the two left a `pending` record no message would ever run)."""
    from driver.local import free_port

    fleet = Fleet(
        f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F",
        tmp_path,
        COMFY_AVATAR__FLEET__PUBLISH_GIVE_UP_S="1",
        COMFY_AVATAR__FLEET__CONNECT_TIMEOUT_S="1",
    )
    api = ApiServer(fleet, f"web:{KEY}", workflows=workflows)
    try:
        r = requests.post(f"{api.url}/jobs", headers=H, json={"workflow": "picture"}, timeout=60)
        assert r.status_code == 503 and "RabbitMQ broker" in r.json()["error"], r.text
        assert "guest:guest" not in r.text
        assert fleet.store.list(limit=10) == []
    finally:
        api.close()
        fleet.store.close()


def test_wrong_key_buckets_do_not_grow_without_end() -> None:
    """One bucket per client address: a client with many addresses must not grow the table
    for ever, and pruning forgets only buckets that have refilled."""
    from driver.fleet.uploads import RateLimiter, Refused

    now = [0.0]
    rl = RateLimiter(10.0, 5, clock=lambda: now[0])
    rl.max_buckets = 100
    for _ in range(5):
        rl.check("unauthenticated 10.9.9.9")
    for i in range(5000):
        rl.check(f"unauthenticated 2001:db8::{i:x}")
        if i < 50:  # 0.05 s in: 10.9.9.9 has half a token back, not one: still limited
            with pytest.raises(Refused):
                rl.check("unauthenticated 10.9.9.9")
        now[0] += 0.001  # a bucket refills from 4 to 5 tokens in 0.1 s: ~100 not yet full
    assert len(rl._buckets) <= 2 * rl.max_buckets, len(rl._buckets)


def test_two_jobs_with_one_input_name_each_get_their_own_picture(api: ApiServer, fleet: Fleet) -> None:
    """Two people upload "image.jpg" (every phone's name) at once to a worker running two jobs:
    each job's LoadImage must read its own bytes. Before, both went to one ComfyUI input file
    with overwrite, and the later upload replaced the earlier one's picture. Names in any
    script (and macOS's decomposed form) are accepted."""
    import unicodedata

    from _fleet_helpers import slow_scenario

    pics = {
        name: PNG + name.encode() for name in ("image.jpg", "image.jpg ", unicodedata.normalize("NFD", "фото é.png"))
    }
    with fake_comfy() as comfy:
        comfy.scenario = slow_scenario(0.2)
        fleet.worker(comfy.url, "w1", concurrency=2)
        jobs = {}
        for name, data in pics.items():
            r = requests.post(
                f"{api.url}/jobs",
                headers=H,
                data={"workflow": "picture"},
                files={"image": (name.strip() or name, data, "image/jpeg")},
                timeout=30,
            )
            assert r.status_code == 201, r.text
            jobs[r.json()["job_id"]] = data
        status = fleet.wait_terminal(list(jobs), 90)
        assert set(status.values()) == {SUCCEEDED}, fleet.logs()
        by_prompt = {b["prompt_id"]: b["prompt"]["1"]["inputs"]["image"] for b in comfy.posted}
        for job, data in jobs.items():
            ref = by_prompt[fleet.store.get(job).prompt_id]
            sub, _, fname = ref.rpartition("/")
            assert comfy.files[("input", sub, fname)] == data, f"job {job} read another job's picture ({ref})"
        assert len(set(by_prompt.values())) == len(jobs)
        names = [fleet.store.get(j).to_dict()["params"]["inputs"][0]["filename"] for j in jobs]
        assert "фото é.png" in names  # NFC


def test_serve_sigkilled_during_posts_leaves_no_record_without_a_message(fleet: Fleet, workflows: Path) -> None:
    """`comfy-avatar serve` SIGKILLed in the middle of a burst of POST /jobs: every job it
    answered 201 is on the queue, and no record is left that no message will run."""
    from concurrent.futures import ThreadPoolExecutor

    from driver.fleet.broker import connect
    from driver.local import free_port

    port = free_port()
    env = {**fleet.env, "COMFY_AVATAR_API_KEYS": f"web:{KEY}"}
    cmd = [sys.executable, "-m", "driver", "serve", "--port", str(port), "--db", fleet.db]
    cmd += ["--workflows", str(workflows), "--rate", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
        time.sleep(0.3)
    answered: list[str] = []

    def post(i: int) -> None:
        try:
            r = requests.post(url + "/jobs", headers=H, json={"workflow": "picture", "label": f"k{i}"}, timeout=20)
            if r.status_code == 201:
                answered.append(r.json()["job_id"])
        except requests.RequestException:
            pass  # the kill

    with ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(post, i) for i in range(400)]
        while len(answered) < 60 and not all(f.done() for f in futs):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    proc.stderr.close()  # type: ignore[union-attr]
    assert 60 <= len(answered) < 400, len(answered)
    conn = connect(fleet.settings, "redteam-serve-kill")
    on_queue: set[str] = set()
    try:
        ch = conn.channel()
        for method, props, _body in ch.consume(fleet.settings.jobs_queue, auto_ack=False, inactivity_timeout=2):
            if method is None:
                break
            on_queue.add(props.message_id)
    finally:
        conn.close()
    records = {r.id for r in fleet.store.list(limit=1000)}
    assert set(answered) <= on_queue and set(answered) <= records
    assert records <= on_queue, f"{len(records - on_queue)} records have no message"


def test_raw_messages_cannot_mistype_fields_or_grow_the_metrics() -> None:
    """A message published by hand (anyone with broker access) with a priority, seed or
    timeout of the wrong kind is refused as a message (dead-lettered with the reason) instead
    of failing later as a "driver bug"; its workflow name cannot add metrics labels for ever."""
    from driver.fleet.messages import MessageError, decode, encode, make_job
    from driver.fleet.metrics import WorkerMetrics

    good = json.loads(encode(make_job(trivial_prompt("m"))))
    for bad in ({"priority": "x" * 500}, {"seed": "7"}, {"seed": True}, {"timeout_s": "10"}, {"timeout_s": -1}):
        with pytest.raises(MessageError):
            decode(json.dumps({**good, **bad}).encode())
    assert decode(json.dumps(good).encode()).priority == "normal"
    m = WorkerMetrics()
    for i in range(500):
        m.ended(f"wf{i}.api.json", "normal", "succeeded", duration_s=0.1)
    from prometheus_client import generate_latest

    text = generate_latest(m.registry).decode()
    assert text.count("comfy_avatar_worker_jobs_total{") == 101  # 100 names + "other"
    assert 'workflow="other"' in text
