"""File-backed asset handles and the one way to write output files atomically.

Nodes pass small JSON-safe handles (path + kind + sha256 + meta) between each other,
never big in-memory blobs: Blender, UniRig and TRELLIS run in other processes anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import AvatarError

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``final``; rename it over ``final`` only on success.

    The temp name keeps the final suffix (exporters pick formats by extension) and
    starts with '.', so a half-written file is never found where a complete one is
    expected. On any exception the temp file is removed and the error re-raised.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".part{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not tmp_path.exists() or tmp_path.stat().st_size == 0:
            raise AvatarError(str(final), "nothing was written", "see the log above for the step that failed")
        os.replace(tmp_path, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def write_bytes_atomic(final: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def write_text_atomic(final: str | os.PathLike[str], text: str) -> Path:
    return write_bytes_atomic(final, text.encode("utf-8"))


def write_json_atomic(final: str | os.PathLike[str], obj: Any) -> Path:
    return write_text_atomic(final, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def require_input_file(path: Path, input_name: str, extensions: Sequence[str], kind: str, fix: str) -> None:
    """A file a job reads: it exists (else ``fix`` says what to connect), has one of
    ``extensions`` (``kind`` names them, e.g. "mesh format") and is not empty."""
    if not path.is_file():
        raise AvatarError(input_name, f"file {path} does not exist", fix)
    if path.suffix.lower() not in extensions:
        raise AvatarError(input_name, f"{path.name} is not a supported {kind}", f"use one of {', '.join(extensions)}")
    if path.stat().st_size == 0:
        raise AvatarError(input_name, f"{path.name} is empty (0 bytes)", "re-run the node that made it")


def safe_name(name: str, default: str = "asset") -> str:
    """A file-name-safe version of a user string ("My Avatar!" -> "My_Avatar")."""
    cleaned = _SAFE_NAME.sub("_", name).strip("._")
    return cleaned[:80] or default


def next_free_stem(out_dir: str | os.PathLike[str], prefix: str) -> str:
    """ComfyUI-style counter naming: ``<prefix>_00001``, one past the highest number any file in
    ``out_dir`` carries (``<prefix>_00003.vrm``, ``<prefix>_00003_lod0.glb``, ``<prefix>_00003.report.json``
    all count), so a run's companion files never meet another run's, whatever their extension."""
    base = safe_name(prefix)
    out = Path(out_dir)
    used: list[int] = []
    if out.is_dir():
        pattern = re.compile(rf"^{re.escape(base)}_(\d{{5}})(?:[._]|$)")
        used = [int(m.group(1)) for p in out.iterdir() if (m := pattern.match(p.name))]
    return f"{base}_{(max(used) + 1) if used else 1:05d}"


def next_output_path(out_dir: str | os.PathLike[str], prefix: str, ext: str) -> Path:
    """``out_dir/<prefix>_NNNNN.<ext>`` with the next free number (:func:`next_free_stem`); makes ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{next_free_stem(out, prefix)}.{ext.lstrip('.')}"


@dataclass
class Asset:
    """A file on disk plus what we know about it. JSON-safe via to_dict/from_dict."""

    path: str
    kind: str  # "image", "mesh", "vrm", "blend", "glb", "fbx", "obj", "report", ...
    sha256: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], kind: str, **meta: Any) -> Asset:
        p = Path(path)
        if not p.is_file():
            raise AvatarError(str(p), "file does not exist", "check the upstream node's output")
        return cls(path=str(p.resolve()), kind=kind, sha256=sha256_file(p), meta=dict(meta))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Asset:
        return cls(path=d["path"], kind=d["kind"], sha256=d.get("sha256", ""), meta=dict(d.get("meta", {})))

    def require(self, kind: str | tuple[str, ...], input_name: str) -> Asset:
        """Check the handle is of an expected kind and the file is still there."""
        kinds = (kind,) if isinstance(kind, str) else kind
        if self.kind not in kinds:
            raise AvatarError(
                input_name,
                f"expected a {'/'.join(kinds)} asset, got {self.kind!r}",
                f"connect the output of a node that makes a {kinds[0]}",
            )
        if not Path(self.path).is_file():
            raise AvatarError(
                input_name,
                f"file {self.path} is gone",
                "re-run the upstream node (ComfyUI's cache may point at a deleted file)",
            )
        return self
