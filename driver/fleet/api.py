"""``comfy-avatar serve``: the fleet's HTTP API (FastAPI, served by uvicorn) and its job page.

    POST   /jobs                    a job: multipart (fields workflow, params, seed, priority, label;
                                    every file field is an input, named by the field) or JSON
                                    {workflow, params, seed, priority, label, inputs: {NAME: s3://...}}
    GET    /jobs                    recent jobs (?status=&limit=)
    GET    /jobs/{id}               one job's record
    WS     /jobs/{id}/events        its events (first message from the client: {"key": API_KEY})
    GET    /jobs/{id}/files/{name}  an output file (or a redirect to its public S3 URL)
    DELETE /jobs/{id}               cancel it
    GET    /workflows               the workflow names POST /jobs accepts
    GET    /healthz, /metrics       health (broker, database) and Prometheus metrics: no key
    GET    /openapi.json, /docs     the schema
    GET    /                        the job page

Every /jobs and /workflows route needs an API key (``Authorization: Bearer KEY`` or
``X-API-Key: KEY``; keys from COMFY_AVATAR_API_KEYS) and is rate limited per key. A request
body over the limit is read off and discarded, then refused with 413 (reading it lets the
client see the answer instead of a reset connection); an upload that is not a PNG, JPEG or
WebP picture gets 415, a file name with a path or '..' gets 400. A refused request leaves
nothing behind: no record, no message, no file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import DriverError, UsageError
from ..store import CANCELLED, TERMINAL, JobStore, StoreError
from ..workflow import load_workflow
from .broker import BrokerUnreachable, Publisher, PublishRefused
from .hub import EventHub
from .messages import FINAL_KINDS, InputFile, make_job, url_filename
from .metrics import ApiMetrics
from .page import PAGE_CSP, PAGE_HTML
from .settings import PRIORITIES, FleetSettings
from .submit import URL_SCHEMES, check_input_url, job_summary, submit_job
from .uploads import ApiKey, RateLimiter, Refused, check_upload, match_key, presented_key

log = logging.getLogger("comfy_avatar.driver.fleet.api")

_WORKFLOW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_FORM_FIELDS = {"workflow", "params", "seed", "priority", "label", "timeout"}


@dataclass(frozen=True)
class ApiSettings:
    workflows_dir: Path
    max_upload_bytes: int = 16 << 20
    rate: float = 10.0  # requests per second per key
    burst: int = 60
    auth: bool = True
    file_roots: tuple[Path, ...] = ()  # folders GET /jobs/{id}/files may serve from (the shared --out)
    viewer_dir: Path | None = None  # a built three-vrm viewer bundle, served under /viewer/
    drain_max_bytes: int = 1 << 30  # an oversized body is read off up to this, then the connection closes

    @property
    def max_request_bytes(self) -> int:
        return self.max_upload_bytes * 4 + (1 << 20)


@dataclass
class Services:
    fleet: FleetSettings
    api: ApiSettings
    store: JobStore
    publisher: Publisher
    keys: list[ApiKey]
    hub: EventHub | None = None
    limiter: RateLimiter = field(init=False)
    metrics: ApiMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.api.rate, self.api.burst)
        self.metrics = ApiMetrics(self.store.counts, self._depths)

    def _depths(self) -> dict[str, int]:
        return {q: self.publisher.queue_depth(q) for q in (self.fleet.jobs_queue, self.fleet.dead_queue)}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: refuse bodies over ``limit`` with 413 before the app parses them."""

    def __init__(self, app: Any, limit: int, drain_max: int, on_refuse: Any = None) -> None:
        self.app, self.limit, self.drain_max, self.on_refuse = app, limit, drain_max, on_refuse

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        if declared > self.limit:
            return await self._refuse(receive, send, declared)
        seen = 0
        body_parts: list[dict[str, Any]] = []

        async def limited() -> Any:
            nonlocal seen
            if body_parts:
                return body_parts.pop(0)
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(receive, send, seen, more=True)

    async def _refuse(self, receive: Any, send: Any, size: int, more: bool = True) -> None:
        # Read the rest off (discarded, never stored) so the client gets to read the answer.
        drained, keep_alive = 0, True
        while more and drained < self.drain_max:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            drained += len(msg.get("body", b""))
            more = msg.get("more_body", False)
        if more:
            keep_alive = False
        if self.on_refuse is not None:
            self.on_refuse()
        body = json.dumps(
            {
                "status": 413,
                "error": f"request body: {max(size, drained)} bytes is over the limit of "
                f"{self.limit} bytes. Fix: send smaller files, or put them on S3 and pass s3:// URLs",
            }
        ).encode()
        hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if not keep_alive:
            hdrs.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def authorized(request: Request) -> ApiKey:
    """The request's API key (constant-time match), after its rate limit; Refused otherwise."""
    svc: Services = request.app.state.svc
    if not svc.api.auth:
        key: ApiKey | None = ApiKey("anonymous", b"")
    else:
        key = match_key(svc.keys, presented_key(request.headers.get("authorization"), request.headers.get("x-api-key")))
    if key is None:
        # Wrong keys are rate limited too, by the connecting address (never X-Forwarded-For,
        # which a client writes itself): guessing keys costs the same budget as using one.
        # Behind a reverse proxy every client shares the proxy's bucket.
        svc.limiter.check(f"unauthenticated {request.client.host if request.client else '?'}")
        raise Refused(
            401,
            "API key",
            "missing or not valid",
            "send Authorization: Bearer KEY (or X-API-Key) with a key from COMFY_AVATAR_API_KEYS",
        )
    svc.limiter.check(key.name)
    return key


