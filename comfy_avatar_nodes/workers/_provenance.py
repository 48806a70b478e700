"""Model provenance (ADR-0063): the sha256 of every checkpoint file a worker loads is checked
against a pinned list BEFORE anything loads it (stdlib only; runs in the model's Python).

A checkpoint is code as much as data (a .ckpt/.pth is a pickle that torch.load runs), so a
file that differs from the released one, or that nobody pinned, is refused: the handshake
reports the path, its sha256 and the pinned one (or that there is none), and the worker
exits without loading it.

The pinned list: ``checkpoints.sha256.json`` beside this file (shipped), or the file named by
the worker's ``--checkpoint-pins`` (config ``trellis.checkpoint_sha256`` /
``unirig.checkpoint_sha256``), which replaces the shipped entries of that model. Format::

    {"trellis": {"source": "where the hashes come from", "files": {"ckpts/x.safetensors": "<sha256>", ...}},
     "unirig":  {...}}

File names are the worker's logical names (paths inside the released repo, see each worker).
To make a list from files you have checked: ``python trellis_worker.py ... --pin OUT.json``
(or unirig_worker.py); it prints, per file, whether the hash equals the one the Hugging Face
download recorded (the blob name in a hub cache, or the etag in a --local-dir download's
.cache/huggingface/download/*.metadata), which is the hash the Hub published for that file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

SHIPPED = Path(__file__).with_name("checkpoints.sha256.json")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sha256_file(path: str | os.PathLike[str], chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def load_pins(model: str, override: str = "") -> tuple[dict[str, str], str]:
    """({logical name: sha256}, where the list came from) for ``model``."""
    path = Path(override).expanduser() if override else SHIPPED
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"the pinned checkpoint list {path} cannot be read ({e})") from None
    entry = data.get(model) if isinstance(data, dict) else None
    files = entry.get("files") if isinstance(entry, dict) else None
    if not isinstance(files, dict):
        return {}, f"{path} (no entry for {model})"
    pins = {str(k): str(v).strip().lower() for k, v in files.items()}
    bad = [k for k, v in pins.items() if not _HEX64.match(v)]
    if bad:
        raise ValueError(f"the pinned checkpoint list {path} has entries that are not sha256 hex digests: {bad[:5]}")
    return pins, str(path)


def hub_sha256(path: Path, root: Path | None, name: str) -> str | None:
    """The sha256 the Hugging Face download recorded for ``path``, if any: the blob name of a hub
    cache snapshot (LFS files are stored as blobs/<sha256>), or the etag line of a --local-dir
    download's metadata file. None for small non-LFS files (their etag is a git sha1)."""
    real = Path(os.path.realpath(path))
    if real.parent.name == "blobs" and _HEX64.match(real.name):
        return real.name
    if root is not None:
        meta = root / ".cache" / "huggingface" / "download" / f"{name}.metadata"
        try:
            lines = meta.read_text(encoding="utf-8").splitlines()
        except OSError:
            return None
        if len(lines) >= 2 and _HEX64.match(lines[1].strip().strip('"')):
            return lines[1].strip().strip('"')
    return None


def verify(files: dict[str, Path], pins: dict[str, str], source: str) -> tuple[list[dict], dict[str, str]]:
    """Hash every file; (problems, {logical name: sha256}). A problem names the path and both
    hashes: ``checkpoint_mismatch`` (pinned, differs) or ``unpinned_checkpoint`` (no pin)."""
    problems, seen = [], {}
    for name, path in sorted(files.items()):
        actual = sha256_file(path)
        seen[name] = actual
        expected = pins.get(name)
        if expected is None:
            problems.append(
                {
                    "kind": "unpinned_checkpoint",
                    "path": str(path),
                    "name": name,
                    "sha256": actual,
                    "expected": None,
                    "message": f"{path} ({name}) is not in the pinned checkpoint list {source}: its sha256 is "
                    f"{actual}, pinned: none. Nothing is loaded unpinned; if this is the released "
                    f"file, add it to a pin file (`--pin OUT.json` writes one) and point the config at "
                    f"it: trellis.checkpoint_sha256 / unirig.checkpoint_sha256 (README 'Model provenance')",
                }
            )
        elif expected != actual:
            problems.append(
                {
                    "kind": "checkpoint_mismatch",
                    "path": str(path),
                    "name": name,
                    "sha256": actual,
                    "expected": expected,
                    "message": f"{path} ({name}) has sha256 {actual}, but the pinned checkpoint list {source} "
                    f"says {expected}: it is not the released file (corrupt or replaced); "
                    "it was not loaded",
                }
            )
    return problems, seen


def fingerprint(paths: Iterable[Path]) -> tuple:
    """(size, mtime_ns, inode) of each file, to notice a change after verification cheaply."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((str(p), st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(out)


def write_pins(model: str, files: dict[str, Path], out: str, roots: dict[str, Path | None]) -> int:
    """Write a pinned list for ``model`` from the files as they are now, and print for each
    whether its hash equals the one its Hugging Face download recorded. Returns 1 when one
    differs (do not trust that copy), else 0."""
    hashes, code = {}, 0
    for name, path in sorted(files.items()):
        actual = sha256_file(path)
        hashes[name] = actual
        hub = hub_sha256(path, roots.get(name), name)
        note = (
            "= the hash its Hugging Face download recorded"
            if hub == actual
            else f"DIFFERS from the hash its Hugging Face download recorded ({hub})"
            if hub
            else "(no Hugging Face record to compare with: check it against the file page on the Hub)"
        )
        if hub and hub != actual:
            code = 1
        print(f"{actual}  {name}  {path}  {note}")
    target = Path(out)
    data: dict = {}
    if target.is_file():
        data = json.loads(target.read_text(encoding="utf-8"))
    data[model] = {"source": f"pinned from the local files on {time.strftime('%Y-%m-%d')} by --pin", "files": hashes}
    target.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(hashes)} pins for {model} to {target}")
    return code
