"""``comfy-avatar batch``: one workflow over a folder of images or a CSV of parameters.

    comfy-avatar batch WORKFLOW (--images DIR | --csv FILE) --out DIR
        [--server URL ...] [--local] [--concurrency N] [--front] [--retries N]
        [--set NODE.input=value ...] [--seed N] [--input NAME=FILE ...] [--image-input NAME]
        [--timeout S] [--json | --progress auto|bar|log|none] [--db URL]
        [--callback-url URL] [--batch-id ID]

--images DIR: one job per image file (png, jpg, jpeg, webp, bmp, tif; sorted by name),
uploaded into the node given by --image-input (id or title, optionally NAME.INPUT;
default: the node titled/with id "image", else the only node with an image input).

--csv FILE: one job per row. Column headers: NODE.input (a --set for that row, empty
cells keep the workflow's value), seed (like --seed), input:NAME (a file to upload,
like --input NAME=FILE; relative to the CSV's folder), label (names the job's folder).

Each job gets DIR/<index>-<label>/ with its outputs and a manifest.json (outputs with
sha256). Jobs are recorded in the job database (COMFY_AVATAR_DB or --db; SQLite by
default), so status/list/cancel work from another shell while the batch runs.

Exit codes: 0 every job succeeded, 1 a job failed or was cancelled, 2 usage error,
3 no server reachable (every unfinished job failed for that reason), 130 Ctrl-C
(queued jobs are removed from the servers, running ones interrupted).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import EXIT_INTERRUPTED, DriverError, LocalStartError, UsageError
from ..servers import DEFAULT_SERVER, SERVER_ENV, SERVERS_ENV, default_servers
from ..workflow import load_workflow
from .common import add_db_arg, api_prompt, open_store, say


def register(sub: Any) -> None:
    b = sub.add_parser(
        "batch",
        help="run a workflow over a folder of images or a CSV of parameters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("workflow", metavar="WORKFLOW", help="workflow .json (API or UI format)")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="DIR", help="one job per image file in DIR")
    src.add_argument("--csv", metavar="FILE", help="one job per CSV row (NODE.input / seed / input:NAME / label)")
    b.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for the jobs' outputs")
    b.add_argument(
        "--server",
        action="append",
        metavar="URL",
        help=f"ComfyUI URL, repeatable (default: ${SERVERS_ENV} (comma list), ${SERVER_ENV} or {DEFAULT_SERVER})",
    )
    b.add_argument("--local", action="store_true", help="also start a private ComfyUI from $COMFYUI_DIR")
    b.add_argument("--comfyui-dir", metavar="DIR", help="ComfyUI checkout for --local (default: $COMFYUI_DIR)")
    b.add_argument("--start-timeout", type=float, default=300.0, metavar="S", help="wait for --local (default 300)")
    b.add_argument("--concurrency", "-j", type=int, default=4, metavar="N", help="jobs in flight at once (default 4)")
    b.add_argument("--front", action="store_true", help="queue the jobs at the front of the servers' queues")
    b.add_argument(
        "--retries",
        type=int,
        default=3,
        metavar="N",
        help="retries of transient failures (unreachable, 5xx, restart) per job (default 3)",
    )
    b.add_argument(
        "--give-up",
        type=float,
        default=300.0,
        metavar="S",
        help="fail a job after S seconds without any reachable server (default 300)",
    )
    b.add_argument("--timeout", type=float, default=None, metavar="S", help="per job: fail and cancel after S seconds")
    b.add_argument("--set", action="append", metavar="NODE.input=VALUE", help="override an input in every job")
    b.add_argument("--seed", type=int, metavar="N", help="set every seed/noise_seed input (a CSV seed column wins)")
    b.add_argument("--input", "-i", action="append", metavar="NAME=FILE", help="upload FILE into NAME for every job")
    b.add_argument("--image-input", metavar="NODE", help="node (id/title, or NODE.INPUT) that takes the --images")
    b.add_argument("--json", action="store_true", help="machine-readable events, one JSON object per line on stdout")
    b.add_argument("--progress", choices=["auto", "bar", "log", "none"], default="auto", help="progress display")
    b.add_argument(
        "--callback-url",
        metavar="URL",
        help="POST each finished job (signed with $COMFY_AVATAR_CALLBACK_SECRET) to URL",
    )
    b.add_argument("--batch-id", metavar="ID", help="batch id (default: time + random)")
    add_db_arg(b)
    b.set_defaults(func=cmd_batch)


@contextlib.contextmanager
def _server_urls(args: argparse.Namespace) -> Iterator[list[str]]:
    """--server URLs (or the environment's), plus a private --local server while it runs."""
    if not args.local:
        yield list(args.server) if args.server else default_servers()
        return
    from ..local import LocalComfy

    try:
        local = LocalComfy(args.comfyui_dir, start_timeout=args.start_timeout)
        local.start()
    except DriverError as e:
        if "COMFYUI_DIR" in e.what:
            raise UsageError(e.what, e.problem, e.fix) from None
        raise LocalStartError(e.what, e.problem, e.fix, detail=e.detail) from None
    try:
        yield [local.url, *(args.server or [])]
    finally:
        local.stop()


def cmd_batch(args: argparse.Namespace) -> int:
    # The batch machinery (requests, SQLAlchemy, websocket-client) is imported when a batch runs.
    from ..batch import BatchOptions, BatchRunner, new_batch_id
    from ..callback import CallbackSender, secret_from_env
    from ..pool import ServerPool
    from ..store import canonical_hash
    from .batch_input import build_jobs
    from .display import BatchDisplay

    workflow = load_workflow(args.workflow)
    callback = CallbackSender(args.callback_url, secret_from_env()) if args.callback_url else None
    batch_id = args.batch_id or new_batch_id()
    out_root = Path(args.out).expanduser()
    store = open_store(args)
    try:
        with _server_urls(args) as urls:
            pool = ServerPool(urls)
            try:
                template = api_prompt(workflow, pool.node_info, f"workflow {args.workflow}", pool.system_stats)
                jobs = build_jobs(args, template, pool.node_info, batch_id, out_root)
                with BatchDisplay("json" if args.json else args.progress, len(jobs)) as display:
                    options = BatchOptions(
                        batch_id=batch_id,
                        workflow_path=str(Path(args.workflow).resolve()),
                        workflow_hash=canonical_hash(template),
                        concurrency=args.concurrency,
                        front=args.front,
                        retries=args.retries,
                        timeout_s=args.timeout,
                        give_up_s=args.give_up,
                        forward_progress=display.wants_progress,
                    )
                    runner = BatchRunner(jobs, pool, options, store=store, on_event=display, callback=callback)
                    if not args.json:
                        say(
                            f"batch {batch_id}: {len(jobs)} job(s) on {', '.join(urls)} "
                            f"(status: comfy-avatar status; db: {store._safe_url()})"
                        )
                    try:
                        summary = runner.run()
                    except KeyboardInterrupt:
                        say("interrupted: queued jobs removed, running ones interrupted")
                        return EXIT_INTERRUPTED
            finally:
                pool.close()
    finally:
        store.close()
    if not args.json:
        say(
            f"batch {batch_id}: {summary.succeeded}/{summary.total} succeeded, {summary.failed} failed, "
            f"{summary.cancelled} cancelled in {summary.duration_s:.1f} s; outputs in {out_root}"
        )
    return summary.exit_code
