"""Batch driver: --set/--seed params, batch runs against the fake ComfyUI (scheduling,
cancel, retries, faults, several servers), manifests, callbacks and the CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from driver.params import ParamError, apply_overrides, apply_params, apply_seed

ROOT = Path(__file__).resolve().parents[1]
with gzip.open(ROOT / "tests" / "data" / "convert" / "object_info_core.json.gz", "rt") as _f:
    OBJECT_INFO = json.load(_f)["nodes"]

PROMPT = {
    "3": {
        "class_type": "KSampler",
        "_meta": {"title": "Sampler"},
        "inputs": {
            "seed": 1,
            "steps": 20,
            "cfg": 8.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["6", 0],
            "latent_image": ["5", 0],
        },
    },
    "5": {
        "class_type": "EmptyLatentImage",
        "_meta": {"title": "Size"},
        "inputs": {"width": 512, "height": 512, "batch_size": 1},
    },
    "6": {"class_type": "CLIPTextEncode", "_meta": {"title": "Prompt"}, "inputs": {"text": "a cat", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "_meta": {"title": "Prompt"}, "inputs": {"text": "", "clip": ["4", 1]}},
    "8": {"class_type": "RandomNoise", "_meta": {"title": "Noise"}, "inputs": {"noise_seed": ["9", 0]}},
    "9": {"class_type": "PrimitiveInt", "_meta": {"title": "Int"}, "inputs": {"value": 5}},
}


# --------------------------------------------------------------------------- params


def test_set_types_values_by_object_info() -> None:
    out = apply_overrides(
        PROMPT,
        ["Sampler.steps=30", "3.cfg=6.5", "KSampler.sampler_name=dpmpp_2m", "Size.width=768", "6.text=a dog = good"],
        OBJECT_INFO,
    )
    assert out["3"]["inputs"]["steps"] == 30 and isinstance(out["3"]["inputs"]["steps"], int)
    assert out["3"]["inputs"]["cfg"] == 6.5
    assert out["3"]["inputs"]["sampler_name"] == "dpmpp_2m"
    assert out["5"]["inputs"]["width"] == 768
    assert out["6"]["inputs"]["text"] == "a dog = good"
    assert PROMPT["3"]["inputs"]["steps"] == 20, "the input prompt is not modified"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("Sampler.steps=many", "not a whole number"),
        ("Sampler.steps=0", "below the minimum 1"),
        ("Sampler.cfg=1000", "above the maximum 100"),
        ("Sampler.sampler_name=nope", "not one of the allowed values"),
        ("Size.width=8", "below the minimum 16"),
        ("Sampler.denoise=x", "not a number"),
        ("Sampler.stepz=3", "has no input 'stepz'"),
        ("Prompt.text=x", "matches nodes 6, 7 by title"),
        ("Nobody.steps=3", "no node has id, title or type 'Nobody'"),
        ("Sampler.model=3", "takes a MODEL from another node"),
        ("steps=3", "must look like NODE.input=value"),
    ],
)
def test_set_mistakes_name_the_input_and_the_fix(spec: str, message: str) -> None:
    with pytest.raises(ParamError, match="Fix: ") as e:
        apply_overrides(PROMPT, [spec], OBJECT_INFO)
    assert message in str(e.value)
    assert spec in str(e.value)


def test_boolean_values() -> None:
    info = {"B": {"input": {"required": {"flag": ["BOOLEAN", {"default": False}]}}}}
    prompt = {"1": {"class_type": "B", "inputs": {"flag": False}}}
    assert apply_overrides(prompt, ["1.flag=yes"], info)["1"]["inputs"]["flag"] is True
    assert apply_overrides(prompt, ["1.flag=OFF"], info)["1"]["inputs"]["flag"] is False
    with pytest.raises(ParamError, match="not a boolean"):
        apply_overrides(prompt, ["1.flag=maybe"], info)


def test_seed_sets_every_seed_including_through_a_primitive() -> None:
    out = apply_seed(PROMPT, 42, OBJECT_INFO)
    assert out["3"]["inputs"]["seed"] == 42
    assert out["9"]["inputs"]["value"] == 42
    assert out["8"]["inputs"]["noise_seed"] == ["9", 0]
    with pytest.raises(ParamError, match="below the minimum"):
        apply_seed(PROMPT, -1, OBJECT_INFO)
    with pytest.raises(ParamError, match="no seed"):
        apply_seed({"5": PROMPT["5"]}, 1, OBJECT_INFO)


def test_explicit_set_wins_over_seed_and_object_info_is_fetched_once() -> None:
    calls = []

    def info():
        calls.append(1)
        return OBJECT_INFO

    out = apply_params(PROMPT, ["Sampler.seed=7"], 42, info)
    assert out["3"]["inputs"]["seed"] == 7 and out["9"]["inputs"]["value"] == 42
    assert len(calls) == 1
    assert apply_params(PROMPT, [], None, lambda: pytest.fail("not needed")) is PROMPT


# --------------------------------------------------------------------------- batch runs

import hashlib  # noqa: E402
import http.server  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from _fake_comfy import FakeComfy, FakeJob  # noqa: E402

from driver.batch import BatchJob, BatchOptions, BatchRunner, job_prompt_id  # noqa: E402
from driver.callback import CallbackSender, verify  # noqa: E402
from driver.events import BatchEvent  # noqa: E402
from driver.manifest import verify_manifest  # noqa: E402
from driver.pool import ServerPool  # noqa: E402
from driver.store import CANCELLED, FAILED, SUCCEEDED, TERMINAL, JobStore  # noqa: E402

TRIVIAL = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t/pic"}},
}


def _jobs(tmp: Path, n: int, batch: str = "b", prompt: dict | None = None) -> list[BatchJob]:
    return [
        BatchJob(
            i,
            f"{batch}-{i:04d}",
            job_prompt_id(batch, i),
            json.loads(json.dumps(prompt or TRIVIAL)),
            tmp / "out" / f"{i:04d}",
            label=f"job{i}",
        )
        for i in range(n)
    ]


def _runner(jobs, urls, store=None, queue_ttl_s: float = 0.5, on_event=None, callback=None, **options) -> BatchRunner:
    """A runner with short backoffs and client timings; ``options`` are BatchOptions fields."""
    options = {
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "ws_silence_s": 0.5,
        "poll_interval_s": 0.1,
        "reconnect_give_up_s": 5.0,
        **options,
    }
    pool = ServerPool(urls, backoff_base_s=0.05, backoff_max_s=0.2, request_timeout=3, queue_ttl_s=queue_ttl_s)
    batch_id = jobs[0].id.rsplit("-", 1)[0] if jobs else "b"
    return BatchRunner(
        jobs, pool, BatchOptions(batch_id=batch_id, **options), store=store, on_event=on_event, callback=callback
    )


def _store(tmp: Path) -> JobStore:
    return JobStore(f"sqlite:///{tmp / 'jobs.db'}")


def _executions(fake: FakeComfy) -> dict[str, int]:
    """prompt_id -> how many times the fake server started running it."""
    counts: dict[str, int] = {}
    for body in fake.posted:
        counts[body["prompt_id"]] = counts.get(body["prompt_id"], 0) + 1
    return counts


def test_batch_runs_every_job_once_with_manifests_and_records(tmp_path: Path) -> None:
    in_flight: list[int] = []
    with FakeComfy() as fake:
        orig = fake.enqueue

        def enqueue(body):
            out = orig(body)
            in_flight.append(fake.remaining())
            return out

        fake.enqueue = enqueue
        store = _store(tmp_path)
        jobs = _jobs(tmp_path, 12)
        events: list[BatchEvent] = []
        summary = _runner(jobs, [fake.url], store, concurrency=3, on_event=events.append).run()
    assert summary.exit_code == 0 and summary.succeeded == 12
    assert sorted(_executions(fake)) == sorted(j.prompt_id for j in jobs)
    assert set(_executions(fake).values()) == {1}, "each prompt posted exactly once"
    assert max(in_flight) <= 3, "never more than --concurrency prompts queued or running"
    for j in jobs:
        assert verify_manifest(j.out_dir) == []
        m = json.loads((j.out_dir / "manifest.json").read_text())
        assert m["status"] == "succeeded" and m["prompt_id"] == j.prompt_id
        data = (j.out_dir / "t" / "pic_00001_.png").read_bytes()
        assert m["outputs"][0]["sha256"] == hashlib.sha256(data).hexdigest()
        rec = store.get(j.id)
        assert [h["status"] for h in rec.history] == ["pending", "submitted", "running", "succeeded"]
        assert rec.outputs[0]["sha256"] == m["outputs"][0]["sha256"] and rec.server == fake.url
    kinds = [e.type for e in events]
    assert kinds[0] == "batch_started" and kinds[-1] == "batch_finished"
    assert kinds.count("job_finished") == 12


def test_front_priority_is_passed_to_the_server(tmp_path: Path) -> None:
    with FakeComfy() as fake:
        _runner(_jobs(tmp_path, 2), [fake.url], front=True).run()
    assert all(b.get("front") is True for b in fake.posted)


def test_transient_5xx_is_retried_with_backoff_and_never_doubles(tmp_path: Path) -> None:
    with FakeComfy() as fake:
        store = _store(tmp_path)
        jobs = _jobs(tmp_path, 1)
        events: list[BatchEvent] = []
        runner = _runner(jobs, [fake.url], store, on_event=events.append, queue_ttl_s=60)
        runner.pool.probe_all()
        fake.fail_next["/prompt"] = 2  # the next two POST /prompt answer 500
        summary = runner.run()
    assert summary.exit_code == 0
    assert _executions(fake) == {jobs[0].prompt_id: 1}
    assert [e.data["attempt"] for e in events if e.type == "job_retry"] == [1, 2]
    rec = store.get(jobs[0].id)
    assert rec.attempts == 3 and "retrying" in [h["status"] for h in rec.history]


def test_permanent_failures_are_not_retried(tmp_path: Path) -> None:
    def boom(job: FakeJob) -> None:
        job.start()
        job.node("1")
        job.fail("2", "disk full")

    with FakeComfy(boom) as fake:
        store = _store(tmp_path)
        jobs = _jobs(tmp_path, 2)
        summary = _runner(jobs, [fake.url], store).run()
        assert summary.exit_code == 1 and summary.failed == 2
        assert set(_executions(fake).values()) == {1}
        rec = store.get(jobs[0].id)
        assert rec.status == FAILED and "disk full" in rec.error and rec.attempts == 1
        assert json.loads((jobs[0].out_dir / "manifest.json").read_text())["error"].count("disk full") == 1
    with FakeComfy() as fake:
        fake.reject = (
            400,
            {
                "error": {
                    "type": "prompt_outputs_failed_validation",
                    "message": "Prompt outputs failed validation",
                    "details": "",
                    "extra_info": {},
                },
                "node_errors": {
                    "1": {
                        "class_type": "EmptyImage",
                        "dependent_outputs": ["2"],
                        "errors": [
                            {
                                "type": "value_bigger_than_max",
                                "message": "Value 99999 bigger than max of 16384",
                                "details": "width",
                                "extra_info": {"input_name": "width"},
                            }
                        ],
                    }
                },
            },
        )
        summary = _runner(_jobs(tmp_path, 1, "v"), [fake.url]).run()
        assert summary.jobs[0].status == FAILED and "width" in summary.jobs[0].error
        assert len(fake.posted) == 1


def test_ws_drop_mid_run_still_completes(tmp_path: Path) -> None:
    def dropping(job: FakeJob) -> None:
        job.start()
        job.node("1")
        job.drop_ws()
        time.sleep(0.2)
        default_scenario_rest(job)

    with FakeComfy(dropping) as fake:
        events: list[BatchEvent] = []
        summary = _runner(_jobs(tmp_path, 3), [fake.url], on_event=events.append, concurrency=1).run()
    assert summary.succeeded == 3
    assert any(e.type == "job_ws_reconnected" for e in events)
    assert set(_executions(fake).values()) == {1}


def default_scenario_rest(job: FakeJob) -> None:
    out = job.save_image("2", "pic_00001_.png", b"png " + job.prompt_id.encode(), subfolder="t")
    job.node("2", output=out)
    job.succeed()


def test_server_restart_mid_queue_every_job_ends_exactly_once(tmp_path: Path) -> None:
    ran: list[str] = []
    state = {"restarted": False}

    def scenario(job: FakeJob) -> None:
        job.start()
        job.node("1")
        if len(ran) == 3 and not state["restarted"]:
            state["restarted"] = True  # the server dies while running the 4th prompt
            job.server.restart()
            return
        ran.append(job.prompt_id)
        default_scenario_rest(job)

    with FakeComfy(scenario) as fake:
        store = _store(tmp_path)
        jobs = _jobs(tmp_path, 10)
        events: list[BatchEvent] = []
        summary = _runner(jobs, [fake.url], store, concurrency=4, on_event=events.append).run()
    assert summary.succeeded == 10
    assert sorted(ran) == sorted(j.prompt_id for j in jobs), "every job's result exactly once"
    resubmitted = [e.job for e in events if e.type == "job_resubmitted"]
    assert resubmitted and len(resubmitted) == len(set(resubmitted)), "a vanished job is resubmitted once"
    assert max(_executions(fake).values()) == 2 and set(_executions(fake)) == {j.prompt_id for j in jobs}
    for j in jobs:
        hist = [h["status"] for h in store.get(j.id).history]
        assert sum(h in TERMINAL for h in hist) == 1 and hist[-1] == SUCCEEDED


def test_a_job_that_vanishes_twice_fails_instead_of_looping(tmp_path: Path) -> None:
    def always_lost(job: FakeJob) -> None:
        job.start()
        job.server.restart()

    with FakeComfy(always_lost) as fake:
        summary = _runner(_jobs(tmp_path, 1), [fake.url]).run()
    assert summary.jobs[0].status == FAILED and "vanished" in summary.jobs[0].error
    assert _executions(fake) == {summary.jobs[0].prompt_id: 2}


def _blocking_scenario(gate: threading.Event):
    def run(job: FakeJob) -> None:
        job.start()
        job.node("1")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and job.prompt_id not in job.server.interrupts and not gate.is_set():
            time.sleep(0.02)
        if job.prompt_id in job.server.interrupts:
            job.message("execution_interrupted", {"node_id": "1", "node_type": "EmptyImage", "executed": []})
            job.finish("error")
            return
        default_scenario_rest(job)

    return run


def _wait_for(cond, timeout=10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.02)


def test_cancel_running_queued_and_unsubmitted_jobs(tmp_path: Path) -> None:
    gate = threading.Event()
    with FakeComfy(_blocking_scenario(gate)) as fake:
        store = _store(tmp_path)
        jobs = _jobs(tmp_path, 4)
        runner = _runner(jobs, [fake.url], store, concurrency=2)
        t = threading.Thread(target=runner.run)
        t.start()
        _wait_for(lambda: len(fake.running) == 1 and len(fake.pending) == 1)
        running_pid = fake.running[0].prompt_id
        queued_pid = fake.pending[0].prompt_id
        by_pid = {j.prompt_id: j for j in jobs}
        assert runner.cancel(by_pid[queued_pid].id)  # queued on the server -> /queue delete
        assert runner.cancel(jobs[3].id)  # never submitted -> never posted
        assert runner.cancel(by_pid[running_pid].id)  # running -> /interrupt with its id
        _wait_for(lambda: by_pid[running_pid].status in TERMINAL and by_pid[queued_pid].status in TERMINAL)
        gate.set()
        t.join(20)
    assert queued_pid in fake.deleted and running_pid in fake.interrupts
    assert jobs[3].prompt_id not in _executions(fake)
    statuses = {j.id: store.get(j.id).status for j in jobs}
    assert statuses[by_pid[running_pid].id] == CANCELLED and statuses[by_pid[queued_pid].id] == CANCELLED
    assert statuses[jobs[3].id] == CANCELLED
    assert sorted(statuses.values()).count(SUCCEEDED) == 1


def test_cancel_from_another_shell_through_the_job_database(tmp_path: Path) -> None:
    from driver.cli import main

    gate = threading.Event()
    db = tmp_path / "jobs.db"
    with FakeComfy(_blocking_scenario(gate)) as fake:
        store = JobStore(f"sqlite:///{db}")
        jobs = _jobs(tmp_path, 2)
        runner = _runner(jobs, [fake.url], store, concurrency=1)
        t = threading.Thread(target=runner.run)
        t.start()
        _wait_for(lambda: len(fake.running) == 1)
        assert main(["cancel", "--all", "--db", str(db)]) == 0
        t.join(20)
        gate.set()
    assert fake.running == [] or fake.interrupts
    for j in jobs:
        hist = [h["status"] for h in store.get(j.id).history]
        assert hist[-1] == CANCELLED and sum(h in TERMINAL for h in hist) == 1, hist
    assert jobs[1].prompt_id not in _executions(fake)


def test_several_servers_share_the_work_and_skip_missing_nodes_and_down_ones(tmp_path: Path) -> None:
    with FakeComfy() as a, FakeComfy() as b, FakeComfy() as lacking:
        del lacking.object_info["SaveImage"]
        dead = f"http://127.0.0.1:{_free_port()}"
        store = _store(tmp_path)
        summary = _runner(_jobs(tmp_path, 12), [dead, lacking.url, a.url, b.url], store, concurrency=4).run()
    assert summary.succeeded == 12
    assert len(lacking.posted) == 0, "a server without the node types gets nothing"
    assert len(a.posted) >= 2 and len(b.posted) >= 2, "load is spread over the capable servers"
    assert len(a.posted) + len(b.posted) == 12


def test_missing_node_types_everywhere_is_a_permanent_failure(tmp_path: Path) -> None:
    with FakeComfy() as fake:
        prompt = {**TRIVIAL, "3": {"class_type": "NoSuchNode", "inputs": {}}}
        summary = _runner(_jobs(tmp_path, 1, prompt=prompt), [fake.url]).run()
    assert summary.exit_code == 1 and "NoSuchNode" in summary.jobs[0].error and not fake.posted


def test_no_server_reachable_gives_exit_code_3(tmp_path: Path) -> None:
    summary = _runner(_jobs(tmp_path, 2), [f"http://127.0.0.1:{_free_port()}"], give_up_s=0.5).run()
    assert summary.exit_code == 3 and summary.unreachable == 2


def test_a_server_that_comes_back_is_used_again(tmp_path: Path) -> None:
    port = _free_port()
    jobs = _jobs(tmp_path, 3)
    runner = _runner(jobs, [f"http://127.0.0.1:{port}"], give_up_s=30)
    t = threading.Thread(target=runner.run)
    t.start()
    time.sleep(1.0)  # jobs wait for a server
    with FakeComfy(port=port) as fake:
        t.join(30)
    assert [j.status for j in jobs] == [SUCCEEDED] * 3 and len(fake.posted) == 3


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- callbacks


class _Receiver:
    """A webhook receiver that answers 500 `fail_first` times, then 200."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_left = fail_first
        self.calls: list[tuple[dict, bytes]] = []
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                rec.calls.append((dict(self.headers), body))
                code = 500 if rec.fail_left > 0 else 200
                rec.fail_left -= 1
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_callback_is_signed_and_retried_until_2xx(tmp_path: Path) -> None:
    rx = _Receiver(fail_first=2)
    try:
        sender = CallbackSender(rx.url, "s3cret", backoff_base_s=0.01)
        with FakeComfy() as fake:
            summary = _runner(_jobs(tmp_path, 1), [fake.url], callback=sender).run()
        assert summary.exit_code == 0
        assert len(rx.calls) == 3
        deliveries = {h["X-Comfy-Avatar-Delivery"] for h, _ in rx.calls}
        assert len(deliveries) == 1, "retries keep the delivery id"
        headers, body = rx.calls[-1]
        assert verify(body, headers["X-Comfy-Avatar-Signature"], "s3cret")
        assert not verify(body, headers["X-Comfy-Avatar-Signature"], "other")
        payload = json.loads(body)
        assert payload["status"] == "succeeded" and payload["outputs"][0]["sha256"]
        assert "s3cret" not in body.decode()
    finally:
        rx.close()


