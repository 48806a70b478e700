"""The one OpenAI-compatible chat client (DashScope compatible mode, vLLM, Ollama, OpenAI).

One endpoint per *role* (intent, vision, coder): ``llm.<role>.base_url``, ``.model`` and
``.api_key_env`` (the NAME of the environment variable holding the key) come from
config; the key itself is read from the environment at the moment of each request and
is never stored, logged or put into an error message (errors name the variable).

Images travel as ``image_url`` parts with ``data:`` URIs; JSON answers use
``response_format: {"type": "json_object"}``. Retries use exponential backoff on 429,
5xx, timeouts and connection errors; other 4xx fail at once.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import LLMSettings, env_var, load_settings
from ..errors import AvatarError
from ..secrets import redact

log = logging.getLogger("comfy_avatar.llm_client")

ROLES = ("intent", "vision", "coder")
Message = dict[str, Any]


class LLMError(AvatarError):
    """The language model endpoint failed or answered something unusable."""


@dataclass(frozen=True)
class Endpoint:
    """Where a role's requests go. Holds the env var NAME of the key, never the key."""

    role: str
    base_url: str
    model: str
    api_key_env: str = ""

    @classmethod
    def from_settings(
        cls, role: str, llm: LLMSettings | None = None, *, base_url: str = "", model: str = ""
    ) -> Endpoint:
        """The role's endpoint from the llm settings; ``base_url`` / ``model`` override them (a node's widgets)."""
        if role not in ROLES:
            raise LLMError("llm role", f"{role!r} is not one of {', '.join(ROLES)}", "pick intent, vision or coder")
        sec = (llm or load_settings().llm).role(role)
        url = (base_url or sec.base_url).strip()
        mdl = (model or sec.model).strip()
        if not url:
            raise LLMError(
                f"llm.{role}.base_url",
                "is empty",
                f"set {env_var(f'llm.{role}.base_url')} or llm.{role}.base_url in the config",
            )
        if not url.startswith(("http://", "https://")):
            raise LLMError(
                f"llm.{role}.base_url",
                f"{url!r} is not an http(s) URL",
                "use the OpenAI-compatible base such as http://127.0.0.1:11434/v1",
            )
        if not mdl:
            raise LLMError(f"llm.{role}.model", "is empty", f"set llm.{role}.model to the model name the server serves")
        return cls(role=role, base_url=url.rstrip("/"), model=mdl, api_key_env=sec.api_key_env)

    @property
    def shown_url(self) -> str:
        """base_url without user:password@ or a query string (either could hold a credential)."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.base_url)
        host = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, host, parts.path, "", ""))

    def public(self) -> dict[str, str]:
        """Safe to log and to put in outputs (no key, only the variable's name)."""
        return {"role": self.role, "base_url": self.base_url, "model": self.model, "api_key_env": self.api_key_env}


def image_part(data: bytes, mime: str = "image/png") -> dict[str, Any]:
    """A chat-completions content part carrying an image as a data URI."""
    if not data:
        raise LLMError("image", "is empty", "connect a real image")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"}}


def user_message(text: str, images: Sequence[bytes] = ()) -> Message:
    """A user message: plain text, or text + image parts when images are given."""
    if not images:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [{"type": "text", "text": text}, *(image_part(b) for b in images)]}


def _server_message(resp: Any, key: str) -> str:
    """The error text an OpenAI-style server put in its body, shortened and with the key redacted."""
    try:
        body = resp.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        msg = err.get("message", "") if isinstance(err, dict) else str(err)
    except ValueError:
        msg = resp.text
    return redact(str(msg).strip()[:300], [key], min_len=4)


