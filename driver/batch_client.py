"""The batch runner's client: a ComfyClient that keeps its websocket between jobs,
and cancelling one prompt on a server.

Apart from batch.py so the runner reads as scheduling and bookkeeping only; the
socket reuse is a client-level optimisation (a new handshake per job was most of
the client's CPU for small prompts, measured by bench/driver_overhead.py).
"""

from __future__ import annotations

import logging
from typing import Any

from .client import ComfyClient
from .errors import DriverError

log = logging.getLogger("comfy_avatar.driver.batch")


class _KeptSocket:
    """A websocket that outlives one ComfyClient.run: closing it at the end of a run
    keeps it open for the client's next job (a new handshake per job is most of the
    client's CPU for small prompts); closing it anywhere else (drop, resync) is real."""

    def __init__(self, ws: Any, owner: BatchClient) -> None:
        self._ws, self._owner, self.dead = ws, owner, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)

    def close(self, *args: Any, **kw: Any) -> None:
        if self._owner._run_ending and not self.dead:
            return
        self.dead = True
        self._ws.close(*args, **kw)


class BatchClient(ComfyClient):
    """ComfyClient that keeps its websocket (same client id) from one job to the next.

    Messages left over from the previous prompt carry its prompt_id and are ignored;
    a socket that died between jobs fails on first use and the client reconnects and
    resyncs from /queue and /history, as after any drop."""

    _kept: _KeptSocket | None = None
    _run_ending = False

    def _ws_connect(self) -> Any:
        if self._kept is not None and not self._kept.dead and self._kept._ws.connected:
            return self._kept
        self._kept = _KeptSocket(super()._ws_connect(), self)
        return self._kept

    def _follow(self, *args: Any, **kw: Any) -> Any:
        self._run_ending = False
        try:
            return super()._follow(*args, **kw)
        finally:
            self._run_ending = True  # the close() that run() does next keeps the socket

    def close(self) -> None:
        kept, self._kept = self._kept, None
        if kept is not None:
            self._run_ending = False
            kept.close(timeout=1)
        super().close()


def cancel_on_server(server: str, prompt_id: str, timeout: float = 10.0) -> None:
    """Pending -> POST /queue delete; running -> POST /interrupt {prompt_id}."""
    try:
        with ComfyClient(server, timeout=timeout) as c:
            c.delete_pending([prompt_id])
            c.interrupt(prompt_id)
    except DriverError as e:
        log.warning("could not cancel prompt %s on %s: %s", prompt_id, server, e)
