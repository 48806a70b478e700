"""Issue 2 acceptance: the example image becomes a VRM 1.0 avatar through the same stage
functions the nodes call, in real Blender, and the file passes the Khronos glTF-Validator and
loads in three-vrm with every required humanoid bone resolved."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _js import check_with_node

from comfy_avatar_nodes.core.pipeline import image_to_vrm_cpu
from comfy_avatar_nodes.core.vrm.meta import VrmMeta
from comfy_avatar_nodes.core.vrm.spec import REQUIRED_BONES

pytestmark = [pytest.mark.blender, pytest.mark.js]


@pytest.fixture(scope="module")
def cpu_path(tmp_path_factory, blender_runtime, example_image):
    meta = VrmMeta(
        name="Example Character",
        version="2.1",
        authors=["Alice", "Bob"],
        avatar_permission="everyone",
        commercial_usage="personalProfit",
    )
    return asyncio.run(image_to_vrm_cpu(example_image, tmp_path_factory.mktemp("cpu_path"), meta))


def test_example_image_becomes_a_valid_vrm(cpu_path):
    report = cpu_path.report
    assert report.ok, report.summary()
    facts = report.facts
    assert facts["spec_version"] == "1.0"
    assert facts["meta_name"] == "Example Character" and facts["authors"] == ["Alice", "Bob"]
    assert not facts["missing_required_bones"]
    assert 1.6 < facts["height_m"] < 1.8 and abs(facts["min_y_m"]) < 0.02 and facts["faces_plus_z"]
    assert facts["bad_weight_vertices"] == 0 and facts["unskinned_vertices"] == 0
    assert cpu_path.vrm.meta["bone_count"] >= 17
    assert {"chest", "neck"} <= set(facts["humanoid_bones"])
    # nothing half-written beside the outputs
    assert sorted(p.suffix for p in Path(cpu_path.vrm.path).parent.iterdir()) == [".glb", ".vrm"]


def test_vrm_passes_gltf_validator_and_three_vrm(cpu_path):
    result = check_with_node(cpu_path.vrm.path)
    assert result["validator"]["numErrors"] == 0, result["validator"]["errors"]
    vrm = result["vrm"]
    assert vrm["specVersion"] == "1.0" and vrm["metaName"] == "Example Character"
    assert set(REQUIRED_BONES) <= set(vrm["bonesResolved"]), vrm
    # three-vrm's view of the skeleton matches a standing humanoid facing +Z:
    bones = vrm["bones"]
    assert bones["head"]["world"][1] > bones["hips"]["world"][1] > bones["leftFoot"]["world"][1]
    assert bones["leftUpperArm"]["world"][0] > 0 > bones["rightUpperArm"]["world"][0]  # VRM 1.0: left is +X


def test_mesh_glb_passes_gltf_validator(cpu_path):
    result = check_with_node(cpu_path.mesh.path, "check_gltf.mjs")
    assert result["validator"]["numErrors"] == 0, result["validator"]["errors"]
    assert cpu_path.mesh.meta["watertight"] and 5_000 < cpu_path.mesh.meta["faces"] < 80_000
