"""``comfy-avatar`` command line (also ``python -m driver``).

    comfy-avatar run WORKFLOW --input NAME=FILE --out DIR [--server URL | --local] [--timeout S]

WORKFLOW is an API-format prompt ({node_id: {class_type, inputs}}) or a UI-format
workflow (converted with the server's /object_info by driver.convert when present).

``--input NAME=FILE`` uploads FILE via /upload/image and sets it on the node whose id
or title (``_meta.title``, exact) is NAME: its ``image`` input, or the input named
after a dot (``--input "Reference.mask=m.png"``). The node must already have that
input as a plain value (not a link). A NAME that matches no node, or several nodes
by title, is a usage error (use the node id then).

Exit codes: 0 ok, 1 the job failed (the node's error is printed), 2 usage error
(bad arguments, unreadable workflow, missing input file, COMFYUI_DIR not set),
3 server unreachable (or the --local server failed to start), 130 interrupted by
Ctrl-C (the prompt is cancelled on the server).

Other subcommands plug in: if ``driver.cli_batch`` exists, its ``register(subparsers)``
adds parsers that ``set_defaults(func=f)`` with ``f(args) -> int``; DriverErrors they
raise are printed and mapped to the exit codes above by :func:`exit_code_for`.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

from .client import DEFAULT_SERVER, ComfyClient
from .errors import DriverError, JobFailed, PromptRejected, ServerUnreachable

log = logging.getLogger("comfy_avatar.driver.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
SERVER_ENV = "COMFY_AVATAR_SERVER"
UPLOAD_SUBFOLDER = "comfy-avatar"


class UsageError(DriverError):
    """Bad arguments or input files: exit code 2."""


def exit_code_for(err: BaseException) -> int:
    if isinstance(err, UsageError):
        return EXIT_USAGE
    if isinstance(err, ServerUnreachable):
        return EXIT_UNREACHABLE
    if isinstance(err, LocalStartError):
        return EXIT_UNREACHABLE
    return EXIT_FAILED


class LocalStartError(DriverError):
    """The --local ComfyUI did not come up: exit code 3."""


# -- workflow loading ----------------------------------------------------------------------
def is_api_prompt(data: Any) -> bool:
    return isinstance(data, dict) and bool(data) and all(
        isinstance(v, dict) and isinstance(v.get("class_type"), str) for v in data.values())


def is_ui_workflow(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def load_workflow(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"workflow {p}", "file not found", "pass the path of a workflow .json") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"workflow {p}", f"not readable JSON ({e})", "pass a workflow exported from ComfyUI") from None
    if not (is_api_prompt(data) or is_ui_workflow(data)):
        raise UsageError(f"workflow {p}", "is neither an API-format prompt ({id: {class_type, inputs}}) "
                         "nor a UI workflow (nodes + links)", "export it from ComfyUI with Save or Save (API)")
    return data


def to_api_prompt(workflow: dict[str, Any], client: ComfyClient, source: str = "workflow") -> dict[str, Any]:
    """API prompts pass through; UI workflows go through driver.convert.ui_to_api."""
    if is_api_prompt(workflow):
        return workflow
    try:
        convert = importlib.import_module("driver.convert")
    except ModuleNotFoundError as e:
        if e.name != "driver.convert":
            raise
        raise UsageError(source, "is a UI-format workflow and this driver has no UI->API converter",
                         "export the workflow with 'Save (API)' in ComfyUI and pass that file") from None
    try:
        return convert.ui_to_api(workflow, client.object_info())
    except ValueError as e:  # driver.convert.ConversionError names the node and the fix
        raise UsageError(source, f"cannot convert the UI workflow: {e}") from None


# -- --input NAME=FILE -----------------------------------------------------------------------
def parse_input_specs(specs: Sequence[str]) -> list[tuple[str, Path]]:
    out = []
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise UsageError(f"--input {spec}", "must look like NAME=FILE", "e.g. --input image=photo.png")
        path = Path(file).expanduser()
        if not path.is_file():
            raise UsageError(f"--input {spec}", f"file {path} does not exist", "pass an existing file")
        out.append((name, path))
    return out


def find_input_target(prompt: dict[str, Any], name: str) -> tuple[str, str]:
    """(node id, input name) that ``--input NAME=...`` sets; see the module docstring."""
    candidates = [(name, "image")]
    if "." in name:
        node_part, _, input_part = name.rpartition(".")
        candidates.append((node_part, input_part))
    for node_name, input_name in candidates:
        ids = [name_ for name_ in prompt if name_ == node_name]
        if not ids:
            ids = [nid for nid, n in prompt.items() if (n.get("_meta") or {}).get("title") == node_name]
        if len(ids) > 1:
            raise UsageError(f"--input {name}", f"matches nodes {', '.join(ids)} by title", "use the node id instead")
        if ids and input_name in (prompt[ids[0]].get("inputs") or {}):
            value = prompt[ids[0]]["inputs"][input_name]
            if isinstance(value, list):
                raise UsageError(f"--input {name}", f"input '{input_name}' of node {ids[0]} is linked to another node",
                                 "target the loader node that feeds it")
            return ids[0], input_name
    loaders = [f"{nid} ({n.get('class_type')}{', title ' + repr(n['_meta']['title']) if (n.get('_meta') or {}).get('title') else ''})"
               for nid, n in prompt.items() if isinstance((n.get("inputs") or {}).get("image"), str)]
    raise UsageError(f"--input {name}", "no node with that id or title has an 'image' input (or NAME.INPUT)",
                     "use one of: " + (", ".join(loaders) if loaders else "(this workflow has no image loader)"))


def apply_inputs(prompt: dict[str, Any], inputs: Sequence[tuple[str, Path]], client: ComfyClient) -> dict[str, Any]:
    """Upload each file and return a copy of ``prompt`` with the targets set."""
    prompt = json.loads(json.dumps(prompt))
    targets = [(find_input_target(prompt, name), path) for name, path in inputs]  # validate all before uploading
    for (node_id, input_name), path in targets:
        uploaded = client.upload(path, subfolder=UPLOAD_SUBFOLDER)
        prompt[node_id]["inputs"][input_name] = uploaded.ref
        log.info("input %s -> node %s.%s = %s", path, node_id, input_name, uploaded.ref)
    return prompt


# -- server selection ------------------------------------------------------------------------
def add_server_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--server", metavar="URL", help=f"ComfyUI URL (default: ${SERVER_ENV} or {DEFAULT_SERVER})")
    g.add_argument("--local", action="store_true",
                   help="start a private ComfyUI from $COMFYUI_DIR on a free 127.0.0.1 port, stop it after")
    p.add_argument("--comfyui-dir", metavar="DIR", help="ComfyUI checkout for --local (default: $COMFYUI_DIR)")
    p.add_argument("--start-timeout", type=float, default=300.0, metavar="S",
                   help="seconds to wait for the --local server (default 300)")
    p.add_argument("--local-log", metavar="FILE", help="keep the --local server's log in FILE")


@contextlib.contextmanager
def open_client(args: argparse.Namespace) -> Iterator[ComfyClient]:
    """A ComfyClient for --server / --local (the local server stops on exit)."""
    if not getattr(args, "local", False):
        with ComfyClient(args.server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER) as client:
            yield client
        return
    from .local import LocalComfy

    try:
        local = LocalComfy(args.comfyui_dir, start_timeout=args.start_timeout, log_path=args.local_log)
    except DriverError as e:
        raise UsageError(e.what, e.problem, e.fix) from None
    _status(f"starting ComfyUI from {local.comfyui_dir} (this takes a while)...")
    try:
        local.start()
    except DriverError as e:
        raise LocalStartError(e.what, e.problem, e.fix, detail=e.detail) from None
    try:
        _status(f"ComfyUI is up at {local.url}")
        with ComfyClient(local.url) as client:
            yield client
    finally:
        local.stop()


# -- run -------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from .progress import make_progress

    workflow = load_workflow(args.workflow)
    inputs = parse_input_specs(args.input or [])
    out_dir = Path(args.out)
    with open_client(args) as client:
        prompt = to_api_prompt(workflow, client, f"workflow {args.workflow}")
        prompt = apply_inputs(prompt, inputs, client)
        if args.set or args.seed is not None:     # driver/params.py: typed by /object_info
            from .params import apply_params
            prompt = apply_params(prompt, args.set, args.seed, client.object_info)
        prompt_id = str(uuid.uuid4())
        mode = "json" if args.json else args.progress
        try:
            with make_progress(mode) as progress:
                result = client.run(prompt, prompt_id=prompt_id, on_event=progress, timeout=args.timeout)
        except KeyboardInterrupt:
            _status(f"interrupted: cancelling prompt {prompt_id} on {client.url}")
            with contextlib.suppress(DriverError):
                client.cancel(prompt_id)
            return EXIT_INTERRUPTED
        paths = client.download(result, out_dir)
    total = sum(result.timings.values())
    _status(f"prompt {result.prompt_id}: {result.status} in {result.duration_s:.2f} s "
            f"({len(result.cached)} cached, {total:.2f} s in nodes); {len(paths)} file(s) in {out_dir}")
    if args.json:
        print(json.dumps({"type": "result", **result.to_dict(), "files": [str(p) for p in paths]}), flush=True)
    else:
        for p in paths:
            print(p)
    return EXIT_OK


def _status(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# -- entry point -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="comfy-avatar", description="Run comfy-avatar workflows on ComfyUI, headless.",
                                     epilog="Exit codes: 0 ok, 1 job failed, 2 usage, 3 server unreachable.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run one workflow and download its outputs",
                         description=(__doc__ or "").split("Other subcommands")[0],
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("workflow", metavar="WORKFLOW", help="workflow .json (API or UI format)")
    run.add_argument("--input", "-i", action="append", metavar="NAME=FILE",
                     help="upload FILE and set it on the node with id/title NAME (repeatable)")
    run.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for the downloaded outputs")
    run.add_argument("--set", action="append", metavar="NODE.input=VALUE",
                     help="override an input (node id or title; typed and checked by /object_info; repeatable)")
    run.add_argument("--seed", type=int, metavar="N", help="set every seed / noise_seed input to N")
    run.add_argument("--timeout", type=float, default=None, metavar="S",
                     help="fail (and cancel the prompt) after S seconds (default: wait)")
    run.add_argument("--progress", choices=["auto", "bar", "log", "none"], default="auto",
                     help="progress display (auto: bars on a terminal, log lines otherwise)")
    run.add_argument("--json", action="store_true", help="print every event as a JSON line on stdout")
    add_server_args(run)
    run.set_defaults(func=cmd_run)

    try:
        cli_batch = importlib.import_module("driver.cli_batch")
    except ModuleNotFoundError as e:
        if e.name != "driver.cli_batch":
            raise
    else:
        cli_batch.register(sub)
    return parser


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except JobFailed as e:
        _status(f"error: {e}")
        if args.verbose and e.traceback:
            _status(e.traceback)
        return EXIT_FAILED
    except PromptRejected as e:
        _status(f"error: {e}")
        return EXIT_FAILED
    except DriverError as e:
        _status(f"error: {e}")
        return exit_code_for(e)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
