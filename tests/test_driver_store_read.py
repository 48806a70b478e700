"""driver/store_read.py: the stdlib reader behind `status` / `list` gives the same records as
JobStore, and those commands no longer import SQLAlchemy (it was ~0.5-2 s of their start)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from driver.store import FAILED, RUNNING, SUBMITTED, SUCCEEDED, JobStore, canonical_hash
from driver.store_read import StoreReadError, open_reader

ROOT = Path(__file__).resolve().parents[1]


def _filled(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with JobStore(url) as store:
        for i in range(3):
            store.add_job(
                job_id=f"b1-{i:04d}",
                prompt_id=f"pid-b1-{i}",
                workflow_hash=canonical_hash({"i": i}),
                workflow_path="wf.json",
                params={"row": i},
                batch_id="b1",
                label=f"row {i}",
            )
        store.set_status("b1-0000", SUBMITTED, server="http://a:1", attempts=1)
        store.set_status("b1-0000", RUNNING)
        store.set_status("b1-0000", SUCCEEDED, timings={"2": 0.5}, duration_s=1.25, detail="ok")
        store.add_outputs(
            "b1-0000",
            [
                {
                    "node_id": "9",
                    "key": "images",
                    "filename": "x_00001_.png",
                    "subfolder": "s",
                    "type": "output",
                    "path": "/o/x.png",
                    "sha256": "ab" * 32,
                    "size": 10,
                }
            ],
        )
        store.set_status("b1-0001", FAILED, error="node 3 (KSampler): boom")
    return url


def test_reader_matches_jobstore(tmp_path: Path) -> None:
    url = _filled(tmp_path)
    reader = open_reader(url)
    assert reader is not None
    with reader, JobStore(url) as store:
        for ref in ("b1-0000", "pid-b1-1", "b1-0002"):
            assert reader.get(ref).to_dict() == store.get(ref).to_dict()
        for kw in ({}, {"batch_id": "b1"}, {"status": FAILED}, {"limit": 2}, {"full": True}):
            assert [r.to_dict() for r in reader.list(**kw)] == [r.to_dict() for r in store.list(**kw)]
        assert reader.counts("b1") == store.counts("b1") and reader.counts() == store.counts()
        assert reader.latest_batch() == store.latest_batch() == "b1"
        with pytest.raises(StoreReadError, match="several jobs"):
            reader.get("b1-")
        with pytest.raises(StoreReadError, match="not in the job database"):
            reader.get("nope")


def test_reader_never_creates_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    assert open_reader(f"sqlite:///{missing}") is None and not missing.exists()
    assert open_reader("postgresql+psycopg://u@h/db") is None


def test_status_and_list_do_not_import_sqlalchemy(tmp_path: Path) -> None:
    url = _filled(tmp_path)
    db = url[len("sqlite:///") :]
    for argv in (["status", "--db", db], ["status", "b1-0000", "--db", db], ["list", "--db", db]):
        code = (
            f"import sys\nfrom driver.cli import main\nrc = main({argv!r})\n"
            "sys.stderr.write('MODS ' + ' '.join(sys.modules))\nsys.exit(rc)"
        )
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
        loaded = set(proc.stderr.split("MODS ")[-1].split())
        assert proc.returncode == 0, proc.stderr
        assert "b1-0000" in proc.stdout or "3 job(s)" in proc.stdout, proc.stdout
        heavy = {
            "sqlalchemy",
            "rich",
            "requests",
            "urllib3",
            "websocket",
            "driver.store",
            "driver.client",
            "driver.convert",
            "driver.batch",
        }
        assert loaded & heavy == set(), (argv, loaded & heavy)
