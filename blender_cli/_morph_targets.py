"""Face morph targets and VRMC_vrm expressions written into an exported VRM (numpy + the pack's GLB code).

    write_morphs(doc, blob, payload) -> (doc, blob)     # payload from _expressions.add_face

Why here and not through the VRM add-on's exporter: it evaluates the whole skinned mesh once per
shape key (17 keys made the export 3-4x slower, most of the face stage's cost), while each face
morph moves a few hundred of the body's vertices. So the shapes are computed on the Blender mesh
(_expressions.py), and written here as sparse glTF morph targets (only the moved vertices are stored)
on every primitive of the body's mesh, with mesh.extras.targetNames, and bound in
VRMC_vrm.expressions.preset with morphTargetBinds and the override flags of core/vrm/expressions.py.

The exporter splits Blender vertices at UV seams and sharp edges, so glTF vertices are matched to
Blender vertices by position (a KD tree; every copy of a split vertex gets the same offset).
"""

from __future__ import annotations

import numpy as np
from _pack import load

vrm_expr = load("comfy_avatar_vrm_expressions", "vrm/expressions.py")

COMPONENT = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}
SIZE = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
EPS = 1e-7  # metres: smaller offsets are not stored


def _read(doc: dict, blob: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dt = np.dtype(COMPONENT[acc["componentType"]])
    n = SIZE[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride") or dt.itemsize * n
    raw = np.ndarray((acc["count"], n), dtype=dt, buffer=blob, offset=start, strides=(stride, dt.itemsize))
    return raw.astype(np.float64)


class _Blob:
    def __init__(self, doc: dict, blob: bytes):
        self.doc, self.data = doc, bytearray(blob)

    def view(self, raw: bytes) -> int:
        self.data += b"\0" * (-len(self.data) % 4)
        views = self.doc.setdefault("bufferViews", [])
        views.append({"buffer": 0, "byteOffset": len(self.data), "byteLength": len(raw)})
        self.data += raw
        return len(views) - 1

    def accessor(self, acc: dict) -> int:
        accs = self.doc.setdefault("accessors", [])
        accs.append(acc)
        return len(accs) - 1


def write_morphs(doc: dict, blob: bytes, payload: dict) -> tuple[dict, bytes]:
    from mathutils.kdtree import KDTree

    base = np.asarray(payload["verts"], dtype=np.float64)
    gl_base = np.stack([base[:, 0], base[:, 2], -base[:, 1]], axis=1)  # Blender -> glTF axes
    names = list(payload["targets"])
    deltas = [np.asarray(payload["targets"][n], dtype=np.float64) for n in names]
    gl_deltas = [np.stack([d[:, 0], d[:, 2], -d[:, 1]], axis=1) for d in deltas]
    tree = KDTree(len(gl_base))
    for i, p in enumerate(gl_base):
        tree.insert(p, i)
    tree.balance()

    nodes = doc.get("nodes") or []
    mesh_nodes = [
        i
        for i, n in enumerate(nodes)
        if n.get("mesh") is not None
        and (n.get("name") == payload["mesh"] or doc["meshes"][n["mesh"]].get("name") == payload["mesh"])
    ]
    if not mesh_nodes:
        mesh_nodes = [i for i, n in enumerate(nodes) if n.get("mesh") is not None and n.get("skin") is not None]
    if not mesh_nodes:
        raise RuntimeError(f"face: the exported file has no mesh node for {payload['mesh']!r}")
    node_index = mesh_nodes[0]
    mesh = doc["meshes"][nodes[node_index]["mesh"]]
    out = _Blob(doc, blob)
    worst = 0.0
    for prim in mesh["primitives"]:
        pos = _read(doc, blob, prim["attributes"]["POSITION"])
        idx = np.array([tree.find(p)[1] for p in pos], dtype=np.int64)
        worst = max(worst, float(np.abs(gl_base[idx] - pos).max(initial=0.0)))
        targets = []
        for d in gl_deltas:
            values = d[idx].astype(np.float32)
            moved = np.flatnonzero(np.abs(values).max(axis=1) > EPS)
            acc = {
                "componentType": 5126,
                "count": len(pos),
                "type": "VEC3",
                "min": values.min(axis=0).tolist() if len(values) else [0, 0, 0],
                "max": values.max(axis=0).tolist() if len(values) else [0, 0, 0],
            }
            if len(moved):
                itype = 5125 if len(pos) > 65535 else 5123
                ind = moved.astype(np.uint32 if itype == 5125 else np.uint16).tobytes()
                acc["sparse"] = {
                    "count": int(len(moved)),
                    "indices": {"bufferView": out.view(ind), "componentType": itype},
                    "values": {"bufferView": out.view(values[moved].tobytes())},
                }
            targets.append({"POSITION": out.accessor(acc)})
        prim["targets"] = targets
    if worst > 1e-4:
        raise RuntimeError(
            f"face: exported vertices are {worst:.5f} m from the Blender mesh; cannot place morph targets"
        )
    mesh["weights"] = [0.0] * len(names)
    mesh.setdefault("extras", {})["targetNames"] = names
    doc["buffers"][0]["byteLength"] = len(out.data) + (-len(out.data) % 4)

    vrm = doc.setdefault("extensions", {}).setdefault("VRMC_vrm", {})
    presets: dict = {}
    for preset in vrm_expr.ALL_PRESETS:
        blink, look, mouth = vrm_expr.OVERRIDES.get(preset, ("none", "none", "none"))
        e = {"isBinary": False, "overrideBlink": blink, "overrideLookAt": look, "overrideMouth": mouth}
        binds = payload["binds"].get(preset) or []
        if binds:
            e["morphTargetBinds"] = [
                {"node": node_index, "index": names.index(k), "weight": float(w)} for k, w in binds if k in names
            ]
        presets[preset] = e
    expressions = vrm.setdefault("expressions", {})
    expressions["preset"] = presets
    return doc, bytes(out.data)
