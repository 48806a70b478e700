"""Launch overhead of bubblewrap isolation over a plain launch (target: < 0.3 s).

    .venv/bin/python bench/isolation_overhead.py [--runs 7]

Three pairs, each run alternately plain / isolated, median of --runs (the first run of each
is a warm-up and not counted):

1. ``python -I -c pass`` with the Blender runtime's Python: the bare cost of the jail (namespaces,
   binds, seccomp, the pipe and the work-dir watch).
   Then the same start jailed both times, with the tmpfs /job and the cgroups vs a bind-mounted
   work dir without a cgroup: what those two add to a launch.
2. ``import bpy`` (what every Blender launch pays): the jail's cost on a real runtime start.
3. The executor's own job (blender_cli/sandbox_exec.py: a script that adds a cube, exported to
   GLB) through blender.run_blender, with the same parent-side handling (pipe log, untrusted
   result reads, size watch) both times, so the difference is the OS isolation alone.

Overhead: the median of the per-round differences (isolated - plain, each round runs both
back to back) and the difference of the fastest runs (the best estimate of the intrinsic cost
when other work shares the machine). On a loaded 2-core box a Blender launch varies by ~1-3 s,
far more than the overhead, so the bare launch line is the jail's own cost and the Blender
lines show that it stays within the noise; the verdict needs both cube-job figures under the
target, and says when the load makes the paired median inconclusive. (Children's CPU time is
not shown: getrusage(RUSAGE_CHILDREN) counted less for the jailed job than for the plain one,
so it measures nothing useful here.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_S = 0.3


async def _launch(cmd: list[str], jail, work: Path, log: Path) -> float:
    from comfy_avatar_nodes.core.runtime.isolation import run_jailed

    t0 = time.perf_counter()
    r = await run_jailed(
        cmd, work=work, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"}, jail=jail, log_path=log, timeout_s=120
    )
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{cmd} failed ({r.returncode}): {log.read_text()[-2000:]}")
    return took


async def _cube(jail, runtime, tmp: Path, i: int) -> float:
    from comfy_avatar_nodes.core.runtime.blender import run_blender

    work = tmp / f"cube{i}-{'iso' if jail.isolated else 'plain'}" / "job"
    work.mkdir(parents=True)
    (work / "generated_script.py").write_text("import bpy\nbpy.ops.mesh.primitive_cube_add()\n")
    t0 = time.perf_counter()
    res = await run_blender(
        "sandbox_exec.py",
        {"script": "generated_script.py", "formats": ["glb"], "name": "cube", "guard": False},
        work_dir=work,
        timeout_s=120,
        runtime=runtime,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
        jail=jail,
    )
    took = time.perf_counter() - t0
    if not res.ok:
        raise SystemExit(f"the cube job failed: {res.error}\n{res.log_tail}")
    return took


def pair(name: str, plain, isolated, runs: int) -> tuple[float, float]:
    """Alternate plain/isolated (ABBA order, so a trend in the load hits both alike); returns
    (median of the per-round differences, difference of the fastest runs)."""
    p, q = [], []
    for i in range(runs + 1):
        a, b = (plain(i), isolated(i)) if i % 2 else tuple(reversed((isolated(i), plain(i))))
        if i:  # the first round warms the page cache
            p.append(a)
            q.append(b)
    paired = statistics.median(b - a for a, b in zip(p, q))
    best = min(q) - min(p)
    print(
        f"{name:<28} plain {statistics.median(p):6.3f} s ({min(p):.3f}-{max(p):.3f})  isolated "
        f"{statistics.median(q):6.3f} s ({min(q):.3f}-{max(q):.3f})  overhead {paired:+.3f} s paired median, "
        f"{best:+.3f} s fastest runs"
    )
    return paired, best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    opts = ap.parse_args(argv)
    from comfy_avatar_nodes.core.executor.sandbox import SCRIPTS_DIR
    from comfy_avatar_nodes.core.runtime import isolation
    from comfy_avatar_nodes.core.runtime.blender import find_runtime

    st = isolation.check()
    if not st.ok:
        print(f"bubblewrap isolation is not available: {st.problem}")
        return 2
    runtime = find_runtime()
    roots = isolation.runtime_roots(runtime.kind, str(runtime.executable), (str(SCRIPTS_DIR),))
    # as the executor jails a script (core/executor/sandbox.py jail_for): pids and memory cgroups too
    jail = isolation.Jail(bwrap=st.bwrap, ro_paths=roots, memory_max_mb=6144 + 2048 + 512 + 64)
    plain = isolation.Jail()
    print(f"{st.describe()}\nruntime {runtime.executable} (bpy {runtime.version}); median of {opts.runs} runs\n")
    with tempfile.TemporaryDirectory(prefix="comfy-avatar-bench-") as tmp_s:
        tmp = Path(tmp_s)
        exe = str(runtime.executable)

        def launcher(cmd, j):
            def run(i: int) -> float:
                work = Path(tempfile.mkdtemp(dir=tmp)) / "job"  # a fresh folder per launch
                work.mkdir(parents=True)
                return asyncio.run(_launch(cmd, j, work, work.parent / "log"))

            return run

        if runtime.kind == "python":
            pair(
                "python -I -c pass",
                launcher([exe, "-I", "-c", "pass"], plain),
                launcher([exe, "-I", "-c", "pass"], jail),
                opts.runs,
            )
            # what the tmpfs /job (handshake, copy-back) and the cgroups add over a bind-mounted
            # work dir without a cgroup (the design before them): both jailed, same command
            bind = isolation.Jail(bwrap=st.bwrap, ro_paths=roots, work_tmpfs=False, pids_max=0)
            pair(
                "tmpfs /job + pids/mem cgroup",
                launcher([exe, "-I", "-c", "pass"], bind),
                launcher([exe, "-I", "-c", "pass"], jail),
                opts.runs,
            )
            pair(
                "python -c 'import bpy'",
                launcher([exe, "-c", "import bpy"], plain),
                launcher([exe, "-c", "import bpy"], jail),
                opts.runs,
            )
        paired, best = pair(
            "cube -> GLB via run_blender",
            lambda i: asyncio.run(_cube(plain, runtime, tmp, i)),
            lambda i: asyncio.run(_cube(jail, runtime, tmp, i)),
            opts.runs,
        )
    load = os.getloadavg()[0]
    print(
        f"\nload average {load:.1f} on {os.cpu_count()} cores"
        + (
            " (busy: Blender-level differences are mostly noise; the bare launch line is the jail's own cost)"
            if load > (os.cpu_count() or 1)
            else ""
        )
    )
    if paired < TARGET_S and best < TARGET_S:
        print(
            f"isolation launch overhead (cube job): {paired:+.3f} s paired median, {best:+.3f} s fastest runs -- "
            f"meets the target of < {TARGET_S} s"
        )
        return 0
    if best < TARGET_S:
        print(
            f"isolation launch overhead (cube job): {best:+.3f} s on the fastest runs meets the target of < "
            f"{TARGET_S} s; the paired median ({paired:+.3f} s) is inconclusive under this load: rerun on a quiet machine"
        )
        return 0
    print(
        f"isolation launch overhead (cube job): {paired:+.3f} s paired median, {best:+.3f} s fastest runs -- "
        f"MISSES the target of < {TARGET_S} s"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