def test_callback_gives_up_after_bounded_attempts() -> None:
    rx = _Receiver(fail_first=100)
    try:
        d = CallbackSender(rx.url, "k", max_attempts=4, backoff_base_s=0.01).deliver({"x": 1})
        assert not d.ok and d.attempts == 4 and d.status == 500 and len(rx.calls) == 4
    finally:
        rx.close()


# --------------------------------------------------------------------------- CLI


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    from driver.cli import main

    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def _image_workflow(tmp: Path) -> Path:
    wf = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}, "_meta": {"title": "image"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "cli/out"}},
    }
    p = tmp / "wf.json"
    p.write_text(json.dumps(wf))
    return p


def test_cli_batch_over_images_with_json_events_status_and_list(tmp_path: Path, capsys) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for n in ("b.png", "a.png", "notes.txt"):
        (imgs / n).write_bytes(b"img " + n.encode())
    db = tmp_path / "jobs.db"
    with FakeComfy() as fake:
        code, out, _ = _cli(
            [
                "batch",
                str(_image_workflow(tmp_path)),
                "--images",
                str(imgs),
                "--out",
                str(tmp_path / "out"),
                "--server",
                fake.url,
                "--json",
                "--db",
                str(db),
                "--batch-id",
                "imgs",
            ],
            capsys,
        )
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    done = [e for e in events if e["type"] == "job_finished"]
    assert [e["label"] for e in sorted(done, key=lambda e: e["index"])] == ["a", "b"]
    assert events[-1]["type"] == "batch_finished" and events[-1]["exit_code"] == 0
    assert sorted(u["name"] for u in fake.uploads) == ["a.png", "b.png"]
    posted_images = sorted(b["prompt"]["1"]["inputs"]["image"] for b in fake.posted)
    assert posted_images == ["comfy-avatar/imgs/a.png", "comfy-avatar/imgs/b.png"]
    code, out, _ = _cli(["status", "--db", str(db), "--json"], capsys)
    assert json.loads(out)["counts"] == {"succeeded": 2}
    code, out, _ = _cli(["status", "imgs-0000", "--db", str(db)], capsys)
    assert "succeeded" in out and "sha256" in out and code == 0
    code, out, _ = _cli(["list", "--db", str(db)], capsys)
    assert out.count("succeeded") == 2


