"""The light half of the job store: job states, the database URL, and :class:`JobRecord`.

Why a separate module: driver/store.py needs SQLAlchemy (~0.5-2 s to import); read-only
commands (``status``, ``list`` on SQLite, driver/store_read.py) need only these.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DB_ENV = "COMFY_AVATAR_DB"

# Job states. Terminal ones never change again.
PENDING, SUBMITTED, RUNNING, RETRYING = "pending", "submitted", "running", "retrying"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})


def to_url(raw: str) -> str:
    """A SQLAlchemy URL as is; anything else is a SQLite file path."""
    raw = raw.strip()
    return raw if "://" in raw else f"sqlite:///{Path(raw).expanduser().resolve()}"


def default_url() -> str:
    raw = os.environ.get(DB_ENV, "").strip()
    if raw:
        return to_url(raw)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return f"sqlite:///{base / 'comfy-avatar' / 'jobs.db'}"


@dataclass
class JobRecord:
    """A read-only snapshot of one job."""

    id: str
    batch_id: str | None
    label: str
    workflow_path: str
    workflow_hash: str
    params: dict[str, Any]
    server: str | None
    prompt_id: str
    status: str
    attempts: int
    error: str | None
    timings: dict[str, Any]
    duration_s: float | None
    out_dir: str | None
    cancel_requested: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None
    history: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k in ("created_at", "updated_at", "finished_at"):
            d[k] = iso(d[k])
        return d


def iso(t: dt.datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None:  # SQLite hands back naive datetimes (stored as UTC)
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.isoformat(timespec="milliseconds")
