"""Check the files a sandboxed script's job hands back, on the host, before they are accepted.

The job's outputs are the job's own bytes: a model-written script can write anything to
``out/asset.glb`` and exit, skipping the executor's export. Nothing here loads the file into
Blender or any other program; it reads the container structure only:

- **GLB** (:func:`check_glb`): the 12-byte header and its total length, each chunk's length
  within the file, a JSON chunk that parses (nesting bounded) to an object, every buffer
  inside the BIN chunk, every bufferView inside its buffer, and no external ``uri`` (a
  downstream loader would read that path or URL on the user's machine): buffers and images
  are embedded or ``data:`` URIs.
- **.blend** (:func:`check_blend`): the file's block list (both header layouts: the 12-byte
  one of Blender <= 4.x and the 17-byte one of 5.x), with its struct catalogue (SDNA) to find
  each block's type. Refused: Text datablocks (a registered text runs when the file is opened
  with auto-run scripts on; an unregistered one is a click away), scripted (Python) drivers,
  and linked libraries (a path to another .blend on the user's machine). A compressed file is
  refused too: it cannot be read without decompressing a stream the job chose, and the
  executor saves its own .blend uncompressed for this check.

Each returns "" for an acceptable file, else the problem in words.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_GLB_JSON, _GLB_BIN = 0x4E4F534A, 0x004E4942
_MAX_GLB_JSON = 16 * 1024 * 1024  # a mesh's glTF JSON is KBs; parsing 16 MB costs ~0.3 GB
_MAX_DEPTH = 64  # glTF nests a few levels (extensions/extras a few more); a deep document is an attack


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of parsed JSON, iteratively (a deep document must not exhaust our stack)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return deepest


def _external_uri(item: Any) -> str:
    uri = item.get("uri") if isinstance(item, dict) else None
    if uri is None:
        return ""
    if not isinstance(uri, str) or not uri.startswith("data:"):
        return str(uri)[:200]
    return ""


def check_glb(path: str | os.PathLike[str]) -> str:
    """ "" when ``path`` is a structurally sound, self-contained GLB; else what is wrong."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(12)
        if len(head) < 12:
            return f"not a glTF binary: only {len(head)} bytes"
        magic, version, length = struct.unpack("<4sII", head)
        if magic != b"glTF":
            return f"not a glTF binary: it starts with {magic!r}, not b'glTF'"
        if version != 2:
            return f"glTF binary version {version}, not 2"
        if length != size:
            return f"the GLB header says {length} bytes but the file has {size}"
        doc: Any = None
        bin_len: int | None = None
        offset = 12
        while offset < size:
            ch = f.read(8)
            if len(ch) < 8:
                return f"a truncated chunk header at byte {offset}"
            chunk_len, chunk_type = struct.unpack("<II", ch)
            if offset + 8 + chunk_len > size:
                return f"the chunk at byte {offset} claims {chunk_len} bytes, past the end of the file"
            if chunk_type == _GLB_JSON and doc is None and offset == 12:
                if chunk_len > _MAX_GLB_JSON:
                    return f"a {chunk_len}-byte JSON chunk (over {_MAX_GLB_JSON})"
                raw = f.read(chunk_len)
                try:
                    doc = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError, RecursionError) as e:
                    return f"the JSON chunk does not parse ({type(e).__name__})"
            elif chunk_type == _GLB_BIN and bin_len is None and doc is not None:
                bin_len = chunk_len
                f.seek(chunk_len, os.SEEK_CUR)
            elif offset == 12:
                return "the first chunk is not the JSON chunk"
            else:
                f.seek(chunk_len, os.SEEK_CUR)
            offset += 8 + chunk_len
    if not isinstance(doc, dict):
        return "the JSON chunk is not a JSON object"
    if _depth(doc, _MAX_DEPTH) > _MAX_DEPTH:
        return f"the JSON document nests deeper than {_MAX_DEPTH} levels"
    buffers = doc.get("buffers") or []
    views = doc.get("bufferViews") or []
    if not isinstance(buffers, list) or not isinstance(views, list):
        return "buffers / bufferViews are not lists"
    lengths = []
    for i, b in enumerate(buffers):
        if not isinstance(b, dict) or not isinstance(b.get("byteLength"), int) or b["byteLength"] < 0:
            return f"buffer {i} has no valid byteLength"
        ext = _external_uri(b)
        if ext:
            return f"buffer {i} points outside the file (uri {ext!r})"
        if "uri" not in b and (i != 0 or bin_len is None or b["byteLength"] > bin_len):
            return f"buffer {i} ({b['byteLength']} bytes) is not inside the file's BIN chunk ({bin_len} bytes)"
        lengths.append(b["byteLength"])
    for i, v in enumerate(views):
        if not isinstance(v, dict):
            return f"bufferView {i} is not an object"
        buf, off, n = v.get("buffer"), v.get("byteOffset", 0), v.get("byteLength")
        if not (isinstance(buf, int) and 0 <= buf < len(lengths)):
            return f"bufferView {i} names buffer {buf!r}, which does not exist"
        if not (isinstance(off, int) and isinstance(n, int) and off >= 0 and n >= 0 and off + n <= lengths[buf]):
            return f"bufferView {i} (offset {off!r}, length {n!r}) runs outside buffer {buf}"
    for i, img in enumerate(doc.get("images") or []):
        ext = _external_uri(img)
        if ext:
            return f"image {i} points outside the file (uri {ext!r})"
    return ""


