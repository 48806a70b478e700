"""driver.store: job records in SQLite (WAL, readable from another process while a
batch writes) and in a real PostgreSQL server started by the test."""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from driver.store import (
    CANCELLED,
    FAILED,
    PENDING,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    JobStore,
    StoreError,
    canonical_hash,
    default_url,
)

ROOT = Path(__file__).resolve().parents[1]


def _fill(store: JobStore, n: int = 3, batch: str = "b1") -> list[str]:
    ids = []
    for i in range(n):
        jid = f"{batch}-{i:04d}"
        store.add_job(
            job_id=jid,
            prompt_id=f"pid-{batch}-{i}",
            workflow_hash=canonical_hash({"i": i}),
            workflow_path="wf.json",
            params={"row": i},
            batch_id=batch,
            label=f"row {i}",
        )
        ids.append(jid)
    return ids


def exercise(store: JobStore) -> None:
    """The behaviour every backend must have."""
    ids = _fill(store)
    store.set_status(ids[0], SUBMITTED, server="http://a:1", attempts=1)
    store.set_status(ids[0], RUNNING)
    store.set_status(ids[0], SUCCEEDED, timings={"2": 0.5}, duration_s=1.25, detail="ok")
    store.add_outputs(
        ids[0],
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
    store.set_status(ids[1], FAILED, error="node 3 (KSampler): boom")

    rec = store.get(ids[0])
    assert [h["status"] for h in rec.history] == [PENDING, SUBMITTED, RUNNING, SUCCEEDED]
    stamps = [h["at"] for h in rec.history]
    assert stamps == sorted(stamps) and all(s.endswith("+00:00") for s in stamps)
    assert rec.server == "http://a:1" and rec.attempts == 1 and rec.duration_s == 1.25
    assert rec.timings == {"2": 0.5} and rec.params == {"row": 0}
    assert rec.outputs[0]["sha256"] == "ab" * 32 and rec.outputs[0]["path"] == "/o/x.png"
    assert rec.finished_at is not None
    assert store.get("pid-b1-0").id == ids[0], "found by prompt_id"
    assert store.get("b1-0001").error == "node 3 (KSampler): boom"
    with pytest.raises(StoreError, match="several jobs"):
        store.get("b1-")
    with pytest.raises(StoreError, match="not in the job database"):
        store.get("nope")
    assert [r.id for r in store.list(batch_id="b1")] == list(reversed(ids))
    assert [r.id for r in store.list(status=FAILED)] == [ids[1]]
    assert store.counts("b1") == {SUCCEEDED: 1, FAILED: 1, PENDING: 1}
    assert store.latest_batch() == "b1"
    json.dumps(rec.to_dict())
    # a terminal state never changes again, and racing writers leave exactly one
    assert store.set_status(ids[0], RUNNING) is False and store.get(ids[0]).status == SUCCEEDED
    store.request_cancel([ids[2]])
    assert store.status_of(ids[2]) == (PENDING, True)
    results: list[bool] = []
    racers = [
        threading.Thread(target=lambda st=st: results.append(store.set_status(ids[2], st)))
        for st in (FAILED, CANCELLED, SUCCEEDED, FAILED)
    ]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert sum(h["status"] in (FAILED, CANCELLED, SUCCEEDED) for h in store.get(ids[2]).history) == 1
    with pytest.raises(StoreError, match="not in the job database"):
        store.set_status("ghost", RUNNING)


def test_sqlite_records_history_outputs_and_lookups(tmp_path: Path) -> None:
    with JobStore(f"sqlite:///{tmp_path / 'jobs.db'}") as store:
        exercise(store)


def test_location_comes_from_env_or_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMFY_AVATAR_DB", str(tmp_path / "a" / "j.db"))
    assert default_url() == f"sqlite:///{tmp_path / 'a' / 'j.db'}"
    monkeypatch.setenv("COMFY_AVATAR_DB", "postgresql+psycopg://u@h/db")
    assert default_url() == "postgresql+psycopg://u@h/db"
    monkeypatch.delenv("COMFY_AVATAR_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_url() == f"sqlite:///{tmp_path / 'xdg' / 'comfy-avatar' / 'jobs.db'}"
    store = JobStore()  # creates the folder and the tables
    assert (tmp_path / "xdg" / "comfy-avatar" / "jobs.db").is_file()
    store.close()


def test_sqlite_is_wal_and_another_process_reads_while_a_batch_writes(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    store = JobStore(f"sqlite:///{db}")
    ids = _fill(store, 1)
    with store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    stop = threading.Event()
    writes = [0]

    def writer() -> None:
        while not stop.is_set():
            store.set_status(ids[0], RUNNING, detail=str(writes[0]))
            writes[0] += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        code = (
            "import sys,time; sys.path.insert(0, sys.argv[2]); from driver.store import JobStore\n"
            "s = JobStore('sqlite:///' + sys.argv[1]); t = time.monotonic(); n = 0\n"
            "while time.monotonic() - t < 1.5:\n"
            "    n = len(s.get('b1-0000').history); assert s.list()[0].id == 'b1-0000'\n"
            "print(n)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(db), str(ROOT)], capture_output=True, text=True, timeout=60
        )
    finally:
        stop.set()
        t.join()
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 1 and writes[0] > 10, "the reader saw the writer's progress"
    store.close()


def test_bad_urls_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        JobStore("nodriver+x://a:b:c")
    with pytest.raises(StoreError, match="Fix: check COMFY_AVATAR_DB"):
        JobStore(f"postgresql+psycopg://nobody@127.0.0.1:{_free_port()}/x?connect_timeout=2")


# --------------------------------------------------------------------------- PostgreSQL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(cand, "initdb").exists() and Path(cand, "pg_ctl").exists():
            return Path(cand)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (initdb + pg_ctl as a non-root user)."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install -y postgresql")
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to own the cluster")
        run_as = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="ca-pg-"))
    os.chmod(base, 0o755)
    if run_as:
        os.chown(base, user.pw_uid, user.pw_gid)
    data, port = base / "data", _free_port()
    env = {**os.environ, "LC_ALL": "C"}
    try:
        subprocess.run(
            [*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            env=env,
            timeout=120,
        )
        subprocess.run(
            [
                *run_as,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(base / "log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
            env=env,
            timeout=120,
        )
    except subprocess.CalledProcessError as e:
        shutil.rmtree(base, ignore_errors=True)
        raise AssertionError(f"could not start PostgreSQL: {e.stderr.decode(errors='replace')}") from e
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            env=env,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)


def test_postgresql_backend_behaves_like_sqlite(postgres_url: str) -> None:
    with JobStore(postgres_url) as store:
        exercise(store)
    # a second process (another shell) sees the same records through the URL
    code = (
        "import sys; sys.path.insert(0, sys.argv[2]); from driver.store import JobStore\n"
        "print(JobStore(sys.argv[1]).get('b1-0000').status)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, postgres_url, str(ROOT)], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == SUCCEEDED, out.stderr


def test_postgresql_concurrent_writers(postgres_url: str) -> None:
    with JobStore(postgres_url) as store:
        ids = _fill(store, 8, "c")
        errors: list[BaseException] = []

        def work(jid: str) -> None:
            try:
                for st in (SUBMITTED, RUNNING, SUCCEEDED):
                    store.set_status(jid, st)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work, args=(j,)) for j in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert store.counts("c") == {SUCCEEDED: 8}
        assert all(len(store.get(j).history) == 4 for j in ids)
