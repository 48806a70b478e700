"""What ``serve`` accepts from the outside, as pure functions: API keys, rate limits, uploads.

- API keys come from ``COMFY_AVATAR_API_KEYS`` (comma list of ``name:key`` or bare keys) and
  are compared in constant time (hmac.compare_digest against every key, no early exit), so
  the answer time tells nothing about how much of a key was right. Keys are never logged:
  requests are attributed to the key's name.
- Rate limit: a token bucket per key (``rate`` requests per second, ``burst`` at once).
- Uploads: a size limit, a type check on the bytes (PNG, JPEG, WebP: the pictures the
  workflows load; the file name's extension is not trusted), and file names that are plain
  names (no path, no ``..``, no control characters). A refused upload is refused before
  anything is stored.
"""

from __future__ import annotations

import hmac
import os
import re
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

API_KEYS_ENV = "COMFY_AVATAR_API_KEYS"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\- ]{0,127}$")


class Refused(Exception):
    """A request refused with an HTTP status and a message that says what and how to fix."""

    def __init__(self, status: int, what: str, problem: str, fix: str, reason: str = "") -> None:
        self.status, self.reason = status, reason or problem
        self.headers: dict[str, str] = {}
        super().__init__(f"{what}: {problem}. Fix: {fix}")


@dataclass(frozen=True)
class ApiKey:
    name: str
    secret: bytes


def parse_api_keys(raw: str) -> list[ApiKey]:
    keys = []
    for i, part in enumerate(p.strip() for p in raw.split(",")):
        if not part:
            continue
        name, sep, secret = part.partition(":")
        if not sep:
            name, secret = f"key{i + 1}", part
        if len(secret) < 16:
            raise ValueError(
                f"{API_KEYS_ENV}: key {name!r} is shorter than 16 characters; use a long random key "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        keys.append(ApiKey(name.strip() or f"key{i + 1}", secret.encode()))
    return keys


def keys_from_env(env: dict[str, str] | None = None) -> list[ApiKey]:
    return parse_api_keys((env if env is not None else os.environ).get(API_KEYS_ENV, ""))


def match_key(keys: list[ApiKey], presented: str | None) -> ApiKey | None:
    """The key ``presented`` equals, compared in constant time against every key."""
    given = (presented or "").encode()
    found = None
    for k in keys:
        if hmac.compare_digest(k.secret, given):
            found = k
    return found


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


class RateLimiter:
    """Token buckets per key; ``check(name)`` raises Refused(429) with Retry-After."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self.max_buckets = 10_000
        self._lock = threading.Lock()

    def check(self, name: str) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = self.clock()
            if len(self._buckets) > self.max_buckets and name not in self._buckets:
                self._prune(now)
            tokens, last = self._buckets.get(name, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[name] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
                err = Refused(
                    429,
                    f"API key {name!r}",
                    f"over its rate limit ({self.rate:g}/s, burst {self.burst})",
                    f"retry after {wait:.1f} s",
                    reason="rate",
                )
                err.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
                raise err
            self._buckets[name] = (tokens - 1.0, now)

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled (they start full anyway): wrong-key buckets are
        per client address, and a client with many addresses must not grow this without end."""
        full = [k for k, (t, last) in self._buckets.items() if t + (now - last) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]


# -- uploads -------------------------------------------------------------------------------

IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def sniff_image(head: bytes) -> str | None:
    """png / jpeg / webp from the first bytes, None for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _plain_name(raw: str) -> bool:
    """Letters and digits of any script (a phone names a picture "фото 1.jpg"), '.', '_', '-'
    and spaces, starting with a letter or digit; never control, format (bidi overrides such as
    U+202E, zero-width joiners) or unassigned characters, which str.isalnum() is False for."""
    return _NAME.match(raw) is not None or (
        len(raw) <= 128 and raw[0].isalnum() and all(c.isalnum() or c in "._- " for c in raw)
    )


def check_filename(name: str | None, field: str) -> str:
    """The upload's file name if it is a plain name; Refused(400) otherwise (never sanitized
    silently: a client sending ../x has a bug or is probing, and should be told)."""
    raw = unicodedata.normalize("NFC", name or "")  # macOS sends decomposed names (e + U+0301)
    if not raw or "/" in raw or "\\" in raw or ".." in raw or "\x00" in raw or not _plain_name(raw):
        raise Refused(
            400,
            f"upload {field!r}",
            f"file name {raw[:80]!r} is not a plain file name",
            "send a name of letters, digits (any script), '.', '_', '-' or spaces, without a path or '..'",
            reason="name",
        )
    return raw


def check_upload(field: str, filename: str | None, head: bytes, size: int, max_bytes: int) -> tuple[str, str]:
    """(file name, image type) of an acceptable upload; Refused(4xx) otherwise."""
    name = check_filename(filename, field)
    if size > max_bytes:
        raise Refused(
            413,
            f"upload {field!r}",
            f"{size} bytes is over the limit of {max_bytes} bytes",
            "send a smaller picture, or put it on S3 and pass its s3:// URL",
            reason="size",
        )
    if size == 0:
        raise Refused(400, f"upload {field!r}", "is empty", "send the picture's bytes", reason="empty")
    kind = sniff_image(head)
    if kind is None:
        raise Refused(
            415,
            f"upload {field!r} ({name})",
            "is not a PNG, JPEG or WebP picture",
            "send a PNG, JPEG or WebP file",
            reason="type",
        )
    return name, kind
