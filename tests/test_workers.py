"""The persistent model-worker manager (core/runtime/workers.py) against a fake model worker that
speaks the real protocol (tests/data/workers/fake_worker.py uses workers/_protocol.py)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from comfy_avatar_nodes.core.runtime.workers import (
    OFFLINE_ENV,
    FairLock,
    WorkerError,
    WorkerSpec,
    get_worker,
    shutdown_all,
    worker_env,
)

FAKE = Path(__file__).parent / "data" / "workers" / "fake_worker.py"
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process-group checks read /proc (Linux)")


def _state(pid: int) -> str | None:
    """Process state letter from /proc, None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z")  # a zombie waiting for init to reap it has already died


def group_members(pgid: int) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(d.name))
    return found


def wait_until(cond, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.fixture
def spec(tmp_path):
    yield WorkerSpec(
        name=f"fake-{tmp_path.name}",
        python=sys.executable,
        script=str(FAKE),
        start_timeout_s=30,
        idle_timeout_s=300,
        log_dir=str(tmp_path / "logs"),
        label="Fake",
    )
    shutdown_all()


def run(coro):
    return asyncio.run(coro)


def test_handshake_and_warm_reuse_across_event_loops(spec):
    w = get_worker(spec)
    first = run(w.call("echo", {"x": 1}))
    assert first["args"] == {"x": 1}
    assert w.info["ok"] and w.info["protocol"] == 1 and w.info["pid"] == first["pid"]
    assert w.info["versions"] == {"fake": "1.0"} and w.info["device"]["cuda"] is False
    assert {"echo", "sleep", "crash"} <= set(w.info["ops"])
    # ComfyUI runs each prompt in a new event loop (asyncio.run): the worker must survive that
    second = run(get_worker(spec).call("echo", {"x": 2}))
    assert second["pid"] == first["pid"] and w.starts == 1
    assert get_worker(spec) is w


def test_library_prints_go_to_the_log_not_the_protocol(spec):
    w = get_worker(spec)
    assert run(w.call("stderr", {"lines": 2})) == {"lines": 2}
    log = w.log_path.read_text()
    assert "a library print during model load lands in stderr" in log
    assert "printed to stdout by a library" in log and "child stdout line" in log and "fake stderr line 1" in log


def test_request_timeout_kills_the_group_and_the_next_job_restarts(spec):
    w = get_worker(spec)
    spawned = run(w.call("spawn"))
    pid, child = w.pid, spawned["child"]
    assert spawned["pgid"] == pid  # the worker leads its own process group
    t0 = time.monotonic()
    with pytest.raises(WorkerError) as ei:
        run(w.call("sleep", {"seconds": 60}, timeout_s=0.5))
    assert time.monotonic() - t0 < 10
    assert ei.value.kind == "timeout" and "took longer than 0.5 s" in str(ei.value)
    assert wait_until(lambda: not alive(pid) and not alive(child)), "the worker or its child survived the timeout"
    assert group_members(pid) == []
    again = run(w.call("echo"))
    assert again["pid"] != pid and w.starts == 2


def test_crash_reports_the_stderr_tail_then_restarts(spec):
    w = get_worker(spec)
    pid = run(w.call("echo"))["pid"]
    with pytest.raises(WorkerError) as ei:
        run(w.call("crash"))
    err = ei.value
    assert err.kind == "crashed" and "exit code 7" in str(err) and "'crash'" in str(err)
    assert "CUDA error: an illegal memory access (fake)" in str(err)
    assert not alive(pid)
    assert run(w.call("echo", {"after": "crash"}))["pid"] != pid


def test_error_reply_keeps_the_worker(spec):
    w = get_worker(spec)
    pid = run(w.call("echo"))["pid"]
    with pytest.raises(WorkerError) as ei:
        run(w.call("fail"))
    assert ei.value.kind == "request" and "ValueError: boom from the fake worker" in str(ei.value)
    assert "Traceback" in ei.value.detail
    with pytest.raises(WorkerError) as ei:
        run(w.call("fail", {"kind": "bad_sample"}))
    assert ei.value.response["error_kind"] == "bad_sample" and "step log line" in ei.value.detail
    with pytest.raises(WorkerError, match="unknown op 'nope'"):
        run(w.call("nope"))
    assert run(w.call("echo"))["pid"] == pid  # the same process still serves


def test_idle_shutdown_then_restart(spec):
    w = get_worker(replace(spec, idle_timeout_s=0.5))
    pid = run(w.call("echo"))["pid"]
    assert alive(pid)
    assert wait_until(lambda: w.pid is None and not alive(pid), timeout=10), "idle worker kept running"
    assert group_members(pid) == []
    assert run(w.call("echo"))["pid"] != pid


def test_busy_worker_is_not_stopped_for_idleness(spec):
    w = get_worker(replace(spec, idle_timeout_s=0.3))
    pid = run(w.call("echo"))["pid"]
    res = run(w.call("sleep", {"seconds": 1.2}))  # longer than the idle timeout
    assert res["pid"] == pid


def test_concurrent_jobs_queue_in_order(spec):
    w = get_worker(spec)

    async def three():
        return await asyncio.gather(*(w.call("sleep", {"seconds": 0.3, "tag": i}) for i in range(3)))

    results = run(three())
    assert len({r["pid"] for r in results}) == 1 and w.starts == 1
    spans = sorted((r["t0"], r["t1"], r["tag"]) for r in results)
    assert [s[2] for s in spans] == [0, 1, 2]  # FIFO
    for (_, end, _), (start, _, _) in zip(spans, spans[1:]):
        assert start >= end, "two requests ran at the same time in one worker"


def test_jobs_from_different_threads_and_loops_share_one_worker(spec):
    w = get_worker(spec)
    results, errors = [], []

    def job(i):
        try:
            results.append(asyncio.run(get_worker(spec).call("sleep", {"seconds": 0.2, "tag": i})))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 4
    assert len({r["pid"] for r in results}) == 1 and w.starts == 1
    spans = sorted((r["t0"], r["t1"]) for r in results)
    assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:]))


