"""``comfy-avatar batch | status | list | cancel``: many jobs, job records, cancelling.

    comfy-avatar batch WORKFLOW (--images DIR | --csv FILE) --out DIR
        [--server URL ...] [--local] [--concurrency N] [--front] [--retries N]
        [--set NODE.input=value ...] [--seed N] [--input NAME=FILE ...] [--image-input NAME]
        [--timeout S] [--json | --progress auto|bar|log|none] [--db URL]
        [--callback-url URL] [--batch-id ID]
    comfy-avatar status [JOB]        one job (id, prompt_id or prefix), or the latest batch
    comfy-avatar list [--batch B] [--status S] [--limit N]
    comfy-avatar cancel JOB ... | --all [--batch B]

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
import csv
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from .batch import BatchJob, BatchRunner, cancel_on_server, job_prompt_id, new_batch_id
from .callback import CallbackSender, secret_from_env
from .cli import (EXIT_INTERRUPTED, EXIT_OK, SERVER_ENV, LocalStartError, UsageError, find_input_target,
                  load_workflow, parse_input_specs)
from .client import DEFAULT_SERVER, safe_component
from .convert import ConversionError, is_api_prompt, ui_to_api
from .params import Override, apply_params
from .pool import ServerPool
from .store import CANCELLED, TERMINAL, JobRecord, JobStore, canonical_hash

log = logging.getLogger("comfy_avatar.driver.cli_batch")

SERVERS_ENV = "COMFY_AVATAR_SERVERS"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


# -- job construction ------------------------------------------------------------------------
def _image_target(prompt: dict[str, Any], name: str | None) -> tuple[str, str]:
    if name:
        return find_input_target(prompt, name)
    try:
        return find_input_target(prompt, "image")
    except UsageError:
        loaders = [nid for nid, n in prompt.items() if isinstance((n.get("inputs") or {}).get("image"), str)]
        if len(loaders) == 1:
            return loaders[0], "image"
        raise UsageError("--images", "cannot tell which node takes the images: "
                         + (f"nodes {', '.join(loaders)} all have an image input" if loaders
                            else "no node has an image input"),
                         "pass --image-input NODE (id or title, or NODE.INPUT)") from None


def _rows_from_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise UsageError(f"--csv {path}", "file not found", "pass the path of a CSV file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UsageError(f"--csv {path}", f"not a readable CSV ({e})", "save it as UTF-8 CSV with a header row") from None
    if not rows:
        raise UsageError(f"--csv {path}", "has no data rows", "add a header row and one row per job")
    for col in rows[0].keys():
        if col is None or not (col in ("seed", "label") or col.startswith("input:") or "." in col):
            raise UsageError(f"--csv {path}", f"column {col!r} is not NODE.input, seed, input:NAME or label",
                             'name columns like "KSampler.steps", "seed", "input:image" or "label"')
    return rows


def build_jobs(args: argparse.Namespace, template: dict[str, Any], object_info: Any, batch_id: str,
               out_root: Path) -> list[BatchJob]:
    common_sets = [Override.parse(s) for s in (args.set or [])]   # syntax errors before anything runs
    common_inputs = parse_input_specs(args.input or [])
    specs: list[dict[str, Any]] = []
    if args.images:
        folder = Path(args.images).expanduser()
        if not folder.is_dir():
            raise UsageError(f"--images {folder}", "is not a folder", "pass a folder of images")
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UsageError(f"--images {folder}", f"has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})",
                             "put the input images in that folder")
        node, inp = _image_target(template, args.image_input)
        for f in files:
            specs.append({"label": f.stem, "sets": [], "seed": None, "files": [(node, inp, f)],
                          "params": {"image": str(f)}})
    else:
        path = Path(args.csv).expanduser()
        for n, row in enumerate(_rows_from_csv(path), start=2):
            sets, files, seed, label = [], [], None, ""
            for col, cell in row.items():
                cell = (cell or "").strip()
                if not cell:
                    continue
                if col == "label":
                    label = cell
                elif col == "seed":
                    try:
                        seed = int(cell)
                    except ValueError:
                        raise UsageError(f"--csv {path} line {n}", f"seed {cell!r} is not a whole number",
                                         "put an integer in the seed column") from None
                elif col.startswith("input:"):
                    fp = Path(cell).expanduser()
                    fp = fp if fp.is_absolute() else path.parent / fp
                    if not fp.is_file():
                        raise UsageError(f"--csv {path} line {n}", f"file {fp} does not exist", "fix the path")
                    files.append((col[6:], fp))
                else:
                    sets.append(f"{col}={cell}")
            specs.append({"label": label or f"row{n - 1}", "sets": sets, "seed": seed, "files": files,
                          "params": {"csv": str(path), "line": n, "row": row}})
    jobs = []
    for i, sp in enumerate(specs):
        what = f"job {i} ({sp['label']})"
        seed = sp["seed"] if sp["seed"] is not None else args.seed
        try:
            prompt = apply_params(template, [*(o.spec for o in common_sets), *sp["sets"]], seed, object_info)
        except UsageError as e:
            raise UsageError(f"{what}: {e.what}", e.problem, e.fix) from None
        uploads = list(sp["files"]) if args.images else []          # (node, input, file)
        for name, f in [*common_inputs, *(sp["files"] if args.csv else [])]:   # (NAME, file)
            nid, inp = find_input_target(prompt, name)
            uploads.append((nid, inp, f))
        params = {**sp["params"], "set": [*(o.spec for o in common_sets), *sp["sets"]], "seed": seed}
        jid = f"{batch_id}-{i:04d}"
        jobs.append(BatchJob(index=i, id=jid, prompt_id=job_prompt_id(batch_id, i), prompt=prompt,
                             out_dir=out_root / f"{i:04d}-{safe_component(sp['label'])[:60]}", label=sp["label"],
                             params=params, uploads=uploads))
    return jobs


# -- display ---------------------------------------------------------------------------------
class _Display:
    """Batch events -> JSON lines (stdout), log lines (stderr) or rich progress bars."""

    def __init__(self, mode: str, total: int) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode, self.total = mode, total
        # The log lines leave per-node progress out: the runner need not build those events.
        self.wants_progress = mode != "log"
        self._progress = None
        self._tasks: dict[str, Any] = {}
        self._overall = None

    def __enter__(self) -> "_Display":
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=Console(stderr=True), transient=False)
            self._progress.start()
            self._overall = self._progress.add_task("batch", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, e: dict[str, Any]) -> None:
        t = e["type"]
        if self.mode == "json":
            sys.stdout.write(json.dumps(e, default=str) + "\n")
            sys.stdout.flush()
            return
        if self.mode == "log":
            if t == "job_progress":
                return
            line = f"[{t}] " + " ".join(f"{k}={v}" for k, v in e.items()
                                         if k not in ("type", "outputs", "servers", "index") and v not in (None, ""))
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
            return
        if self._progress is None:
            return
        job = e.get("job")
        if t == "job_submitted" and job not in self._tasks:
            self._tasks[job] = self._progress.add_task(f"  {e.get('label') or job}: queued", total=None)
        elif t == "job_progress" and job in self._tasks:
            step = e.get("step")
            desc = f"  {e.get('label') or job}: node {e.get('node')} {e.get('node_type') or ''}".rstrip()
            self._progress.update(self._tasks[job], description=desc, completed=step[0] if step else None,
                                  total=step[1] if step else None)
        elif t == "job_finished":
            if job in self._tasks:
                self._progress.remove_task(self._tasks.pop(job))
            self._progress.advance(self._overall)
            if e.get("status") != "succeeded":
                self._progress.console.print(f"[red]{e.get('label') or job}: {e.get('status')}: {e.get('error')}")
        elif t == "job_retry":
            self._progress.console.print(f"[yellow]{e.get('label') or job}: retry {e.get('attempt')}: {e.get('error')}")


def _servers(args: argparse.Namespace) -> list[str]:
    if args.server:
        return list(args.server)
    env = os.environ.get(SERVERS_ENV) or os.environ.get(SERVER_ENV) or DEFAULT_SERVER
    return [s.strip() for s in env.split(",") if s.strip()]


@contextlib.contextmanager
def _server_urls(args: argparse.Namespace) -> Iterator[list[str]]:
    if not args.local:
        yield _servers(args)
        return
    from .local import LocalComfy
    from .errors import DriverError
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


def _open_store(args: argparse.Namespace) -> JobStore:
    return JobStore(args.db or None)


# -- commands --------------------------------------------------------------------------------
def cmd_batch(args: argparse.Namespace) -> int:
    workflow = load_workflow(args.workflow)
    callback = None
    if args.callback_url:
        callback = CallbackSender(args.callback_url, secret_from_env())
    batch_id = args.batch_id or new_batch_id()
    out_root = Path(args.out).expanduser()
    store = _open_store(args)
    try:
        with _server_urls(args) as urls:
            pool = ServerPool(urls)
            try:
                info_cache: dict[str, Any] = {}

                def object_info() -> dict[str, Any]:
                    if "v" not in info_cache:
                        info_cache["v"] = pool.object_info()
                    return info_cache["v"]
                if is_api_prompt(workflow):
                    template = workflow
                else:
                    try:
                        template = ui_to_api(workflow, object_info())
                    except ConversionError as e:
                        raise UsageError(f"workflow {args.workflow}", f"cannot convert the UI workflow: {e}") from None
                jobs = build_jobs(args, template, object_info, batch_id, out_root)
                with _Display("json" if args.json else args.progress, len(jobs)) as display:
                    runner = BatchRunner(jobs, pool, batch_id=batch_id, store=store,
                                         workflow_path=str(Path(args.workflow).resolve()),
                                         workflow_hash=canonical_hash(template), concurrency=args.concurrency,
                                         front=args.front, retries=args.retries, timeout_s=args.timeout,
                                         give_up_s=args.give_up, on_event=display, callback=callback,
                                         forward_progress=display.wants_progress)
                    if not args.json:
                        sys.stderr.write(f"batch {batch_id}: {len(jobs)} job(s) on {', '.join(urls)} "
                                         f"(status: comfy-avatar status; db: {store._safe_url()})\n")
                    try:
                        summary = runner.run()
                    except KeyboardInterrupt:
                        sys.stderr.write("interrupted: queued jobs removed, running ones interrupted\n")
                        return EXIT_INTERRUPTED
            finally:
                pool.close()
    finally:
        store.close()
    if not args.json:
        sys.stderr.write(f"batch {batch_id}: {summary.succeeded}/{summary.total} succeeded, {summary.failed} failed, "
                         f"{summary.cancelled} cancelled in {summary.duration_s:.1f} s; outputs in {out_root}\n")
    return summary.exit_code


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
    with _open_store(args) as store:
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
            print(json.dumps({"batch_id": batch, "counts": counts, "total": sum(counts.values()),
                              "active": [{"id": r.id, "status": r.status, "server": r.server, "label": r.label}
                                         for r in active]}))
        else:
            print(f"batch {batch}: {sum(counts.values())} job(s): "
                  + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
            for r in active[:20]:
                print(f"  {r.id}  {r.status:<10} {r.server or '-'}  {r.label}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
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
    if not args.jobs and not args.all:
        raise UsageError("cancel", "no job given", "pass job ids, or --all (optionally with --batch B)")
    with _open_store(args) as store:
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
        if not recs:
            print("nothing to cancel")
    return EXIT_OK


# -- parsers ---------------------------------------------------------------------------------
def _db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="URL", help="job database: SQLAlchemy URL or SQLite file "
                   "(default: $COMFY_AVATAR_DB or ~/.local/share/comfy-avatar/jobs.db)")


def register(sub: Any) -> None:
    doc = (__doc__ or "").split("Exit codes:")[0]
    b = sub.add_parser("batch", help="run a workflow over a folder of images or a CSV of parameters",
                       description=doc + "Exit codes: 0 ok, 1 a job failed/cancelled, 2 usage, 3 unreachable.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("workflow", metavar="WORKFLOW", help="workflow .json (API or UI format)")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="DIR", help="one job per image file in DIR")
    src.add_argument("--csv", metavar="FILE", help="one job per CSV row (NODE.input / seed / input:NAME / label)")
    b.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for the jobs' outputs")
    b.add_argument("--server", action="append", metavar="URL",
                   help=f"ComfyUI URL, repeatable (default: ${SERVERS_ENV} (comma list), ${SERVER_ENV} or {DEFAULT_SERVER})")
    b.add_argument("--local", action="store_true", help="also start a private ComfyUI from $COMFYUI_DIR")
    b.add_argument("--comfyui-dir", metavar="DIR", help="ComfyUI checkout for --local (default: $COMFYUI_DIR)")
    b.add_argument("--start-timeout", type=float, default=300.0, metavar="S", help="wait for --local (default 300)")
    b.add_argument("--concurrency", "-j", type=int, default=4, metavar="N", help="jobs in flight at once (default 4)")
    b.add_argument("--front", action="store_true", help="queue the jobs at the front of the servers' queues")
    b.add_argument("--retries", type=int, default=3, metavar="N",
                   help="retries of transient failures (unreachable, 5xx, restart) per job (default 3)")
    b.add_argument("--give-up", type=float, default=300.0, metavar="S",
                   help="fail a job after S seconds without any reachable server (default 300)")
    b.add_argument("--timeout", type=float, default=None, metavar="S", help="per job: fail and cancel after S seconds")
    b.add_argument("--set", action="append", metavar="NODE.input=VALUE", help="override an input in every job")
    b.add_argument("--seed", type=int, metavar="N", help="set every seed/noise_seed input (a CSV seed column wins)")
    b.add_argument("--input", "-i", action="append", metavar="NAME=FILE", help="upload FILE into NAME for every job")
    b.add_argument("--image-input", metavar="NODE", help="node (id/title, or NODE.INPUT) that takes the --images")
    b.add_argument("--json", action="store_true", help="machine-readable events, one JSON object per line on stdout")
    b.add_argument("--progress", choices=["auto", "bar", "log", "none"], default="auto", help="progress display")
    b.add_argument("--callback-url", metavar="URL",
                   help="POST each finished job (signed with $COMFY_AVATAR_CALLBACK_SECRET) to URL")
    b.add_argument("--batch-id", metavar="ID", help="batch id (default: time + random)")
    _db_arg(b)
    b.set_defaults(func=cmd_batch)

    s = sub.add_parser("status", help="a job's record, or a summary of the latest batch")
    s.add_argument("job", nargs="?", metavar="JOB", help="job id, prompt_id or a unique prefix")
    s.add_argument("--batch", metavar="B", help="summarize this batch instead of the latest")
    s.add_argument("--json", action="store_true")
    _db_arg(s)
    s.set_defaults(func=cmd_status)

    ls = sub.add_parser("list", help="recorded jobs, newest first")
    ls.add_argument("--batch", metavar="B")
    ls.add_argument("--status", metavar="S", help="pending, submitted, running, retrying, succeeded, failed, cancelled")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    _db_arg(ls)
    ls.set_defaults(func=cmd_list)

    c = sub.add_parser("cancel", help="cancel jobs: queued ones are removed, running ones interrupted")
    c.add_argument("jobs", nargs="*", metavar="JOB")
    c.add_argument("--all", action="store_true", help="every unfinished job of the batch (default: latest)")
    c.add_argument("--batch", metavar="B")
    _db_arg(c)
    c.set_defaults(func=cmd_cancel)