Key = Annotated[ApiKey, Depends(authorized)]


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(
        title="comfy-avatar fleet API",
        version="1",
        description="Submit avatar jobs to the comfy-avatar fleet, follow them, fetch their files.",
    )
    app.state.svc = svc
    api = svc.api

    @app.exception_handler(Refused)
    async def _refused(_req: Request, e: Refused) -> JSONResponse:
        if e.reason in ("size", "type", "name", "empty"):
            svc.metrics.refused.labels(e.reason).inc()
        return _error(e.status, str(e), e.headers)

    @app.exception_handler(DriverError)
    async def _driver_error(_req: Request, e: DriverError) -> JSONResponse:
        if isinstance(e, StoreError) and "not in the job database" in e.problem:
            return _error(404, str(e))
        if isinstance(e, UsageError):
            return _error(400, str(e))
        if isinstance(e, (BrokerUnreachable, PublishRefused)):
            return _error(503, str(e))
        log.warning("request failed: %s", e)
        return _error(500, str(e))

    @app.middleware("http")
    async def _count(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        svc.metrics.requests.labels(request.method, getattr(route, "path", "other"), str(response.status_code)).inc()
        return response

    # -- jobs ------------------------------------------------------------------------------
    @app.post("/jobs", status_code=201, summary="Submit a job")
    async def post_job(request: Request, key: Key) -> JSONResponse:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            fields, inputs = await _read_form(request, api, svc.fleet)
        elif ctype.startswith("application/json"):
            try:
                fields = await request.json()
            except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser's stack
                raise Refused(400, "request body", "is not valid JSON", "send a JSON object") from None
            if not isinstance(fields, dict):
                raise Refused(400, "request body", "is not a JSON object", 'send {"workflow": ..., ...}')
            inputs = _url_inputs(fields.get("inputs"), svc.fleet)
        else:
            raise Refused(
                415,
                "request",
                f"content type {ctype or 'none'!r} is not accepted",
                "send multipart/form-data (with files), a urlencoded form or application/json",
            )
        msg = _job_from_fields(fields, inputs, api)
        await run_in_threadpool(submit_job, msg, svc.publisher, svc.store)
        svc.metrics.submitted.labels(msg.priority).inc()
        log.info("job %s submitted by key %s", msg.job_id, key.name)
        body = {**job_summary(msg), "status": "pending", "links": _links(msg.job_id)}
        return JSONResponse(body, status_code=201)

    @app.get("/jobs", summary="Recent jobs")
    def list_jobs(
        _key: Key, status: str | None = Query(None), limit: int = Query(50, ge=1, le=1000)
    ) -> list[dict[str, Any]]:
        return [_brief(r) for r in svc.store.list(status=status, limit=limit)]

    @app.get("/jobs/{job_id}", summary="One job")
    def get_job(job_id: str, _key: Key) -> dict[str, Any]:
        rec = _exact(svc.store, job_id)
        return {**_public(rec.to_dict()), "links": _links(rec.id)}

    @app.delete("/jobs/{job_id}", summary="Cancel a job")
    def delete_job(job_id: str, _key: Key) -> dict[str, Any]:
        rec = _exact(svc.store, job_id)
        if rec.status in TERMINAL:
            return {"job_id": rec.id, "status": rec.status, "cancelled": False}
        svc.store.request_cancel([rec.id])
        won = svc.store.set_status(rec.id, CANCELLED, detail="cancelled over the HTTP API")
        try:
            svc.publisher.publish_control({"type": "cancel", "job_id": rec.id})
        except DriverError as e:
            log.warning("cancel of %s not sent to the workers (%s); they read it from the job database", rec.id, e)
        return {"job_id": rec.id, "status": CANCELLED if won else svc.store.status_of(rec.id)[0], "cancelled": won}

    @app.get("/jobs/{job_id}/files/{name:path}", summary="An output file of a job")
    def get_file(job_id: str, name: str, _key: Key) -> Response:
        rec = _exact(svc.store, job_id)
        for o in rec.outputs:
            if name not in (o.get("filename"), _rel(o)):
                continue
            where = str(o.get("path") or "")
            if where.startswith(("http://", "https://")):
                # Only into the fleet's own bucket: any text output that starts with a URL is
                # recorded as a file (the Promote to S3 node's), so a workflow could otherwise
                # make this API an open redirect to a page of its choosing, with the viewer's
                # Authorization header on the way in older browsers.
                base = svc.fleet.s3_public_base_url.rstrip("/")
                if base and where.startswith(base + "/"):
                    return RedirectResponse(where, status_code=307)
                return _error(
                    404,
                    f"file {name}: its URL is outside COMFY_AVATAR__FLEET__S3_PUBLIC_BASE_URL "
                    f"({base or 'not set'}), so it is not redirected to. Fix: set it on serve and the "
                    "workers to the public URL of the bucket the workflow publishes to",
                )
            if where.startswith("s3://"):
                return _error(
                    404,
                    f"file {name}: stored at {where}. Fix: set COMFY_AVATAR__FLEET__S3_PUBLIC_BASE_URL "
                    "on the workers so outputs get public URLs, or fetch it with rclone",
                )
            path = Path(where)
            if path.is_file() and any(_inside(path, root) for root in api.file_roots):
                return FileResponse(path, filename=path.name)
            return _error(
                404,
                f"file {name} of job {rec.id}: not readable here ({where}). Fix: start serve with "
                "--files DIR, the folder the workers write to (--out)",
            )
        return _error(404, f"file {name}: job {rec.id} has no such output. Fix: GET /jobs/{rec.id} lists them")

    @app.get("/workflows", summary="Workflow names POST /jobs accepts")
    def workflows(_key: Key) -> list[str]:
        return _workflow_names(api.workflows_dir)

    @app.websocket("/jobs/{job_id}/events")
    async def job_events(ws: WebSocket, job_id: str) -> None:
        await ws.accept()
        try:
            if api.auth:
                try:
                    first = await asyncio.wait_for(ws.receive_json(), timeout=10)
                except (asyncio.TimeoutError, ValueError, TypeError):
                    first = {}
                key = match_key(svc.keys, str(first.get("key") or "") if isinstance(first, dict) else "")
                if key is None:
                    await ws.send_json({"error": 'API key missing or not valid. Fix: send {"key": KEY} first'})
                    await ws.close(code=4401)
                    return
            try:
                rec = await run_in_threadpool(_exact, svc.store, job_id)
            except (DriverError, Refused) as e:
                await ws.send_json({"error": str(e)})
                await ws.close(code=4404)
                return
            if svc.hub is None:
                await ws.close(code=1011)
                return
            q = svc.hub.subscribe(rec.id)
            try:
                rec = await run_in_threadpool(svc.store.get, rec.id)  # after subscribing: nothing missed
                await ws.send_json({"kind": "record", "job_id": rec.id, "data": _public(rec.to_dict())})
                if rec.status in TERMINAL:
                    await ws.close()
                    return
                while True:
                    try:
                        evt = await asyncio.wait_for(q.get(), timeout=2.0)
                    except asyncio.TimeoutError:
                        status = (await run_in_threadpool(svc.store.status_of, rec.id))[0]
                        if status in TERMINAL:
                            final = await run_in_threadpool(svc.store.get, rec.id)
                            await ws.send_json({"kind": "record", "job_id": rec.id, "data": _public(final.to_dict())})
                            break
                        continue
                    await ws.send_json(evt)
                    if evt.get("kind") in FINAL_KINDS:
                        break
                await ws.close()
            finally:
                svc.hub.unsubscribe(rec.id, q)
        except WebSocketDisconnect:
            return

    # -- health, metrics, page ----------------------------------------------------------------
    @app.get("/healthz", summary="Broker and database reachable")
    def healthz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            svc.publisher.queue_depth()
            checks["broker"] = "up"
        except DriverError as e:
            checks["broker"] = f"down: {e.problem}"
        try:
            svc.store.counts("-")
            checks["database"] = "up"
        except Exception as e:  # noqa: BLE001
            checks["database"] = f"down: {type(e).__name__}"
        ok = all(v == "up" for v in checks.values())
        return JSONResponse({"ok": ok, **checks}, status_code=200 if ok else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(
            PAGE_HTML,
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": PAGE_CSP,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    @app.get("/viewer/{path:path}", include_in_schema=False)
    def viewer(path: str) -> Response:
        root = api.viewer_dir
        if root is None or not root.is_dir():
            return _error(
                404,
                "the three-vrm viewer bundle is not here (comfy_avatar_nodes/web/vendor/). "
                "Fix: run serve from a checkout with the pack (npm --prefix web_src run build rebuilds it)",
            )
        target = (root / path).resolve()
        if not _inside(target, root) or not target.is_file():
            return _error(404, f"viewer file {path} not found")
        # a module script must come as JavaScript (Python 3.11's mimetypes does not know .mjs)
        js = target.suffix in (".js", ".mjs")
        return FileResponse(target, media_type="text/javascript" if js else None)

    @app.get("/viewer-status", include_in_schema=False)
    def viewer_status() -> dict[str, Any]:
        root = api.viewer_dir
        entry = _viewer_entry(root)
        return {"available": entry is not None, "entry": f"/viewer/{entry}" if entry else None}

    app.add_middleware(
        BodyLimit,
        limit=api.max_request_bytes,
        drain_max=api.drain_max_bytes,
        on_refuse=lambda: svc.metrics.refused.labels("size").inc(),
    )
    return app


# -- request parsing (pure where possible) ------------------------------------------------------


async def _read_form(
    request: Request, api: ApiSettings, fleet: FleetSettings
) -> tuple[dict[str, Any], list[InputFile]]:
    try:
        form = await request.form(max_files=16, max_fields=32, max_part_size=1 << 20)
    except Exception as e:  # noqa: BLE001 - starlette raises MultiPartException / HTTPException
        raise Refused(
            400,
            "multipart body",
            f"could not be read ({getattr(e, 'detail', None) or e})",
            "send a well-formed multipart/form-data body",
        ) from None
    try:
        fields: dict[str, Any] = {}
        inputs: list[InputFile] = []
        for name, value in form.multi_items():
            if isinstance(value, str):
                if name not in _FORM_FIELDS:
                    if value.startswith(URL_SCHEMES):
                        _check_url(name, value, fleet)
                        inputs.append(InputFile(name, url_filename(value, name), url=value))
                        continue
                    raise Refused(
                        400,
                        f"form field {name!r}",
                        "is not known",
                        f"use {', '.join(sorted(_FORM_FIELDS))}, or a file / s3:// URL per input",
                    )
                fields[name] = value
                continue
            size = value.size if value.size is not None else 0
            head = await value.read(16)
            filename, _kind = check_upload(name, value.filename, head, size, api.max_upload_bytes)
            await value.seek(0)
            data = await value.read()
            inputs.append(InputFile.inline(name, filename, data))
        for key in ("params",):
            if key in fields:
                try:
                    fields[key] = json.loads(fields[key])
                except (ValueError, RecursionError):
                    raise Refused(
                        400, f"form field {key!r}", "is not JSON", 'send e.g. {"KSampler.steps": 20}'
                    ) from None
        return fields, inputs
    finally:
        await form.close()


def _check_url(name: str, url: str, fleet: FleetSettings) -> None:
    try:
        check_input_url(name, url, fleet)
    except UsageError as e:
        raise Refused(400, e.what, e.problem, e.fix) from None


def _url_inputs(raw: Any, fleet: FleetSettings) -> list[InputFile]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise Refused(400, "inputs", "is not an object", 'send {"image": "s3://bucket/key"}')
    out = []
    for name, url in raw.items():
        if not isinstance(url, str) or not url.startswith(URL_SCHEMES):
            raise Refused(
                400,
                f"input {name!r}",
                "is not an s3:// or https:// URL",
                "upload files with multipart/form-data, or pass URLs here",
            )
        _check_url(str(name), url, fleet)
        out.append(InputFile(str(name), url_filename(url, str(name)), url=url))
    return out


def _job_from_fields(fields: dict[str, Any], inputs: list[InputFile], api: ApiSettings) -> Any:
    wf = fields.get("workflow")
    if isinstance(wf, str) and wf.strip().startswith("{"):
        try:
            wf = json.loads(wf)
        except (ValueError, RecursionError):
            raise Refused(400, "workflow", "is not valid JSON", "send a workflow name or its JSON") from None
    if isinstance(wf, dict):
        workflow, wf_name = wf, "inline"
    elif isinstance(wf, str) and wf:
        workflow, wf_name = _named_workflow(wf, api.workflows_dir), wf
    else:
        raise Refused(400, "workflow", "is missing", "send a workflow name (GET /workflows) or its JSON")
    params = fields.get("params") or {}
    if isinstance(params, dict):
        sets = [f"{k}={_as_text(v)}" for k, v in params.items()]
    elif isinstance(params, list) and all(isinstance(s, str) for s in params):
        sets = list(params)
    else:
        raise Refused(
            400, "params", "is neither an object nor a list of NODE.input=VALUE", 'send {"NODE.input": value}'
        )
    priority = str(fields.get("priority") or "normal")
    if priority not in PRIORITIES:
        raise Refused(400, "priority", f"{priority!r} is not one of {', '.join(PRIORITIES)}", "send normal")
    seed = _int_or_none(fields.get("seed"), "seed")
    timeout = fields.get("timeout")
    try:
        timeout_s = float(timeout) if timeout not in (None, "") else None
    except (TypeError, ValueError):
        raise Refused(400, "timeout", f"{timeout!r} is not a number of seconds", "send e.g. 600") from None
    if timeout_s is not None and not 0 < timeout_s < math.inf:  # NaN fails both comparisons
        raise Refused(400, "timeout", f"{timeout!r} is not a positive number of seconds", "send e.g. 600")
    try:
        return make_job(
            workflow,
            workflow_name=wf_name,
            sets=sets,
            seed=seed,
            inputs=inputs,
            priority=priority,
            label=str(fields.get("label") or "")[:200],
            timeout_s=timeout_s,
        )
    except UsageError as e:
        raise Refused(400, e.what, e.problem, e.fix) from None


def _named_workflow(name: str, root: Path) -> dict[str, Any]:
    if not _WORKFLOW_NAME.match(name) or ".." in name:
        raise Refused(400, f"workflow {name[:80]!r}", "is not a workflow name", "GET /workflows lists them")
    for cand in (root / f"{name}.api.json", root / f"{name}.json", root / name):
        if cand.is_file() and cand.suffix == ".json":
            return load_workflow(cand)
    raise Refused(404, f"workflow {name!r}", f"is not in {root.name}/", "GET /workflows lists them")


def _workflow_names(root: Path) -> list[str]:
    names = set()
    for p in root.glob("*.json"):
        names.add(p.name[: -len(".api.json")] if p.name.endswith(".api.json") else p.stem)
    return sorted(names)


def _as_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return v if isinstance(v, str) else json.dumps(v)


def _int_or_none(v: Any, what: str) -> int | None:
    if v in (None, ""):
        return None
    if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
        raise Refused(400, what, f"{v!r} is not a whole number", "send e.g. 7")
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON Infinity
        raise Refused(400, what, f"{v!r} is not a whole number", "send e.g. 7") from None


def _exact(store: JobStore, job_id: str) -> Any:
    """The record with exactly this id or prompt_id (no prefix matching over HTTP). Any
    miss is the same 404 (an id prefix that matches several jobs, too), and it does not
    name the job database: its host and user are none of an API client's business."""
    try:
        rec = store.get(job_id)
    except StoreError:
        rec = None
    if rec is None or job_id not in (rec.id, rec.prompt_id):
        raise Refused(404, f"job {job_id[:80]!r}", "is not in the job database", "use the full job id (GET /jobs)")
    return rec


def _rel(o: dict[str, Any]) -> str:
    sub = str(o.get("subfolder") or "")
    return f"{sub}/{o.get('filename')}" if sub else str(o.get("filename"))


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def _links(job_id: str) -> dict[str, str]:
    return {"self": f"/jobs/{job_id}", "events": f"/jobs/{job_id}/events", "page": f"/#job={job_id}"}


def _public(d: dict[str, Any]) -> dict[str, Any]:
    """A record as the API shows it: output paths on the workers' disks become file links."""
    d = dict(d)
    d["outputs"] = [
        {
            **{k: o.get(k) for k in ("node_id", "key", "filename", "subfolder", "type", "sha256", "size")},
            "url": f"/jobs/{d['id']}/files/{_rel(o)}",
        }
        for o in d.get("outputs") or []
    ]
    d.pop("out_dir", None)
    return d


def _brief(r: Any) -> dict[str, Any]:
    d = r.to_dict()
    return {
        k: d[k]
        for k in (
            "id",
            "status",
            "label",
            "workflow_path",
            "server",
            "attempts",
            "created_at",
            "finished_at",
            "duration_s",
            "error",
        )
    }


def _viewer_entry(root: Path | None) -> str | None:
    if root is None or not root.is_dir():
        return None
    # The bundle the pack's editor extension loads (web_src/ builds it); not avatar_nodes.js, which
    # is the ComfyUI extension itself and imports the editor's app.
    entry = root / "vendor" / "avatar-viewer.bundle.mjs"
    return entry.relative_to(root).as_posix() if entry.is_file() else None