# ---------------------------------------------------------------- .blend

_BLEND_REFUSED_CODES = {b"TX\0\0": "a Text datablock (scripts can auto-run from it)", b"LI\0\0": "a linked library"}
_DRIVER_TYPE_PYTHON = 1  # eDriver_Types: AVERAGE 0, PYTHON 1, SUM 2, MIN 3, MAX 4


def _sdna(data: bytes, ptr: int, endian: str) -> dict[str, tuple[int, dict[str, tuple[int, int]]]]:
    """struct name -> (index, {field name: (offset, size)}) from an SDNA block."""
    if data[:8] != b"SDNANAME":
        raise ValueError("no SDNA catalogue")
    pos = 8

    def take_int() -> int:
        nonlocal pos
        (v,) = struct.unpack_from(endian + "i", data, pos)
        pos += 4
        return v

    def take_strings(n: int) -> list[str]:
        nonlocal pos
        out = []
        for _ in range(n):
            end = data.index(b"\0", pos)
            out.append(data[pos:end].decode("latin-1"))
            pos = end + 1
        return out

    def align() -> None:
        nonlocal pos
        pos = (pos + 3) & ~3

    names = take_strings(take_int())
    align()
    if data[pos : pos + 4] != b"TYPE":
        raise ValueError("SDNA without TYPE")
    pos += 4
    types = take_strings(take_int())
    align()
    if data[pos : pos + 4] != b"TLEN":
        raise ValueError("SDNA without TLEN")
    pos += 4
    tlen = list(struct.unpack_from(endian + f"{len(types)}h", data, pos))
    pos += 2 * len(types)
    align()
    if data[pos : pos + 4] != b"STRC":
        raise ValueError("SDNA without STRC")
    pos += 4
    out: dict[str, tuple[int, dict[str, tuple[int, int]]]] = {}
    for index in range(take_int()):
        stype, nfields = struct.unpack_from(endian + "hh", data, pos)
        pos += 4
        fields: dict[str, tuple[int, int]] = {}
        offset = 0
        for _ in range(nfields):
            ftype, fname = struct.unpack_from(endian + "hh", data, pos)
            pos += 4
            name = names[fname]
            count = 1
            for dim in name.split("[")[1:]:
                count *= int(dim.split("]")[0])
            base = name.split("[")[0]
            size = (ptr if ("*" in base or base.startswith("(")) else tlen[ftype]) * count
            bare = base.strip("*()").split(")")[0]
            fields[bare] = (offset, size)
            offset += size
        out[types[stype]] = (index, fields)
    return out


