"""Fleet pieces that need no broker: the wire format, settings, upload checks, API keys, the rate
limit, job leases (SQLite, a fake clock), the follower's tracker and published-URL detection."""

from __future__ import annotations

import base64
import json

import pytest

from driver.errors import JobFailed, PromptRejected, ServerError, ServerUnreachable, UsageError
from driver.events import Event, JobTracker
from driver.fleet import messages as m
from driver.fleet.follow import Follower, apply_snapshot
from driver.fleet.leases import Leases
from driver.fleet.settings import FleetSettings, redact_url
from driver.fleet.storage import published_urls
from driver.fleet.uploads import (
    RateLimiter,
    Refused,
    check_filename,
    check_upload,
    match_key,
    parse_api_keys,
    presented_key,
    sniff_image,
)
from driver.results import JobResult
from driver.store import JobStore

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}


def test_job_message_roundtrip_and_stable_prompt_id() -> None:
    inp = m.InputFile.inline("image", "a.png", b"\x89PNG....")
    msg = m.make_job(
        PROMPT, workflow_name="w.json", sets=["1.width=16"], seed=3, inputs=[inp], priority="high", label="ada"
    )
    back = m.decode(m.encode(msg))
    assert back == msg and back.inputs[0].data() == b"\x89PNG...."
    assert msg.prompt_id == m.prompt_id_for(msg.job_id) == m.prompt_id_for(msg.job_id)
    assert msg.priority_value == 9
    assert "data_b64" not in json.dumps(msg.record_params()), "no file bytes in the job record"


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"not json", "is not JSON"),
        (json.dumps({"v": 99}).encode(), "version 99"),
        (json.dumps({"v": 1, "job_id": "x"}).encode(), "lacks or mistypes"),
        (json.dumps({"v": 1, "job_id": "x", "prompt_id": "y", "workflow": PROMPT}).encode(), "does not belong"),
    ],
)
def test_bad_messages_are_permanent_errors(body: bytes, problem: str) -> None:
    with pytest.raises(m.MessageError, match=problem) as e:
        m.decode(body)
    assert not m.is_transient(e.value)


def test_priority_must_be_known() -> None:
    with pytest.raises(UsageError, match="high, normal|low, normal|one of"):
        m.make_job(PROMPT, priority="urgent")


def test_retry_delays_grow_and_cap() -> None:
    assert [m.retry_delay_ms(a, 5, 600) for a in (1, 2, 3, 4, 5)] == [5000, 20000, 80000, 320000, 600000]
    assert m.attempt_of({m.H_ATTEMPT: 3}) == 3 and m.attempt_of(None) == 1 and m.attempt_of({m.H_ATTEMPT: "x"}) == 1


def test_transient_or_permanent() -> None:
    result = JobResult("p", "error", [], {}, [])
    failed = JobFailed(
        result,
        {"node_id": "3", "node_type": "X", "exception_type": "torch.cuda.OutOfMemoryError", "exception_message": "oom"},
    )
    assert m.is_transient(ServerUnreachable("http://x")) and m.is_transient(ServerError("u", 503, ""))
    assert not m.is_transient(ServerError("u", 400, "")) and not m.is_transient(failed)
    assert not m.is_transient(PromptRejected({"message": "bad"}, {}))
    assert m.failure_class(failed) == "JobFailed:OutOfMemoryError"


def test_settings_from_env_and_redaction() -> None:
    s = FleetSettings.load(
        env={
            "COMFY_AVATAR_BROKER": "amqp://u:secret@h:5672/%2F",
            "COMFY_AVATAR__FLEET__PREFIX": "p",
            "COMFY_AVATAR__FLEET__HEARTBEAT_S": "7",
            "COMFY_AVATAR__FLEET__JOB_TIMEOUT_S": "none",
        },
        max_attempts=2,
        lease_s=None,
    )
    assert (s.prefix, s.heartbeat_s, s.max_attempts, s.job_timeout_s, s.lease_s) == ("p", 7, 2, None, 60.0)
    assert (s.jobs_queue, s.dead_queue, s.retry_queue(5000)) == ("p.jobs", "p.dead", "p.retry.5000")
    assert redact_url(s.broker_url) == "amqp://u:***@h:5672/%2F"
    with pytest.raises(UsageError, match="not an amqp"):
        FleetSettings.load(env={"COMFY_AVATAR_BROKER": "http://h"})
    with pytest.raises(UsageError, match="not a number"):
        FleetSettings.load(env={"COMFY_AVATAR__FLEET__HEARTBEAT_S": "soon"})


# -- what serve accepts ----------------------------------------------------------------------------


def test_api_keys_parsed_and_matched() -> None:
    keys = parse_api_keys("alice:aaaaaaaaaaaaaaaa1, bbbbbbbbbbbbbbbb2")
    assert [k.name for k in keys] == ["alice", "key2"]
    assert match_key(keys, "bbbbbbbbbbbbbbbb2").name == "key2"
    assert match_key(keys, "aaaaaaaaaaaaaaaa") is None and match_key(keys, None) is None and match_key([], "") is None
    with pytest.raises(ValueError, match="shorter than 16"):
        parse_api_keys("short")
    assert presented_key("Bearer abc", None) == "abc" and presented_key(None, " k ") == "k"
    assert presented_key("Basic abc", None) is None


