"""``comfy-avatar run``: one workflow on one ComfyUI, its outputs downloaded.

    comfy-avatar run WORKFLOW --input NAME=FILE --out DIR [--server URL | --local] [--timeout S]

WORKFLOW is an API-format prompt ({node_id: {class_type, inputs}}) or a UI-format
workflow (converted with the server's /object_info by driver.convert).

``--input NAME=FILE`` uploads FILE via /upload/image and sets it on the node whose id
or title (``_meta.title``, exact) is NAME: its ``image`` input, or the input named
after a dot (``--input "Reference.mask=m.png"``). The node must already have that
input as a plain value (not a link). A NAME that matches no node, or several nodes
by title, is a usage error (use the node id then).

Exit codes: 0 ok, 1 the job failed (the node's error is printed), 2 usage error
(bad arguments, unreadable workflow, missing input file, COMFYUI_DIR not set),
3 server unreachable (or the --local server failed to start), 130 interrupted by
Ctrl-C (the prompt is cancelled on the server).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

from ..errors import EXIT_INTERRUPTED, EXIT_OK, DriverError
from ..inputs import apply_inputs, parse_input_specs
from ..workflow import load_workflow
from .common import add_server_args, api_prompt, open_client, say


def register(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run one workflow and download its outputs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("workflow", metavar="WORKFLOW", help="workflow .json (API or UI format)")
    run.add_argument(
        "--input",
        "-i",
        action="append",
        metavar="NAME=FILE",
        help="upload FILE and set it on the node with id/title NAME (repeatable)",
    )
    run.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for the downloaded outputs")
    run.add_argument(
        "--set",
        action="append",
        metavar="NODE.input=VALUE",
        help="override an input (node id or title; typed and checked by /object_info; repeatable)",
    )
    run.add_argument("--seed", type=int, metavar="N", help="set every seed / noise_seed input to N")
    run.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="fail (and cancel the prompt) after S seconds (default: wait)",
    )
    run.add_argument(
        "--progress",
        choices=["auto", "bar", "log", "none"],
        default="auto",
        help="progress display (auto: bars on a terminal, log lines otherwise)",
    )
    run.add_argument("--json", action="store_true", help="print every event as a JSON line on stdout")
    add_server_args(run)
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from ..progress import Mode, make_progress  # rich: not needed to parse arguments or print help

    workflow = load_workflow(args.workflow)
    inputs = parse_input_specs(args.input or [])
    out_dir = Path(args.out)
    with open_client(args) as client:
        info = client.node_info()  # per node class, on first use
        prompt = api_prompt(workflow, lambda: info, f"workflow {args.workflow}", client.system_stats)
        prompt = apply_inputs(prompt, inputs, client)
        if args.set or args.seed is not None:  # typed by /object_info
            from ..params import apply_params

            prompt = apply_params(prompt, args.set, args.seed, info)
        prompt_id = str(uuid.uuid4())
        mode: Mode = "json" if args.json else args.progress
        try:
            with make_progress(mode) as progress:
                result = client.run(prompt, prompt_id=prompt_id, on_event=progress, timeout=args.timeout)
        except KeyboardInterrupt:
            say(f"interrupted: cancelling prompt {prompt_id} on {client.url}")
            with contextlib.suppress(DriverError):
                client.cancel(prompt_id)
            return EXIT_INTERRUPTED
        paths = client.download(result, out_dir)
    total = sum(result.timings.values())
    say(
        f"prompt {result.prompt_id}: {result.status} in {result.duration_s:.2f} s "
        f"({len(result.cached)} cached, {total:.2f} s in nodes); {len(paths)} file(s) in {out_dir}"
    )
    if args.json:
        print(json.dumps({"type": "result", **result.to_dict(), "files": [str(p) for p in paths]}), flush=True)
    else:
        for p in paths:
            print(p)
    return EXIT_OK
