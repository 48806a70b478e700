"""Progress displays for ``ComfyClient.run(on_event=...)``.

- :class:`RichProgress`: two rich bars on a terminal (nodes done / total, and the
  current node's steps).
- :class:`LogProgress`: plain lines for logs and CI (not a TTY), throttled.
- :class:`JsonEvents`: one JSON object per event (machine-readable, ``--json``).

Each is a callable ``(event, job)`` plus a context manager; ``make_progress`` picks one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, TYPE_CHECKING, Any, Literal

from . import events as ev
from .events import Event, JobTracker

if TYPE_CHECKING:  # rich costs ~80 ms to import: only the bars need it (issue 12: run starts at once)
    from rich.console import Console
    from rich.progress import TaskID

Mode = Literal["auto", "bar", "log", "json", "none"]


class _Base:
    def __enter__(self) -> _Base:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __call__(self, event: Event, job: JobTracker) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class NoProgress(_Base):
    def __call__(self, event: Event, job: JobTracker) -> None:
        pass


class RichProgress(_Base):
    """Overall bar (nodes done / total) + current-node step bar."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console or Console(stderr=True)
        self.bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._overall: TaskID | None = None
        self._step: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self.bars.start()
        self._overall = self.bars.add_task("waiting for the server", total=None)
        self._step = self.bars.add_task("", total=None, visible=False)
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def __call__(self, event: Event, job: JobTracker) -> None:
        assert self._overall is not None and self._step is not None
        if event.type == ev.WS_DROPPED:
            self.console.log("websocket dropped; reconnecting")
        elif event.type == ev.RESUBMITTED:
            self.console.log("prompt vanished from the server (restart?); submitted again")
        if not job.started:
            ahead = job.queue_remaining
            desc = f"queued ({ahead} in queue)" if ahead else "queued"
        elif job.done:
            desc = "finished"
        else:
            desc = "nodes"
        self.bars.update(self._overall, description=desc, total=job.total or None, completed=job.nodes_done)
        if job.current is None or job.done:
            self.bars.update(self._step, visible=False)
            return
        value, maximum = job.step if job.step else (0.0, None)
        self.bars.update(
            self._step, visible=True, description=f"  {job.label(job.current)}", total=maximum or None, completed=value
        )


class LogProgress(_Base):
    """One line per node start, throttled step lines, and driver events."""

    def __init__(self, stream: IO[str] | None = None, step_every_s: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.step_every_s = step_every_s
        self._last_step = 0.0
        self._node: str | None = None

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, event: Event, job: JobTracker) -> None:
        pid = job.prompt_id[:8]
        t = event.type
        if t == ev.SUBMITTED:
            self._line(f"[{pid}] queued on {event.data.get('server', '')}")
        elif t == ev.WS_DROPPED:
            self._line(f"[{pid}] websocket dropped; reconnecting")
        elif t == ev.WS_RECONNECTED:
            self._line(f"[{pid}] websocket reconnected; resyncing from /queue and /history")
        elif t == ev.HISTORY_POLL:
            self._line(f"[{pid}] no websocket message for {event.data.get('silent_s')} s; polling /history")
        elif t == ev.RESUBMITTED:
            self._line(f"[{pid}] prompt vanished from the server; submitted again")
        elif t == "execution_cached" and job.cached:
            self._line(f"[{pid}] cached: {len(job.cached)} of {job.total} nodes")
        elif t == "executing" and job.current is not None and job.current != self._node:
            self._node = job.current
            self._line(f"[{pid}] [{job.nodes_done + 1}/{job.total}] node {job.label(job.current)}")
        elif t == "progress" and job.step:
            now = time.monotonic()
            value, maximum = job.step
            if now - self._last_step >= self.step_every_s or value >= maximum:
                self._last_step = now
                self._line(f"[{pid}]   step {value:g}/{maximum:g}")
        elif t == "execution_error":
            self._line(f"[{pid}] node {job.label(str(event.data.get('node_id')))} failed")
        elif t == "execution_interrupted":
            self._line(f"[{pid}] interrupted")
        elif t == "executing" and event.data.get("node") is None and job.done:
            self._line(f"[{pid}] finished ({job.status})")


class JsonEvents(_Base):
    """Every event as one JSON line (previews without their bytes)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: Event, job: JobTracker) -> None:
        record: dict[str, Any] = event.to_json()
        record["job"] = {
            "status": job.status,
            "nodes_done": job.nodes_done,
            "total": job.total,
            "current": job.current,
            "step": list(job.step) if job.step else None,
        }
        self.stream.write(json.dumps(record, default=str) + "\n")
        self.stream.flush()


def _plainly_not_a_terminal() -> bool:
    """stderr is no TTY and nothing asks rich to treat it as one (FORCE_COLOR,
    TTY_COMPATIBLE): then "auto" means log lines, decided without importing rich."""
    if "FORCE_COLOR" in os.environ or "TTY_COMPATIBLE" in os.environ:
        return False
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):
        return True


def make_progress(mode: Mode = "auto", console: Console | None = None) -> _Base:
    """auto: bars on a terminal, log lines otherwise (rich is imported only for bars)."""
    if mode == "auto":
        if console is None and _plainly_not_a_terminal():
            return LogProgress()
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        mode = "bar" if console.is_terminal else "log"
    if mode == "bar":
        return RichProgress(console)
    if mode == "log":
        return LogProgress()
    if mode == "json":
        return JsonEvents()
    return NoProgress()
