"""manifest.json per batch job: what ran where, its outputs and their sha256.

Written atomically (temp file + rename) into the job's output folder, for failed
jobs too, so a folder always says what it holds and why.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        try:  # one write (json.dump writes every token separately)
            write_all(fd, json.dumps(data, indent=2, sort_keys=True, default=str).encode() + b"\n")
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_all(fd: int, data: bytes) -> None:
    """os.write until all of ``data`` is written (no file object around a one-shot write)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def build_manifest(**fields: Any) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
        **fields,
    }


def write_manifest(job_dir: Path, manifest: dict[str, Any]) -> Path:
    return write_json_atomic(job_dir / MANIFEST_NAME, manifest)


def verify_manifest(job_dir: Path) -> list[str]:
    """Problems found re-hashing the files a manifest lists ([] when all match)."""
    data = json.loads((job_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    problems = []
    for o in data.get("outputs") or []:
        p = job_dir / o["path"]
        if not p.is_file():
            problems.append(f"{o['path']}: missing")
        elif sha256_file(p) != o["sha256"]:
            problems.append(f"{o['path']}: sha256 differs")
    return problems