def test_cli_batch_csv_rows_set_params_and_seeds(tmp_path: Path, capsys) -> None:
    info_prompt = {
        "3": {"class_type": "KSamplerLike", "inputs": {"image": ["1", 0], "steps": 4}, "_meta": {"title": "Sampler"}},
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    }
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(info_prompt))
    rows = tmp_path / "rows.csv"
    rows.write_text("label,Sampler.steps,1.width\nfirst,2,16\nsecond,,32\n")
    with FakeComfy() as fake:
        code, _, err = _cli(
            [
                "batch",
                str(wf),
                "--csv",
                str(rows),
                "--out",
                str(tmp_path / "o"),
                "--server",
                fake.url,
                "--db",
                str(tmp_path / "j.db"),
                "--progress",
                "log",
            ],
            capsys,
        )
    assert code == 0, err
    posted = sorted(fake.posted, key=lambda b: b["prompt"]["1"]["inputs"]["width"])
    assert [b["prompt"]["3"]["inputs"]["steps"] for b in posted] == [2, 4]
    assert [b["prompt"]["1"]["inputs"]["width"] for b in posted] == [16, 32]
    assert (tmp_path / "o" / "0000-first" / "manifest.json").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--csv", "{tmp}/bad.csv"], "column 'oops'"),
        (["--images", "{tmp}/nothere"], "is not a folder"),
        (["--csv", "{tmp}/ok.csv", "--set", "Sampler.steps=lots"], "not a whole number"),
        (["--csv", "{tmp}/ok.csv", "--callback-url", "http://x/"], "COMFY_AVATAR_CALLBACK_SECRET"),
    ],
)
def test_cli_batch_usage_errors_exit_2(tmp_path: Path, capsys, monkeypatch, extra, message) -> None:
    monkeypatch.delenv("COMFY_AVATAR_CALLBACK_SECRET", raising=False)
    (tmp_path / "bad.csv").write_text("oops\n1\n")
    (tmp_path / "ok.csv").write_text("label\nx\n")
    wf = tmp_path / "wf.json"
    wf.write_text(
        json.dumps(
            {
                "3": {
                    "class_type": "KSamplerLike",
                    "inputs": {"image": ["1", 0], "steps": 4},
                    "_meta": {"title": "Sampler"},
                },
                "1": {"class_type": "EmptyImage", "inputs": {"width": 8}},
            }
        )
    )
    with FakeComfy() as fake:
        code, _, err = _cli(
            [
                "batch",
                str(wf),
                "--out",
                str(tmp_path / "o"),
                "--server",
                fake.url,
                "--db",
                str(tmp_path / "j.db"),
                *[a.format(tmp=tmp_path) for a in extra],
            ],
            capsys,
        )
        assert not fake.posted
    assert code == 2 and message in err


