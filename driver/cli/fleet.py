"""What ``submit``, ``worker``, ``status --follow``, ``list --dead`` and ``cancel`` share for the
fleet: the broker argument, following a job's events with the run command's displays, the
dead-letter listing, and telling workers about a cancel."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from ..errors import EXIT_FAILED, EXIT_OK
from .common import say

if TYPE_CHECKING:  # pragma: no cover
    from ..fleet.settings import FleetSettings
    from ..store import JobRecord, JobStore

BROKER_HELP = "RabbitMQ URL amqp://USER:PASSWORD@HOST:5672/%%2F (default: $COMFY_AVATAR_BROKER)"


def add_broker_arg(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--broker", metavar="URL", help=BROKER_HELP)


def quiet_pika(args: argparse.Namespace) -> None:
    """pika logs every channel open and close at INFO: keep that for -vv."""
    import logging

    if getattr(args, "verbose", 0) < 2:
        logging.getLogger("pika").setLevel(logging.WARNING)


def fleet_settings(args: argparse.Namespace, **overrides: Any) -> FleetSettings:
    from ..fleet.settings import FleetSettings

    return FleetSettings.load(broker_url=getattr(args, "broker", None), **overrides)


def broker_configured(args: argparse.Namespace) -> bool:
    import os

    from ..fleet.settings import BROKER_ENV

    return bool(getattr(args, "broker", None) or os.environ.get(BROKER_ENV))


def is_fleet_job(rec: JobRecord) -> bool:
    return isinstance(rec.params, dict) and "fleet" in rec.params


def follow_job(args: argparse.Namespace, job_id: str, store: JobStore | None) -> int:
    """Show a fleet job's progress as ``run`` does, until it ends; 0 succeeded, 1 otherwise."""
    from ..fleet.follow import Follower, follow
    from ..progress import Mode, make_progress
    from ..store import SUCCEEDED, TERMINAL

    settings = fleet_settings(args)
    mode: Mode = "json" if getattr(args, "json", False) else getattr(args, "progress", "auto")

    def ended() -> str | None:
        if store is None:
            return None
        status = store.status_of(job_id)[0]
        return status if status in TERMINAL else None

    with make_progress(mode) as progress:
        follower = Follower(job_id, progress, say)
        already: dict[str, str | None] = {"status": None}

        def ready() -> bool:
            already["status"] = ended()
            return already["status"] is not None

        follow(settings, job_id, follower, ready=ready, idle=lambda: ended() is not None)
    status = already["status"] or (ended() if store is not None else None)
    if follower.final is not None:
        kind, data = follower.final["kind"], follower.final.get("data") or {}
        if kind == "finished":
            status = SUCCEEDED
            for o in data.get("outputs") or []:
                print(o.get("path") or o.get("filename"))
        else:
            status = status or kind
            say(f"job {job_id}: {kind}: {data.get('error') or data.get('why') or ''}".rstrip(": "))
    say(f"job {job_id}: {status or 'ended'}")
    return EXIT_OK if status == SUCCEEDED else EXIT_FAILED


def list_dead(args: argparse.Namespace) -> int:
    """The dead-letter queue (read without removing anything) beside the job records."""
    from ..fleet.broker import browse_dead

    settings = fleet_settings(args)
    rows = list(browse_dead(settings, limit=args.limit))
    if args.json:
        for r in rows:
            print(json.dumps(r, default=str))
        return EXIT_OK
    if not rows:
        print(f"dead-letter queue {settings.dead_queue}: empty")
        return EXIT_OK
    print(f"dead-letter queue {settings.dead_queue}: {len(rows)} job(s)")
    print(f"{'JOB':<34} {'ATTEMPT':>7}  {'CLASS':<28} ERROR")
    for r in rows:
        err = (r["error"] or "").splitlines()[0][:100] if r["error"] else ""
        print(f"{str(r['job_id']):<34} {str(r['attempt'] or '-'):>7}  {r['error_class'][:28]:<28} {err}")
    return EXIT_OK


def tell_workers_cancel(args: argparse.Namespace, job_ids: list[str]) -> None:
    """Publish a cancel for each job on the control exchange (the worker holding it interrupts
    its prompt). Without a broker the workers still see the request in the job database."""
    if not job_ids or not broker_configured(args):
        return
    from ..errors import DriverError
    from ..fleet.broker import Publisher

    try:
        with Publisher(fleet_settings(args, publish_give_up_s=10.0), "comfy-avatar-cancel") as pub:
            for jid in job_ids:
                pub.publish_control({"type": "cancel", "job_id": jid})
    except DriverError as e:
        say(f"warning: workers not told directly ({e}); they pick the cancel up from the job database")
