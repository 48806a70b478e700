"""A batch of trivial prompts through the driver vs a minimal client, on one real ComfyUI.

    .venv/bin/python bench/batch_floor.py [--prompts 100] [--rounds 2] [--comfyui DIR]

Starts the ComfyUI in --comfyui (default .runtime/comfyui-0.8.0) with driver.local.LocalComfy
and runs, alternately (ABBA), N distinct EmptyImage -> SaveImage prompts:

- floor: the least a client can do and still get the files: one websocket, every prompt POSTed
  at once, wait for each prompt's ``execution_success``, then /history and /view per prompt,
  files written; no job records, no retries, no progress.
- driver: BatchRunner (the path `comfy-avatar batch` takes) with its defaults and a SQLite job store.
Prints each side's wall times and the ratio driver/floor (target <= 1.2). The machine is usually
shared: the range says how noisy the run was.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET = 1.2
PROBES: list[float] = []  # the driver's server probe (GET /prompt) per run, inside its wall time


def _prompt(color: int, prefix: str) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def floor(url: str, prompts: list[dict], out: Path) -> float:
    import websocket  # websocket-client, what the driver uses too

    cid = uuid.uuid4().hex
    t0 = time.perf_counter()
    ws = websocket.create_connection(f"{url.replace('http', 'ws', 1)}/ws?clientId={cid}", timeout=120)
    pids = []
    for p in prompts:
        req = urllib.request.Request(
            f"{url}/prompt",
            data=json.dumps({"prompt": p, "client_id": cid}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req) as r:
            pids.append(json.load(r)["prompt_id"])
    waiting = set(pids)
    while waiting:
        msg = ws.recv()
        if isinstance(msg, str):
            m = json.loads(msg)
            if m.get("type") in ("execution_success", "execution_error"):
                waiting.discard(m["data"].get("prompt_id"))
    ws.close()
    out.mkdir(parents=True, exist_ok=True)
    for pid in pids:
        with urllib.request.urlopen(f"{url}/history/{pid}") as r:
            h = json.load(r)[pid]
        for node in h["outputs"].values():
            for img in node.get("images", []):
                q = urllib.parse.urlencode(
                    {"filename": img["filename"], "subfolder": img["subfolder"], "type": img["type"]}
                )
                with urllib.request.urlopen(f"{url}/view?{q}") as r:
                    (out / img["filename"]).write_bytes(r.read())
    return time.perf_counter() - t0


def driver(url: str, prompts: list[dict], out: Path, run: int, concurrency: int = 4) -> float:
    from driver.batch import BatchJob, BatchOptions, BatchRunner, job_prompt_id
    from driver.pool import ServerPool
    from driver.store import JobStore

    batch = f"bench-{run}-{uuid.uuid4().hex[:6]}"
    jobs = [
        BatchJob(i, f"{batch}-{i:05d}", job_prompt_id(batch, i), p, out / f"{i:05d}") for i, p in enumerate(prompts)
    ]
    store = JobStore(f"sqlite:///{out / 'jobs.db'}")
    t0 = time.perf_counter()
    pool = ServerPool([url])
    pool.probe_all()  # what the runner does first: GET /prompt (queue length); node types are asked per class
    probe = time.perf_counter() - t0
    summary = BatchRunner(jobs, pool, BatchOptions(batch_id=batch, concurrency=concurrency), store=store).run()
    dt = time.perf_counter() - t0
    store.close()
    assert summary.succeeded == len(prompts), summary.to_dict()
    PROBES.append(probe)
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=4, help="the driver's jobs in flight (its default: 4)")
    ap.add_argument("--comfyui", default=str(ROOT / ".runtime" / "comfyui-0.8.0"))
    a = ap.parse_args()
    from driver.local import LocalComfy

    times: dict[str, list[float]] = {"floor": [], "driver": []}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp, LocalComfy(a.comfyui) as comfy:
        url = comfy.url
        order: list[str] = []
        for r in range(a.rounds):
            order += ["floor", "driver", "driver", "floor"] if r % 2 == 0 else ["driver", "floor", "floor", "driver"]
        floor(url, [_prompt(7, "bench/warmup")], Path(tmp) / "warmup")  # first prompt pays ComfyUI's lazy imports
        for run, side in enumerate(order, 1):
            # new colours every run: ComfyUI's cache would otherwise skip the work
            prompts = [_prompt(run * 100000 + i, f"bench/{side}{run}") for i in range(a.prompts)]
            out = Path(tmp) / f"{side}{run}"
            dt = floor(url, prompts, out) if side == "floor" else driver(url, prompts, out, run, a.concurrency)
            times[side].append(dt)
            print(f"  {side:6s} {dt:6.2f} s  ({1000 * dt / a.prompts:.1f} ms per prompt)", flush=True)
    f, d = statistics.median(times["floor"]), statistics.median(times["driver"])
    print(
        f"{a.prompts} trivial prompts, floor:  median {f:.2f} s (range {min(times['floor']):.2f}-{max(times['floor']):.2f})"
    )
    print(
        f"{a.prompts} trivial prompts, driver: median {d:.2f} s (range {min(times['driver']):.2f}-{max(times['driver']):.2f})"
    )
    print(f"ratio driver/floor {d / f:.2f} (target <= {TARGET}: {'MET' if d / f <= TARGET else 'NOT MET'})")
    p = statistics.median(PROBES)
    print(
        f"  of the driver's time: server probe (GET /prompt) median {p:.2f} s "
        f"(range {min(PROBES):.2f}-{max(PROBES):.2f}); without it the ratio would be {(d - p) / f:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