# --------------------------------------------------------------------------- recorded real sessions

from _fake_comfy import recorded_scenario  # noqa: E402

RECORDED = json.loads((ROOT / "tests" / "data" / "recorded" / "sessions_0.3.64.json").read_text())["sessions"]


def _replay_batch(tmp: Path, name: str, **kw):
    session = RECORDED[name]
    with FakeComfy(recorded_scenario(session)) as fake:
        fake.object_info.update({k: OBJECT_INFO[k] for k in ("PreviewImage", "ImageBlur")})
        jobs = _jobs(tmp, 1, prompt=session["prompt"])
        summary = _runner(jobs, [fake.url], **kw).run()
    return summary, fake


def test_recorded_preview_session_downloads_the_temp_output(tmp_path: Path) -> None:
    summary, fake = _replay_batch(tmp_path, "preview_image")
    job = summary.jobs[0]
    assert job.status == SUCCEEDED and len(fake.posted) == 1
    (out,) = job.files
    assert out["type"] == "temp" and out["path"].startswith("temp/")
    assert (job.out_dir / out["path"]).read_bytes() == b"recorded " + out["filename"].encode()


def test_recorded_interrupt_session_is_a_permanent_failure(tmp_path: Path) -> None:
    summary, fake = _replay_batch(tmp_path, "interrupt")
    job = summary.jobs[0]
    assert job.status == FAILED and "interrupted" in job.error
    assert len(fake.posted) == 1, "an interrupted prompt is not retried"
    assert summary.exit_code == 1