def test_rate_limiter_token_bucket() -> None:
    now = [0.0]
    rl = RateLimiter(2.0, 3, clock=lambda: now[0])
    for _ in range(3):
        rl.check("a")
    with pytest.raises(Refused) as e:
        rl.check("a")
    assert e.value.status == 429 and e.value.headers["Retry-After"] == "1"
    rl.check("b")  # per key
    now[0] += 0.5  # one token back
    rl.check("a")
    with pytest.raises(Refused):
        rl.check("a")


@pytest.mark.parametrize("name", ["../a.png", "a/b.png", "..", "a\\b.png", "", ".hidden", "a\x00.png", "x" * 200])
def test_upload_names_refused(name: str) -> None:
    with pytest.raises(Refused) as e:
        check_filename(name, "image")
    assert e.value.status == 400 and "Fix:" in str(e.value)


def test_upload_type_and_size() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 8
    assert sniff_image(png) == "png" and sniff_image(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff_image(b"RIFF\0\0\0\0WEBPVP8 ") == "webp" and sniff_image(b"GIF89a") is None
    assert check_upload("image", "ada.png", png, 100, 1000) == ("ada.png", "png")
    for head, size, status in ((b"%PDF-1.7", 100, 415), (png, 1001, 413), (png, 0, 400)):
        with pytest.raises(Refused) as e:
            check_upload("image", "ada.png", head, size, 1000)
        assert e.value.status == status


# -- leases ----------------------------------------------------------------------------------------


def test_leases_claim_renew_expire_take_over(tmp_path) -> None:
    now = [1000.0]
    with JobStore(str(tmp_path / "jobs.db")) as store:
        leases = Leases(store, clock=lambda: now[0])
        assert leases.claim("j1", "a", "http://box-a", 10).ok
        held = leases.claim("j1", "b", "http://box-b", 10)
        assert not held.ok and held.holder == "a" and held.expires_in_s == pytest.approx(10)
        assert leases.claim("j1", "a", "http://box-a", 10).ok, "the holder may claim again"
        now[0] += 8
        assert leases.renew(["j1", "j2"], "a", 10) == ["j2"]
        now[0] += 9
        assert not leases.claim("j1", "b", "http://box-b", 10).ok, "renewed: still a's"
        now[0] += 2  # a stopped renewing: the lease expired
        took = leases.claim("j1", "b", "http://box-b", 10)
        assert took.ok and took.previous_server == "http://box-a" and took.previous_owner == "a"
        assert leases.renew(["j1"], "a", 10) == ["j1"], "a learns it lost the job"
        leases.release("j1", "a")  # not a's any more: nothing happens
        assert leases.holder("j1")[0] == "b"
        leases.release("j1", "b")
        assert leases.holder("j1") is None


# -- following ---------------------------------------------------------------------------------------


def test_follower_rebuilds_the_local_tracker_from_snapshots() -> None:
    local = JobTracker("p1", {"1": {"class_type": "A", "_meta": {"title": "first"}}, "2": {"class_type": "B"}})
    for ev in (
        Event("execution_start", {}, "p1"),
        Event("executing", {"node": "1"}, "p1"),
        Event("executing", {"node": "2"}, "p1"),
        Event("progress", {"node": "2", "value": 3, "max": 10}, "p1"),
    ):
        local.apply(ev)
    seen: list[tuple[str, int, int, str | None, tuple | None]] = []
    follower = Follower(
        "job", lambda e, t: seen.append((e.type, t.nodes_done, t.total, t.current, t.step)), lambda line: None
    )
    body = json.loads(
        m.event_body(
            "job",
            m.COMFY,
            {
                "event": Event("progress", {"node": "2", "value": 3, "max": 10}, "p1").to_json(),
                "job": m.tracker_snapshot(local, with_nodes=True),
            },
        )
    )
    assert follower(body) is False
    assert seen == [("progress", 1, 2, "2", (3.0, 10.0))]
    assert follower.tracker.label("1") == '1 A "first"'
    assert follower({"kind": m.FINISHED, "data": {"status": "succeeded"}}) is True


def test_apply_snapshot_for_a_late_follower() -> None:
    t = JobTracker("p")
    apply_snapshot(
        t,
        {
            "started": True,
            "done": False,
            "current": "5",
            "step": [2, 4],
            "finished": ["1", "2"],
            "cached": ["3"],
            "nodes": {"5": ["KSampler", ""]},
        },
    )
    assert (t.nodes_done, t.current, t.step, t.status) == (3, "5", (2.0, 4.0), "running")


def test_published_urls_from_the_promote_node() -> None:
    r = JobResult(
        "p",
        "success",
        [],
        {},
        [],
        ui_outputs={
            "7": {"text": ["https://cdn.example.com/avatars/ab12/ada.vrm\nuploaded; 100 bytes"]},
            "8": {"text": ["not a url"]},
            "9": {"images": [{"filename": "x.png", "type": "output"}]},
        },
    )
    assert [u["path"] for u in published_urls(r)] == ["https://cdn.example.com/avatars/ab12/ada.vrm"]
    assert published_urls(r)[0]["filename"] == "ada.vrm"


def test_inline_input_is_base64_with_sha256() -> None:
    f = m.InputFile.inline("image", "a.png", b"abc")
    assert base64.b64decode(f.data_b64 or "") == b"abc" and f.size == 3
    assert f.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
