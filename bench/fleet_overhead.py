"""What fleet mode costs: trivial jobs through broker -> worker -> ComfyUI against the direct batch.

Both paths run the same N trivial prompts (EmptyImage -> SaveImage) on the same ComfyUI with
the same concurrency, outputs downloaded and recorded in a SQLite job database:

- direct: ``BatchRunner`` in this process (what ``comfy-avatar batch`` does);
- fleet: N ``submit``s (job record + persistent message with publisher confirm + queued
  event) to a RabbitMQ started here, one ``comfy-avatar worker`` process consuming them.

Prints both wall times, their ratio, the per-job overhead in ms ((fleet - direct) / N), the
submit cost per job, and the latency of one job alone (submit -> record final) against one
direct ``ComfyClient.run`` + download.

    python bench/fleet_overhead.py [--jobs 200] [--concurrency 2] [--real]

ComfyUI: the fake from tests/_fake_comfy.py in another process (its own work is near zero, so
the difference is the fleet's own cost), or with --real the ComfyUI in COMFYUI_DIR (--cpu).
Needs rabbitmq-server (Debian) and the fleet extra.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

FAKE = """
import sys
sys.path.insert(0, sys.argv[1])
from _fake_comfy import FakeComfy
with FakeComfy() as fake:
    fake._httpd.RequestHandlerClass.disable_nagle_algorithm = True
    print(fake.url, flush=True)
    sys.stdin.read()
