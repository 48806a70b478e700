"""``comfy-avatar worker``: run the fleet's jobs on one ComfyUI (start one beside each).

    comfy-avatar worker --broker URL --server http://127.0.0.1:8188 [--concurrency N]
        --out DIR|s3://bucket/prefix [--db URL] [--metrics-port P] [--name NAME]

Takes up to N jobs at once (prefetch N, manual acks) and acks each only after its outputs
are stored (DIR/<job id>/ with a manifest.json, or s3://bucket/prefix/<job id>/) and its
record is final. A transient failure is retried through the broker with backoff; a
permanent one goes to the dead-letter queue (comfy-avatar list --dead). SIGTERM / Ctrl-C:
no new jobs, running ones finish (up to --drain seconds), the rest go back to the queue.
"""

from __future__ import annotations

import argparse
import signal
from typing import Any

from ..errors import EXIT_OK
from ..servers import DEFAULT_SERVER, SERVER_ENV, default_server, normalize_url
from .common import add_db_arg, open_store, say
from .fleet import add_broker_arg, fleet_settings, quiet_pika


def register(sub: Any) -> None:
    w = sub.add_parser(
        "worker",
        help="run fleet jobs from the broker on one ComfyUI",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    w.add_argument("--server", metavar="URL", help=f"this box's ComfyUI (default: ${SERVER_ENV} or {DEFAULT_SERVER})")
    w.add_argument("--concurrency", "-j", type=int, default=1, metavar="N", help="jobs at once (default 1)")
    w.add_argument(
        "--out",
        "-o",
        required=True,
        metavar="DIR|s3://BUCKET/PREFIX",
        help="where outputs go: a folder shared by the fleet, or an S3 prefix (rclone remote $COMFY_AVATAR__FLEET__S3_REMOTE, default s3)",
    )
    w.add_argument("--name", metavar="NAME", help="worker name in records and logs (default host-pid)")
    w.add_argument("--metrics-port", type=int, metavar="P", help="serve Prometheus metrics on :P/metrics")
    w.add_argument("--heartbeat", type=int, metavar="S", help="AMQP heartbeat seconds (default 30)")
    w.add_argument("--drain", type=float, default=600.0, metavar="S", help="on stop, let running jobs finish (600)")
    add_broker_arg(w)
    add_db_arg(w)
    w.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from ..fleet.metrics import WorkerMetrics
    from ..fleet.settings import WorkerSettings, redact_url
    from ..fleet.worker import Worker

    quiet_pika(args)
    fleet = fleet_settings(args, heartbeat_s=args.heartbeat)
    kw: dict[str, Any] = {"name": args.name} if args.name else {}
    settings = WorkerSettings(
        server=normalize_url(args.server or default_server()),
        out=args.out,
        concurrency=args.concurrency,
        metrics_port=args.metrics_port,
        drain_s=args.drain,
        **kw,
    )
    metrics = WorkerMetrics()
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    store = open_store(args)
    worker = Worker(fleet, settings, store, metrics=metrics)

    def stop(signum: int, _frame: Any) -> None:
        say(f"worker {settings.name}: {signal.Signals(signum).name}: finishing running jobs, taking no new ones")
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    say(
        f"worker {settings.name}: {settings.server}, concurrency {settings.concurrency}, broker "
        f"{redact_url(fleet.broker_url)}, outputs to {settings.out}"
    )
    try:
        worker.run()
    finally:
        store.close()
    return EXIT_OK
