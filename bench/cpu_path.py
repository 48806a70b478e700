"""Per-stage wall times of the CPU image -> VRM path, and the driver/ComfyUI overhead share.

    .venv/bin/python bench/cpu_path.py [--image PNG] [--runs 3] [--server URL | (COMFYUI_DIR set: --local)]

1. In-process: the same stage functions the nodes call (mesh, rig + export, validate), median
   of --runs, against the target "whole CPU path <= 20 s on a 2-core machine".
2. Through ComfyUI (when --server is given or COMFYUI_DIR is set; ComfyUI start-up excluded):
   the shipped workflow via the driver, submit -> outputs downloaded, median of --runs; the
   overhead is that wall time minus the in-process total, shown as a share of the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_S = 20.0


def in_process(image: Path) -> dict[str, float]:
    """One run of the stage functions the nodes call; per-stage seconds."""
    from comfy_avatar_nodes.core.pipeline import image_to_vrm_cpu

    with tempfile.TemporaryDirectory() as tmp:
        res = asyncio.run(image_to_vrm_cpu(image, tmp))
    if not res.report.ok:
        raise SystemExit(f"the VRM failed validation:\n{res.report.summary()}")
    return res.timings_s


def through_comfyui(url: str, image: Path) -> float:
    """One run of the shipped workflow via the driver: submit -> outputs downloaded, seconds."""
    from driver.cli import apply_inputs
    from driver.client import ComfyClient

    prompt = json.loads((ROOT / "workflows" / "image_to_vrm_cpu.api.json").read_text())
    client = ComfyClient(url)
    t0 = time.perf_counter()
    wired = apply_inputs(prompt, [("image", image)], client)
    tag = str(time.time_ns())  # new inputs for the mesh and rig nodes defeat ComfyUI's cache
    wired["2"]["inputs"]["filename_prefix"] = f"bench/mesh-{tag}"
    wired["3"]["inputs"]["filename_prefix"] = f"bench/avatar-{tag}"
    result = client.run(wired)
    with tempfile.TemporaryDirectory() as tmp:
        client.download(result, tmp)
    return time.perf_counter() - t0


def report_stages(samples: list[dict[str, float]], cores: int | None) -> float:
    stages = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    total = statistics.median(sum(s.values()) for s in samples)
    print(f"CPU path, in-process, median of {len(samples)} on {cores} cores:")
    for name, secs in stages.items():
        print(f"  {name:<12} {secs:7.2f} s  {secs / total:6.1%}")
    print(
        f"  {'total':<12} {total:7.2f} s  = {total / TARGET_S:.2f} x the {TARGET_S:.0f} s target "
        f"({'met' if total <= TARGET_S else 'MISSED'})"
    )
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", type=Path, default=ROOT / "workflows" / "examples" / "character_apose.png")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--server", help="a running ComfyUI with this pack (default: --local when COMFYUI_DIR is set)")
    opts = ap.parse_args()

    url = opts.server
    server = None
    if not url and os.environ.get("COMFYUI_DIR"):
        from driver.local import LocalComfy

        t0 = time.perf_counter()
        server = LocalComfy().__enter__()
        url = server.url
        print(f"ComfyUI start-up (excluded below): {time.perf_counter() - t0:.1f} s")
    try:
        # one warm-up of each (imports, runtime probe, ComfyUI's first load), then alternate the two
        # paths run by run so both see the same machine load
        in_process(opts.image)
        if url:
            through_comfyui(url, opts.image)
        samples: list[dict[str, float]] = []
        walls: list[float] = []
        for _ in range(opts.runs):
            samples.append(in_process(opts.image))
            if url:
                walls.append(through_comfyui(url, opts.image))
    finally:
        if server is not None:
            server.__exit__(None, None, None)

    total = report_stages(samples, os.cpu_count())
    if not url:
        print("through ComfyUI: skipped (pass --server URL or set COMFYUI_DIR)")
        return 0
    wall = statistics.median(walls)
    overhead = wall - total
    print(
        f"through ComfyUI + driver (upload, queue, 5 nodes, download), median of {opts.runs}: {wall:.2f} s "
        f"(runs: {', '.join(f'{w:.2f}' for w in walls)})"
    )
    print(
        f"  driver/ComfyUI overhead {overhead:+.2f} s = {overhead / wall:+.1%} of the total; "
        f"whole path {wall / TARGET_S:.2f} x the {TARGET_S:.0f} s target ({'met' if wall <= TARGET_S else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