def check_blend(path: str | os.PathLike[str]) -> str:
    """ "" when ``path`` is an uncompressed .blend with no text blocks, scripted drivers or
    library links; else what was found. The file is read as data, never opened in Blender."""
    data = Path(path).read_bytes()
    if data[:4] == b"\x28\xb5\x2f\xfd" or data[:2] == b"\x1f\x8b":
        return "a compressed .blend (it can only be checked uncompressed; the executor saves it so)"
    if data[:7] != b"BLENDER":
        return f"not a .blend: it starts with {data[:12]!r}"
    if data[7:9] == b"17" and data[9:10] == b"-":  # Blender 5.x: "BLENDER17-01v0500", 64-bit block heads
        endian = "<" if data[12:13] == b"v" else ">"
        pos, ptr, fmt = 17, 8, "4siQqq"  # code, sdna index, old address, length, count
    elif data[7:8] in (b"_", b"-") and data[8:9] in (b"v", b"V"):
        ptr = 8 if data[7:8] == b"-" else 4
        endian = "<" if data[8:9] == b"v" else ">"
        pos, fmt = 12, "4si" + ("Q" if ptr == 8 else "I") + "ii"  # code, length, old address, sdna, count
    else:
        return f"an unknown .blend header {data[:17]!r}"
    head = struct.Struct(endian + fmt)
    large = ptr == 8 and fmt == "4siQqq"

    def blocks() -> Iterator[tuple[bytes, int, int, int]]:
        """(code, sdna index, data offset, length) of each block before ENDB; never stored, so a
        file of millions of tiny blocks costs time, not memory. Raises ValueError on a bad list."""
        pos = start0
        while True:
            if pos + head.size > len(data):
                raise ValueError(f"the block list runs past the end of the file at byte {pos}")
            vals = head.unpack_from(data, pos)
            code, sdna, length = (vals[0], vals[1], vals[3]) if large else (vals[0], vals[3], vals[1])
            start = pos + head.size
            if code == b"ENDB":
                return
            if length < 0 or start + length > len(data):
                raise ValueError(f"block {code!r} at byte {pos} claims {length} bytes, past the end of the file")
            yield code, sdna, start, length
            pos = start + length

    start0 = pos
    sdna_block: tuple[int, int] | None = None
    try:
        for code, _sdna_nr, start, length in blocks():
            if code in _BLEND_REFUSED_CODES:
                return f"it holds {_BLEND_REFUSED_CODES[code]}"
            if code == b"DNA1":
                sdna_block = (start, length)
    except ValueError as e:
        return str(e)
    if sdna_block is None:
        return "no struct catalogue (DNA1 block)"
    try:
        catalogue = _sdna(data[sdna_block[0] : sdna_block[0] + sdna_block[1]], ptr, endian)
    except (ValueError, IndexError, struct.error) as e:
        return f"its struct catalogue does not parse ({e})"
    driver = catalogue.get("ChannelDriver")
    if driver is None or "type" not in driver[1]:
        return "its struct catalogue has no ChannelDriver.type (an unknown Blender version)"
    index, fields = driver
    t_off, t_size = fields["type"]
    fmt_t = {4: "i", 2: "h", 1: "b"}.get(t_size)
    if fmt_t is None:
        return "an unexpected ChannelDriver.type size"
    for code, sdna, start, length in blocks():  # the list parsed once already: no ValueError now
        if sdna == index and code == b"DATA" and length >= t_off + t_size:
            (dtype,) = struct.unpack_from(endian + fmt_t, data, start + t_off)
            if dtype == _DRIVER_TYPE_PYTHON:
                return "it holds a scripted (Python) driver"
    return ""


__all__ = ["check_glb", "check_blend"]
