"""The warm Blender worker (core/runtime/warm_blender.py + blender_cli/_warm_server.py).

Two promises are tested: untrusted (model-written) scripts can never reach a warm process,
and a used warm worker -- after another job, a failed job, a recycle and a crash -- writes
exactly the same bytes as a fresh one-shot launch for the same job."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from comfy_avatar_nodes.core.config import load_settings
from comfy_avatar_nodes.core.errors import AvatarError
from comfy_avatar_nodes.core.runtime import blender as runner
from comfy_avatar_nodes.core.runtime import warm_blender

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rig_helpers import write_faceless_glb, write_humanoid_glb  # noqa: E402

SCRIPTS = warm_blender.SCRIPTS_DIR


# ---------------------------------------------------------------- no Blender needed


def test_only_our_own_scripts_are_trusted(tmp_path):
    assert warm_blender.trusted_script(SCRIPTS / "rig_vrm.py") is not None
    assert "sandbox_exec.py" not in warm_blender.TRUSTED_SCRIPTS
    assert warm_blender.trusted_script(SCRIPTS / "sandbox_exec.py") is None
    assert warm_blender.trusted_script(SCRIPTS / "_warm_server.py") is None
    assert warm_blender.trusted_script(SCRIPTS / "no_such_script.py") is None
    copy = tmp_path / "rig_vrm.py"  # same name, other folder (a model could write this)
    shutil.copy(SCRIPTS / "rig_vrm.py", copy)
    assert warm_blender.trusted_script(copy) is None
    evil = tmp_path / "evil.py"
    evil.write_text("import os\n", encoding="utf-8")
    link = tmp_path / "link" / "rig_vrm.py"
    link.parent.mkdir()
    link.symlink_to(evil)
    assert warm_blender.trusted_script(link) is None


def test_trusted_script_cannot_be_forged():
    with pytest.raises(TypeError, match="trusted_script"):
        warm_blender.TrustedScript(SCRIPTS / "sandbox_exec.py")
    pool = warm_blender.WarmPool("/nonexistent/python", load_settings().blender)
    with pytest.raises(TypeError, match="untrusted code never runs warm"):
        asyncio.run(pool.run(SCRIPTS / "sandbox_exec.py", Path("job.json"), Path("."), Path("log"), None))  # type: ignore[arg-type]
    assert all(w.pid is None for w in pool.workers)  # nothing was started


def test_executor_shaped_jobs_never_go_warm(monkeypatch):
    """The runner asks for a warm worker only without env/limits (every executor job sets both;
    a jailed job takes another branch before this) and only for a trusted script."""

    def boom(*a, **k):
        raise AssertionError("a warm pool was asked for")

    monkeypatch.setattr(warm_blender, "pool_for", boom)
    rt = runner.BlenderRuntime("python", Path("/nonexistent/python"), "5.0.1")
    bs = dataclasses.replace(load_settings().blender, warm=True)
    args = dict(job_path=Path("j"), work=Path("."), log_path=Path("l"), timeout=None)
    run = lambda script, env=None, limits=None, rt=rt, bs=bs: asyncio.run(  # noqa: E731
        runner._run_warm(SCRIPTS / script, rt, bs, env, limits, **args)
    )
    assert run("sandbox_exec.py") is None
    assert run("rig_vrm.py", env={}) is None
    assert run("rig_vrm.py", limits=runner.ResourceLimits(cpu_s=10)) is None
    assert run("rig_vrm.py", bs=dataclasses.replace(bs, warm=False)) is None
    assert run("rig_vrm.py", rt=dataclasses.replace(rt, kind="binary")) is None


# ---------------------------------------------------------------- real Blender


@pytest.mark.blender
def test_executor_scripts_run_fresh_even_with_warm_on(blender_runtime, tmp_path, monkeypatch):
    """A model-written script through the Blender Executor with warm workers enabled: no pool is
    ever touched, and the script still runs (in its fresh isolated process)."""
    from comfy_avatar_nodes.core.executor.sandbox import run_script

    def boom(*a, **k):
        raise AssertionError("an untrusted script reached the warm pool")

    monkeypatch.setattr(warm_blender, "pool_for", boom)
    monkeypatch.setattr(warm_blender.WarmPool, "run", boom)
    bs = dataclasses.replace(load_settings().blender, warm=True)
    src = "import bpy\nbpy.ops.mesh.primitive_cube_add(size=1)\n"
    res = asyncio.run(run_script(src, out_dir=tmp_path, name="cube", formats=("glb",), blender=bs))
    assert res.ok, res.error


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.blender
def test_used_warm_worker_writes_the_same_bytes_as_a_fresh_launch(blender_runtime, tmp_path):
    from comfy_avatar_nodes.core.rig.cpu import rig_to_vrm_sync
    from comfy_avatar_nodes.core.vrm.meta import VrmMeta

    if blender_runtime.kind != "python":
        pytest.skip("not applicable: warm workers run the pip bpy runtime only")
    mesh = write_humanoid_glb(tmp_path / "a.glb", pose="A")
    other = write_humanoid_glb(tmp_path / "t.glb", pose="T", height=1.5)
    faceless = write_faceless_glb(tmp_path / "faceless.glb")
    meta = VrmMeta(name="Warm Test", authors=["warm tests"])
    s = load_settings()
    fresh_s = dataclasses.replace(s, blender=dataclasses.replace(s.blender, warm=False))
    warm_s = dataclasses.replace(s, blender=dataclasses.replace(s.blender, warm=True, warm_slots=1, warm_max_jobs=4))
    warm_blender.shutdown_all()
    pool = warm_blender.pool_for(blender_runtime.executable, warm_s.blender)
    worker = pool.workers[0]

    def rig(settings, src, name):
        out = tmp_path / f"{name}.vrm"
        rig_to_vrm_sync(src, out, meta, settings=settings, work_dir=tmp_path / f"work-{name}")
        return _sha(out)

    try:
        fresh = rig(fresh_s, mesh, "fresh")
        rig(warm_s, other, "other")  # job 1: another figure first
        first_pid = worker.pid
        with pytest.raises(AvatarError):  # job 2: a failing job (no faces)
            rig(warm_s, faceless, "faceless")
        assert rig(warm_s, mesh, "warm-used") == fresh, "after another job and a failed one"  # job 3
        assert worker.pid == first_pid, "jobs 1-3 ran in one process"
        assert rig(warm_s, mesh, "warm-4") == fresh  # job 4: recycled after it (warm_max_jobs=4)
        assert pool.recycled == 1

        # A crash mid-job: kill the worker while it runs; that job fails, the next one is clean.
        stop = threading.Event()

        def killer():
            while not stop.is_set():
                pid = worker.pid
                busy = worker.busy()
                if pid is not None and busy:
                    time.sleep(0.5)
                    os.kill(pid, signal.SIGSEGV)
                    return
                time.sleep(0.05)

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        with pytest.raises(AvatarError, match="crashed|signal"):
            rig(warm_s, other, "crashed")
        stop.set()
        t.join(5)
        assert rig(warm_s, mesh, "after-crash") == fresh, "after a crash"
        assert worker.pid is not None and worker.pid != first_pid
    finally:
        warm_blender.shutdown_all()
