"""Job leases in the job database: which worker runs a job right now, and until when.

Why: RabbitMQ delivers a message at least once. A second copy can reach a second worker
while the first still runs the job (a publisher resent a message whose confirm was lost in
a broker restart; a worker's connection dropped and its unacked message was requeued while
its job thread kept going). A lease, renewed every lease_s/3 by the worker that holds it,
lets the second worker see that the job is in good hands and put its copy back (deferred
through a retry queue, not dropped: if the holder dies the copy is what brings the job
back). A lease that was not renewed in time belongs to a dead worker and can be taken over;
its ``server`` tells the new holder where to look for the prompt before running it again.

One small table of its own (``ca_fleet_leases``), created beside the job tables, so the
job records' schema stays as it is. Times are epoch seconds from the workers' clocks (keep
them NTP-synced; a lease is tens of seconds, clock skew must stay well below that).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Column, Float, MetaData, String, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..errors import DriverError
from ..store import JobStore

_META = MetaData()
LEASES = Table(
    "ca_fleet_leases",
    _META,
    Column("job_id", String(64), primary_key=True),
    Column("owner", String(256), nullable=False),
    Column("server", String(512), nullable=False),
    Column("expires_at", Float, nullable=False),
)


class LeaseError(DriverError):
    transient = True


@dataclass(frozen=True)
class Claim:
    ok: bool
    holder: str = ""  # who holds it (when not ok)
    expires_in_s: float = 0.0  # when not ok: how long the holder's lease still runs
    previous_server: str = ""  # the ComfyUI of the last holder (when taken over)
    previous_owner: str = ""


class Leases:
    def __init__(self, store: JobStore, clock: object = time.time) -> None:
        self.engine = store.engine
        # Writes go through the store's own write path: on SQLite that is the process's one
        # writing connection (a second one would wait on the first's file lock in busy sleeps).
        self._write = store._write
        self._clock = clock
        try:
            _META.create_all(self.engine)
        except SQLAlchemyError as e:
            raise LeaseError(
                "job database",
                f"cannot create the lease table: {type(e).__name__}",
                "check COMFY_AVATAR_DB / --db and that the database is reachable",
            ) from None

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def claim(self, job_id: str, owner: str, server: str, ttl_s: float) -> Claim:
        """Take the job's lease if nobody holds a live one (or ``owner`` already does)."""
        now = self._now()
        try:
            with self._write() as conn:
                row = conn.execute(select(LEASES).where(LEASES.c.job_id == job_id)).first()
                if row is not None:
                    if row.owner != owner and row.expires_at > now:
                        return Claim(False, row.owner, row.expires_at - now)
                    # compare-and-swap on what was read: two takers of an expired lease, one wins
                    n = conn.execute(
                        update(LEASES)
                        .where(
                            LEASES.c.job_id == job_id,
                            LEASES.c.owner == row.owner,
                            LEASES.c.expires_at == row.expires_at,
                        )
                        .values(owner=owner, server=server, expires_at=now + ttl_s)
                    ).rowcount
                    if n == 1:
                        return Claim(
                            True,
                            previous_server=row.server if row.owner != owner else "",
                            previous_owner=row.owner if row.owner != owner else "",
                        )
                    return Claim(False, "another worker", 1.0)
            try:
                with self._write() as conn:
                    conn.execute(
                        insert(LEASES).values(job_id=job_id, owner=owner, server=server, expires_at=now + ttl_s)
                    )
                return Claim(True)
            except IntegrityError:
                return Claim(False, "another worker", 1.0)  # inserted by someone a moment ago
        except SQLAlchemyError as e:
            raise LeaseError(
                f"lease of job {job_id}",
                f"database error {type(e).__name__}",
                "check that the job database is reachable",
            ) from None

    def renew(self, job_ids: list[str], owner: str, ttl_s: float) -> list[str]:
        """Extend the leases ``owner`` holds; returns the ids it no longer holds (taken over)."""
        lost = []
        now = self._now()
        with self._write() as conn:
            for jid in job_ids:
                n = conn.execute(
                    update(LEASES).where(LEASES.c.job_id == jid, LEASES.c.owner == owner).values(expires_at=now + ttl_s)
                ).rowcount
                if n != 1:
                    lost.append(jid)
        return lost

    def release(self, job_id: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute(delete(LEASES).where(LEASES.c.job_id == job_id, LEASES.c.owner == owner))

    def holder(self, job_id: str) -> tuple[str, str, float] | None:
        """(owner, server, seconds left) of the job's lease, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(LEASES).where(LEASES.c.job_id == job_id)).first()
        return None if row is None else (row.owner, row.server, row.expires_at - self._now())
