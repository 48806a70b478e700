"""``comfy-avatar run`` side by side with comfy-cli's ``comfy run --wait`` on the same workflow.

    .venv/bin/python bench/vs_comfy_cli.py [--rounds 4] [--comfy PATH] [--comfyui DIR]

Starts one ComfyUI (--comfyui, default .runtime/comfyui-0.8.0, with this pack) and runs the
main workflow (workflows/image_to_vrm_cpu.api.json: picture -> mesh -> rig + VRM ->
validate) through both clients, alternating ABBA. Each run gets its own copy of the file
with a different ``height_m`` (so ComfyUI's cache cannot answer it) and the example picture
already in ComfyUI's input folder, because ``comfy run`` does not upload inputs. Both get
exactly the same JSON; ``comfy-avatar run`` also downloads the outputs (VRM, mesh, report)
and checks them, which ``comfy run`` does not do.

Prints per side the wall time (process start to exit) and the client's CPU time (user+sys
of the process and its children), medians and ranges, and the ratios ours/theirs. A ratio
below 1 means we are faster. comfy-cli is not a dependency: install it in a venv of its own
(``python3.11 -m venv /tmp/comfycli && /tmp/comfycli/bin/pip install comfy-cli``) and pass
--comfy /tmp/comfycli/bin/comfy, or have ``comfy`` on PATH; without it the bench says so and
exits 0 having measured nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OURS = str(ROOT / ".venv" / "bin" / "comfy-avatar")
PICTURE = ROOT / "workflows" / "examples" / "character_apose.png"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """(wall seconds, client CPU seconds, the finished process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="ABBA rounds: 2 runs per side each")
    ap.add_argument("--comfy", default=shutil.which("comfy"), help="comfy-cli's `comfy` (default: on PATH)")
    ap.add_argument("--comfyui", default=str(ROOT / ".runtime" / "comfyui-0.8.0"))
    a = ap.parse_args()
    if not a.comfy:
        print("comfy-cli not found (pass --comfy PATH or put `comfy` on PATH): nothing measured")
        return 0
    from driver.local import LocalComfy

    template = json.loads((ROOT / "workflows" / "image_to_vrm_cpu.api.json").read_text())
    # comfy-cli asks about telemetry on first use; answer no without a terminal.
    env = {**os.environ, "COMFY_NO_WATCH": "1", "DO_NOT_TRACK": "1"}
    times: dict[str, list[tuple[float, float]]] = {"comfy-avatar run": [], "comfy run --wait": []}
    with tempfile.TemporaryDirectory(prefix="bench-vs-cli-") as tmp, LocalComfy(a.comfyui) as comfy:
        host, port = comfy.url.split("://", 1)[1].rsplit(":", 1)
        assert comfy.base_dir is not None  # --base-directory: its input/ is what LoadImage reads
        (comfy.base_dir / "input").mkdir(parents=True, exist_ok=True)
        shutil.copy(PICTURE, comfy.base_dir / "input" / PICTURE.name)
        order: list[str] = []
        for r in range(a.rounds):
            pair = ["comfy-avatar run", "comfy run --wait"]
            order += pair + pair[::-1] if r % 2 == 0 else pair[::-1] + pair
        # the first job pays ComfyUI's lazy imports and Blender's first start: not timed
        for n, side in enumerate(["warm-up", *order]):
            wf = dict(json.loads(json.dumps(template)))
            wf["2"]["inputs"]["height_m"] = round(1.6 + 0.001 * n, 3)
            wf["1"]["inputs"]["image"] = PICTURE.name
            path = Path(tmp) / f"wf{n}.json"
            path.write_text(json.dumps(wf))
            if side in ("warm-up", "comfy-avatar run"):
                cmd = [OURS, "run", str(path), "--server", comfy.url, "--out", str(Path(tmp) / f"out{n}")]
            else:
                cmd = [
                    a.comfy,
                    "--skip-prompt",
                    "run",
                    "--workflow",
                    str(path),
                    "--wait",
                    "--host",
                    host,
                    "--port",
                    port,
                ]
            wall, cpu, done = timed(cmd, env)
            if done.returncode != 0:
                print(f"{side} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
                return 1
            if side == "comfy-avatar run":
                files = [Path(p) for p in done.stdout.split()]
                assert any(p.suffix == ".vrm" for p in files), done.stdout
            if side != "warm-up":
                times[side].append((wall, cpu))
                print(f"  {side:17s} wall {wall:6.2f} s  client CPU {cpu:5.2f} s", flush=True)
    med = {s: (statistics.median(w for w, _ in xs), statistics.median(c for _, c in xs)) for s, xs in times.items()}
    for s, xs in times.items():
        ws, cs = [w for w, _ in xs], [c for _, c in xs]
        print(
            f"{s:17s} wall median {med[s][0]:.2f} s ({min(ws):.2f}-{max(ws):.2f}), "
            f"client CPU median {med[s][1]:.2f} s ({min(cs):.2f}-{max(cs):.2f})"
        )
    ours, theirs = med["comfy-avatar run"], med["comfy run --wait"]
    print(
        f"ratio ours/comfy-cli: wall {ours[0] / theirs[0]:.2f}, client CPU {ours[1] / theirs[1]:.2f} "
        "(< 1: comfy-avatar is faster; it also downloads and checks the VRM, mesh and report)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
