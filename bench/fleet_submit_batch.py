"""What `submit --count` gains: N jobs submitted one confirm at a time against in batches.

Both paths write the same job records (SQLite) and publish the same persistent messages to the
same durable priority queue of a RabbitMQ started here, each with publisher confirms:

- one at a time: ``submit_job`` per job (record, publish, wait for its confirm, queued event);
- batched: ``submit_jobs`` (200 records per transaction, 200 messages per confirm wait, the
  queued events), what ``comfy-avatar submit --count N`` runs.

    python bench/fleet_submit_batch.py [--jobs 1000] [--rounds 3]

Prints the best wall time of each (ms per job) and their ratio; the queue is purged between
rounds so every round publishes to the same empty queue.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from _fleet_helpers import trivial_prompt
    from _rabbitmq import RabbitServer

    from driver.fleet.broker import Publisher
    from driver.fleet.messages import make_job
    from driver.fleet.settings import FleetSettings
    from driver.fleet.submit import submit_job, submit_jobs
    from driver.store import JobStore

    tmp = Path(tempfile.mkdtemp(prefix="ca-submit-bench-"))
    best = {"one at a time": float("inf"), "batched": float("inf")}
    try:
        with RabbitServer() as rmq:
            settings = FleetSettings.load(env={"COMFY_AVATAR_BROKER": rmq.url, "COMFY_AVATAR__FLEET__PREFIX": "bench"})
            with Publisher(settings, "bench") as pub:
                for r in range(args.rounds):
                    for how in best:
                        store = JobStore(str(tmp / f"{how[:3]}-{r}.db"))
                        msgs = [make_job(trivial_prompt(f"b{i}")) for i in range(args.jobs)]
                        t0 = time.perf_counter()
                        if how == "batched":
                            queued = sum(len(b) for b in submit_jobs(msgs, pub, store))
                        else:
                            for m in msgs:
                                submit_job(m, pub, store)
                            queued = len(msgs)
                        took = time.perf_counter() - t0
                        store.close()
                        assert queued == args.jobs
                        depth = pub.queue_depth()
                        assert depth == args.jobs, depth
                        rmq.ctl("purge_queue", settings.jobs_queue)
                        best[how] = min(best[how], took)
        n = args.jobs
        one, batch = best["one at a time"], best["batched"]
        print(f"{n} jobs submitted (record + persistent confirmed publish + event), best of {args.rounds}:")
        print(f"  one confirm at a time (submit_job):   {one:7.2f} s  {1000 * one / n:6.2f} ms per job")
        print(f"  200 per confirm wait (submit --count): {batch:7.2f} s  {1000 * batch / n:6.2f} ms per job")
        print(f"  speed-up:                              {one / batch:7.2f} x")
        print(json.dumps({"jobs": n, "one_ms": round(1000 * one / n, 3), "batch_ms": round(1000 * batch / n, 3)}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
