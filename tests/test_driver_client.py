"""ComfyClient against the in-process fake ComfyUI (tests/_fake_comfy.py): a real HTTP +
websocket server replaying ComfyUI 0.3.64's message sequences, including the ones
recorded from the real server (tests/data/comfyui_recorded/)."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from _fake_comfy import FakeComfy, FakeJob, load_recorded, recorded_scenario

from driver import events as ev
from driver.client import ComfyClient, JobResult, OutputFile
from driver.errors import DriverError, JobFailed, JobInterrupted, JobLost, JobTimeout, PromptRejected, ServerUnreachable
from driver.events import JobTracker, parse_frame

PROMPT = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        "_meta": {"title": "Blank"},
    },
    "2": {"class_type": "KSamplerLike", "inputs": {"image": ["1", 0], "steps": 3}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "out/pic"}},
}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def _full_run(job: FakeJob, *, preview: bytes | None = None, history_delay: float = 0.0) -> None:
    job.start()
    job.node("1")
    job.node("2", steps=3, preview=preview)
    job.node("3", output=job.save_image("3", "pic_00001_.png", PNG, subfolder="out"))
    job.succeed(history_delay=history_delay)


def _client(fake: FakeComfy, **kw) -> ComfyClient:
    kw.setdefault("ws_silence_s", 5.0)
    kw.setdefault("poll_interval_s", 0.2)
    return ComfyClient(fake.url, **kw)


class Recorder:
    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.snapshots: list[tuple[str, int, int, tuple | None]] = []

    def __call__(self, event: ev.Event, job: JobTracker) -> None:
        self.events.append(event)
        self.snapshots.append((event.type, job.nodes_done, job.total, job.step))

    def types(self) -> list[str]:
        return [e.type for e in self.events]


def test_happy_path_progress_events_and_download(tmp_path: Path) -> None:
    big_preview = bytes(3 * 1024 * 1024)  # 3 MiB binary frame: above common ws frame limits
    with FakeComfy(lambda job: _full_run(job, preview=big_preview)) as fake, _client(fake) as client:
        rec = Recorder()
        result = client.run(PROMPT, on_event=rec)
        paths = client.download(result, tmp_path / "out")

    # websocket connected before the prompt was posted (nothing is buffered otherwise)
    assert fake.requests.index(("GET", "/ws")) < fake.requests.index(("POST", "/prompt"))
    assert fake.posted[0]["prompt_id"] == result.prompt_id and fake.posted[0]["client_id"] == client.client_id

    types = rec.types()
    assert types[0] == ev.SUBMITTED
    for t in ("execution_start", "execution_cached", "executing", "progress", "executed", "execution_success"):
        assert t in types
    # the step bar saw 1/3, 2/3, 3/3 on node 2; the overall bar ends at 3/3 nodes
    steps = [s[3] for s in rec.snapshots if s[0] == "progress"]
    assert steps == [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]
    assert rec.snapshots[-1][1:3] == (3, 3)
    # binary preview frames were parsed by their type header, not taken for JSON
    previews = [e for e in rec.events if e.type == "preview"]
    assert (
        len(previews) == 3
        and previews[0].data["format"] == "png"
        and len(previews[0].data["image"]) == len(big_preview)
    )

    assert result.status == "success"
    assert result.outputs == [OutputFile("3", "images", "pic_00001_.png", "out", "output")]
    assert set(result.timings) == {"1", "2", "3"}
    assert [m[0] for m in result.messages] == ["execution_start", "execution_cached", "execution_success"]
    assert paths == [(tmp_path / "out" / "out" / "pic_00001_.png").resolve()]
    assert paths[0].read_bytes() == PNG
    assert not list((tmp_path / "out").rglob("*.part"))


def test_recorded_real_session_replayed_frame_by_frame(tmp_path: Path) -> None:
    sessions = load_recorded()["sessions"]
    rec_prompt = sessions["success"]["history"][sessions["success"]["prompt_id"]]["prompt"][2]
    with FakeComfy(recorded_scenario(sessions["success"])) as fake, _client(fake) as client:
        rec = Recorder()
        result = client.run(rec_prompt, on_event=rec)
        paths = client.download(result, tmp_path)
    assert result.outputs == [OutputFile("2", "images", "empty_00001_.png", "rec", "output")]
    assert rec.snapshots[-1][1:3] == (2, 2)
    assert paths[0].read_bytes() == b"recorded empty_00001_.png"


def test_success_before_history_is_not_the_end(tmp_path: Path) -> None:
    """ComfyUI sends execution_success before writing /history; a client that stops
    there reads an empty history. The fake delays the write by 2 s."""
    with FakeComfy(lambda job: _full_run(job, history_delay=2.0)) as fake, _client(fake) as client:
        t0 = time.monotonic()
        result = client.run(PROMPT)
    assert time.monotonic() - t0 >= 2.0
    assert [o.filename for o in result.outputs] == ["pic_00001_.png"]


def test_cached_nodes_count_as_done_and_outputs_come_from_history() -> None:
    def cached(job: FakeJob) -> None:
        job.start(cached=["1", "2", "3"])
        # ComfyUI resends `executed` for cached OUTPUT nodes only
        job.cached_output("3", job.save_image("3", "pic_00001_.png", PNG, subfolder="out"))
        job.succeed()

    with FakeComfy(cached) as fake, _client(fake) as client:
        rec = Recorder()
        result = client.run(PROMPT, on_event=rec)
    assert result.cached == ["1", "2", "3"]
    assert rec.snapshots[-1][1:3] == (3, 3)
    assert len(result.outputs) == 1 and result.timings == {}


def test_execution_error_raises_job_failed_with_node_message() -> None:
    def boom(job: FakeJob) -> None:
        job.start()
        job.node("1")
        job.node("2")
        job.fail("2", "steps must be positive", "ValueError")

    with FakeComfy(boom) as fake, _client(fake) as client, pytest.raises(JobFailed) as info:
        client.run(PROMPT)
    err = info.value
    assert (err.node_id, err.node_type, err.exception_type) == ("2", "KSamplerLike", "ValueError")
    assert err.exception_message == "steps must be positive"
    assert "node 2 (KSamplerLike)" in str(err) and "steps must be positive" in str(err)
    assert err.result.status == "error" and "1" in err.result.timings
    assert not err.transient


def test_interrupted_prompt_raises_job_interrupted() -> None:
    def stopped(job: FakeJob) -> None:
        job.start()
        job.node("1")
        job.message("execution_interrupted", {"node_id": "1", "node_type": "EmptyImage", "executed": []})
        job.finish("error")

    with FakeComfy(stopped) as fake, _client(fake) as client, pytest.raises(JobInterrupted, match="interrupted"):
        client.run(PROMPT)


def test_validation_error_400_is_readable() -> None:
    recorded = load_recorded()["sessions"]["validation_error"]
    with FakeComfy() as fake, _client(fake) as client:
        fake.reject = (400, recorded["post_body"])
        with pytest.raises(PromptRejected) as info:
            client.run(PROMPT)
    text = str(info.value)
    assert "Prompt outputs failed validation" in text
    assert "node 1 (EmptyImage) input 'width': Value 0 smaller than min of 1 (got 0) [value_smaller_than_min]" in text
    assert "node 2 (SaveImage) input 'filename_prefix': Required input is missing [required_input_missing]" in text
    assert [(e.node_id, e.input_name) for e in info.value.node_errors] == [("1", "width"), ("2", "filename_prefix")]


def test_unknown_node_type_400_names_the_node() -> None:
    with FakeComfy() as fake, _client(fake) as client, pytest.raises(PromptRejected) as info:
        client.submit({"7": {"class_type": "NoSuchNode", "inputs": {}}})
    assert "NoSuchNode does not exist" in str(info.value) and "Node ID '#7'" in str(info.value)
    assert "custom node pack" in str(info.value)


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_unreachable_server_names_url_and_fix() -> None:
    url = _dead_url()
    client = ComfyClient(url)
    for call in (lambda: client.run(PROMPT), client.object_info, client.queue):
        with pytest.raises(ServerUnreachable) as info:
            call()
        assert url in str(info.value) and "--local" in str(info.value) and "connection refused" in str(info.value)
        assert info.value.transient


def test_ws_dropped_mid_run_reconnects_with_same_id_and_completes(tmp_path: Path) -> None:
    def dropping(job: FakeJob) -> None:
        job.start()
        job.node("1")
        job.node("2", steps=1)
        job.drop_ws()  # network fault during node 2
        time.sleep(0.5)  # client reconnects meanwhile -> replay without prompt_id
        job.node("3", output=job.save_image("3", "pic_00001_.png", PNG, subfolder="out"))
        job.succeed()

    with FakeComfy(dropping) as fake, _client(fake) as client:
        rec = Recorder()
        result = client.run(PROMPT, on_event=rec)
        paths = client.download(result, tmp_path)
    assert fake.ws_connects == [client.client_id, client.client_id]
    types = rec.types()
    assert ev.WS_DROPPED in types and ev.WS_RECONNECTED in types
    after = rec.events[types.index(ev.WS_RECONNECTED) :]
    # the replayed `executing {node}` (no prompt_id) was recognised as ours
    assert any(e.type == "executing" and e.data == {"node": "2"} and e.prompt_id == result.prompt_id for e in after)
    assert result.status == "success" and paths[0].read_bytes() == PNG


def test_ws_dropped_and_job_finishes_while_disconnected() -> None:
    """All final messages are lost; the resync after reconnecting finds /history."""
    gate = threading.Event()

    def dropping(job: FakeJob) -> None:
        job.start()
        job.node("1")
        job.drop_ws()
        job.server.sockets.pop(job.client_id, None)
        job.client_id = None  # every later message goes nowhere
        job.node("2")
        job.node("3", output=job.save_image("3", "pic_00001_.png", PNG, subfolder="out"))
        job.succeed()
        gate.set()

    with FakeComfy(dropping) as fake, _client(fake) as client:
        result = client.run(PROMPT)
    assert gate.is_set() and result.status == "success" and len(result.outputs) == 1


def test_silent_websocket_falls_back_to_history_polling() -> None:
    def silent(job: FakeJob) -> None:
        job.client_id = None  # server that stopped delivering ws events
        _full_run(job)

    with FakeComfy(silent) as fake, _client(fake, ws_silence_s=0.3, poll_interval_s=0.1) as client:
        rec = Recorder()
        result = client.run(PROMPT, on_event=rec, timeout=10)
    assert ev.HISTORY_POLL in rec.types()
    assert result.status == "success" and [o.filename for o in result.outputs] == ["pic_00001_.png"]


def test_messages_of_other_prompts_are_ignored() -> None:
    def mixed(job: FakeJob) -> None:
        job.start()
        other = {
            "node": "9",
            "display_node": "9",
            "prompt_id": "someone-else",
            "output": {"images": [{"filename": "x.png", "subfolder": "", "type": "output"}]},
        }
        job.send("executed", other)
        job.send("executing", {"node": None, "prompt_id": "someone-else"})
        job.send(
            "execution_error",
            {
                "prompt_id": "someone-else",
                "node_id": "9",
                "node_type": "X",
                "exception_message": "not ours",
                "exception_type": "E",
            },
        )
        _full_run_rest(job)

    def _full_run_rest(job: FakeJob) -> None:
        job.node("1")
        job.node("2")
        job.node("3", output=job.save_image("3", "pic_00001_.png", PNG, subfolder="out"))
        job.succeed()

    with FakeComfy(mixed) as fake, _client(fake) as client:
        result = client.run(PROMPT)
    assert [o.filename for o in result.outputs] == ["pic_00001_.png"]


def test_server_restart_resubmits_once_under_the_same_prompt_id() -> None:
    attempts: list[str] = []

    def restarting(job: FakeJob) -> None:
        attempts.append(job.prompt_id)
        if len(attempts) == 1:
            job.start()
            job.node("1")
            job.server.restart()  # queue, history and sockets gone
            return
        _full_run(job)

    with FakeComfy(restarting) as fake, _client(fake, ws_silence_s=0.3, poll_interval_s=0.1) as client:
        rec = Recorder()
        result = client.run(PROMPT, on_event=rec, timeout=20)
    assert attempts == [result.prompt_id, result.prompt_id]
    assert [b["prompt_id"] for b in fake.posted] == [result.prompt_id] * 2
    assert ev.RESUBMITTED in rec.types() and result.status == "success"


def test_lost_prompt_without_resubmission_raises_job_lost() -> None:
    def restarting(job: FakeJob) -> None:
        job.start()
        job.server.restart()

    with (
        FakeComfy(restarting) as fake,
        _client(fake, ws_silence_s=0.3, poll_interval_s=0.1) as client,
        pytest.raises(JobLost) as info,
    ):
        client.run(PROMPT, resubmit_lost=0, timeout=20)
    assert info.value.transient and len(fake.posted) == 1


def test_timeout_cancels_the_prompt() -> None:
    release = threading.Event()

    def slow(job: FakeJob) -> None:
        job.start()
        job.node("1")
        release.wait(10)

    with FakeComfy(slow) as fake, _client(fake) as client:
        with pytest.raises(JobTimeout) as info:
            client.run(PROMPT, timeout=0.5)
        release.set()
    pid = info.value.prompt_id
    assert fake.interrupts == [pid] and fake.deleted == [pid]
    assert "0.5 s" in str(info.value)


def test_wait_follows_an_already_submitted_prompt() -> None:
    with FakeComfy(_full_run) as fake, _client(fake) as client:
        pid = client.submit(PROMPT, "my-own-id")
        result = client.wait(pid, prompt=PROMPT, timeout=10)
    assert result.prompt_id == "my-own-id" and len(result.outputs) == 1


def test_download_never_escapes_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    out.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    evil = [
        OutputFile("1", "images", "../../evil.png", "", "output"),
        OutputFile("1", "images", "/etc/passwd", "../../..", "output"),
        OutputFile("1", "images", "a.png", "../../x/..", "../temp"),
        OutputFile("1", "images", "..", "..", "output"),
    ]
    with FakeComfy() as fake, _client(fake) as client:
        for f in evil:
            fake.files[(f.type, f.subfolder, f.filename)] = b"data " + f.filename.encode()
        paths = client.download(evil, out)
        with pytest.raises(DriverError, match="outside"):
            fake.files[("output", "link", "x.png")] = b"x"
            client.download([OutputFile("1", "images", "x.png", "link", "output")], out)
    root = out.resolve()
    assert len(paths) == 4 and all(p.resolve().is_relative_to(root) for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "outside"]
    assert list(outside.iterdir()) == []
    assert paths[0] == root / "evil.png" and paths[0].read_bytes() == b"data ../../evil.png"
    assert paths[2] == root / "_temp" / "x" / "a.png" and paths[3] == root / "_"


def test_download_of_missing_file_leaves_no_partial(tmp_path: Path) -> None:
    with FakeComfy() as fake, _client(fake) as client, pytest.raises(DriverError, match="HTTP 404"):
        client.download([OutputFile("3", "images", "gone.png")], tmp_path)
    assert list(tmp_path.rglob("*")) == []


def test_upload_and_queue_helpers(tmp_path: Path) -> None:
    src = tmp_path / "photo.png"
    src.write_bytes(PNG)
    with FakeComfy() as fake, _client(fake) as client:
        up = client.upload(src, subfolder="comfy-avatar")
        assert (up.name, up.subfolder, up.ref) == ("photo.png", "comfy-avatar", "comfy-avatar/photo.png")
        assert fake.uploads[0]["data"] == PNG
        with pytest.raises(DriverError, match="does not exist"):
            client.upload(tmp_path / "missing.png")
        client.interrupt("abc")
        client.delete_pending(["p1", "p2"])
        assert fake.interrupts == ["abc"] and fake.deleted == ["p1", "p2"]
        assert client.queue() == {"queue_running": [], "queue_pending": []}
        assert client.queue_remaining() == 0
        assert "EmptyImage" in client.object_info() and list(client.object_info("SaveImage")) == ["SaveImage"]
        assert client.history("unknown") == {}
        client.submit(PROMPT, "front-id", front=True)
    assert fake.posted[-1]["front"] is True


def test_parse_frame_binary_types_and_garbage() -> None:
    png = parse_frame(struct.pack(">II", 1, 2) + b"IMG")
    assert png is not None and png.type == "preview" and png.data["format"] == "png" and png.data["image"] == b"IMG"
    node = b"12"
    text = parse_frame(struct.pack(">II", 3, len(node)) + node + "läuft".encode())
    assert text is not None and text.data == {"node": "12", "text": "läuft"}
    meta = json.dumps({"prompt_id": "p", "node_id": "4", "image_type": "image/png"}).encode()
    withmeta = parse_frame(struct.pack(">II", 4, len(meta)) + meta + b"IMG")
    assert withmeta is not None and withmeta.prompt_id == "p" and withmeta.data["node"] == "4"
    assert parse_frame(b"\x00") is None and parse_frame("not json") is None and parse_frame("[1]") is None
    msg = parse_frame('{"type": "executing", "data": {"node": "3", "prompt_id": "p"}}')
    assert msg is not None and (msg.type, msg.prompt_id) == ("executing", "p")


def test_tracker_on_recorded_reconnect_ignores_replay_until_known_running() -> None:
    rec = load_recorded()["reconnect"]
    job = JobTracker(rec["prompt_id"], rec["prompt"])
    for f in rec["before"]:
        job.apply(parse_frame(json.dumps(f)))
    replay = [f for f in rec["after_reconnect"] if f["type"] == "executing" and "prompt_id" not in f["data"]]
    assert replay == [{"type": "executing", "data": {"node": "2"}}]  # what ComfyUI really sends
    assert job.apply(parse_frame(json.dumps(replay[0]))) is False  # no prompt_id: not taken blindly
    for f in rec["after_reconnect"]:
        job.apply(parse_frame(json.dumps(f)))
    assert job.done and job.nodes_done == 3 and "3" in job.ui_outputs


def test_job_result_to_dict_is_json() -> None:
    r = JobResult("p", "success", [OutputFile("1", "images", "a.png")], {"1": 0.5}, [])
    assert json.loads(json.dumps(r.to_dict()))["outputs"][0]["filename"] == "a.png"


def test_transient_http_errors_while_polling_are_retried() -> None:
    def silent(job: FakeJob) -> None:
        job.client_id = None
        _full_run(job)

    with FakeComfy(silent) as fake, _client(fake, ws_silence_s=0.2, poll_interval_s=0.1) as client:
        fake.fail_next["/history/"] = 2  # two HTTP 500 answers, then normal service
        result = client.run(PROMPT, timeout=20)
    assert result.status == "success" and fake.fail_next["/history/"] == 0


def test_server_gone_for_good_raises_unreachable_after_give_up() -> None:
    stop = threading.Event()

    def vanish(job: FakeJob) -> None:
        job.start()
        job.node("1")
        stop.set()

    fake = FakeComfy(vanish).__enter__()
    client = _client(fake, reconnect_give_up_s=1.0)
    threading.Thread(target=lambda: (stop.wait(5), fake.__exit__(None, None, None)), daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(ServerUnreachable) as info:
        client.run(PROMPT, timeout=30)
    assert time.monotonic() - t0 < 15 and fake.url in str(info.value)


def test_one_client_follows_one_prompt_at_a_time() -> None:
    release = threading.Event()

    def slow(job: FakeJob) -> None:
        job.start()
        release.wait(10)
        job.node("3", output=job.save_image("3", "pic_00001_.png", PNG, subfolder="out"))
        job.succeed()

    with FakeComfy(slow) as fake, _client(fake) as client:
        first: dict = {}
        t = threading.Thread(target=lambda: first.setdefault("r", client.run(PROMPT, timeout=20)))
        t.start()
        while not fake.posted:
            time.sleep(0.01)
        with pytest.raises(DriverError, match="one ComfyClient"):
            client.run(PROMPT)
        release.set()
        t.join(20)
    assert first["r"].status == "success" and len(fake.posted) == 1


def test_websocket_private_recv_contract() -> None:
    """driver.client._BufferedWebSocket overrides websocket-client's private
    ``WebSocket._recv(bufsize)`` (same code in 1.7.0 to 1.9.x; pyproject.toml pins
    websocket-client below 1.10). This fails when a release changes what it relies on:
    the method's signature, or the frame reader reading the socket only through it.
    Re-check _BufferedWebSocket against the new release before raising the pin."""
    import inspect

    import websocket

    from driver.client import _BufferedWebSocket

    params = list(inspect.signature(websocket.WebSocket._recv).parameters)
    assert params == ["self", "bufsize"], f"websocket-client changed WebSocket._recv to {params}"

    reads: list[int] = []

    class CountingSocket:
        """The socket as websocket-client sees it, counting reads."""

        def __init__(self, sock: socket.socket) -> None:
            self._sock = sock

        def recv(self, bufsize: int) -> bytes:
            reads.append(bufsize)
            return self._sock.recv(bufsize)

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(self._sock, name)

    ours, server = socket.socketpair()
    try:
        ours.settimeout(5)
        ws = _BufferedWebSocket(skip_utf8_validation=True)
        ws.sock, ws.connected = CountingSocket(ours), True
        texts = ["one", "two", "three"]
        server.sendall(b"".join(bytes([0x81, len(t)]) + t.encode() for t in texts))  # unmasked text frames
        assert [ws.recv() for _ in texts] == texts
        # websocket-client alone reads each frame's header and payload separately (6 reads)
        assert len(reads) == 1, (
            f"frames were read with {len(reads)} socket reads: _recv is no longer the frame reader's"
        )
    finally:
        ours.close()
        server.close()


def test_tracker_reads_node_steps_from_progress_state() -> None:
    """ComfyUI 0.8.0's V3 progress API (what the TRELLIS/UniRig/Blender Executor nodes use) sends only
    progress_state; the step must come from it, as it does from a plain progress message. The value 0 /
    max 1 entries ComfyUI sends for every node that merely started are not steps."""
    job = JobTracker("p", {"3": {"class_type": "X", "inputs": {}}})
    frames = [
        {"type": "execution_start", "data": {"prompt_id": "p"}},
        {"type": "executing", "data": {"node": "3", "prompt_id": "p"}},
        {
            "type": "progress_state",
            "data": {"prompt_id": "p", "nodes": {"3": {"value": 0, "max": 1, "state": "running", "node_id": "3"}}},
        },
    ]
    for f in frames:
        job.apply(parse_frame(json.dumps(f)))
    assert job.step is None
    job.apply(
        parse_frame(
            json.dumps(
                {
                    "type": "progress_state",
                    "data": {
                        "prompt_id": "p",
                        "nodes": {"3": {"value": 2, "max": 5, "state": "running", "node_id": "3"}},
                    },
                }
            )
        )
    )
    assert job.step == (2.0, 5.0)
