"""GLB container helpers for VRM tests: pack/unpack the JSON + BIN chunks, edit the JSON in place."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Callable


def pack_glb(doc: dict, blob: bytes) -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    blob += b"\0" * (-len(blob) % 4)
    chunks = struct.pack("<II", len(js), 0x4E4F534A) + js
    if blob:
        chunks += struct.pack("<II", len(blob), 0x004E4942) + blob
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


def unpack_glb(data: bytes) -> tuple[dict, bytes]:
    js_len = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + js_len])
    blob = b""
    if len(data) > 20 + js_len:
        bin_len = struct.unpack_from("<I", data, 20 + js_len)[0]
        blob = data[28 + js_len: 28 + js_len + bin_len]
    return doc, blob


def rewrite_json(path: Path, edit: Callable[[dict], None], out: Path | None = None) -> Path:
    """Edit the JSON chunk of a .vrm/.glb in place (or into ``out``), keeping the binary chunk."""
    doc, blob = unpack_glb(path.read_bytes())
    edit(doc)
    out = out or path
    out.write_bytes(pack_glb(doc, blob))
    return out
