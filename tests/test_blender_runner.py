"""The Blender runner (core/runtime/blender.py) and install.py, against the real bpy runtime.

Every job here is tests/data/blender/runner_probe.py in one of its modes; a launch that
imports bpy costs ~1 s.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from comfy_avatar_nodes.core.config import PACK_DIR, load_settings
from comfy_avatar_nodes.core.errors import BlenderError
from comfy_avatar_nodes.core.runtime import blender as rb
from comfy_avatar_nodes.core.runtime.blender import BlenderRuntime, ResourceLimits, run_blender, run_blender_sync

PROBE = Path(__file__).parent / "data" / "blender" / "runner_probe.py"
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
posix_only = pytest.mark.skipif(os.name != "posix", reason="process groups and rlimits are POSIX")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has been killed; only its parent (init) has yet to reap it


def _wait_gone(pid: int, within_s: float = 5.0) -> bool:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------- with the real bpy runtime


@pytest.mark.blender
def test_good_script_returns_its_result(blender_runtime, tmp_path):
    res = run_blender_sync(
        PROBE,
        {"mode": "echo", "value": {"a": [1, 2.5, "x"]}},
        work_dir=tmp_path,
        runtime=blender_runtime,
        timeout_s=120,
    )
    assert res.ok and res.returncode == 0 and res.error == ""
    assert res.result["echo"] == {"a": [1, 2.5, "x"]}
    assert rb._version_tuple(res.result["bpy"]) >= (4, 2)  # bpy really was imported in the job
    assert res.result["cwd"] == str(tmp_path) == res.result["work_dir"]
    assert res.log_path.is_file() and res.log_path.parent.parent == tmp_path / ".blender"
    assert not (res.log_path.parent / "user").exists(), "the temp Blender user folder must be removed"


@pytest.mark.blender
def test_script_error_has_its_message_and_the_stderr_tail(blender_runtime, tmp_path):
    with pytest.raises(BlenderError) as err:
        run_blender_sync(
            PROBE,
            {"mode": "raise", "message": "input 'mesh' has no faces"},
            work_dir=tmp_path,
            runtime=blender_runtime,
            timeout_s=120,
        )
    msg = str(err.value)
    assert msg.startswith("Blender job runner_probe.py: input 'mesh' has no faces")
    assert "probe-stderr-marker: about to fail" in msg  # Blender's stderr tail
    assert "Fix:" in msg and "blender.log" in msg

    res = run_blender_sync(
        PROBE,
        {"mode": "raise", "message": "bad"},
        work_dir=tmp_path,
        runtime=blender_runtime,
        timeout_s=120,
        check=False,
    )
    assert not res.ok and res.error == "bad" and res.returncode == 1
    assert "probe-stderr-marker" in res.log_tail and "JobError: bad" in res.traceback


@pytest.mark.blender
@posix_only
@needs_proc
def test_timeout_kills_the_job_and_its_children(blender_runtime, tmp_path):
    start = time.monotonic()
    with pytest.raises(BlenderError) as err:
        run_blender_sync(PROBE, {"mode": "sleep"}, work_dir=tmp_path, runtime=blender_runtime, timeout_s=4)
    elapsed = time.monotonic() - start
    assert "timed out after 4 s" in str(err.value) and "probe: sleeping" in str(err.value)
    assert "COMFY_AVATAR__BLENDER__TIMEOUT_S" in str(err.value)
    assert elapsed < 10, f"the runner waited {elapsed:.1f} s for a 4 s timeout"
    pid_file = tmp_path / "child.pid"
    assert pid_file.is_file(), "the job did not get to start its child within the timeout"
    assert _wait_gone(int(pid_file.read_text())), "the job's child process survived the timeout"


@pytest.mark.blender
@posix_only
@needs_proc
def test_cancel_kills_the_job_and_its_children(blender_runtime, tmp_path):
    """A ComfyUI interrupt cancels the node's task: nothing may keep running."""
    pid_file = tmp_path / "child.pid"

    async def scenario() -> None:
        task = asyncio.create_task(
            run_blender(PROBE, {"mode": "sleep"}, work_dir=tmp_path, runtime=blender_runtime, timeout_s=120)
        )
        for _ in range(600):
            if pid_file.is_file() and pid_file.read_text():
                break
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert _wait_gone(int(pid_file.read_text())), "the job's child process survived the cancel"


