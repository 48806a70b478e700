"""``comfy-avatar status | list | cancel``: the job records, from any shell.

    comfy-avatar status [JOB]        one job (id, prompt_id or prefix), or the latest batch
    comfy-avatar list [--batch B] [--status S] [--limit N]
    comfy-avatar cancel JOB ... | --all [--batch B]

They read and write the job database (COMFY_AVATAR_DB or --db), so they work while
a batch runs in another process: a cancel is recorded there, the running batch
picks it up, and queued or running prompts are removed from their server here.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from ..errors import EXIT_OK, UsageError
from .common import add_db_arg, open_reader, open_store
from .fleet import add_broker_arg, follow_job, is_fleet_job, list_dead, tell_workers_cancel

if TYPE_CHECKING:  # pragma: no cover
    from ..store import JobRecord


def register(sub: Any) -> None:
    s = sub.add_parser("status", help="a job's record, or a summary of the latest batch")
    s.add_argument("job", nargs="?", metavar="JOB", help="job id, prompt_id or a unique prefix")
    s.add_argument("--batch", metavar="B", help="summarize this batch instead of the latest")
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--follow", action="store_true", help="a fleet job: show its progress until it ends (needs --broker)"
    )
    s.add_argument("--progress", choices=["auto", "bar", "log", "none"], default="auto", help="with --follow")
    add_broker_arg(s)
    add_db_arg(s)
    s.set_defaults(func=cmd_status)

    ls = sub.add_parser("list", help="recorded jobs, newest first")
    ls.add_argument("--batch", metavar="B")
    ls.add_argument("--status", metavar="S", help="pending, submitted, running, retrying, succeeded, failed, cancelled")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.add_argument("--dead", action="store_true", help="the fleet's dead-letter queue (needs --broker)")
    add_broker_arg(ls)
    add_db_arg(ls)
    ls.set_defaults(func=cmd_list)

    c = sub.add_parser("cancel", help="cancel jobs: queued ones are removed, running ones interrupted")
    c.add_argument("jobs", nargs="*", metavar="JOB")
    c.add_argument("--all", action="store_true", help="every unfinished job of the batch (default: latest)")
    c.add_argument("--batch", metavar="B")
    add_broker_arg(c)
    add_db_arg(c)
    c.set_defaults(func=cmd_cancel)


def _fmt_time(iso: str | None) -> str:
    return iso.replace("T", " ")[:19] if iso else "-"


def _print_job(r: JobRecord) -> None:
    d = r.to_dict()
    print(f"job {r.id}  [{r.status}]  {r.label}")
    print(f"  batch {r.batch_id}  prompt_id {r.prompt_id}  server {r.server or '-'}  attempts {r.attempts}")
    print(f"  workflow {r.workflow_path} (sha256 {r.workflow_hash[:12]})  out {r.out_dir or '-'}")
    if r.duration_s is not None:
        print(f"  duration {r.duration_s:.2f} s  nodes: " + ", ".join(f"{k} {v:.2f}s" for k, v in r.timings.items()))
    if r.error:
        print(f"  error: {r.error}")
    for h in d["history"]:
        print(f"  {_fmt_time(h['at'])}  {h['status']:<10} {h['detail'] or ''}")
    for o in r.outputs:
        print(f"  output {o['path'] or o['filename']}  sha256 {o['sha256'] or '-'}")


def cmd_status(args: argparse.Namespace) -> int:
    from ..records import TERMINAL

    with open_store(args) if args.follow else open_reader(args) as store:
        if args.job and args.follow:
            return follow_job(args, store.get(args.job).id, store)
        if args.job:
            rec = store.get(args.job)
            if args.json:
                print(json.dumps(rec.to_dict(), default=str))
            else:
                _print_job(rec)
            return EXIT_OK
        batch = args.batch or store.latest_batch()
        if batch is None:
            print("no jobs recorded yet" if not args.json else json.dumps({"batch_id": None, "counts": {}}))
            return EXIT_OK
        counts = store.counts(batch)
        active = [r for r in store.list(batch_id=batch, limit=None) if r.status not in TERMINAL]
        if args.json:
            print(
                json.dumps(
                    {
                        "batch_id": batch,
                        "counts": counts,
                        "total": sum(counts.values()),
                        "active": [
                            {"id": r.id, "status": r.status, "server": r.server, "label": r.label} for r in active
                        ],
                    }
                )
            )
        else:
            print(
                f"batch {batch}: {sum(counts.values())} job(s): "
                + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            )
            for r in active[:20]:
                print(f"  {r.id}  {r.status:<10} {r.server or '-'}  {r.label}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    if args.dead:
        return list_dead(args)
    with open_reader(args) as store:
        rows = store.list(batch_id=args.batch, status=args.status, limit=args.limit)
        if args.json:
            for r in rows:
                print(json.dumps(r.to_dict(), default=str))
            return EXIT_OK
        if not rows:
            print("no jobs")
            return EXIT_OK
        print(f"{'JOB':<30} {'STATUS':<10} {'DURATION':>9}  {'FINISHED':<19}  LABEL")
        for r in rows:
            dur = f"{r.duration_s:.2f}s" if r.duration_s is not None else "-"
            print(f"{r.id:<30} {r.status:<10} {dur:>9}  {_fmt_time(r.to_dict()['finished_at']):<19}  {r.label}")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    from ..batch_client import cancel_on_server
    from ..store import CANCELLED, TERMINAL

    if not args.jobs and not args.all:
        raise UsageError("cancel", "no job given", "pass job ids, or --all (optionally with --batch B)")
    with open_store(args) as store:
        if args.all:
            batch = args.batch or store.latest_batch()
            recs = [r for r in store.list(batch_id=batch, limit=None) if r.status not in TERMINAL] if batch else []
        else:
            recs = [store.get(j) for j in args.jobs]
        todo = [r for r in recs if r.status not in TERMINAL]
        store.request_cancel([r.id for r in todo])
        for r in recs:
            if r.status in TERMINAL:
                print(f"{r.id}: already {r.status}")
                continue
            if r.server and r.status != "pending":
                cancel_on_server(r.server, r.prompt_id)
            won = store.set_status(r.id, CANCELLED, detail="cancelled with comfy-avatar cancel")
            print(f"{r.id}: {'cancelled' if won else 'already ' + store.status_of(r.id)[0]}")
        tell_workers_cancel(args, [r.id for r in todo if is_fleet_job(r)])
        if not recs:
            print("nothing to cancel")
    return EXIT_OK
