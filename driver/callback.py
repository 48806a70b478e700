"""Signed completion callbacks: ``--callback-url`` POSTs each finished job's record.

The body is the job's JSON (as in its manifest); the request carries
``X-Comfy-Avatar-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>`` with the
secret from ``COMFY_AVATAR_CALLBACK_SECRET`` (read at use time, never logged), plus
``X-Comfy-Avatar-Event`` and ``X-Comfy-Avatar-Delivery`` (the same id on every retry,
so a receiver can drop duplicates). Non-2xx answers and connection errors are retried
with exponential backoff until a 2xx, at most ``max_attempts`` times / ``max_total_s``.
Deliveries run in background threads so a slow receiver never holds up the batch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import requests

from .errors import UsageError

log = logging.getLogger("comfy_avatar.driver.callback")

SECRET_ENV = "COMFY_AVATAR_CALLBACK_SECRET"
SIGNATURE_HEADER = "X-Comfy-Avatar-Signature"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secret: str) -> bool:
    """For receivers: constant-time check of a signature header."""
    return bool(header) and hmac.compare_digest(sign(body, secret), header or "")


def secret_from_env() -> str:
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        raise UsageError(
            "--callback-url",
            f"needs a signing secret and {SECRET_ENV} is not set",
            f"export {SECRET_ENV}=<a long random string shared with the receiver>",
        )
    return secret


@dataclass
class Delivery:
    delivery_id: str
    url: str
    ok: bool = False
    attempts: int = 0
    status: int | None = None
    error: str = ""


class CallbackSender:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        max_attempts: int = 8,
        max_total_s: float = 300.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        timeout_s: float = 10.0,
        workers: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"--callback-url {url}", "is not an http(s) URL", "pass e.g. https://example.com/hook")
        self.url, self._secret = url, secret
        self.max_attempts, self.max_total_s = max_attempts, max_total_s
        self.backoff_base_s, self.backoff_max_s, self.timeout_s = backoff_base_s, backoff_max_s, timeout_s
        self._sleep = sleep
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="callback")
        self._futures: list[Future] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def send(self, payload: dict[str, Any], event: str = "job.finished") -> Future:
        fut = self._pool.submit(self.deliver, payload, event)
        with self._lock:
            self._futures.append(fut)
        return fut

    def deliver(self, payload: dict[str, Any], event: str = "job.finished") -> Delivery:
        body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
        d = Delivery(uuid.uuid4().hex, self.url)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self._secret),
            "X-Comfy-Avatar-Event": event,
            "X-Comfy-Avatar-Delivery": d.delivery_id,
            "User-Agent": "comfy-avatar-driver",
        }
        start = time.monotonic()
        delay = self.backoff_base_s
        with requests.Session() as session:
            while True:
                d.attempts += 1
                try:
                    r = session.post(self.url, data=body, headers=headers, timeout=self.timeout_s)
                    d.status = r.status_code
                    if 200 <= r.status_code < 300:
                        d.ok = True
                        log.info("callback %s delivered to %s (attempt %d)", d.delivery_id, self.url, d.attempts)
                        return d
                    d.error = f"HTTP {r.status_code}"
                except requests.RequestException as e:
                    d.error = e.__class__.__name__
                spent = time.monotonic() - start
                if d.attempts >= self.max_attempts or spent + delay > self.max_total_s or self._closed.is_set():
                    log.error("callback to %s gave up after %d attempts (%s)", self.url, d.attempts, d.error)
                    return d
                log.warning("callback to %s failed (%s); retrying in %.1f s", self.url, d.error, delay)
                self._sleep(delay)
                delay = min(self.backoff_max_s, delay * 2)

    def close(self, wait_s: float | None = None) -> list[Delivery]:
        """Wait (at most ``wait_s``) for pending deliveries; returns the finished ones."""
        with self._lock:
            futures = list(self._futures)
        done, not_done = wait(futures, timeout=wait_s)
        if not_done:
            self._closed.set()  # pending retries give up at their next backoff
        self._pool.shutdown(wait=False, cancel_futures=True)
        return [f.result() for f in done if not f.cancelled() and f.exception() is None]
