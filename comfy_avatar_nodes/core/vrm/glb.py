"""The glTF binary container (.glb / .vrm): split it into its JSON document and BIN chunk, and
put one back together. Stdlib only, on purpose: blender_cli/export_asset.py loads this very
file inside Blender (by path, through blender_cli/_pack.py) to patch asset.extras, and the
validator and the tests use it too, so there is one reader of the format with one set of
precise messages.
"""

from __future__ import annotations

import json
import struct
from typing import Any

MAGIC = b"glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942


class GltfError(Exception):
    """The file is not readable glTF; the message says exactly what is wrong with it."""


def read_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(JSON document, BIN chunk or b"") of a glTF binary; GltfError naming the defect otherwise."""
    if len(data) < 20:
        raise GltfError(f"not a glTF binary: only {len(data)} bytes")
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != MAGIC:
        raise GltfError(f"not a glTF binary (.vrm/.glb): the file starts with {data[:4]!r}, not b'glTF'")
    if version != 2:
        raise GltfError(f"glTF binary version {version}, expected 2")
    if length != len(data):
        raise GltfError(f"glTF binary header says {length} bytes but the file has {len(data)} (truncated or padded)")
    offset, doc, blob = 12, None, b""
    while offset + 8 <= len(data):
        chunk_len, chunk_type = struct.unpack_from("<II", data, offset)
        chunk = data[offset + 8 : offset + 8 + chunk_len]
        if len(chunk) != chunk_len:
            raise GltfError(f"glTF chunk at byte {offset} runs past the end of the file")
        if chunk_type == CHUNK_JSON and doc is None:
            try:
                doc = json.loads(chunk.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise GltfError(f"the JSON chunk is not valid JSON ({e})") from None
        elif chunk_type == CHUNK_BIN and not blob:
            blob = chunk
        offset += 8 + chunk_len  # chunk lengths include their padding
    if not isinstance(doc, dict):
        raise GltfError("no JSON chunk in the glTF binary")
    return doc, blob


def pack_glb(doc: dict[str, Any], blob: bytes = b"") -> bytes:
    """A glTF 2.0 binary of ``doc`` and ``blob`` (chunks padded to 4 bytes as the spec requires)."""
    js = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    js += b" " * (-len(js) % 4)
    blob += b"\0" * (-len(blob) % 4)
    chunks = struct.pack("<II", len(js), CHUNK_JSON) + js
    if blob:
        chunks += struct.pack("<II", len(blob), CHUNK_BIN) + blob
    return struct.pack("<4sII", MAGIC, 2, 12 + len(chunks)) + chunks
