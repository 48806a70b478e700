"""Build shipped workflows in the real ComfyUI editor and save both formats (a developer tool).

    python tests/_build_workflows.py --server http://127.0.0.1:8188 [turnaround_to_vrm_cpu ...]

The editor-format file must be what the editor itself saves, and its .api.json twin what the editor
queues for it, so neither is written by hand: headless Chromium (tests/_editor_oracle.py) loads the
editor from a ComfyUI that has this pack, the graph is built there with the editor's own LiteGraph API
(the same helpers as the oracle's cases), and ``app.graphToPrompt()`` gives the saved workflow and the
prompt. tests/test_workflows_vrm.py then checks on every run that the editor turns the file back into
its twin.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _editor_oracle import PRELUDE, EditorOracle  # noqa: E402

GRAPHS: dict[str, str] = {
    # front / side / back LoadImage nodes (titled so `--input front=F --input side=S --input back=B` finds
    # them) -> Image to Mesh (CPU) -> Rig + Export VRM -> Validate VRM; Preview3D shows the carved mesh.
    "turnaround_to_vrm_cpu": """
const load = (title, file, y) => { const n = add('LoadImage'); n.title = title; n.widgets[0].value = file;
  n.pos = [40, y]; return n; };
const front = load('front', 'turnaround_front.png', 40);
const side = load('side', 'turnaround_side.png', 420);
const back = load('back', 'turnaround_back.png', 800);
const mesh = add('AvatarImageToMeshCPU', {height_m: 1.7, resolution: 192, side_facing: 'auto',
  filename_prefix: 'avatar/turnaround_mesh'}); mesh.pos = [440, 300];
link(front, 0, mesh, 'image'); link(front, 1, mesh, 'mask');
link(side, 0, mesh, 'side'); link(side, 1, mesh, 'side_mask');
link(back, 0, mesh, 'back'); link(back, 1, mesh, 'back_mask');
const rig = add('AvatarRigVRMCPU', {name: 'Turnaround', filename_prefix: 'avatar/turnaround'}); rig.pos = [840, 240];
link(mesh, 0, rig, 'mesh');
const check = add('AvatarValidateVRM'); check.pos = [1240, 300]; link(rig, 0, check, 'vrm');
const pv = add('Preview3D'); pv.title = 'Preview mesh'; pv.pos = [840, 700]; link(mesh, 1, pv, 'model_file');
""",
}


def build(oracle: EditorOracle, name: str) -> tuple[dict, dict]:
    """(saved workflow, API prompt) of GRAPHS[name], as the editor saves and queues it."""
    wf = json.loads(
        oracle.evaluate(
            "(async () => {"
            + PRELUDE
            + GRAPHS[name]
            + "\nawait tick(); const __p = await app.graphToPrompt(); return JSON.stringify(__p.workflow); })()"
        )
    )
    return wf, oracle.convert(wf)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("names", nargs="*", default=list(GRAPHS))
    args = ap.parse_args(argv)
    with EditorOracle(args.server) as oracle:
        for name in args.names:
            wf, api = build(oracle, name)
            (ROOT / "workflows" / f"{name}.json").write_text(json.dumps(wf, indent=2) + "\n")
            (ROOT / "workflows" / f"{name}.api.json").write_text(json.dumps(api, indent=2) + "\n")
            print(f"wrote workflows/{name}.json and .api.json ({len(api)} nodes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
