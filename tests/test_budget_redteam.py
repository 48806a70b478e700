"""The triangle budget on a mesh that comes already rigged (Export VRM (rigged mesh), blender_cli/rigged_to_vrm.py).

UniRig's output of a TRELLIS mesh, or any rigged GLB/FBX, went into the VRM at whatever size it had: the
budget the CPU rig meets before weighting was not applied there, so a 500k-face rig gave a VRM no web viewer
loads. Now the joined, skinned mesh is collapse-decimated to ``max_triangles`` (the rig.max_triangles
setting by default) before its weights are finished; the Decimate keeps the vertex groups, so the VRM is
still skinned by the input's bones. What a user notices: a VRM within the budget that validates (every
vertex weighted, weights summing to 1), and a result that says what was done.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trimesh
from _rig_helpers import write_humanoid_glb

from comfy_avatar_nodes.core.rig.cpu import rig_to_vrm_sync
from comfy_avatar_nodes.core.vrm.export import rigged_to_vrm_sync
from comfy_avatar_nodes.core.vrm.meta import VrmMeta
from comfy_avatar_nodes.core.vrm.validate import validate_vrm

pytestmark = pytest.mark.blender


def _triangles(path: Path) -> int:
    with open(path, "rb") as f:
        return len(trimesh.load(f, file_type="glb", force="mesh").faces)


@pytest.fixture(scope="module")
def rigged_glb(tmp_path_factory, blender_runtime) -> tuple[Path, dict[str, str], int]:
    """A UniRig-like rigged GLB (bones bone_0..bone_N) made from a CPU-rigged VRM, and its triangles."""
    from test_rigged_to_vrm import make_rigged

    root = tmp_path_factory.mktemp("rigged_budget")
    vrm = rig_to_vrm_sync(
        write_humanoid_glb(root / "figure.glb", pose="A"),
        root / "figure.vrm",
        VrmMeta(name="Template", authors=["budget red team"]),
    ).path
    path = root / "rigged.glb"
    truth = make_rigged(Path(vrm), path, root, arm_down_deg=40, seed=3)
    return path, truth, _triangles(path)


def test_a_rigged_mesh_over_the_budget_is_decimated_and_stays_skinned(rigged_glb, tmp_path):
    path, truth, n = rigged_glb
    budget = int(0.5 * n)
    asset = rigged_to_vrm_sync(
        path, truth, tmp_path / "small.vrm", VrmMeta(name="Budget", authors=["t"]), max_triangles=budget
    )
    b = asset.meta["budget"]
    assert b["decimated"] and b["triangles_in"] == n and b["triangles"] <= budget, b
    assert "decimated, skin weights kept" in b["summary"]
    assert _triangles(asset.path) <= budget
    report = validate_vrm(asset.path)
    assert report.ok, report.summary()


def test_a_rigged_mesh_within_the_budget_is_left_alone(rigged_glb, tmp_path):
    path, truth, n = rigged_glb
    asset = rigged_to_vrm_sync(path, truth, tmp_path / "same.vrm", VrmMeta(name="Budget", authors=["t"]))
    b = asset.meta["budget"]
    assert not b["decimated"] and b["triangles"] == n and b["max_triangles"] == 30000, b
    assert _triangles(asset.path) == n