def test_recorded_queue_delete_facts_the_cancel_logic_relies_on() -> None:
    s = RECORDED["queue_delete"]
    deleted = s["deleted_prompt_id"]
    assert [deleted] == [it[1] for it in s["queue_before"]["queue_pending"]]
    assert s["queue_after"]["queue_pending"] == [] and s["deleted_history"] == {}
    assert not any(f.get("data", {}).get("prompt_id") == deleted for f in s["frames"] if not f.get("binary")), (
        "a deleted pending prompt sends nothing: the driver only sees it vanish"
    )
    kinds = [f["type"] for f in s["frames"] if not f.get("binary")]
    assert kinds.index("execution_interrupted") < len(kinds) - 1 and kinds[-1] == "executing"


def test_cli_run_applies_set_and_seed(tmp_path: Path, capsys) -> None:
    wf = tmp_path / "wf.json"
    wf.write_text(
        json.dumps(
            {
                "3": {
                    "class_type": "KSamplerLike",
                    "inputs": {"image": ["1", 0], "steps": 4},
                    "_meta": {"title": "Sampler"},
                },
                "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            }
        )
    )
    with FakeComfy() as fake:
        code, _, err = _cli(
            [
                "run",
                str(wf),
                "--out",
                str(tmp_path / "o"),
                "--server",
                fake.url,
                "--set",
                "Sampler.steps=2",
                "--set",
                "1.width=64",
                "--progress",
                "none",
            ],
            capsys,
        )
        assert code == 0, err
        assert fake.posted[0]["prompt"]["3"]["inputs"]["steps"] == 2
        assert fake.posted[0]["prompt"]["1"]["inputs"]["width"] == 64
        code, _, err = _cli(
            ["run", str(wf), "--out", str(tmp_path / "o"), "--server", fake.url, "--set", "1.width=0"], capsys
        )
    assert code == 2 and "below the minimum" in err and len(fake.posted) == 1


def test_a_batch_asks_each_server_once_per_node_class_it_needs(tmp_path: Path) -> None:
    """Not the whole /object_info (0.7-3.8 s on a loaded 0.8.0 at every batch start)."""
    from driver.convert import required_node_types

    with FakeComfy() as a, FakeComfy() as b:
        summary = _runner(_jobs(tmp_path, 8), [a.url, b.url], concurrency=4).run()
    assert summary.succeeded == 8
    for fake in (a, b):
        asked = [p for m, p in fake.requests if m == "GET" and p.startswith("/object_info")]
        assert sorted(asked) == sorted(f"/object_info/{t}" for t in required_node_types(TRIVIAL)), asked
