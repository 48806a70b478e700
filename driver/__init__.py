"""Headless driver for ComfyUI: HTTP + websocket client, embedded server, batches, CLI.

Imports nothing from comfy_avatar_nodes; it only speaks ComfyUI's HTTP/websocket API.

Layers, top to bottom; a module imports only from layers below it (no cycles,
checked by tests/test_import_graph.py):

    cli/                                   the comfy-avatar command: run, batch, status/list/cancel
    batch                                  many jobs over several servers, records, manifests
    pool, batch_client, inputs, params     servers' health and load; socket reuse and cancel;
                                           --input NAME=FILE; --set / --seed
    client, convert                        one ComfyUI over HTTP + websocket; editor -> API prompt
    store, local, callback, workflow,      job records; a private ComfyUI; signed callbacks;
    servers                                workflow files and their format; server URLs
    errors, progress                       errors and exit codes; run's progress display
    results, events, manifest, transport,  plain data and I/O helpers with no driver imports
    prepared

ComfyClient and LocalComfy are imported on first use: importing them here would
make every ``import driver.<module>`` (the CLI's ``--help`` included) load
websocket-client, urllib3 and requests.
"""

from typing import Any

from .errors import (
    DriverError,
    JobFailed,
    JobInterrupted,
    JobLost,
    JobTimeout,
    NodeError,
    PromptRejected,
    ServerError,
    ServerUnreachable,
)
from .events import Event, JobTracker
from .results import JobResult, OutputFile, Uploaded

__all__ = [
    "ComfyClient",
    "JobResult",
    "OutputFile",
    "Uploaded",
    "LocalComfy",
    "Event",
    "JobTracker",
    "DriverError",
    "ServerUnreachable",
    "ServerError",
    "PromptRejected",
    "NodeError",
    "JobFailed",
    "JobInterrupted",
    "JobTimeout",
    "JobLost",
]


def __getattr__(name: str) -> Any:
    if name == "ComfyClient":
        from .client import ComfyClient

        return ComfyClient
    if name == "LocalComfy":
        from .local import LocalComfy

        return LocalComfy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
