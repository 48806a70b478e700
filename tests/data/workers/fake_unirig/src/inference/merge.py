"""Fake UniRig merge: same flags; writes a skinned GLB (one triangle + the skeleton) or a stub FBX."""

import argparse
import json

import numpy as np
import pygltflib

ap = argparse.ArgumentParser()
for flag in ("--require_suffix", "--num_runs", "--id"):
    ap.add_argument(flag, required=True)
for flag in ("--source", "--target", "--output", "--data_config", "--skeleton_config", "--skin_config"):
    ap.add_argument(flag, default=None)
args = ap.parse_args()
skel = json.load(open(args.source))
assert skel.get("skinned"), "merge needs the skin step's output"
open(args.target, "rb").read(1)
if not args.output.endswith(".glb"):
    open(args.output, "w").write("fake fbx\n")
    raise SystemExit(0)
names, parents, pos = skel["names"], skel["parents"], np.array(skel["positions"], float)
nodes = []
for i, (n, p) in enumerate(zip(names, parents)):
    local = pos[i] - (pos[p] if p is not None else 0)
    nodes.append(
        pygltflib.Node(
            name=n, translation=[float(x) for x in local], children=[c for c, q in enumerate(parents) if q == i]
        )
    )
roots = [i for i, p in enumerate(parents) if p is None]
verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
blob = verts.tobytes()
mesh_node = len(nodes)
nodes.append(pygltflib.Node(name="mesh", mesh=0, skin=0))
g = pygltflib.GLTF2(
    scene=0,
    scenes=[pygltflib.Scene(nodes=roots + [mesh_node])],
    nodes=nodes,
    skins=[pygltflib.Skin(joints=list(range(len(names))))],
    meshes=[pygltflib.Mesh(primitives=[pygltflib.Primitive(attributes=pygltflib.Attributes(POSITION=0))])],
    accessors=[
        pygltflib.Accessor(
            bufferView=0, componentType=pygltflib.FLOAT, count=3, type="VEC3", min=[0, 0, 0], max=[1, 1, 0]
        )
    ],
    bufferViews=[pygltflib.BufferView(buffer=0, byteLength=len(blob))],
    buffers=[pygltflib.Buffer(byteLength=len(blob))],
)
g.set_binary_blob(blob)
g.save_binary(args.output)
