"""HTTP for one ComfyUI server: a urllib3 pool set up once, used for every call.

requests costs ~0.4 ms of CPU per call more than urllib3 underneath it (it merges
session and environment settings, re-reads proxy and netrc settings, and prepares the
request object on every call), which dominated the driver's per-prompt overhead in a
batch. Everything requests would have looked up from the environment is read here
once, when the client is made: proxies (HTTP(S)_PROXY / NO_PROXY), the CA bundle
(REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, else certifi's), basic auth from the URL or
~/.netrc. Redirects are followed; nothing is retried here (callers decide).

The pool is thread-safe (urllib3 keeps a queue of keep-alive connections).
"""

from __future__ import annotations

import json as _json
import os
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, ReadTimeoutError

USER_AGENT = "comfy-avatar-driver"
# No retries (callers retry where it is safe); redirects followed like requests does.
_RETRIES = urllib3.Retry(
    total=None,
    connect=0,
    read=0,
    status=0,
    other=0,
    redirect=10,
    raise_on_redirect=True,
    respect_retry_after_header=False,
)  # a 503 is the caller's ServerError

Response = urllib3.BaseHTTPResponse


class HttpTimeout(Exception):
    """No answer within the read timeout (the connection was made)."""


class HttpUnreachable(Exception):
    """No connection (refused, DNS, TLS, reset) or it broke mid-answer."""


_PROXY_VARS = frozenset({"http_proxy", "https_proxy", "all_proxy"})


def _env_proxy(url: str) -> str | None:
    # requests.utils costs ~80 ms to import (charset detection, idna, ...): only when a
    # proxy variable is set at all (or the OS keeps proxy settings of its own: macOS,
    # Windows) does it decide, with the NO_PROXY rules requests applies.
    if sys.platform not in ("darwin", "win32") and not any(
        k.lower() in _PROXY_VARS and v for k, v in os.environ.items()
    ):
        return None
    import requests.utils

    proxies = requests.utils.get_environ_proxies(url)
    scheme = urlsplit(url).scheme
    return proxies.get(scheme) or proxies.get("all")


def _netrc_auth(url: str) -> tuple[str, str] | None:
    # The files requests.utils.get_netrc_auth reads ($NETRC, else ~/.netrc or ~/_netrc);
    # none there (the usual case) -> no import of requests.
    names = [os.environ["NETRC"]] if "NETRC" in os.environ else ["~/.netrc", "~/_netrc"]
    if not any(os.path.exists(os.path.expanduser(n)) for n in names):
        return None
    import requests.utils

    return requests.utils.get_netrc_auth(url)


def _ca_bundle() -> str:
    env = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if env:
        return env
    import certifi

    return certifi.where()


class Http:
    """Calls to ``base_url`` + path. ``request`` returns urllib3's response (body read
    unless ``stream``); connection-level failures raise HttpUnreachable / HttpTimeout."""

    def __init__(self, base_url: str, *, timeout: float = 30.0, maxsize: int = 4) -> None:
        parts = urlsplit(base_url)
        host = parts.hostname or ""
        netloc = host if ":" not in host else f"[{host}]"
        if parts.port:
            netloc += f":{parts.port}"
        self.base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self._prefix = parts.path.rstrip("/")
        self.headers: dict[str, str] = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"}
        auth = (
            (unquote(parts.username or ""), unquote(parts.password or "")) if parts.username else _netrc_auth(self.base)
        )
        if auth:
            self.headers.update(urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
        self.timeout = urllib3.Timeout(connect=min(5.0, timeout), read=timeout)
        kw: dict[str, Any] = {
            "num_pools": 4,
            "maxsize": maxsize,
            "retries": _RETRIES,
            "timeout": self.timeout,
            "headers": self.headers,
        }
        if parts.scheme == "https":
            kw.update(cert_reqs="CERT_REQUIRED", ca_certs=_ca_bundle())
        proxy = _env_proxy(self.base)
        self._pm: urllib3.PoolManager = urllib3.ProxyManager(proxy, **kw) if proxy else urllib3.PoolManager(**kw)
        # Without a proxy every call goes to this one host: straight to its connection
        # pool (the PoolManager parses the URL and looks the pool up on every call).
        self._direct = not proxy
        self._pool: urllib3.HTTPConnectionPool | None = None

    def close(self) -> None:
        self._pool = None
        self._pm.clear()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        fields: Mapping[str, Any] | None = None,
        stream: bool = False,
        timeout: urllib3.Timeout | float | None = None,
    ) -> Response:
        """One call; ``json`` is sent as a JSON body, ``fields`` as multipart/form-data,
        ``params`` as the query string."""
        if params:
            path += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        kw: dict[str, Any] = {
            "preload_content": not stream,
            "timeout": timeout or self.timeout,
            "headers": self.headers,
        }
        if json is not None:
            kw["body"] = _json.dumps(json).encode()
            kw["headers"] = {**self.headers, "Content-Type": "application/json"}
        elif fields is not None:
            body, ctype = urllib3.encode_multipart_formdata(fields)
            kw["body"] = body
            kw["headers"] = {**self.headers, "Content-Type": ctype}
        try:
            if self._direct:
                pool = self._pool or self._connection_pool()
                r = pool.urlopen(method, self._prefix + path, redirect=False, retries=_RETRIES, **kw)
                if not r.get_redirect_location():
                    return r
                r.drain_conn()  # a redirect (maybe to another host): the manager follows it
                r.release_conn()
            return self._pm.urlopen(method, self.base + path, **kw)
        except MaxRetryError as e:  # nothing is retried: the reason is the real failure
            raise translate(e.reason or e) from e
        except (HTTPError, OSError) as e:
            raise translate(e) from e

    def _connection_pool(self) -> urllib3.HTTPConnectionPool:
        self._pool = self._pm.connection_from_url(self.base)
        return self._pool


def translate(e: BaseException) -> Exception:
    """A urllib3 / socket failure as HttpTimeout (no answer in time) or HttpUnreachable."""
    if isinstance(e, ReadTimeoutError):
        return HttpTimeout(str(e))
    return HttpUnreachable(str(e))
