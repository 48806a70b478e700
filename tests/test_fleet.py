"""Fleet mode against a real RabbitMQ (Debian rabbitmq-server, started here on 127.0.0.1 with its
own ports, node name and data dir) and worker processes, with the fake ComfyUI for scale:

- one job through `comfy-avatar submit` and a worker, followed from another process with
  `status --follow`;
- 2 workers x 2 ComfyUI x 200 jobs (job records in a real PostgreSQL): 0 lost, 0 duplicated;
- a worker SIGKILLed mid-job: the job is redelivered and runs once (the next worker finds the
  prompt on the dead worker's ComfyUI and adopts it);
- the broker restarted mid-batch: nothing lost, nothing run twice;
- a high-priority job behind 50 normal ones starts next;
- a job longer than twice the heartbeat interval runs once, on one connection;
- transient failures retried through the TTL queues, permanent ones dead-lettered and listed;
- `comfy-avatar cancel` reaching the worker that holds the job;
- worker metrics.

Each test has its own queue names (a prefix) on the session's broker.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from _fleet_helpers import ROOT, Fleet, broker_fixture, executions, fake_comfy, slow_scenario, trivial_prompt
from _rabbitmq import RabbitServer
from test_driver_store import postgres_url  # noqa: F401 - the fixture

from driver.store import CANCELLED, FAILED, SUCCEEDED

pytest.importorskip("pika", reason="pika is not installed (pip install -e .[fleet])")


broker = broker_fixture()


@pytest.fixture
def fleet(broker, tmp_path):
    f = Fleet(broker.url, tmp_path)
    yield f
    f.close()


def _cli(fleet: Fleet, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driver", *args],
        cwd=ROOT,
        env=fleet.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _wait(cond, timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _depth(broker: RabbitServer, queue: str) -> tuple[int, int]:
    return broker.queue_depths().get(queue, (0, 0))


# -- one job, end to end through the CLI ---------------------------------------------------------------


def test_submit_worker_and_follow_from_another_process(fleet: Fleet, tmp_path: Path) -> None:
    with fake_comfy(scenario=slow_scenario(0.05)) as fake:
        wf = tmp_path / "wf.api.json"
        wf.write_text(json.dumps(trivial_prompt("cli", steps=20)))
        sub = _cli(fleet, "submit", str(wf), "--priority", "high", "--label", "first")
        assert sub.returncode == 0, sub.stderr
        job_id = sub.stdout.strip()
        assert re.fullmatch(r"[0-9a-f]{32}", job_id)
        rec = fleet.store.get(job_id)
        assert rec.status == "pending" and rec.batch_id == "fleet" and rec.params["fleet"]["priority"] == "high"
        follower = subprocess.Popen(
            [sys.executable, "-m", "driver", "status", job_id, "--follow", "--progress", "log"],
            cwd=ROOT,
            env=fleet.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)  # the follower binds its queue before the job starts
        fleet.worker(fake.url)
        out, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, err + fleet.logs()
        # the same lines a local `comfy-avatar run --progress log` prints, from the worker's events
        assert re.search(r"\[\w{8}\] \[\d/3\] node 2 KSamplerLike \"sampler\"", err), err
        assert "step 20/20" in err and "finished (success)" in err, err
        assert f"job {job_id}: succeeded" in err
        rec = fleet.store.get(job_id)
        assert rec.status == SUCCEEDED and rec.server == fake.url
        out_file = Path(rec.outputs[0]["path"])
        assert out.strip() == str(out_file) and out_file.is_file()
        manifest = json.loads((fleet.out / job_id / "manifest.json").read_text())
        assert manifest["outputs"][0]["sha256"] == rec.outputs[0]["sha256"] and manifest["worker"] == "w1"
        assert executions(fake) == {rec.prompt_id: 1}
        # following a finished job answers at once from the record
        again = _cli(fleet, "status", job_id, "--follow", "--progress", "none")
        assert again.returncode == 0 and "succeeded" in again.stderr


# -- scale: 2 workers x 2 ComfyUI x 200 jobs --------------------------------------------------------------


def test_two_workers_two_servers_200_jobs_none_lost_none_twice(broker, tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    fleet = Fleet(broker.url, tmp_path, db=postgres_url)
    try:
        with fake_comfy() as fake1, fake_comfy() as fake2:
            fleet.worker(fake1.url, "w1", concurrency=2)
            fleet.worker(fake2.url, "w2", concurrency=2)
            t0 = time.monotonic()
            ids = [fleet.submit(trivial_prompt(f"s{i}"), label=f"s{i}") for i in range(200)]
            t_submit = time.monotonic() - t0
            status = fleet.wait_terminal(ids, timeout=240)
            wall = time.monotonic() - t0
            counts = executions(fake1, fake2)
        assert set(status.values()) == {SUCCEEDED}, {s for s in status.values()} and fleet.logs()
        pids = {fleet.store.get(j).prompt_id for j in ids}
        assert set(counts) == pids, "every job ran"
        assert set(counts.values()) == {1}, "no job ran twice"
        by_worker = {
            w: sum(1 for j in ids if fleet.store.get(j).server == url)
            for w, url in (("w1", fake1.url), ("w2", fake2.url))
        }
        assert all(n > 20 for n in by_worker.values()), by_worker
        assert _depth(broker, fleet.settings.jobs_queue) == (0, 0)
        print(f"\n200 jobs: submitted in {t_submit:.1f} s, all done in {wall:.1f} s; per worker {by_worker}")
    finally:
        fleet.close()


# -- a worker SIGKILLed mid-job ---------------------------------------------------------------------------


def test_worker_killed_mid_job_runs_once(fleet: Fleet) -> None:
    with fake_comfy(scenario=slow_scenario(0.1)) as fake1, fake_comfy() as fake2:
        a = fleet.worker(fake1.url, "a")
        job = fleet.submit(trivial_prompt("kill", steps=40))  # ~4 s on fake1
        pid = fleet.store.get(job).prompt_id
        _wait(lambda: any(j.prompt_id == pid for j in fake1.running), 30, "the job to run on fake1")
        time.sleep(0.5)
        a.kill()
        fleet.worker(fake2.url, "b")  # another box picks the redelivery up
        assert fleet.wait_terminal([job], 60)[job] == SUCCEEDED, fleet.logs()
        assert executions(fake1, fake2) == {pid: 1}, "posted once, to the first box only"
        rec = fleet.store.get(job)
        assert rec.server == fake1.url, "the result was taken from the server that ran it"
        assert "adopted from" in rec.history[-1]["detail"]
        assert [h["status"] for h in rec.history].count("running") == 2
        assert Path(rec.outputs[0]["path"]).is_file()


# -- the broker restarted mid-batch -----------------------------------------------------------------------


def test_broker_restart_mid_batch_loses_nothing(broker, fleet: Fleet) -> None:
    with fake_comfy(scenario=slow_scenario(0.02)) as fake1, fake_comfy(scenario=slow_scenario(0.02)) as fake2:
        fleet.worker(fake1.url, "w1", concurrency=2)
        fleet.worker(fake2.url, "w2", concurrency=2)
        ids: list[str] = []
        errors: list[BaseException] = []

        def submitter() -> None:
            try:
                for i in range(40):
                    ids.append(fleet.submit(trivial_prompt(f"r{i}", steps=10)))
                    time.sleep(0.1)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        t = threading.Thread(target=submitter)
        t.start()
        _wait(lambda: len(ids) >= 15, 60, "15 submissions")
        broker.restart()  # ~10-20 s down
        t.join(180)
        assert not errors, errors
        status = fleet.wait_terminal(ids, timeout=180)
        counts = executions(fake1, fake2)
    assert len(ids) == 40
    assert set(status.values()) == {SUCCEEDED}, fleet.logs()
    pids = {fleet.store.get(j).prompt_id for j in ids}
    assert set(counts) == pids and set(counts.values()) == {1}, counts
    assert "reconnecting" in fleet.logs()


# -- priority ----------------------------------------------------------------------------------------------


def test_high_priority_job_behind_50_normal_starts_next(fleet: Fleet) -> None:
    # the first job holds the worker for ~1 s while the rest queue up; the others are quick
    with fake_comfy(scenario=slow_scenario(0.05)) as fake:
        fleet.worker(fake.url, "w1", concurrency=1)
        normal = [fleet.submit(trivial_prompt(f"n{i}", steps=20 if i == 0 else 0)) for i in range(50)]
        first = fleet.store.get(normal[0]).prompt_id
        _wait(lambda: any(j.prompt_id == first for j in fake.running), 30, "the first normal job to run")
        high = fleet.submit(trivial_prompt("high"), priority="high")
        status = fleet.wait_terminal([*normal, high], timeout=120)
        order = [b["prompt_id"] for b in fake.posted]
    assert set(status.values()) == {SUCCEEDED}
    high_pid = fleet.store.get(high).prompt_id
    assert order.index(high_pid) <= 2, f"high-priority job started as number {order.index(high_pid) + 1} of 51"


# -- heartbeats while a long job runs ------------------------------------------------------------------------


def test_job_longer_than_two_heartbeats_runs_once(fleet: Fleet) -> None:
    with fake_comfy(scenario=slow_scenario(0.5)) as fake:
        w = fleet.worker(fake.url, "hb", COMFY_AVATAR__FLEET__HEARTBEAT_S="1")
        job = fleet.submit(trivial_prompt("long", steps=9))  # 4.5 s > 2 x 1 s heartbeat
        assert fleet.wait_terminal([job], 60)[job] == SUCCEEDED, fleet.logs()
        time.sleep(1.0)
        assert executions(fake) == {fleet.store.get(job).prompt_id: 1}
    rec = fleet.store.get(job)
    assert rec.attempts == 1 and [h["status"] for h in rec.history].count("running") == 1
    assert rec.duration_s and rec.duration_s >= 4.0, rec.duration_s
    assert "reconnecting" not in w.log() and "redelivered" not in w.log(), w.log()[-3000:]


# -- retries and the dead-letter queue --------------------------------------------------------------------


def test_transient_failures_retried_through_the_broker_permanent_ones_dead_lettered(broker, fleet: Fleet) -> None:
    def scenario(job):
        if job.prompt["9"]["inputs"]["filename_prefix"].endswith("boom"):
            job.start()
            job.node("1")
            return job.fail("9", "disk on fire", "OSError")
        return slow_scenario(0)(job)

    with fake_comfy(scenario=scenario) as fake:
        fake.fail_next["/prompt"] = 2  # the first two POST /prompt answer HTTP 500
        fleet.worker(fake.url, "w1")
        ok = fleet.submit(trivial_prompt("flaky"))
        assert fleet.wait_terminal([ok], 60)[ok] == SUCCEEDED, fleet.logs()
        bad = fleet.submit(trivial_prompt("boom"), label="boom")
        assert fleet.wait_terminal([bad], 60)[bad] == FAILED, fleet.logs()
    rec = fleet.store.get(ok)
    assert [h["status"] for h in rec.history].count("retrying") == 2
    assert all("retry in" in h["detail"] for h in rec.history if h["status"] == "retrying")
    dead = fleet.store.get(bad)
    assert "disk on fire" in (dead.error or "") and "dead-lettered (JobFailed:OSError)" in dead.history[-1]["detail"]
    assert dead.attempts == 1, "a node exception is not retried"
    assert _depth(broker, fleet.settings.dead_queue)[0] == 1
    listed = _cli(fleet, "list", "--dead")
    assert listed.returncode == 0, listed.stderr
    assert bad in listed.stdout and "JobFailed:OSError" in listed.stdout and "disk on fire" in listed.stdout
    as_json = [json.loads(line) for line in _cli(fleet, "list", "--dead", "--json").stdout.splitlines()]
    assert [d["job_id"] for d in as_json] == [bad]
    assert _depth(broker, fleet.settings.dead_queue)[0] == 1, "listing does not consume the DLQ"


def test_bad_parameters_go_to_the_dead_letter_queue_without_running(fleet: Fleet) -> None:
    with fake_comfy() as fake:
        fleet.worker(fake.url, "w1")
        job = fleet.submit(trivial_prompt("x"), sets=["1.width=-5"])  # EmptyImage width min 1
        assert fleet.wait_terminal([job], 60)[job] == FAILED
        assert fake.posted == []
    assert "width" in (fleet.store.get(job).error or "")


# -- cancel -----------------------------------------------------------------------------------------------


def test_cancel_reaches_the_worker_holding_the_job(broker, fleet: Fleet) -> None:
    def interruptible(job):
        job.start()
        job.node("1")
        job.server.last_node_id = "2"
        job.send("executing", {"node": "2", "display_node": "2", "prompt_id": job.prompt_id})
        deadline = time.monotonic() + 30
        while job.prompt_id not in job.server.interrupts and time.monotonic() < deadline:
            time.sleep(0.05)
        job.message("execution_interrupted", {"node_id": "2", "node_type": "KSamplerLike", "executed": ["1"]})
        job.finish("error")

    with fake_comfy(scenario=interruptible) as fake:
        fleet.worker(fake.url, "w1")
        job = fleet.submit(trivial_prompt("cancel", steps=5))
        pid = fleet.store.get(job).prompt_id
        _wait(lambda: any(j.prompt_id == pid for j in fake.running), 30, "the job to run")
        cp = _cli(fleet, "cancel", job)
        assert cp.returncode == 0 and "cancelled" in cp.stdout, cp.stderr
        _wait(lambda: pid in fake.interrupts, 20, "the interrupt")
        _wait(lambda: _depth(broker, fleet.settings.jobs_queue) == (0, 0), 20, "the message to be acked")
    assert fleet.store.get(job).status == CANCELLED
    assert "cancelled" in fleet.logs()


# -- worker metrics -------------------------------------------------------------------------------------------


def test_worker_metrics(fleet: Fleet) -> None:
    from driver.local import free_port

    port = free_port()
    with fake_comfy() as fake:
        fleet.worker(fake.url, "m1", extra=["--metrics-port", str(port)])
        ids = [
            fleet.submit(trivial_prompt(f"m{i}", steps=2), workflow_name="workflows/trivial.api.json") for i in range(3)
        ]
        assert set(fleet.wait_terminal(ids, 60).values()) == {SUCCEEDED}
        _wait(
            lambda: (
                'comfy_avatar_worker_jobs_total{outcome="succeeded",priority="normal",workflow="trivial"} 3.0'
                in _scrape(port)
            ),
            10,
            "3 jobs counted",
        )
        text = _scrape(port)
    assert "comfy_avatar_worker_broker_connected 1.0" in text
    assert 'comfy_avatar_worker_node_duration_seconds_count{node_type="KSamplerLike"} 3.0' in text
    assert 'comfy_avatar_queue_depth{queue="' + fleet.settings.jobs_queue + '"}' in text
    assert "comfy_avatar_worker_concurrency 1.0" in text


def _scrape(port: int) -> str:
    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return ""
