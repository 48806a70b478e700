"""The face stage's cost on the CPU path: seconds and share of rig + export (target: under 20%).

    .venv/bin/python bench/face_stage.py [--image PNG] [--runs 3]

Runs the CPU path's rig + export job (blender_cli/rig_vrm.py) on the example's silhouette mesh with
the face stage on and off, alternately (both see the same machine load). The face stage is the
Blender steps "face" (head region, picture, finder, landmarks, 17 morphs, lookAt/firstPerson) and
"material" (MToon + morph targets + expressions written into the file), plus the export's growth.
Printed: the median of each, the stage's share of the rig + export job with the face on, and the
whole-job difference on/off (which also holds the noise of a loaded machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET = 0.20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", type=Path, default=ROOT / "workflows" / "examples" / "character_apose.png")
    ap.add_argument("--runs", type=int, default=3)
    opts = ap.parse_args()

    from comfy_avatar_nodes.core.images import load_image
    from comfy_avatar_nodes.core.mesh.silhouette import image_to_mesh
    from comfy_avatar_nodes.core.rig.cpu import rig_to_vrm_sync
    from comfy_avatar_nodes.core.vrm.face_inputs import FaceOptions
    from comfy_avatar_nodes.core.vrm.meta import VrmMeta

    with tempfile.TemporaryDirectory() as tmp:
        mesh = Path(tmp) / "mesh.glb"
        image_to_mesh(load_image(opts.image), mesh)
        on_jobs, off_jobs, stage, shares = [], [], [], []
        for i in range(opts.runs + 1):  # the first pair warms the caches and is not counted
            for on in (True, False):
                t0 = time.perf_counter()
                a = rig_to_vrm_sync(
                    mesh,
                    Path(tmp) / f"{i}_{on}.vrm",
                    VrmMeta(name="bench", authors=["bench"]),
                    face=FaceOptions(expressions=on, material="mtoon" if on else "pbr"),
                )
                wall = time.perf_counter() - t0
                if i == 0:
                    continue
                t = a.meta["timings_s"]
                if on:
                    s = t.get("face", 0.0) + t.get("material", 0.0)
                    stage.append(s)
                    shares.append(s / a.meta["blender_s"])
                    on_jobs.append(wall)
                else:
                    off_jobs.append(wall)
    med = statistics.median
    print(f"face stage on the CPU path, median of {opts.runs} on {os.cpu_count()} cores:")
    print(
        f"  face + file patch  {med(stage):6.2f} s  = {med(shares):.1%} of rig + export "
        f"(target < {TARGET:.0%}: {'met' if med(shares) < TARGET else 'MISSED'})"
    )
    print(
        f"  rig + export job   {med(on_jobs):6.2f} s with the face stage, {med(off_jobs):6.2f} s without "
        f"(difference {med(on_jobs) - med(off_jobs):+.2f} s, includes machine noise)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
