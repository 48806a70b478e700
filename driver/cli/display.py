"""What ``batch`` shows while it runs: BatchEvents as JSON lines (stdout), log lines
(stderr) or rich progress bars (stderr), one callable sink for BatchRunner."""

from __future__ import annotations

import json
import sys
from typing import Any

from .. import events as ev
from ..events import BatchEvent

# Fields the log lines leave out: bulky, or already in the line's prefix.
_LOG_SKIP = ("type", "outputs", "servers", "index")


class BatchDisplay:
    """``mode``: json, log, bar, none, or auto (bars on a terminal, log lines otherwise)."""

    def __init__(self, mode: str, total: int) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode, self.total = mode, total
        # The log lines leave per-node progress out: the runner need not build those events.
        self.wants_progress = mode != "log"
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._overall: Any = None

    def __enter__(self) -> BatchDisplay:
        if self.mode == "bar":
            from rich.console import Console  # rich only for bars: --json and log runs never import it
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
            self._overall = self._progress.add_task("batch", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, e: BatchEvent) -> None:
        if self.mode == "json":
            sys.stdout.write(json.dumps(e.to_json(), default=str) + "\n")
            sys.stdout.flush()
        elif self.mode == "log":
            self._log(e)
        elif self._progress is not None:
            self._bars(e)

    def _log(self, e: BatchEvent) -> None:
        if e.type == ev.JOB_PROGRESS:
            return
        line = f"[{e.type}] " + " ".join(
            f"{k}={v}" for k, v in e.to_json().items() if k not in _LOG_SKIP and v not in (None, "")
        )
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def _bars(self, e: BatchEvent) -> None:
        job, d = e.job or "", e.data
        name = e.label or job
        if e.type == ev.JOB_SUBMITTED and job not in self._tasks:
            self._tasks[job] = self._progress.add_task(f"  {name}: queued", total=None)
        elif e.type == ev.JOB_PROGRESS and job in self._tasks:
            step = d.get("step")
            desc = f"  {name}: node {d.get('node')} {d.get('node_type') or ''}".rstrip()
            self._progress.update(
                self._tasks[job], description=desc, completed=step[0] if step else None, total=step[1] if step else None
            )
        elif e.type == ev.JOB_FINISHED:
            if job in self._tasks:
                self._progress.remove_task(self._tasks.pop(job))
            self._progress.advance(self._overall)
            if d.get("status") != "succeeded":
                self._progress.console.print(f"[red]{name}: {d.get('status')}: {d.get('error')}")
        elif e.type == ev.JOB_RETRY:
            self._progress.console.print(f"[yellow]{name}: retry {d.get('attempt')}: {d.get('error')}")
