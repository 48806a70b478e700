"""Read job records from a SQLite job database with the stdlib alone (no SQLAlchemy).

Why: ``comfy-avatar status`` and ``list`` only read, and importing SQLAlchemy plus the ORM
models (driver/store.py) costs ~0.5 s on an idle 2-core machine and 2 s on a loaded one,
several times the command's real work. This reader answers the same questions as
:class:`driver.store.JobStore` (get / list / counts / latest_batch) with the same
:class:`JobRecord` values, straight from the tables JobStore made. It opens the file
read-only (``mode=ro``; WAL lets it read while a batch writes) and never creates one:
:func:`open_reader` returns None for anything that is not an existing SQLite file (a
PostgreSQL URL, a missing file), and the caller then uses JobStore.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import DriverError
from .records import JobRecord, iso

_COLS = (
    "id, batch_id, label, workflow_path, workflow_hash, params, server, prompt_id, status, attempts, error, "
    "timings, duration_s, out_dir, cancel_requested, created_at, updated_at, finished_at"
)


class StoreReadError(DriverError):
    pass


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL, None for any other URL (or an in-memory DB)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _time(v: Any) -> dt.datetime | None:
    """SQLAlchemy stores DateTime in SQLite as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC, naive)."""
    if v is None:
        return None
    return dt.datetime.fromisoformat(str(v))


def _time_req(v: Any, column: str) -> dt.datetime:
    """A NOT NULL timestamp column; a NULL there means the database was written by something else."""
    t = _time(v)
    if t is None:
        raise ValueError(f"ca_jobs.{column} is NULL: the job database is corrupt or not written by this driver")
    return t


def _json(v: Any) -> dict[str, Any]:
    if v in (None, ""):
        return {}
    data = json.loads(v) if isinstance(v, (str, bytes)) else v
    return dict(data or {})


class JobReader:
    """Read-only queries on one SQLite job database (one connection, this thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        uri = f"file:{quote(str(path))}?mode=ro"
        self._db = sqlite3.connect(uri, uri=True, timeout=30)
        self._db.execute("PRAGMA busy_timeout=30000")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, row: tuple, full: bool) -> JobRecord:
        (
            jid,
            batch,
            label,
            wpath,
            whash,
            params,
            server,
            prompt_id,
            status,
            attempts,
            error,
            timings,
            duration,
            out_dir,
            cancel,
            created,
            updated,
            finished,
        ) = row
        history: list[dict[str, Any]] = []
        outputs: list[dict[str, Any]] = []
        if full:
            history = [
                {"status": s, "at": iso(_time(at)), "detail": d}
                for s, at, d in self._db.execute(
                    "SELECT status, at, detail FROM ca_job_status WHERE job_id = ? ORDER BY id", (jid,)
                )
            ]
            outputs = [
                {"node_id": n, "key": k, "filename": f, "subfolder": sf, "type": t, "path": p, "sha256": h, "size": sz}
                for n, k, f, sf, t, p, h, sz in self._db.execute(
                    "SELECT node_id, key, filename, subfolder, type, path, sha256, size FROM ca_job_outputs "
                    "WHERE job_id = ? ORDER BY id",
                    (jid,),
                )
            ]
        return JobRecord(
            id=jid,
            batch_id=batch,
            label=label or "",
            workflow_path=wpath or "",
            workflow_hash=whash,
            params=_json(params),
            server=server,
            prompt_id=prompt_id,
            status=status,
            attempts=int(attempts or 0),
            error=error,
            timings=_json(timings),
            duration_s=duration,
            out_dir=out_dir,
            cancel_requested=bool(cancel),
            created_at=_time_req(created, "created_at"),
            updated_at=_time_req(updated, "updated_at"),
            finished_at=_time(finished),
            history=history,
            outputs=outputs,
        )

    def get(self, ref: str) -> JobRecord:
        """A job by id, prompt_id, or a unique prefix of either (as JobStore.get)."""
        row = (
            self._db.execute(f"SELECT {_COLS} FROM ca_jobs WHERE id = ?", (ref,)).fetchone()
            or self._db.execute(f"SELECT {_COLS} FROM ca_jobs WHERE prompt_id = ?", (ref,)).fetchone()
        )
        if row is None:
            esc = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self._db.execute(
                f"SELECT {_COLS} FROM ca_jobs WHERE id LIKE ? ESCAPE '\\' OR prompt_id LIKE ? ESCAPE '\\' LIMIT 3",
                (esc, esc),
            ).fetchall()
            if len(rows) > 1:
                raise StoreReadError(
                    f"job {ref!r}", f"matches several jobs ({', '.join(r[0] for r in rows)}...)", "give more of the id"
                )
            row = rows[0] if rows else None
        if row is None:
            raise StoreReadError(
                f"job {ref!r}",
                f"is not in the job database {self.path}",
                "list the jobs with 'comfy-avatar list' (and check COMFY_AVATAR_DB)",
            )
        return self._record(row, True)

    def list(
        self, *, batch_id: str | None = None, status: str | None = None, limit: int | None = 50, full: bool = False
    ) -> list[JobRecord]:
        """Newest first (as JobStore.list)."""
        where, params = [], []
        if batch_id:
            where.append("batch_id = ?")
            params.append(batch_id)
        if status:
            where.append("status = ?")
            params.append(status)
        sql = f"SELECT {_COLS} FROM ca_jobs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        return [self._record(r, full) for r in self._db.execute(sql, params).fetchall()]

    def counts(self, batch_id: str | None = None) -> dict[str, int]:
        if batch_id:
            rows = self._db.execute(
                "SELECT status, count(*) FROM ca_jobs WHERE batch_id = ? GROUP BY status", (batch_id,)
            )
        else:
            rows = self._db.execute("SELECT status, count(*) FROM ca_jobs GROUP BY status")
        return {s: n for s, n in rows}

    def latest_batch(self) -> str | None:
        row = self._db.execute(
            "SELECT batch_id FROM ca_jobs WHERE batch_id IS NOT NULL ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        return row[0] if row else None


def open_reader(url: str) -> JobReader | None:
    """A JobReader for an existing SQLite job database with the tables, else None (use JobStore)."""
    path = sqlite_path(url)
    if path is None or not path.is_file() or not os.access(path, os.R_OK):
        return None
    try:
        reader = JobReader(path)
        if (
            reader._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ca_jobs'").fetchone()
            is None
        ):
            reader.close()
            return None
    except sqlite3.Error:
        return None
    return reader


__all__ = ["JobReader", "open_reader", "sqlite_path", "StoreReadError"]
