"""``comfy-avatar serve``: the fleet's HTTP API and job page (FastAPI on uvicorn).

    comfy-avatar serve --broker URL --db URL [--host 127.0.0.1] [--port 8080] [--workflows DIR]
        [--files DIR] [--max-upload-mb 16] [--rate 10] [--burst 60] [--insecure-no-auth]

API keys come from COMFY_AVATAR_API_KEYS (comma list of name:key, keys of 16+ characters);
without keys serve refuses to start unless --insecure-no-auth is given (a private test box).
--files DIR is the folder the workers write outputs to (--out), when this box mounts it:
GET /jobs/{id}/files/{name} serves files from there only. The routes, limits and errors are
in driver/fleet/api.py and in the OpenAPI schema at /openapi.json (/docs).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK, UsageError
from .common import add_db_arg, open_store, say
from .fleet import add_broker_arg, fleet_settings, quiet_pika

log = logging.getLogger("comfy_avatar.driver.cli.serve")


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def register(sub: Any) -> None:
    s = sub.add_parser(
        "serve",
        help="HTTP API + job page for the fleet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--workflows", metavar="DIR", help="workflows POST /jobs may name (default: the repo's workflows/)")
    s.add_argument("--files", action="append", metavar="DIR", help="the workers' shared output folder (repeatable)")
    s.add_argument("--max-upload-mb", type=float, default=16.0, help="largest upload (default 16 MiB)")
    s.add_argument("--rate", type=float, default=10.0, help="requests per second per API key (default 10; 0: no limit)")
    s.add_argument("--burst", type=int, default=60, help="requests at once per API key (default 60)")
    s.add_argument("--insecure-no-auth", action="store_true", help="no API keys (a private test box only)")
    s.add_argument(
        "--trust-proxy",
        metavar="IPS",
        help="addresses of a reverse proxy whose X-Forwarded-For is believed (comma list); default none: "
        "wrong-key rate limits go by the connecting address, which a client cannot write",
    )
    add_broker_arg(s)
    add_db_arg(s)
    s.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..fleet.api import ApiSettings, Services, create_app
    from ..fleet.broker import Publisher
    from ..fleet.hub import EventHub
    from ..fleet.uploads import API_KEYS_ENV, keys_from_env

    try:
        keys = keys_from_env()
    except ValueError as e:
        raise UsageError(API_KEYS_ENV, str(e).split(": ", 1)[-1], "set long random keys") from None
    if not keys and not args.insecure_no_auth:
        raise UsageError(
            API_KEYS_ENV,
            "is not set, so every request would be refused",
            f"set {API_KEYS_ENV}=name:LONG_RANDOM_KEY (or pass --insecure-no-auth on a private box)",
        )
    quiet_pika(args)
    fleet = fleet_settings(args)
    root = _repo_root()
    viewer = root / "comfy_avatar_nodes" / "web"
    api = ApiSettings(
        workflows_dir=Path(args.workflows) if args.workflows else root / "workflows",
        max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
        rate=args.rate,
        burst=args.burst,
        auth=not args.insecure_no_auth,
        file_roots=tuple(Path(f) for f in args.files or ()),
        viewer_dir=viewer if viewer.is_dir() else None,
    )
    store = open_store(args)
    publisher = Publisher(fleet, "comfy-avatar-serve")
    hub = EventHub(fleet)
    hub.start()
    app = create_app(Services(fleet, api, store, publisher, keys, hub))
    say(f"serving the fleet API on http://{args.host}:{args.port} ({len(keys)} API key(s); page at /, schema at /docs)")
    try:
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: anyone on the hub could
        # then pick the address the wrong-key rate limit counts against
        proxy = (
            {"proxy_headers": True, "forwarded_allow_ips": args.trust_proxy}
            if args.trust_proxy
            else {"proxy_headers": False}
        )
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, **proxy)
    finally:
        hub.stop()
        publisher.close()
        store.close()
    return EXIT_OK
