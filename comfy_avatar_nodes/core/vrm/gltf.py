"""Reading glTF/GLB/VRM files in plain Python (pygltflib + numpy): the container, accessors,
node transforms and a skin's skeleton. One implementation for the VRM validator and for
UniRig's skeleton (the humanoid heuristic), so both see the same world transforms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AvatarError
from .glb import GltfError, read_glb

COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
TYPE_SIZE = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


def load_glb(path: Path) -> tuple[Any, bytes]:
    """(pygltflib.GLTF2, BIN chunk) after a container check with precise messages."""
    import warnings

    from pygltflib import GLTF2

    data = path.read_bytes()
    _doc, blob = read_glb(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dataclasses_json warns about optional fields it decodes
            gltf = GLTF2.load_from_bytes(data)
    except Exception as e:  # pygltflib raises assorted errors on schema-invalid JSON
        raise GltfError(f"the glTF JSON does not match the glTF 2.0 schema ({type(e).__name__}: {e})") from None
    if gltf is None:
        raise GltfError("pygltflib could not read the glTF binary")
    return gltf, blob


def accessor(gltf: Any, blob: bytes, index: int) -> np.ndarray:
    """Accessor ``index`` as float64 rows (normalised integers scaled, sparse values applied),
    with bounds checked against the BIN chunk instead of trusting the file."""
    acc = gltf.accessors[index]
    n = TYPE_SIZE[acc.type]
    dtype = np.dtype(COMPONENTS[acc.componentType])
    if acc.bufferView is None:
        out = np.zeros((acc.count, n), dtype=np.float64)
    else:
        view = gltf.bufferViews[acc.bufferView]
        if view.buffer != 0:
            raise GltfError(f"accessor {index} reads buffer {view.buffer}; a .vrm keeps everything in the GLB buffer 0")
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        stride = view.byteStride or dtype.itemsize * n
        needed = start + stride * (acc.count - 1) + dtype.itemsize * n if acc.count else start
        if needed > len(blob) or needed > (view.byteOffset or 0) + view.byteLength:
            raise GltfError(f"accessor {index} reads past the end of its buffer view")
        raw = np.ndarray(
            (acc.count, n), dtype=dtype.newbyteorder("<"), buffer=blob, offset=start, strides=(stride, dtype.itemsize)
        )
        out = raw.astype(np.float64)
        if acc.normalized and dtype.kind in "ui":
            imax = np.iinfo(dtype.str).max
            out = out / imax if dtype.kind == "u" else np.maximum(out / imax, -1.0)
    if acc.sparse is not None:
        sp = acc.sparse
        iv = gltf.bufferViews[sp.indices.bufferView]
        vv = gltf.bufferViews[sp.values.bufferView]
        idt = np.dtype(COMPONENTS[sp.indices.componentType]).newbyteorder("<")
        idx = np.frombuffer(blob, dtype=idt, count=sp.count, offset=(iv.byteOffset or 0) + (sp.indices.byteOffset or 0))
        vals = (
            np.frombuffer(
                blob,
                dtype=dtype.newbyteorder("<"),
                count=sp.count * n,
                offset=(vv.byteOffset or 0) + (sp.values.byteOffset or 0),
            )
            .reshape(-1, n)
            .astype(np.float64)
        )
        if acc.normalized and dtype.kind == "u":
            vals = vals / np.iinfo(dtype.str).max
        out = out.copy()
        out[idx.astype(np.int64)] = vals
    return out


def node_matrix(node: Any) -> np.ndarray:
    """A node's local 4x4 transform: its matrix (column-major in glTF), else T * R * S."""
    if node.matrix:
        return np.array(node.matrix, dtype=np.float64).reshape(4, 4).T
    t = np.array(node.translation or [0, 0, 0], dtype=np.float64)
    x, y, z, w = node.rotation or [0, 0, 0, 1]
    s = np.array(node.scale or [1, 1, 1], dtype=np.float64)
    r = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    m = np.eye(4)
    m[:3, :3] = r * s
    m[:3, 3] = t
    return m


def world_matrices(gltf: Any) -> tuple[list[np.ndarray], list[int | None]]:
    """(world transform of every node, parent of every node); GltfError on a cyclic hierarchy.
    Children indices outside the node list are ignored (the validator reports them elsewhere)."""
    n = len(gltf.nodes)
    parent: list[int | None] = [None] * n
    for i, node in enumerate(gltf.nodes):
        for c in node.children or []:
            if 0 <= c < n:
                parent[c] = i
    world: list[np.ndarray | None] = [None] * n

    def get(i: int, depth: int = 0) -> np.ndarray:
        if world[i] is None:
            if depth > n:
                raise GltfError("the node hierarchy has a cycle")
            p = parent[i]
            world[i] = (get(p, depth + 1) if p is not None else np.eye(4)) @ node_matrix(gltf.nodes[i])
        return world[i]  # type: ignore[return-value]

    return [get(i) for i in range(n)], parent


@dataclass
class Skeleton:
    names: list[str]
    parents: list[int | None]
    positions: np.ndarray  # (J, 3) joint (bone head) positions in scene space


def read_skeleton(path: str | Path) -> Skeleton:
    """Joint names, parents (nearest ancestor that is a joint) and world positions of the first
    skin in a .glb/.gltf/.vrm."""
    import pygltflib

    path = Path(path)
    try:
        gltf = (
            pygltflib.GLTF2().load_binary(str(path))
            if path.suffix.lower() in (".glb", ".vrm")
            else pygltflib.GLTF2().load(str(path))
        )
    except Exception as e:  # noqa: BLE001 - pygltflib raises many types on bad files
        raise AvatarError(
            str(path), f"is not a readable glTF file ({type(e).__name__}: {e})", "re-run the rig node"
        ) from None
    if not gltf.skins or not gltf.skins[0].joints:
        raise AvatarError(str(path), "has no skinned skeleton", "UniRig's merge step must have failed; see its log")
    try:
        world, parent_of = world_matrices(gltf)
    except GltfError as e:
        raise AvatarError(str(path), str(e), "re-run the rig node") from None
    joints = list(gltf.skins[0].joints)
    index = {node: k for k, node in enumerate(joints)}
    parents: list[int | None] = []
    for node in joints:
        p = parent_of[node]
        while p is not None and p not in index:
            p = parent_of[p]
        parents.append(index[p] if p is not None else None)
    names = [gltf.nodes[n].name or f"joint_{k}" for k, n in enumerate(joints)]
    positions = np.array([world[n][:3, 3] for n in joints], dtype=float)
    return Skeleton(names, parents, positions)
