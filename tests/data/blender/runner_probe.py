"""Test job for tests/test_blender_runner.py: one mode per runner behaviour (stdlib + bpy only)."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "blender_cli"))
from _job import JobError, run_job  # noqa: E402


def main(args: dict, work_dir: str) -> dict:
    mode = args["mode"]
    if args.get("bpy", True):
        import bpy  # noqa: F401 - the runtime must provide it
    if mode == "echo":
        bpy_version = sys.modules["bpy"].app.version_string if "bpy" in sys.modules else None
        return {"echo": args.get("value"), "bpy": bpy_version, "cwd": os.getcwd(), "work_dir": work_dir}
    if mode == "raise":
        print("probe-stderr-marker: about to fail", file=sys.stderr, flush=True)
        raise JobError(args["message"])
    if mode == "sleep":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(os.path.join(work_dir, "child.pid"), "w") as f:
            f.write(str(child.pid))
        print("probe: sleeping", flush=True)
        time.sleep(600)
    if mode == "abort":
        print("probe: aborting", flush=True)
        os.abort()
    if mode == "alloc":
        if args.get("lazy"):  # address space only, pages never touched
            import mmap

            with mmap.mmap(-1, int(args["mb"]) << 20) as block:
                return {"allocated_mb": len(block) >> 20}
        block = bytearray(int(args["mb"]) << 20)
        return {"allocated_mb": len(block) >> 20}
    if mode == "write":
        with open(os.path.join(work_dir, "big.bin"), "wb") as f:
            for _ in range(int(args["mb"])):
                f.write(b"\0" * (1 << 20))
        return {"written_mb": int(args["mb"])}
    if mode == "busy":
        while True:
            pass
    if mode == "limits":
        import resource

        names = {
            "cpu": resource.RLIMIT_CPU,
            "as": resource.RLIMIT_AS,
            "fsize": resource.RLIMIT_FSIZE,
            "nproc": resource.RLIMIT_NPROC,
        }
        return {k: list(resource.getrlimit(v)) for k, v in names.items()}
    if mode == "env":
        import bpy

        user = os.environ.get("BLENDER_USER_RESOURCES", "")
        return {
            "env": {k: v for k, v in os.environ.items() if k.startswith("BLENDER_USER_")},
            "resource_path_user": bpy.utils.resource_path("USER"),
            "config_dir": bpy.utils.user_resource("CONFIG"),
            "user_dir_exists": os.path.isdir(user),
            "pythonpath": os.environ.get("PYTHONPATH"),
            "secret": os.environ.get("PROBE_SECRET"),
            "home": os.environ.get("HOME"),
        }
    if mode == "addons":
        addons = os.path.join(os.environ["BLENDER_USER_SCRIPTS"], "addons")
        return {"addons": sorted(os.listdir(addons)) if os.path.isdir(addons) else []}
    raise JobError(f"unknown mode {mode!r}")


run_job(main)
