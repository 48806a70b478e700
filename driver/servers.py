"""Where the ComfyUI servers are: the default URL, the environment variables that
name them, and one spelling of a server URL.

A leaf apart from client.py so that the CLI's help text (which shows the default)
and the server pool can name servers without importing the websocket/HTTP stack.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from .errors import DriverError

DEFAULT_SERVER = "http://127.0.0.1:8188"
SERVER_ENV = "COMFY_AVATAR_SERVER"  # one server (run, and batch without SERVERS_ENV)
SERVERS_ENV = "COMFY_AVATAR_SERVERS"  # comma list for batches


def normalize_url(url: str) -> str:
    """'host:port' -> 'http://host:port'; no trailing slash."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DriverError(f"server URL {url!r}", "not an http(s) URL", "pass e.g. --server http://127.0.0.1:8188")
    return url


def default_server() -> str:
    """The server a command uses without --server: $COMFY_AVATAR_SERVER, else the default."""
    return os.environ.get(SERVER_ENV) or DEFAULT_SERVER


def default_servers() -> list[str]:
    """The servers a batch uses without --server: $COMFY_AVATAR_SERVERS (comma list),
    else $COMFY_AVATAR_SERVER, else the default."""
    raw = os.environ.get(SERVERS_ENV) or default_server()
    return [s.strip() for s in raw.split(",") if s.strip()]
