"""``comfy-avatar`` command line (also ``python -m driver``).

    comfy-avatar run WORKFLOW ...           one workflow, outputs downloaded    (cli/run.py)
    comfy-avatar batch WORKFLOW ...         many jobs over one or more servers  (cli/batch.py)
    comfy-avatar status | list | cancel     the job records                     (cli/jobs.py)
    comfy-avatar submit | worker            the fleet: broker queue and workers (cli/submit.py, worker.py)
    comfy-avatar serve                      the fleet's HTTP API and job page   (cli/serve.py)

The top of the driver's layers: it imports downward only. Each command module has
``register(subparsers)`` and imports the heavy parts (websocket-client, urllib3,
requests, SQLAlchemy, rich, the converter) inside its command function, so
``--help`` and argument errors load argparse and this package and nothing else.
A DriverError a command raises is printed and becomes an exit code
(errors.exit_code_for): 0 ok, 1 job failed, 2 usage, 3 server unreachable, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..errors import EXIT_INTERRUPTED, DriverError, JobFailed, exit_code_for
from . import batch, jobs, run, serve, submit, worker
from .common import say


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="comfy-avatar",
        description="Run comfy-avatar workflows on ComfyUI, headless.",
        epilog="Exit codes: 0 ok, 1 job failed, 2 usage, 3 server unreachable.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run.register(sub)
    batch.register(sub)
    jobs.register(sub)
    submit.register(sub)
    worker.register(sub)
    serve.register(sub)
    return parser


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except DriverError as e:
        say(f"error: {e}")
        if isinstance(e, JobFailed) and args.verbose and e.traceback:
            say(e.traceback)
        return exit_code_for(e)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