"""


def prompt(i: int) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": i % 255}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"bench/p{i}"}},
    }


def direct(url: str, n: int, concurrency: int, tmp: Path) -> float:
    from driver.batch import BatchJob, BatchOptions, BatchRunner, job_prompt_id
    from driver.pool import ServerPool
    from driver.store import JobStore

    store = JobStore(f"sqlite:///{tmp / 'direct.db'}")
    batch = f"bench-{time.time_ns()}"
    jobs = [
        BatchJob(i, f"{batch}-{i:05d}", job_prompt_id(batch, i), prompt(i), tmp / "direct" / f"{i:05d}")
        for i in range(n)
    ]
    t0 = time.perf_counter()
    summary = BatchRunner(
        jobs,
        ServerPool([url]),
        BatchOptions(batch_id=batch, concurrency=concurrency, forward_progress=False),
        store=store,
    ).run()
    wall = time.perf_counter() - t0
    assert summary.succeeded == n, summary.to_dict()
    store.close()
    return wall


def direct_one(url: str, tmp: Path) -> float:
    from driver.client import ComfyClient

    with ComfyClient(url) as c:
        t0 = time.perf_counter()
        c.download(c.run(prompt(7)), tmp / "one")
        return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--single", type=int, default=10, help="jobs run one at a time for the latency figure")
    ap.add_argument("--real", action="store_true", help="use the ComfyUI in COMFYUI_DIR instead of the fake")
    args = ap.parse_args()

    from _fleet_helpers import FAST_ENV, WorkerProc
    from _rabbitmq import RabbitServer

    from driver.fleet.broker import Publisher
    from driver.fleet.messages import make_job
    from driver.fleet.settings import FleetSettings
    from driver.fleet.submit import submit_job
    from driver.store import TERMINAL, JobStore

    tmp = Path(tempfile.mkdtemp(prefix="ca-fleet-bench-"))
    fake = local = None
    try:
        if args.real:
            from driver.local import LocalComfy

            local = LocalComfy(os.environ["COMFYUI_DIR"], start_timeout=300)
            local.start()
            url, where = local.url, f"ComfyUI in {local.comfyui_dir} (--cpu)"
        else:
            fake = subprocess.Popen(
                [sys.executable, "-c", FAKE, str(ROOT / "tests")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            url, where = fake.stdout.readline().strip(), "the fake ComfyUI in another process"
        n, c = args.jobs, args.concurrency
        t_direct = direct(url, n, c, tmp)
        t_direct_one = min(direct_one(url, tmp) for _ in range(args.single))

        with RabbitServer() as rmq:
            db = str(tmp / "fleet.db")
            env = {
                **os.environ,
                **FAST_ENV,
                "COMFY_AVATAR__FLEET__HEARTBEAT_S": "30",
                "COMFY_AVATAR__FLEET__LEASE_S": "60",
                "COMFY_AVATAR_BROKER": rmq.url,
                "COMFY_AVATAR__FLEET__PREFIX": "bench",
            }
            settings = FleetSettings.load(env=env)
            store = JobStore(db)
            worker = WorkerProc(env, url, tmp / "fleet-out", db, "bench", tmp / "worker.log", concurrency=c)
            try:
                with Publisher(settings, "bench") as pub:

                    def submit(i: int) -> str:
                        msg = make_job(prompt(i), workflow_name="bench.api.json")
                        submit_job(msg, pub, store)
                        return msg.job_id

                    def wait(ids: list[str], timeout: float = 600) -> None:
                        # one cheap query per poll (the bench must not load the machine it measures)
                        deadline = time.monotonic() + timeout
                        while sum(n for s, n in store.counts("fleet").items() if s in TERMINAL) < done[0] + len(ids):
                            assert time.monotonic() < deadline, worker.log()[-3000:]
                            time.sleep(0.005 if len(ids) == 1 else 0.05)
                        done[0] += len(ids)
                        assert store.counts("fleet").get("succeeded") == done[0], worker.log()[-3000:]

                    done = [0]

                    wait([submit(10_000)], 120)  # the worker is up and warm
                    t0 = time.perf_counter()
                    ids = [submit(i) for i in range(n)]
                    t_submit = time.perf_counter() - t0
                    wait(ids)
                    t_fleet = time.perf_counter() - t0
                    singles = []
                    for i in range(args.single):
                        t1 = time.perf_counter()
                        wait([submit(20_000 + i)])
                        singles.append(time.perf_counter() - t1)
            finally:
                worker.stop()
                store.close()
        ratio = t_fleet / t_direct
        print(f"{n} trivial jobs, concurrency {c}, on {where}; RabbitMQ {rmq.url.split('@')[1]}")
        print(f"  direct batch (BatchRunner):             {t_direct:7.2f} s  {1000 * t_direct / n:7.2f} ms per job")
        print(f"  fleet (submit -> broker -> worker):     {t_fleet:7.2f} s  {1000 * t_fleet / n:7.2f} ms per job")
        print(
            f"    of which submitting all {n}:          {t_submit:7.2f} s  {1000 * t_submit / n:7.2f} ms per submit "
            "(record + confirmed persistent publish + event)"
        )
        print(f"  ratio fleet / direct:                   {ratio:7.2f} x")
        print(f"  per-job overhead of the fleet:          {1000 * (t_fleet - t_direct) / n:7.2f} ms")
        print(
            f"  one job alone: direct {1000 * t_direct_one:.1f} ms, fleet (submit -> record final) "
            f"{1000 * min(singles):.1f} ms (best of {args.single}; median {1000 * sorted(singles)[len(singles) // 2]:.1f})"
        )
        print(
            json.dumps(
                {
                    "jobs": n,
                    "concurrency": c,
                    "direct_s": round(t_direct, 3),
                    "fleet_s": round(t_fleet, 3),
                    "ratio": round(ratio, 2),
                    "overhead_ms_per_job": round(1000 * (t_fleet - t_direct) / n, 2),
                    "submit_ms_per_job": round(1000 * t_submit / n, 2),
                    "single_direct_ms": round(1000 * t_direct_one, 1),
                    "single_fleet_ms": round(1000 * min(singles), 1),
                }
            )
        )
    finally:
        if fake is not None:
            fake.stdin.close()
            fake.wait(10)
        if local is not None:
            local.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