@pytest.mark.blender
@posix_only
def test_crash_gives_a_clear_error(blender_runtime, tmp_path):
    with pytest.raises(BlenderError) as err:
        run_blender_sync(PROBE, {"mode": "abort"}, work_dir=tmp_path, runtime=blender_runtime, timeout_s=120)
    msg = str(err.value)
    assert "crashed" in msg and "SIGABRT" in msg and "install.py --check" in msg
    assert "probe: aborting" in msg  # the log tail, with faulthandler's stack below it
    assert "runner_probe.py" in msg.split("Blender log tail", 1)[1]


@pytest.mark.blender
@posix_only
def test_memory_limit_makes_a_big_allocation_fail(blender_runtime, tmp_path):
    limits = ResourceLimits(memory_bytes=2 << 30)
    ok = run_blender_sync(
        PROBE, {"mode": "alloc", "mb": 100}, work_dir=tmp_path, runtime=blender_runtime, timeout_s=120, limits=limits
    )
    assert ok.result == {"allocated_mb": 100}  # bpy itself still runs under the limit
    with pytest.raises(BlenderError) as err:
        run_blender_sync(
            PROBE,
            {"mode": "alloc", "mb": 3000},
            work_dir=tmp_path,
            runtime=blender_runtime,
            timeout_s=120,
            limits=limits,
        )
    assert "MemoryError" in str(err.value) and "memory limit" in str(err.value)
    # without the limit the same 3000 MB of address space is there (mapped lazily: quick),
    # so it was the limit that stopped the allocation
    big = run_blender_sync(
        PROBE, {"mode": "alloc", "mb": 3000, "lazy": True}, work_dir=tmp_path, runtime=blender_runtime, timeout_s=120
    )
    assert big.result == {"allocated_mb": 3000}


@pytest.mark.blender
@posix_only
def test_fsize_limit_stops_a_big_write(blender_runtime, tmp_path):
    with pytest.raises(BlenderError) as err:
        run_blender_sync(
            PROBE,
            {"mode": "write", "mb": 5, "bpy": False},
            work_dir=tmp_path,
            runtime=blender_runtime,
            timeout_s=120,
            limits=ResourceLimits(fsize_bytes=1 << 20),
        )
    assert "File too large" in str(err.value)
    assert (tmp_path / "big.bin").stat().st_size <= 1 << 20


@pytest.mark.blender
@posix_only
def test_cpu_limit_stops_a_busy_loop(blender_runtime, tmp_path):
    start = time.monotonic()
    with pytest.raises(BlenderError) as err:
        run_blender_sync(
            PROBE,
            {"mode": "busy", "bpy": False},
            work_dir=tmp_path,
            runtime=blender_runtime,
            timeout_s=60,
            limits=ResourceLimits(cpu_s=1),
        )
    assert "SIGXCPU" in str(err.value) and "CPU limit (1 s)" in str(err.value)
    assert time.monotonic() - start < 20


@pytest.mark.blender
@posix_only
def test_all_limits_are_set_in_the_child(blender_runtime, tmp_path):
    limits = ResourceLimits(cpu_s=50, memory_bytes=3 << 30, fsize_bytes=1 << 30, nproc=4000)
    res = run_blender_sync(
        PROBE, {"mode": "limits", "bpy": False}, work_dir=tmp_path, runtime=blender_runtime, timeout_s=60, limits=limits
    )
    assert res.result == {"cpu": [50, 51], "as": [3 << 30, 3 << 30], "fsize": [1 << 30, 1 << 30], "nproc": [4000, 4000]}


