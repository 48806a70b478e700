"""What the commands share: server and database arguments, the client or job store
they open, the API prompt a workflow file becomes, and status lines on stderr.

Module level stays light (argparse and the driver's leaf modules) because every
command's parser is built from here on each start; clients, the job store and the
converter are imported by the functions that open them.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import DriverError, LocalStartError, UsageError
from ..servers import DEFAULT_SERVER, SERVER_ENV, default_server
from ..workflow import is_api_prompt

if TYPE_CHECKING:  # pragma: no cover
    from ..client import ComfyClient
    from ..store import JobStore


def say(text: str) -> None:
    """One status line for the person at the terminal (stderr: stdout carries results)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def api_prompt(
    workflow: dict[str, Any],
    object_info: Callable[[], Mapping[str, Any]],
    source: str,
    system_stats: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The API prompt for a loaded workflow: as it is, or converted from the editor
    format with the server's /object_info and its editor version from /system_stats
    (fetched only then: untitled nodes get the titles that editor release gives them,
    which --set/--input by title rely on). Both run and batch come through here, so
    they treat every file alike."""
    if is_api_prompt(workflow):
        return workflow
    from ..convert import ui_to_api  # only editor-format files need the converter

    try:
        return ui_to_api(workflow, object_info(), frontend_version=frontend_version(system_stats))
    except ValueError as e:  # ConversionError names the node and the fix; other ValueErrors are the file's too
        raise UsageError(source, f"cannot convert the UI workflow: {e}") from None


def frontend_version(system_stats: Callable[[], dict[str, Any]] | None) -> str | None:
    """The editor release the server asks for (`system.required_frontend_version`, in
    ComfyUI 0.3.64 and 0.8.0); None when unknown (the converter then assumes the newest)."""
    if system_stats is None:
        return None
    version = (system_stats().get("system") or {}).get("required_frontend_version")
    return version if isinstance(version, str) else None


def add_server_args(p: argparse.ArgumentParser) -> None:
    """--server URL | --local (one server), for commands that run one prompt."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--server", metavar="URL", help=f"ComfyUI URL (default: ${SERVER_ENV} or {DEFAULT_SERVER})")
    g.add_argument(
        "--local",
        action="store_true",
        help="start a private ComfyUI from $COMFYUI_DIR on a free 127.0.0.1 port, stop it after",
    )
    p.add_argument("--comfyui-dir", metavar="DIR", help="ComfyUI checkout for --local (default: $COMFYUI_DIR)")
    p.add_argument(
        "--start-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds to wait for the --local server (default 300)",
    )
    p.add_argument("--local-log", metavar="FILE", help="keep the --local server's log in FILE")


def add_db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        metavar="URL",
        help="job database: SQLAlchemy URL or SQLite file "
        "(default: $COMFY_AVATAR_DB or ~/.local/share/comfy-avatar/jobs.db)",
    )


def open_store(args: argparse.Namespace) -> JobStore:
    from ..store import JobStore  # SQLAlchemy: only the commands that read or write job records

    return JobStore(args.db or None)


def open_reader(args: argparse.Namespace) -> Any:
    """For commands that only read records: the stdlib SQLite reader (driver/store_read.py, no
    SQLAlchemy import) when the database is an existing SQLite file, else the JobStore."""
    from ..records import default_url, to_url
    from ..store_read import open_reader as lite

    return lite(to_url(args.db) if args.db else default_url()) or open_store(args)


@contextlib.contextmanager
def open_client(args: argparse.Namespace) -> Iterator[ComfyClient]:
    """A ComfyClient for --server / --local (the local server stops on exit)."""
    from ..client import ComfyClient

    if not getattr(args, "local", False):
        with ComfyClient(args.server or default_server()) as client:
            yield client
        return
    from ..local import LocalComfy

    try:
        local = LocalComfy(args.comfyui_dir, start_timeout=args.start_timeout, log_path=args.local_log)
    except DriverError as e:
        raise UsageError(e.what, e.problem, e.fix) from None
    say(f"starting ComfyUI from {local.comfyui_dir} (this takes a while)...")
    try:
        local.start()
    except DriverError as e:
        raise LocalStartError(e.what, e.problem, e.fix, detail=e.detail) from None
    try:
        say(f"ComfyUI is up at {local.url}")
        with ComfyClient(local.url) as client:
            yield client
    finally:
        local.stop()
