"""driver/prepared.py: statements run as precompiled driver SQL store exactly what
Connection.execute stores (same SQL, same type processing), and whatever it cannot
plan exactly still runs through SQLAlchemy."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from driver import store as S  # noqa: E402
from driver.prepared import Prepared  # noqa: E402


def _rows(conn, table):
    return [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]


def test_prepared_writes_the_same_rows_as_core(tmp_path: Path) -> None:
    fast = S.JobStore(f"sqlite:///{tmp_path / 'fast.db'}")
    core = S.JobStore(f"sqlite:///{tmp_path / 'core.db'}")
    t = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)
    job = {"id": "j1", "prompt_id": "p1", "batch_id": "b", "workflow_hash": "h", "params": {"seed": 1}}
    params = [
        (
            S._UPDATE_LIVE,
            {
                "b_id": "j1",
                "status": "running",
                "updated_at": t,
                "timings": {"3": 0.5},
                "error": None,
                "duration_s": 1.25,
                "server": "http://x",
            },
        ),
        (S._INSERT_STATUS, {"job_id": "j1", "status": "running", "at": t, "detail": "d é"}),
    ]
    outputs = [
        S._output_row("j1", {"node_id": 9, "filename": "a.png", "sha256": "0" * 64, "size": 3, "path": "/o/a.png"}),
        S._output_row("j1", {"node_id": "9", "key": "images", "filename": "b.png", "subfolder": "s"}),
    ]
    for st in (fast, core):
        st.add_jobs([job])
    prep = Prepared(fast.engine.dialect)
    assert prep.enabled
    with fast.engine.begin() as a, core.engine.begin() as b:
        for stmt, p in params:
            assert prep.execute(a, stmt, p).rowcount == b.execute(stmt, p).rowcount == 1
        prep.executemany(a, S._INSERT_OUTPUTS, outputs)
        b.execute(S._INSERT_OUTPUTS, outputs)
        assert prep.execute(a, S._UPDATE_LIVE, {"b_id": "nope", "status": "x", "updated_at": t}).rowcount == 0
    with fast.engine.connect() as a, core.engine.connect() as b:
        for table in (S._JOBS, S._STATUS, S._OUTPUTS):
            fa, co = _rows(a, table), _rows(b, table)
            if table is S._JOBS:  # created_at differs (two add_jobs calls)
                fa, co = [r[:-3] + r[-2:] for r in fa], [r[:-3] + r[-2:] for r in co]
            if table is S._STATUS:  # so does the time of the 'pending' row
                fa, co = fa[1:], co[1:]
            assert fa == co
    rec = fast.get("j1")
    assert rec.timings == {"3": 0.5} and rec.updated_at.replace(tzinfo=dt.timezone.utc) == t
    assert [h["detail"] for h in rec.history] == [None, "d é"] and [o["filename"] for o in rec.outputs] == [
        "a.png",
        "b.png",
    ]
    fast.close()
    core.close()


def test_statements_it_cannot_plan_run_through_sqlalchemy(tmp_path: Path) -> None:
    st = S.JobStore(f"sqlite:///{tmp_path / 'j.db'}")
    prep = Prepared(st.engine.dialect)
    st.add_jobs([{"id": "j1", "prompt_id": "p1", "workflow_hash": "h"}])
    # No 'at': the column's Python-side default (now) must be computed by SQLAlchemy.
    stmt = insert(S._STATUS)
    assert prep._plan(stmt, {"job_id": "j1", "status": "x"})[0] == ""
    with st.engine.begin() as conn:
        prep.execute(conn, stmt, {"job_id": "j1", "status": "x"})
    assert st.get("j1").history[-1]["at"] is not None
    st.close()