def test_cancelled_job_frees_the_worker(spec):
    w = get_worker(spec)
    pid = run(w.call("echo"))["pid"]

    async def cancel_mid_request():
        task = asyncio.ensure_future(w.call("sleep", {"seconds": 60}))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancel_mid_request())
    assert wait_until(lambda: not alive(pid))
    assert run(w.call("echo"))["pid"] != pid


def test_progress_events_reach_the_callback(spec):
    seen = []
    assert run(get_worker(spec).call("progress", progress=lambda f, m: seen.append((f, m)))) == {"done": True}
    assert seen == [(0.25, "step 1"), (0.5, "step 2"), (0.75, "step 3")]


def test_worker_env_is_offline_and_has_no_secrets(spec, monkeypatch, tmp_path):
    secrets = {
        "OPENAI_API_KEY": "sk-live-123",
        "HF_TOKEN": "hf_abc",
        "COMFY_AVATAR_LLM_API_KEY": "k1",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "MY_SERVICE_PASSWORD": "pw",
        "GITHUB_TOKEN": "gh",
        "DASHSCOPE_API_KEY": "ds",
        "PYTHONPATH": "/somewhere/else",
    }
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the worker is offline whatever the parent says
    hf_home = tmp_path / "hf"
    s = replace(spec, env=(("HF_HOME", str(hf_home)), ("ATTN_BACKEND", "sdpa")))
    res = run(
        get_worker(s).call(
            "env",
            {"show": ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "ATTN_BACKEND", "CUDA_VISIBLE_DEVICES"]},
        )
    )
    keys = set(res["keys"])
    assert not keys & set(secrets), f"secrets leaked into the worker: {keys & set(secrets)}"
    assert res["values"] == {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(hf_home),
        "ATTN_BACKEND": "sdpa",
        "CUDA_VISIBLE_DEVICES": "0",
    }
    values = "".join(os.environ.get(k, "") for k in keys)
    assert not any(v in values for v in ("sk-live-123", "hf_abc"))


def test_worker_env_function():
    env = worker_env(
        {"HF_HOME": "/m/hf", "EMPTY": ""},
        base={
            "PATH": "/bin",
            "HF_HOME": "/old",
            "HF_TOKEN": "x",
            "SOME_API_KEY": "y",
            "PYTHONHOME": "/p",
            "LANG": "C.UTF-8",
        },
    )
    assert env["HF_HOME"] == "/m/hf" and env["PATH"] == "/bin" and env["LANG"] == "C.UTF-8"
    assert "HF_TOKEN" not in env and "SOME_API_KEY" not in env and "PYTHONHOME" not in env and "EMPTY" not in env
    assert all(env[k] == v for k, v in OFFLINE_ENV.items())
    # a cache location from the user's shell survives when the config sets none
    assert worker_env({}, base={"HF_HOME": "/user/hf"})["HF_HOME"] == "/user/hf"


