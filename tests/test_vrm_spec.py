"""One definition of the VRM 1.0 names and the GLB container, shared by core/ and blender_cli/.

blender_cli/ scripts run inside Blender and load core/vrm/spec.py and core/vrm/glb.py by path
(blender_cli/_pack.py); these tests keep those files importable there (stdlib only) and keep
copies from creeping back in.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from comfy_avatar_nodes.core.vrm import glb, spec

ROOT = Path(__file__).resolve().parents[1]
SHARED = {"vrm/spec.py": set(), "vrm/glb.py": {"__future__", "json", "struct", "typing"}}


@pytest.mark.parametrize("rel", sorted(SHARED))
def test_shared_modules_import_only_the_stdlib(rel):
    tree = ast.parse((ROOT / "comfy_avatar_nodes" / "core" / rel).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= SHARED[rel], f"{rel} imports {imported - SHARED[rel]}: blender_cli/ could not load it"


def test_blender_cli_reads_the_same_files():
    sys.path.insert(0, str(ROOT / "blender_cli"))
    try:
        loader = importlib.util.spec_from_file_location("_pack_under_test", ROOT / "blender_cli" / "_pack.py")
        pack = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(pack)
    finally:
        sys.path.remove(str(ROOT / "blender_cli"))
    assert Path(pack.vrm_spec.__file__).resolve() == Path(spec.__file__).resolve()
    assert Path(pack.glb.__file__).resolve() == Path(glb.__file__).resolve()
    assert pack.vrm_spec.REQUIRED_BONES == spec.REQUIRED_BONES and pack.vrm_spec.META_ENUMS == spec.META_ENUMS


def test_names_are_consistent():
    assert len(spec.REQUIRED_BONES) == 15 and len(set(spec.HUMAN_BONES)) == len(spec.HUMAN_BONES) == 55
    assert set(spec.REQUIRED_ANCESTOR) | set(spec.REQUIRED_ANCESTOR.values()) <= set(spec.REQUIRED_BONES)
    assert set(spec.META_JSON_NAMES) == set(spec.META_ENUMS)
    sys.path.insert(0, str(ROOT / "blender_cli"))
    try:
        from _rig_fit import BONES  # the CPU template skeleton: VRM names only
    finally:
        sys.path.remove(str(ROOT / "blender_cli"))
    assert {b for b, _parent, _c in BONES} <= set(spec.HUMAN_BONES)


COPIES = {
    "a meta enum": re.compile(r'"(onlySeparatelyLicensedPerson|allowModificationRedistribution|personalProfit)"'),
    # consecutive entries of the required / optional lists (a use names one or two bones, a copy runs on)
    "a bone list": re.compile(r'"leftLowerLeg",\s*"leftFoot"|"rightLowerArm",\s*"rightHand"|"leftToes",\s*"rightToes"'),
    "the licence URL": re.compile(r"vrm\.dev/licenses/1\.0"),
}


@pytest.mark.parametrize("what", sorted(COPIES))
def test_no_copy_of_the_names_outside_spec(what):
    """A bone or meta list written out again anywhere in the pack or blender_cli/ is a second definition."""
    spec_file = ROOT / "comfy_avatar_nodes" / "core" / "vrm" / "spec.py"
    found = [
        str(p.relative_to(ROOT))
        for base in ("comfy_avatar_nodes", "blender_cli")
        for p in (ROOT / base).rglob("*.py")
        if p != spec_file and COPIES[what].search(p.read_text(encoding="utf-8"))
    ]
    assert not found, f"{what} is spelled out again in {found}; import it from core/vrm/spec.py"


def test_glb_round_trip_and_precise_errors():
    data = glb.pack_glb({"asset": {"version": "2.0"}}, b"\x01\x02")
    doc, blob = glb.read_glb(data)
    assert doc == {"asset": {"version": "2.0"}} and blob == b"\x01\x02\x00\x00" and len(data) % 4 == 0
    with pytest.raises(glb.GltfError, match="truncated or padded"):
        glb.read_glb(data[:-4])
    with pytest.raises(glb.GltfError, match="not b'glTF'"):
        glb.read_glb(b"PK\x03\x04" + data[4:])