@pytest.mark.blender
def test_blender_user_folders_are_a_temp_dir_and_env_is_the_base(blender_runtime, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere/with/numpy2")  # ComfyUI's env must not leak in
    res = run_blender_sync(PROBE, {"mode": "env"}, work_dir=tmp_path, runtime=blender_runtime, timeout_s=120)
    user = res.result["env"]["BLENDER_USER_RESOURCES"]
    assert Path(user).parent == res.log_path.parent and Path(user).name == "user"
    assert res.result["resource_path_user"] == user  # bpy really uses it
    assert res.result["config_dir"] == os.path.join(user, "config")
    assert res.result["env"]["BLENDER_USER_SCRIPTS"] == os.path.join(user, "scripts")
    assert res.result["user_dir_exists"] and not Path(user).exists()  # there during the job, gone after
    assert res.result["pythonpath"] is None

    stripped = run_blender_sync(
        PROBE,
        {"mode": "env"},
        work_dir=tmp_path,
        runtime=blender_runtime,
        timeout_s=120,
        env={"PROBE_SECRET": "only-this"},
    )
    assert stripped.result["secret"] == "only-this" and stripped.result["home"] is None


@pytest.mark.blender
def test_concurrent_jobs_in_one_work_dir(blender_runtime, tmp_path):
    async def both():
        return await asyncio.gather(
            *(
                run_blender(
                    PROBE,
                    {"mode": "echo", "value": i, "bpy": False},
                    work_dir=tmp_path,
                    runtime=blender_runtime,
                    timeout_s=60,
                )
                for i in range(3)
            )
        )

    results = asyncio.run(both())
    assert [r.result["echo"] for r in results] == [0, 1, 2]
    assert len({r.log_path for r in results}) == 3


@pytest.mark.blender
def test_install_check_reports_the_bpy_runtime(blender_runtime, clean_env):
    proc = subprocess.run(
        [sys.executable, str(PACK_DIR / "install.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PACK_DIR,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"bpy {blender_runtime.version}" in proc.stdout and "io_scene_vrm enabled" in proc.stdout
    assert str(blender_runtime.executable) in proc.stdout
    assert "Blender runtime: OK" in proc.stdout


# ---------------------------------------------------------------- no Blender needed


def test_missing_binary_names_blender_bin_and_the_fix(clean_env, tmp_path):
    clean_env.setenv("BLENDER_BIN", "/nonexistent/blender")
    with pytest.raises(BlenderError) as err:
        run_blender_sync(PROBE, {"mode": "echo"}, work_dir=tmp_path, timeout_s=10)
    msg = str(err.value)
    assert "BLENDER_BIN" in msg and "/nonexistent/blender does not exist" in msg and "install.py" in msg
    assert not (tmp_path / ".blender").exists()  # nothing was started


def test_missing_default_runtime_names_both_settings_and_the_fix(clean_env, tmp_path):
    clean_env.setenv("COMFY_AVATAR__BLENDER__RUNTIME_DIR", str(tmp_path / "empty"))
    with pytest.raises(BlenderError) as err:
        rb.find_runtime(load_settings().blender)
    msg = str(err.value)
    assert "BLENDER_BIN" in msg and "COMFY_AVATAR_BLENDER_PYTHON" in msg
    assert "python install.py" in msg and str(tmp_path / "empty" / "blender-venv") in msg


def test_broken_python_runtime_is_reported(clean_env, tmp_path):
    clean_env.setenv("COMFY_AVATAR_BLENDER_PYTHON", sys.executable)  # a Python without bpy
    with pytest.raises(BlenderError) as err:
        rb.find_runtime(load_settings().blender)
    assert "COMFY_AVATAR_BLENDER_PYTHON" in str(err.value) and "cannot import bpy" in str(err.value)
    assert "No module named 'bpy'" in str(err.value)


def _fake_blender(tmp_path: Path, version: str) -> Path:
    """A stand-in `blender` that checks the documented command line, then runs the script
    with this Python (no real Blender binary exists on the test machine)."""
    fake = tmp_path / "bin" / "blender"
    fake.parent.mkdir()
    fake.write_text(f"""#!/bin/sh
if [ "$1" = "--version" ]; then echo probe >> "{tmp_path}/probes"; echo "Blender {version}"; echo "	build date: x"; exit 0; fi
printf '%s\\n' "$@" > "{tmp_path}/argv"
[ "$1 $2 $3 $4 $5" = "--background --factory-startup --python-exit-code 1 --python" ] || exit 99
script="$6"; shift 6
exec "{sys.executable}" "$script" "$@"
""")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


@posix_only
def test_binary_runtime_uses_the_documented_command_line(clean_env, tmp_path):
    fake = _fake_blender(tmp_path, "4.2.3 LTS")
    addon = tmp_path / "runtime" / "blender-addons" / "io_scene_vrm"
    addon.mkdir(parents=True)
    (addon / "__init__.py").write_text("bl_info = {}\n")
    clean_env.setenv("BLENDER_BIN", str(fake))
    clean_env.setenv("COMFY_AVATAR__BLENDER__RUNTIME_DIR", str(tmp_path / "runtime"))
    rb.clear_runtime_cache()
    rt = rb.find_runtime()
    assert (rt.kind, rt.executable, rt.version) == ("binary", fake, "4.2.3")
    assert rb.find_runtime() is rt and (tmp_path / "probes").read_text().count("probe") == 1  # cached

    work = tmp_path / "work"
    res = run_blender_sync(PROBE, {"mode": "echo", "value": "hi", "bpy": False}, work_dir=work, timeout_s=30)
    assert res.result["echo"] == "hi"
    argv = (tmp_path / "argv").read_text().splitlines()
    job = str(res.log_path.parent / "job.json")
    assert argv == [
        "--background",
        "--factory-startup",
        "--python-exit-code",
        "1",
        "--python",
        str(PROBE),
        "--",
        "--job",
        job,
    ]
    # the VRM add-on from <runtime_dir>/blender-addons is visible to a Blender binary
    res = run_blender_sync(PROBE, {"mode": "addons", "bpy": False}, work_dir=work, timeout_s=30)
    assert res.result["addons"] == ["io_scene_vrm"]


@posix_only
def test_too_old_binary_is_rejected(clean_env, tmp_path):
    clean_env.setenv("BLENDER_BIN", str(_fake_blender(tmp_path, "3.4.1")))
    rb.clear_runtime_cache()
    with pytest.raises(BlenderError) as err:
        rb.find_runtime()
    assert "BLENDER_BIN" in str(err.value) and "Blender 3.4.1" in str(err.value) and ">= 4.2" in str(err.value)


def test_python_runtime_command_line(tmp_path):
    rt = BlenderRuntime("python", Path("/rt/bin/python"), "5.0.1")
    assert rt.command(Path("/s/x.py"), Path("/w/job.json")) == [
        "/rt/bin/python",
        "/s/x.py",
        "--",
        "--job",
        "/w/job.json",
    ]


def test_relative_script_resolves_in_blender_cli_and_missing_script_is_named(tmp_path):
    assert rb.resolve_script("_job.py") == PACK_DIR / "blender_cli" / "_job.py"
    with pytest.raises(BlenderError) as err:
        rb.resolve_script("no_such_script.py")
    assert "no_such_script.py" in str(err.value)


def test_arguments_must_be_json(tmp_path):
    rt = BlenderRuntime("python", Path(sys.executable), "test")
    with pytest.raises(BlenderError) as err:
        run_blender_sync(PROBE, {"mode": "echo", "value": object()}, work_dir=tmp_path, runtime=rt, timeout_s=10)
    assert "arguments for runner_probe.py" in str(err.value) and "JSON" in str(err.value)
    res = run_blender_sync(
        PROBE, {"mode": "echo", "value": tmp_path, "bpy": False}, work_dir=tmp_path, runtime=rt, timeout_s=30
    )
    assert res.result["echo"] == str(tmp_path)  # paths are passed as strings


def test_run_blender_sync_works_inside_a_running_loop(tmp_path):
    rt = BlenderRuntime("python", Path(sys.executable), "test")

    async def inside() -> dict:
        return run_blender_sync(
            PROBE, {"mode": "echo", "value": 7, "bpy": False}, work_dir=tmp_path, runtime=rt, timeout_s=30
        ).result

    assert asyncio.run(inside())["echo"] == 7


def test_install_reads_dependencies_without_tomllib():
    import install

    assert install._parse_dependencies((PACK_DIR / "pyproject.toml").read_text()) == install.read_dependencies()
    assert install._parse_dependencies(
        '[project]\ndependencies = [ # c\n "a[b,c]>=1",  # ]\n \'d\'\n]\n[tool.x]\ndependencies = ["no"]\n'
    ) == ["a[b,c]>=1", "d"]
    assert not {"torch", "bpy"} & {install.requirement_name(d) for d in install.read_dependencies()}