def test_shutdown_leaves_no_process_group(spec):
    w = get_worker(spec)
    child = run(w.call("spawn"))["child"]
    pid = w.pid
    assert alive(child) and set(group_members(pid)) >= {pid, child}
    w.shutdown()
    assert w.pid is None
    assert wait_until(lambda: group_members(pid) == [] and not alive(child))


def test_failed_preflight_lists_every_problem(spec):
    w = get_worker(replace(spec, args=("--fail-preflight",)))
    with pytest.raises(WorkerError) as ei:
        run(w.call("echo"))
    err = ei.value
    assert err.kind == "preflight" and [p["kind"] for p in err.problems] == ["missing_weights", "no_cuda"]
    assert "fake weights are missing" in str(err) and "no usable CUDA GPU: fake" in str(err)
    assert err.info["device"]["reason"] == "fake"
    assert w.pid is None


def test_death_before_handshake_and_start_timeout(spec):
    with pytest.raises(WorkerError) as ei:
        run(get_worker(replace(spec, args=("--crash-on-start",))).call("echo"))
    assert (
        ei.value.kind == "crashed" and "exit code 9" in str(ei.value) and "dying before the handshake" in str(ei.value)
    )
    slow = get_worker(replace(spec, name=spec.name + "-slow", args=("--slow-start", "30"), start_timeout_s=0.5))
    t0 = time.monotonic()
    with pytest.raises(WorkerError) as ei:
        run(slow.call("echo"))
    assert ei.value.kind == "start_timeout" and time.monotonic() - t0 < 10
    assert "workers.start_timeout_s" in str(ei.value)


def test_missing_python_and_bad_args(spec, tmp_path):
    with pytest.raises(WorkerError) as ei:
        run(get_worker(replace(spec, python=str(tmp_path / "nope" / "python"))).call("echo"))
    assert ei.value.kind == "start_failed" and "does not exist" in str(ei.value)
    with pytest.raises(WorkerError) as ei:
        run(get_worker(spec).call("echo", {"x": object()}))
    assert ei.value.kind == "bad_args"


def test_changed_spec_retires_the_old_worker(spec):
    old = get_worker(spec)
    pid = run(old.call("echo"))["pid"]
    new = get_worker(replace(spec, env=(("ATTN_BACKEND", "xformers"),)))
    assert new is not old
    assert wait_until(lambda: not alive(pid))
    assert run(new.call("env", {"show": ["ATTN_BACKEND"]}))["values"] == {"ATTN_BACKEND": "xformers"}


def test_fair_lock_hands_over_in_order_and_survives_cancel():
    lock = FairLock()
    order = []

    async def user(i, hold):
        async with lock:
            order.append(i)
            await asyncio.sleep(hold)

    async def main():
        first = asyncio.ensure_future(user(0, 0.2))
        await asyncio.sleep(0.01)
        doomed = asyncio.ensure_future(user(1, 0))
        rest = [asyncio.ensure_future(user(i, 0)) for i in (2, 3)]
        await asyncio.sleep(0.01)
        doomed.cancel()
        await asyncio.gather(first, *rest)
        with pytest.raises(asyncio.CancelledError):
            await doomed

    asyncio.run(main())
    assert order == [0, 2, 3] and not lock.locked()


def test_workers_run_with_the_network_unshared(spec):
    """A malicious input cannot reach the network through a model's dependencies: the worker's
    connection to a listener on 127.0.0.1 fails, and the listener receives nothing. With
    workers.isolation none (host network) the same request connects, so the listener works."""
    import socket

    from conftest import need

    from comfy_avatar_nodes.core.runtime import isolation

    bwrap, why = isolation.check_net(spec.bwrap)
    need(bwrap is not None, f"bubblewrap cannot unshare the network here: {why}")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(5)
    port = srv.getsockname()[1]
    try:
        res = run(get_worker(spec).call("connect", {"port": port}))
        assert res["connected"] is False and "refused" in res["error"].lower(), res
        srv.settimeout(0.3)
        with pytest.raises(OSError):
            srv.accept()  # nothing arrived
        host = run(
            get_worker(replace(spec, name=spec.name + "-host", isolation="none")).call("connect", {"port": port})
        )
        assert host["connected"] is True
        conn, _ = srv.accept()
        assert conn.recv(100) == b"from the worker"
        conn.close()
    finally:
        srv.close()