class LLMClient:
    """Chat completions for one role. ``chat()`` returns the assistant's text."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout_s: float | None = None,
        max_retries: int | None = None,
        backoff_s: float | None = None,
        llm: LLMSettings | None = None,
        session: Any = None,
    ) -> None:
        llm = llm or load_settings().llm
        self.endpoint = endpoint
        self.timeout_s = float(timeout_s if timeout_s is not None else llm.timeout_s)
        self.max_retries = int(max_retries if max_retries is not None else llm.max_retries)
        self.backoff_s = float(backoff_s if backoff_s is not None else llm.backoff_s)
        self._session = session
        self.sleep: Callable[[float], None] = time.sleep

    @classmethod
    def for_role(cls, role: str, llm: LLMSettings | None = None, **overrides: Any) -> LLMClient:
        llm = llm or load_settings().llm
        ep = Endpoint.from_settings(role, llm, base_url=overrides.pop("base_url", ""), model=overrides.pop("model", ""))
        return cls(ep, llm=llm, **overrides)

    # -- plumbing --------------------------------------------------------------------------
    def _key(self) -> str:
        # Read at use time; an unset variable means "no Authorization header" (Ollama, local vLLM).
        return os.environ.get(self.endpoint.api_key_env, "") if self.endpoint.api_key_env else ""

    def _what(self) -> str:
        return f"LLM {self.endpoint.role} ({self.endpoint.model} at {self.endpoint.shown_url})"

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        import requests

        session = self._session or requests
        url = f"{self.endpoint.base_url}/chat/completions"
        key = self._key()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        attempts = self.max_retries + 1
        last = ""
        for i in range(attempts):
            start = time.monotonic()
            try:
                resp = session.post(url, json=payload, headers=headers, timeout=self.timeout_s)
            except requests.Timeout:
                last = f"no answer within {self.timeout_s:g} s"
            except requests.ConnectionError as e:
                last = f"cannot connect ({type(e).__name__})"
            else:
                took = time.monotonic() - start
                log.info("%s: HTTP %s in %.2f s (try %d/%d)", self._what(), resp.status_code, took, i + 1, attempts)
                if resp.status_code == 200:
                    try:
                        return resp.json()
                    except ValueError:
                        raise LLMError(
                            self._what(),
                            "answered HTTP 200 with a body that is not JSON",
                            "check that base_url ends with the OpenAI-compatible prefix (often /v1)",
                        ) from None
                msg = _server_message(resp, key)
                if resp.status_code in (401, 403):
                    var = self.endpoint.api_key_env or "(none configured)"
                    state = "is set but was rejected" if key else "is not set"
                    raise LLMError(
                        self._what(),
                        f"the server refused the API key (HTTP {resp.status_code}); "
                        f"the key comes from environment variable {var}, which {state}",
                        f"export {var} with a valid key for this server, or name another variable in "
                        f"llm.{self.endpoint.role}.api_key_env",
                    )
                if resp.status_code == 429 or resp.status_code >= 500:
                    last = f"HTTP {resp.status_code}: {msg}"
                else:
                    fix = (
                        f"check llm.{self.endpoint.role}.model names a model this server serves"
                        if resp.status_code == 404
                        else "see the server's message"
                    )
                    raise LLMError(self._what(), f"request rejected with HTTP {resp.status_code}: {msg}", fix)
            if i + 1 < attempts:
                delay = self.backoff_s * (2**i) * (1 + 0.1 * random.random())
                log.warning("%s: %s; retrying in %.2f s", self._what(), last, delay)
                self.sleep(delay)
        raise LLMError(
            self._what(),
            f"failed after {attempts} tries: {last}",
            "check that the server is running and base_url is right "
            f"(llm.{self.endpoint.role}.base_url), or raise llm.max_retries / llm.timeout_s",
        )

    # -- public ----------------------------------------------------------------------------
    def chat(
        self,
        messages: list[Message],
        *,
        json_mode: bool = False,
        temperature: float = 0.2,
        max_tokens: int | None = None,
    ) -> str:
        payload: dict[str, Any] = {"model": self.endpoint.model, "messages": messages, "temperature": temperature}
        if json_mode:
            payload["response_format"] = {"type": "json_object"}
        if max_tokens:
            payload["max_tokens"] = max_tokens
        body = self._post(payload)
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise LLMError(
                self._what(),
                "answered without choices[0].message.content",
                "check that the server speaks the OpenAI chat-completions API",
            ) from None
        if isinstance(content, list):  # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content or "")


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a model's answer (tolerates a ```json fence); ValueError if none."""
    candidates = [text.strip()] + [m.strip() for m in _FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for c in candidates:
        try:
            obj = json.loads(c)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    raise ValueError("the answer holds no JSON object")


def ask_json(
    client: LLMClient,
    messages: list[Message],
    *,
    stage: str,
    validate: Callable[[dict[str, Any]], list[str]] | None = None,
    repairs: int = 2,
    temperature: float = 0.1,
) -> dict[str, Any]:
    """Ask for a JSON object; on prose, bad JSON or validation problems, send the problems
    back for up to ``repairs`` more round-trips, then fail with an error naming ``stage``."""
    convo = list(messages)
    problems: list[str] = []
    answer = ""
    for round_no in range(repairs + 1):
        answer = client.chat(convo, json_mode=True, temperature=temperature)
        try:
            obj = parse_json_object(answer)
            problems = validate(obj) if validate else []
        except ValueError as e:
            problems = [str(e)]
        if not problems:
            return obj
        log.warning("%s: answer %d unusable: %s", stage, round_no + 1, "; ".join(problems)[:300])
        convo = convo + [
            {"role": "assistant", "content": answer},
            {
                "role": "user",
                "content": "Your answer could not be used: "
                + "; ".join(problems)[:2000]
                + ". Reply again with ONLY one JSON object that fixes this, no prose, no code fences.",
            },
        ]
    snippet = answer.strip().replace("\n", " ")[:160]
    raise LLMError(
        stage,
        f"the model did not return usable JSON after {repairs + 1} tries "
        f"({'; '.join(problems)[:300]}); last answer began: {snippet!r}",
        f"use a model that follows JSON instructions for llm.{client.endpoint.role}.model, or try again",
    )
