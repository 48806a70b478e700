"""``comfy-avatar submit``: put a job on the fleet's queue and print its id.

    comfy-avatar submit WORKFLOW [--input NAME=FILE | NAME=s3://bucket/key ...] [--set NODE.input=VALUE ...]
        [--seed N] [--priority high|normal|low] [--label L] [--timeout S] [--count N] --broker URL [--db URL]
        [--follow]

The message goes to a durable priority queue, persistent, with publisher confirms: when the
id is printed, the broker has the job (a broker restart does not lose it). Input files up
to 16 MiB travel inside the message; larger ones go by s3:// URL (the workers fetch them
with rclone). An editor-format workflow is converted, and --set values typed, by the worker
against its own ComfyUI's /object_info. The job record goes to the job database (--db /
COMFY_AVATAR_DB: PostgreSQL for a fleet), where status, list and cancel find it from any machine.

--count N queues N copies (with --seed S, copy i gets seed S+i), 200 at a time: each batch's
records in one transaction and its messages with one wait for all their confirms (as durable
as one at a time, a round trip per batch instead of per job). Ids are printed as each batch is
confirmed; after a crash, the printed ids are queued, and any other job of the run still
"pending" in `comfy-avatar list` may have no message: submit it again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import EXIT_FAILED, EXIT_OK
from ..workflow import load_workflow
from .common import add_db_arg, open_store, say
from .fleet import add_broker_arg, fleet_settings, follow_job, quiet_pika


def register(sub: Any) -> None:
    s = sub.add_parser(
        "submit",
        help="queue a job for the fleet's workers; prints its id",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("workflow", metavar="WORKFLOW", help="workflow .json (API or UI format)")
    s.add_argument(
        "--input",
        "-i",
        action="append",
        metavar="NAME=FILE|URL",
        help="input file for node NAME (inline up to 16 MiB) or its s3:// / https:// URL (repeatable)",
    )
    s.add_argument("--set", action="append", metavar="NODE.input=VALUE", help="override an input (repeatable)")
    s.add_argument("--seed", type=int, metavar="N", help="set every seed / noise_seed input to N")
    s.add_argument("--priority", choices=["high", "normal", "low"], default="normal")
    s.add_argument("--label", default="", help="a name for the job in listings")
    s.add_argument("--timeout", type=float, metavar="S", help="fail the job after S seconds on ComfyUI")
    s.add_argument("--count", type=int, default=1, metavar="N", help="queue N copies (seed+i each with --seed)")
    s.add_argument("--follow", action="store_true", help="then show its progress until it ends")
    s.add_argument("--progress", choices=["auto", "bar", "log", "none"], default="auto")
    s.add_argument("--json", action="store_true", help="print the job as JSON (with --follow: events as JSON lines)")
    add_broker_arg(s)
    add_db_arg(s)
    s.set_defaults(func=cmd_submit)


def cmd_submit(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..fleet.broker import Publisher
    from ..fleet.messages import make_job
    from ..fleet.submit import input_from_spec, job_summary, submit_job, submit_jobs

    quiet_pika(args)
    settings = fleet_settings(args)
    workflow = load_workflow(args.workflow)
    inputs = [input_from_spec(spec, settings) for spec in args.input or []]

    def copy(i: int) -> Any:  # copy i of --count gets seed S+i
        return make_job(
            workflow,
            workflow_name=str(Path(args.workflow)),
            sets=args.set or [],
            seed=None if args.seed is None else args.seed + i,
            inputs=inputs,
            priority=args.priority,
            label=args.label,
            timeout_s=args.timeout,
        )

    msg = copy(0)
    if args.count < 1 or (args.count > 1 and args.follow):
        raise UsageError(
            f"--count {args.count}", "must be 1 or more, and 1 with --follow", "pass --count N without --follow"
        )
    if args.count > 1:
        copies = [msg] + [copy(i) for i in range(1, args.count)]
        store = open_store(args)
        try:
            with Publisher(settings, "comfy-avatar-submit") as pub:
                printed = 0
                for queued in submit_jobs(copies, pub, store):
                    for m in queued:
                        print(json.dumps(job_summary(m)) if args.json else m.job_id, flush=True)
                    printed += len(queued)
        finally:
            store.close()
        if printed < len(copies):
            say(f"{len(copies) - printed} of {len(copies)} jobs were refused by the broker (marked failed)")
            return EXIT_FAILED
        return EXIT_OK
    store = open_store(args)
    try:
        with Publisher(settings, "comfy-avatar-submit") as pub:
            submit_job(msg, pub, store)
        if args.json and not args.follow:
            print(json.dumps(job_summary(msg)), flush=True)
        else:
            print(msg.job_id, flush=True)
        if args.follow:
            say(f"following job {msg.job_id} (Ctrl-C stops following; the job goes on)")
            return follow_job(args, msg.job_id, store)
    finally:
        store.close()
    return EXIT_OK
