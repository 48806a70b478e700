"""Job records that outlive ComfyUI's in-memory /history (SQLAlchemy 2).

Every job: id, batch, workflow hash, params, server, prompt_id, status with a timed
history of every change, attempts, error, timings and output files with sha256.

Where: ``COMFY_AVATAR_DB`` (a SQLAlchemy URL such as
``postgresql+psycopg://user@host/db``, or a file path for SQLite), else
``$XDG_DATA_HOME/comfy-avatar/jobs.db`` (``~/.local/share/comfy-avatar/jobs.db``).
SQLite runs in WAL mode with a busy timeout, so ``comfy-avatar status`` / ``list``
from another shell read while a batch writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from .errors import DriverError
from .prepared import Prepared

# The light parts (states, URLs, JobRecord) live in records.py so that read-only commands
# (driver/store_read.py) need no SQLAlchemy; they are re-exported here.
from .records import (  # noqa: F401
    CANCELLED,
    DB_ENV,
    FAILED,
    PENDING,
    RETRYING,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    TERMINAL,
    JobRecord,
    default_url,
    to_url,
)
from .records import iso as _iso

log = logging.getLogger("comfy_avatar.driver.store")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class _Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, dt.datetime: DateTime(timezone=True)}


class JobRow(_Base):
    __tablename__ = "ca_jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    batch_id: Mapped[str | None] = mapped_column(String(64), index=True)
    label: Mapped[str] = mapped_column(String(512), default="")
    workflow_path: Mapped[str] = mapped_column(Text, default="")
    workflow_hash: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    server: Mapped[str | None] = mapped_column(String(512))
    prompt_id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    duration_s: Mapped[float | None] = mapped_column(Float)
    out_dir: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_now)
    finished_at: Mapped[dt.datetime | None] = mapped_column()

    history: Mapped[list[StatusRow]] = relationship(order_by="StatusRow.id", cascade="all, delete-orphan")
    outputs: Mapped[list[OutputRow]] = relationship(order_by="OutputRow.id", cascade="all, delete-orphan")


class StatusRow(_Base):
    __tablename__ = "ca_job_status"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("ca_jobs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(default=_now)
    detail: Mapped[str | None] = mapped_column(Text)


class OutputRow(_Base):
    __tablename__ = "ca_job_outputs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("ca_jobs.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(Text)
    subfolder: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[str] = mapped_column(String(16), default="output")
    path: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(Integer)


def _output_row(job_id: str, o: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "node_id": str(o["node_id"]),
        "key": str(o.get("key", "")),
        "filename": str(o["filename"]),
        "subfolder": str(o.get("subfolder") or ""),
        "type": str(o.get("type") or "output"),
        "path": o.get("path"),
        "sha256": o.get("sha256"),
        "size": o.get("size"),
    }


def _table(cls: type[_Base]) -> Table:
    table = cls.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{cls.__name__}.__table__ is a {type(table).__name__}, not a Table")
    return table


# DeclarativeBase types __table__ as FromClause; for these declarative classes it is always a Table.
_JOBS, _STATUS, _OUTPUTS = _table(JobRow), _table(StatusRow), _table(OutputRow)
# "not terminal" as plain comparisons: NOT IN (...) is an expanding parameter that
# SQLAlchemy re-renders into the SQL string on every execution.
_LIVE = and_(*(_JOBS.c.status != s for s in sorted(TERMINAL)))
_UPDATE_LIVE = update(_JOBS).where(_JOBS.c.id == bindparam("b_id"), _LIVE)
_EXISTS = select(_JOBS.c.id).where(_JOBS.c.id == bindparam("b_id"))
_STATUS_OF = select(_JOBS.c.status, _JOBS.c.cancel_requested).where(_JOBS.c.id == bindparam("b_id"))
_INSERT_STATUS = insert(_STATUS)
_INSERT_OUTPUTS = insert(_OUTPUTS)
_CANCELLED_IN_BATCH = select(_JOBS.c.id).where(
    _JOBS.c.batch_id == bindparam("b_batch"), (_JOBS.c.cancel_requested.is_(True)) | (_JOBS.c.status == CANCELLED)
)


def _record(row: JobRow, full: bool = True) -> JobRecord:
    return JobRecord(
        id=row.id,
        batch_id=row.batch_id,
        label=row.label,
        workflow_path=row.workflow_path,
        workflow_hash=row.workflow_hash,
        params=dict(row.params or {}),
        server=row.server,
        prompt_id=row.prompt_id,
        status=row.status,
        attempts=row.attempts,
        error=row.error,
        timings=dict(row.timings or {}),
        duration_s=row.duration_s,
        out_dir=row.out_dir,
        cancel_requested=bool(row.cancel_requested),
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        history=[{"status": h.status, "at": _iso(h.at), "detail": h.detail} for h in row.history] if full else [],
        outputs=[
            {
                "node_id": o.node_id,
                "key": o.key,
                "filename": o.filename,
                "subfolder": o.subfolder,
                "type": o.type,
                "path": o.path,
                "sha256": o.sha256,
                "size": o.size,
            }
            for o in row.outputs
        ]
        if full
        else [],
    )


class StoreError(DriverError):
    pass


class JobStore:
    """Job records in any SQLAlchemy database (thread-safe: one short session per call)."""

    def __init__(self, url: str | None = None, *, create: bool = True) -> None:
        self.url = to_url(url) if url else default_url()
        try:
            parsed = make_url(self.url)
        except Exception as e:  # noqa: BLE001 - sqlalchemy raises ArgumentError / ValueError
            raise StoreError(
                f"job database URL {self.url!r}",
                f"not a database URL ({e})",
                f"set {DB_ENV} to a file path or e.g. postgresql+psycopg://user@host/db",
            ) from None
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kw: dict[str, Any] = {}
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kw["connect_args"] = {"timeout": 30}
        else:
            kw["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(self.url, **kw)
        except Exception as e:  # noqa: BLE001 - e.g. a missing DB driver (psycopg)
            raise StoreError(
                f"job database {self._safe_url()}",
                str(e),
                "install the database driver (pip install 'psycopg[binary]' for PostgreSQL)",
            ) from None
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite runs one writer at a time anyway: this process writes through one
        # connection, one thread at a time. Several writing connections of one process
        # would wait on each other's file locks (busy sleeps) and re-read the pages the
        # others changed on every transaction. Other processes have their own.
        self._one_writer = self.is_sqlite and bool(parsed.database) and parsed.database != ":memory:"
        self._writer: Connection | None = None
        self._sql = Prepared(self.engine.dialect)  # the per-job writes, compiled once
        self._write_lock = threading.Lock()
        if create:
            try:
                _Base.metadata.create_all(self.engine)
            except SQLAlchemyError as e:
                raise StoreError(
                    f"job database {self._safe_url()}",
                    f"cannot open or create tables: {e.__class__.__name__}: {str(e).splitlines()[0]}",
                    f"check {DB_ENV} and that the database is reachable",
                ) from None

    def _safe_url(self) -> str:
        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001
            return "(invalid URL)"

    def close(self) -> None:
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self.engine.dispose()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction (committed at the end, rolled back on an error)."""
        if not self._one_writer:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock:
            if self._writer is None or self._writer.closed:
                self._writer = self.engine.connect()
            with self._writer.begin():
                yield self._writer

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ----------------------------------------------------------------------
    def add_job(
        self,
        *,
        job_id: str,
        prompt_id: str,
        workflow_hash: str,
        workflow_path: str = "",
        params: dict[str, Any] | None = None,
        batch_id: str | None = None,
        label: str = "",
        server: str | None = None,
        out_dir: str | None = None,
    ) -> None:
        self.add_jobs(
            [
                {
                    "id": job_id,
                    "prompt_id": prompt_id,
                    "workflow_hash": workflow_hash,
                    "workflow_path": workflow_path,
                    "params": params or {},
                    "batch_id": batch_id,
                    "label": label,
                    "server": server,
                    "out_dir": out_dir,
                }
            ]
        )

    def add_jobs(self, jobs: Iterable[dict[str, Any]]) -> None:
        """Insert many pending jobs in one transaction (keys as for add_job, plus id)."""
        now = _now()
        rows = [
            {
                "batch_id": None,
                "label": "",
                "workflow_path": "",
                "server": None,
                "out_dir": None,
                **j,
                "params": j.get("params") or {},
                "status": PENDING,
                "attempts": 0,
                "cancel_requested": False,
                "timings": {},
                "created_at": now,
                "updated_at": now,
            }
            for j in jobs
        ]
        if not rows:
            return
        with self._write() as conn:
            conn.execute(insert(_JOBS), rows)
            conn.execute(
                _INSERT_STATUS, [{"job_id": r["id"], "status": PENDING, "at": now, "detail": None} for r in rows]
            )

    def set_status(self, job_id: str, status: str, *, detail: str | None = None, **fields: Any) -> bool:
        """Record a status change (with its time) and update other columns (server,
        attempts, error, timings, duration_s, prompt_id, out_dir).

        A job that reached a terminal state (succeeded, failed, cancelled) never changes
        again: the update is skipped and False returned. Several processes (a batch and a
        `cancel` from another shell) can race; exactly one terminal state wins."""
        now = _now()
        values: dict[str, Any] = {"status": status, "updated_at": now, **fields}
        if status in TERMINAL:
            values["finished_at"] = now
        # Prebuilt Core statements (not ORM sessions): this runs several times per job.
        with self._write() as conn:
            n = self._sql.execute(conn, _UPDATE_LIVE, {"b_id": job_id, **values}).rowcount
            if not n:
                if conn.execute(_EXISTS, {"b_id": job_id}).first() is None:
                    raise StoreError(f"job {job_id}", "is not in the job database", "check the job id")
                return False
            self._sql.execute(conn, _INSERT_STATUS, {"job_id": job_id, "status": status, "at": now, "detail": detail})
            return True

    def finish(
        self,
        job_id: str,
        status: str,
        outputs: Iterable[dict[str, Any]] = (),
        *,
        detail: str | None = None,
        **fields: Any,
    ) -> bool:
        """A terminal status and the job's output files in one transaction (only if the
        job is not terminal yet; False otherwise, and nothing is written)."""
        now = _now()
        rows = [_output_row(job_id, o) for o in outputs]
        with self._write() as conn:
            n = self._sql.execute(
                conn, _UPDATE_LIVE, {"b_id": job_id, "status": status, "updated_at": now, "finished_at": now, **fields}
            ).rowcount
            if not n:
                if conn.execute(_EXISTS, {"b_id": job_id}).first() is None:
                    raise StoreError(f"job {job_id}", "is not in the job database", "check the job id")
                return False
            self._sql.execute(conn, _INSERT_STATUS, {"job_id": job_id, "status": status, "at": now, "detail": detail})
            if rows:
                self._sql.executemany(conn, _INSERT_OUTPUTS, rows)
            return True

    def status_of(self, job_id: str) -> tuple[str, bool]:
        """(status, cancel_requested) of one job, cheaply."""
        with self.engine.connect() as conn:
            row = conn.execute(_STATUS_OF, {"b_id": job_id}).first()
        if row is None:
            raise StoreError(f"job {job_id}", "is not in the job database", "check the job id")
        return str(row[0]), bool(row[1])

    def cancel_requests(self, batch_id: str) -> list[str]:
        """Ids of this batch's jobs that someone asked to cancel (or cancelled)."""
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(_CANCELLED_IN_BATCH, {"b_batch": batch_id})]

    def request_cancel(self, job_ids: Iterable[str]) -> None:
        with self._write() as conn:
            conn.execute(
                update(_JOBS)
                .where(_JOBS.c.id.in_(list(job_ids)), _JOBS.c.status.not_in(TERMINAL))
                .values(cancel_requested=True, updated_at=_now())
            )

    def update(self, job_id: str, **fields: Any) -> None:
        with self._write() as conn:
            conn.execute(update(_JOBS).where(_JOBS.c.id == job_id).values(updated_at=_now(), **fields))

    def add_outputs(self, job_id: str, outputs: Iterable[dict[str, Any]]) -> None:
        rows = [_output_row(job_id, o) for o in outputs]
        if rows:
            with self._write() as conn:
                conn.execute(_INSERT_OUTPUTS, rows)

    # -- reads -----------------------------------------------------------------------
    def get(self, ref: str) -> JobRecord:
        """A job by id, prompt_id, or a unique prefix of either."""
        with self._session() as s:
            row = s.get(JobRow, ref) or s.scalars(select(JobRow).where(JobRow.prompt_id == ref)).first()
            if row is None:
                rows = s.scalars(
                    select(JobRow)
                    .where(
                        (JobRow.id.startswith(ref, autoescape=True))
                        | (JobRow.prompt_id.startswith(ref, autoescape=True))
                    )
                    .limit(3)
                ).all()
                if len(rows) > 1:
                    raise StoreError(
                        f"job {ref!r}",
                        f"matches several jobs ({', '.join(r.id for r in rows)}...)",
                        "give more of the id",
                    )
                row = rows[0] if rows else None
            if row is None:
                raise StoreError(
                    f"job {ref!r}",
                    f"is not in the job database {self._safe_url()}",
                    "list the jobs with 'comfy-avatar list' (and check COMFY_AVATAR_DB)",
                )
            return _record(row)

    def list(
        self, *, batch_id: str | None = None, status: str | None = None, limit: int | None = 50, full: bool = False
    ) -> list[JobRecord]:
        """Newest first."""
        with self._session() as s:
            q = select(JobRow)
            if batch_id:
                q = q.where(JobRow.batch_id == batch_id)
            if status:
                q = q.where(JobRow.status == status)
            q = q.order_by(JobRow.created_at.desc(), JobRow.id.desc())
            if limit:
                q = q.limit(limit)
            return [_record(r, full) for r in s.scalars(q).all()]

    def counts(self, batch_id: str | None = None) -> dict[str, int]:
        from sqlalchemy import func

        with self._session() as s:
            q = select(JobRow.status, func.count()).group_by(JobRow.status)
            if batch_id:
                q = q.where(JobRow.batch_id == batch_id)
            return {status: n for status, n in s.execute(q).all()}

    def latest_batch(self) -> str | None:
        with self._session() as s:
            return s.scalars(
                select(JobRow.batch_id).where(JobRow.batch_id.is_not(None)).order_by(JobRow.created_at.desc()).limit(1)
            ).first()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def canonical_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys, no whitespace)."""
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()
