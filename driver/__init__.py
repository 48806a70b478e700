"""Headless driver for ComfyUI: HTTP + websocket client, embedded server, CLI.

Imports nothing from comfy_avatar_nodes; it only speaks ComfyUI's HTTP/websocket API.
"""
from .client import ComfyClient, JobResult, OutputFile, Uploaded
from .errors import (DriverError, JobFailed, JobInterrupted, JobLost, JobTimeout, NodeError, PromptRejected,
                     ServerError, ServerUnreachable)
from .events import Event, JobTracker
from .local import LocalComfy

__all__ = [
    "ComfyClient", "JobResult", "OutputFile", "Uploaded", "LocalComfy", "Event", "JobTracker",
    "DriverError", "ServerUnreachable", "ServerError", "PromptRejected", "NodeError", "JobFailed",
    "JobInterrupted", "JobTimeout", "JobLost",
]
