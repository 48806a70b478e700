"""Several ComfyUI servers behind one batch: health, node types, load.

A job goes to the server with the shortest queue (its /prompt queue_remaining,
refreshed at most every ``queue_ttl_s``, plus the jobs this batch has in flight
there) among the servers that are up and have every node type the prompt needs
(asked per class, GET /object_info/{class}, and remembered: driver.nodeinfo). A
server that fails is marked down and skipped; it is probed again after an
exponential backoff, so it rejoins when it comes back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .client import ComfyClient
from .errors import DriverError, ServerUnreachable
from .nodeinfo import NodeInfo
from .servers import normalize_url

log = logging.getLogger("comfy_avatar.driver.pool")


class MissingNodes(DriverError):
    """No reachable server has the node types a prompt needs: retrying cannot help."""

    def __init__(self, missing: dict[str, list[str]]) -> None:
        self.missing = missing
        lines = "; ".join(f"{url} lacks {', '.join(types)}" for url, types in missing.items())
        super().__init__(
            "the workflow",
            f"needs node types no server has ({lines})",
            "install the custom node pack that provides them on a server, or add a --server that has them",
        )


@dataclass
class ServerState:
    url: str
    up: bool = False
    probed: bool = False
    info: NodeInfo | None = None  # its node definitions, per class on first use
    failures: int = 0
    retry_at: float = 0.0
    inflight: int = 0
    queue_remaining: int = 0
    queue_at: float = -1e9
    last_error: str = ""
    jobs_done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def load(self) -> int:
        return max(self.queue_remaining, self.inflight)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "up": self.up,
            "inflight": self.inflight,
            "queue_remaining": self.queue_remaining,
            "failures": self.failures,
            "last_error": self.last_error,
            "jobs_done": self.jobs_done,
        }


class ServerPool:
    def __init__(
        self,
        urls: Iterable[str],
        *,
        request_timeout: float = 10.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        queue_ttl_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        seen: dict[str, ServerState] = {}
        for u in urls:
            url = normalize_url(u)
            seen.setdefault(url, ServerState(url))
        if not seen:
            raise DriverError("--server", "no server given", "pass --server URL (repeatable)")
        self.servers = list(seen.values())
        self.request_timeout = request_timeout
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self.queue_ttl_s = queue_ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._clients = {s.url: ComfyClient(s.url, timeout=request_timeout) for s in self.servers}
        self._tls = threading.local()

    def close(self) -> None:
        for c in self._clients.values():
            c.close()

    def _client(self, s: ServerState) -> ComfyClient:
        # One control client per thread and server (a client follows one prompt at a time).
        cache = getattr(self._tls, "clients", None)
        if cache is None:
            cache = self._tls.clients = {}
        if s.url not in cache:
            cache[s.url] = ComfyClient(s.url, timeout=self.request_timeout)
        return cache[s.url]

    # -- health -------------------------------------------------------------------------
    def probe(self, s: ServerState) -> bool:
        """Ask for the queue length (GET /prompt, milliseconds); mark up or down. Node types
        are asked separately, for the classes a job needs (has_types)."""
        try:
            client = self._client(s)
            if s.info is None:
                s.info = self._clients[s.url].node_info()
            s.queue_remaining = client.queue_remaining()
            s.queue_at = self.clock()
        except DriverError as e:
            self.mark_down(s, e)
            return False
        with self._lock:
            if not s.up:
                log.info("server %s is up (queue %d)", s.url, s.queue_remaining)
            s.up, s.probed, s.failures, s.last_error = True, True, 0, ""
        return True

    def has_types(self, s: ServerState, need: frozenset[str]) -> bool:
        """Whether an up server has every node type in `need` (asked once per class);
        False, and the server marked down, when it stops answering."""
        assert s.info is not None
        try:
            return not s.info.missing(need)
        except DriverError as e:
            self.mark_down(s, e)
            return False

    def mark_down(self, s: ServerState, err: BaseException | str) -> None:
        with self._lock:
            s.failures += 1
            delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (s.failures - 1))
            s.retry_at = self.clock() + delay
            s.probed = True
            s.last_error = getattr(err, "problem", None) or str(err)
            if s.up:
                log.warning("server %s is down (%s); retrying in %.1f s", s.url, s.last_error, delay)
            s.up = False

    def probe_all(self) -> list[ServerState]:
        threads = [threading.Thread(target=self.probe, args=(s,)) for s in self.servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [s for s in self.servers if s.up]

    def node_info(self) -> NodeInfo:
        """Node definitions of the first server that answers (for converting UI workflows
        and typing --set), fetched per class."""
        for s in self.servers:
            if s.info is not None or self.probe(s):
                assert s.info is not None
                return s.info
        errors = "; ".join(f"{s.url}: {s.last_error}" for s in self.servers)
        raise ServerUnreachable(
            self.servers[0].url if len(self.servers) == 1 else "(all servers)", f"no server answered ({errors})"
        )

    def system_stats(self) -> dict[str, Any]:
        """/system_stats of the first server that answers (its editor version picks the
        converter's node titles); {} when none does (the conversion then assumes the newest)."""
        for s in self.servers:
            try:
                return self._client(s).system_stats()
            except DriverError:
                continue
        return {}

    # -- scheduling -----------------------------------------------------------------------
    def acquire(self, required: Iterable[str] = ()) -> ServerState | None:
        """The least loaded up server with every required node type, its in-flight count
        raised; None when none is up now (call again later). Raises MissingNodes when every
        server answered and none has the node types."""
        need = frozenset(required)
        now = self.clock()
        for s in self.servers:
            if not s.up and now >= s.retry_at:
                self.probe(s)  # a down server whose backoff ran out gets another chance
            elif s.up and now - s.queue_at > self.queue_ttl_s:
                self.probe(s)
        fits = [s for s in self.servers if s.up and self.has_types(s, need)]
        with self._lock:
            fits = [s for s in fits if s.up]
            if not fits:
                ups = [s for s in self.servers if s.up]
                answered = [s for s in self.servers if s.info is not None and s.info.knows(need)]
                if ups and all(s.probed for s in self.servers) and all(s.up or s in answered for s in self.servers):
                    raise MissingNodes({s.url: s.info.missing(need) for s in answered if s.info is not None})
                return None
            best = min(fits, key=lambda s: (s.load(), s.inflight, self.servers.index(s)))
            best.inflight += 1
            best.queue_remaining += 1  # until the next refresh, count this job in its queue
            return best

    def release(self, s: ServerState, *, done: bool = False) -> None:
        with self._lock:
            s.inflight = max(0, s.inflight - 1)
            if done:
                s.jobs_done += 1

    def next_retry_in(self) -> float:
        downs = [s.retry_at for s in self.servers if not s.up]
        return max(0.05, min(downs) - self.clock()) if downs else 0.05

    def summary(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.servers]
