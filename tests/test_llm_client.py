"""The OpenAI-compatible client against a real local HTTP server (tests/_fake_llm.py)."""

from __future__ import annotations

import logging
import socket

import pytest
from _fake_llm import FakeLLM, llm_env, png_bytes

from comfy_avatar_nodes.core.config import load_settings
from comfy_avatar_nodes.core.llm.client import Endpoint, LLMClient, LLMError, ask_json, parse_json_object, user_message

KEY = "sk-test-9f8e7d6c5b4a-secret"


@pytest.fixture
def fake(monkeypatch):
    with FakeLLM(api_key=KEY) as f:
        llm_env(monkeypatch, f)
        yield f


def client(role="coder", **kw) -> LLMClient:
    c = LLMClient.for_role(role, load_settings().llm, **kw)
    c.sleep = lambda s: c.slept.append(s)  # type: ignore[attr-defined]
    c.slept = []  # type: ignore[attr-defined]
    return c


def test_chat_sends_model_key_and_returns_text(fake):
    fake.script("coder-model", ["hello there"])
    assert client().chat([{"role": "user", "content": "hi"}]) == "hello there"
    (seen,) = fake.seen
    assert seen.model == "coder-model"
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.body["messages"] == [{"role": "user", "content": "hi"}]


def test_images_go_as_data_uri_parts_and_json_mode_is_requested(fake):
    fake.script("vision-model", ['{"ok": true}'])
    msg = user_message("Describe this sketch as JSON", [png_bytes(), png_bytes((0, 0, 255), (8, 8))])
    out = client("vision").chat([msg], json_mode=True)
    assert parse_json_object(out) == {"ok": True}
    (seen,) = fake.seen
    assert seen.json_mode and seen.body["response_format"] == {"type": "json_object"}
    assert seen.images == [("image/png", (32, 24)), ("image/png", (8, 8))]


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_retries_with_exponential_backoff_then_succeeds(fake, status):
    fake.script("coder-model", [{"status": status}, {"status": status}, "finally"])
    c = client()
    assert c.chat([{"role": "user", "content": "x"}]) == "finally"
    assert len(fake.seen) == 3
    assert len(c.slept) == 2 and c.slept[1] > 1.8 * c.slept[0]  # exponential


def test_gives_up_after_max_retries_naming_the_role(fake):
    fake.always("coder-model", lambda b: {"status": 503, "body": {"error": {"message": "overloaded"}}})
    c = client(max_retries=3)
    with pytest.raises(LLMError) as ei:
        c.chat([{"role": "user", "content": "x"}])
    assert len(fake.seen) == 4
    assert [round(s / c.slept[0]) for s in c.slept] == [1, 2, 4]
    msg = str(ei.value)
    assert "LLM coder" in msg and "HTTP 503" in msg and "overloaded" in msg and "4 tries" in msg


@pytest.mark.parametrize("status", [400, 404, 422])
def test_no_retry_on_other_4xx(fake, status):
    fake.script("coder-model", [{"status": status, "body": {"error": {"message": "bad thing"}}}, "never reached"])
    c = client()
    with pytest.raises(LLMError, match=f"HTTP {status}: bad thing"):
        c.chat([{"role": "user", "content": "x"}])
    assert len(fake.seen) == 1 and c.slept == []


def test_wrong_key_names_role_and_env_var_but_never_the_key(fake, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-0123456789abcdef"
    monkeypatch.setenv("COMFY_AVATAR_TEST_LLM_KEY", wrong)
    fake.script("intent-model", ["unused"])
    c = client("intent")
    with pytest.raises(LLMError) as ei:
        c.chat([{"role": "user", "content": "x"}])
    msg = str(ei.value)
    assert "LLM intent" in msg and "COMFY_AVATAR_TEST_LLM_KEY" in msg and "401" in msg
    assert wrong not in msg and KEY not in msg  # the server echoed the key; the client redacts it
    assert c.slept == []
    assert wrong not in caplog.text


def test_missing_key_says_the_variable_is_not_set(fake, monkeypatch):
    monkeypatch.delenv("COMFY_AVATAR_TEST_LLM_KEY")
    with pytest.raises(LLMError, match="COMFY_AVATAR_TEST_LLM_KEY, which is not set"):
        client().chat([{"role": "user", "content": "x"}])
    assert fake.seen == []  # refused before the body was read: no Authorization header was sent


def test_unreachable_endpoint_retries_then_names_the_base_url(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("COMFY_AVATAR__LLM__CODER__BASE_URL", f"http://127.0.0.1:{port}/v1")
    c = client(max_retries=2)
    with pytest.raises(LLMError) as ei:
        c.chat([{"role": "user", "content": "x"}])
    assert len(c.slept) == 2
    msg = str(ei.value)
    assert f"127.0.0.1:{port}" in msg and "cannot connect" in msg and "llm.coder.base_url" in msg


def test_slow_server_times_out_and_retries(fake):
    fake.script("coder-model", [{"delay_s": 1.5, "content": "late"}, "on time"])
    c = client(timeout_s=0.5)
    assert c.chat([{"role": "user", "content": "x"}]) == "on time"
    assert len(c.slept) == 1


def test_endpoint_config_errors_name_the_setting(monkeypatch):
    monkeypatch.setenv("COMFY_AVATAR__LLM__VISION__BASE_URL", "localhost:8000")
    with pytest.raises(LLMError, match=r"llm.vision.base_url: 'localhost:8000' is not an http\(s\) URL"):
        Endpoint.from_settings("vision", load_settings().llm)
    with pytest.raises(LLMError, match="pick intent, vision or coder"):
        Endpoint.from_settings("painter", load_settings().llm)


def test_ask_json_repairs_prose_then_fails_with_stage(fake):
    fake.script("intent-model", ["Sure! Here is a chair.", '{"label": "x"}'])
    out = ask_json(client("intent"), [user_message("reply in json")], stage="intent")
    assert out == {"label": "x"}
    # the second request carried the first answer and the complaint back to the model
    convo = fake.seen[1].body["messages"]
    assert convo[-2] == {"role": "assistant", "content": "Sure! Here is a chair."}
    assert "no JSON object" in convo[-1]["content"]

    fake.always("intent-model", "I am a chatty model and never write JSON.")
    with pytest.raises(LLMError) as ei:
        ask_json(client("intent"), [user_message("reply in json")], stage="Intent", repairs=1)
    assert str(ei.value).startswith("Intent: the model did not return usable JSON after 2 tries")


def test_parse_json_object_accepts_fenced_answers():
    assert parse_json_object('Here:\n```json\n{"a": [1, 2]}\n```\nbye') == {"a": [1, 2]}
    with pytest.raises(ValueError):
        parse_json_object("[1, 2, 3]")


def test_credentials_in_base_url_are_never_shown(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(
        "COMFY_AVATAR__LLM__CODER__BASE_URL", f"http://bob:hunter2secret@127.0.0.1:{port}/v1?key=qwerty123"
    )
    c = client(max_retries=1)
    with pytest.raises(LLMError) as ei:
        c.chat([{"role": "user", "content": "x"}])
    shown = str(ei.value) + caplog.text
    assert f"127.0.0.1:{port}/v1" in str(ei.value)
    assert "hunter2secret" not in shown and "qwerty123" not in shown
