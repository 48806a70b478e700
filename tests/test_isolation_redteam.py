"""A red team against the finished sandbox (core/runtime/isolation.py, core/executor/sandbox.py),
written without reading tests/test_sandbox_attacks.py: hostile jobs in classes the earlier
suites do not try, each checked from OUTSIDE the job (the host's /proc view of the job's
processes and open files, the host folders, the parent's return), plus three ordinary scripts
a coder model writes, which must still succeed.

Host-Python jobs (fast, ~0.2 s) attack the jail itself, as any code inside Blender could; the
Blender jobs attack the executor's handling of what a job hands back (result.json, GLB, .blend).
Where a test needs bubblewrap or Blender it skips locally without it and fails under CI=true.

Found by this suite and fixed (the test would fail on the design before the fix):
- a file deleted while open (or O_TMPFILE) in /job used host disk past sandbox.work_mb unseen
  by the poll: /job is now a tmpfs of work_mb (the kernel refuses the write past it);
- as root, RLIMIT_NPROC bound nothing: the thread count of a job is now a pids cgroup limit;
- the memory-backed /job, /tmp and /dev/shm came on top of RLIMIT_AS: a memory cgroup (where
  one can be made) now bounds resident memory and tmpfs pages together;
- the copy-back of /job recreated a folder chain past PATH_MAX on the host: now cut at 1024
  characters and 64 levels;
- a GLB naming an external file (``file:///etc/shadow``), a GLB whose buffers run past its
  chunk, and a .blend carrying a registered text block or a scripted driver (written by a
  ``save_pre`` handler during the executor's own save) were handed on as outputs: they are
  now checked on the host (core/executor/output_check.py) and refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import need

from comfy_avatar_nodes.core.config import SandboxSettings
from comfy_avatar_nodes.core.executor import output_check
from comfy_avatar_nodes.core.executor.sandbox import run_script
from comfy_avatar_nodes.core.runtime import isolation as iso

HOST_PY = os.path.realpath(sys.executable)
HOST_PREFIX = sys.base_prefix
SECRET = "sk-canary-redteam-91c4e2"
MB = 1024 * 1024


def bwrap() -> str:
    st = iso.check()
    need(st.ok, f"bubblewrap isolation is not available here: {st.problem}")
    return st.bwrap


def _job_pids(marker: str, job_only: bool = False) -> list[int]:
    """Host pids of processes whose command line carries ``marker``: bwrap, the sandbox's pid 1
    and the job's python; ``job_only``: the job's python alone (bwrap's own fds are not the job's)."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker.encode() in argv and (not job_only or argv[0] == HOST_PY.encode()):
                found.append(int(d))
    return [p for p in found if p != os.getpid()]


class Sampler(threading.Thread):
    """Watches the job from the host while it runs: its task count, and the files it holds open
    (host view of /proc/PID/fd: size, device, whether deleted)."""

    def __init__(self, marker: str) -> None:
        super().__init__(daemon=True)
        self.marker, self.stop = marker, threading.Event()
        self.max_tasks = 0
        self.max_deleted_bytes = 0
        self.max_mem_bytes = 0  # resident memory + deleted files held open
        self.devices: set[int] = set()
        self.fd_targets: set[str] = set()

    def run(self) -> None:
        while not self.stop.is_set():
            tasks, deleted, rss = 0, 0, 0
            job = set(_job_pids(self.marker, job_only=True))
            for pid in _job_pids(self.marker):
                try:
                    tasks += len(os.listdir(f"/proc/{pid}/task"))
                    if pid not in job:
                        continue
                    status = Path(f"/proc/{pid}/status").read_text()
                    rss += sum(int(ln.split()[1]) * 1024 for ln in status.splitlines() if ln.startswith("VmRSS:"))
                    for fd in os.listdir(f"/proc/{pid}/fd"):
                        path = f"/proc/{pid}/fd/{fd}"
                        target = os.readlink(path)
                        self.fd_targets.add(target)
                        st = os.stat(path)
                        if target.endswith("(deleted)") or "#" in target:
                            deleted += st.st_size
                            self.devices.add(st.st_dev)
                except OSError:
                    continue
            self.max_tasks = max(self.max_tasks, tasks)
            self.max_deleted_bytes = max(self.max_deleted_bytes, deleted)
            self.max_mem_bytes = max(self.max_mem_bytes, deleted + rss)
            time.sleep(0.02)


def run_job(code: str, tmp_path: Path, *, timeout_s: float = 30, **jail_kw):
    """Run ``code`` with the host Python in a real jail, watched from outside.
    (JailedRun, log text, host work dir, Sampler, seconds)."""
    marker = f"redteam-{uuid.uuid4().hex[:10]}"
    base = tmp_path / marker
    work = base / "job"
    work.mkdir(parents=True)
    (work / "job.py").write_text(textwrap.dedent(code))
    jail = iso.Jail(bwrap=bwrap(), ro_paths=(HOST_PREFIX,), **jail_kw)
    sampler = Sampler(marker)
    sampler.start()
    t0 = time.perf_counter()
    try:
        r = asyncio.run(
            iso.run_jailed(
                [HOST_PY, "-I", "-S", "job.py", marker],
                work=work,
                env={"PATH": "/usr/bin:/bin"},
                jail=jail,
                log_path=base / "job.log",
                timeout_s=timeout_s,
            )
        )
    finally:
        sampler.stop.set()
        sampler.join(5)
    took = time.perf_counter() - t0
    assert _job_pids(marker) == [], "a process of the job outlived run_jailed"
    return r, (base / "job.log").read_text(errors="replace"), work, sampler, took


# ---------------------------------------------------------------- disk the work-dir poll could not see


def test_deleted_and_tmpfile_files_cannot_use_disk_past_the_limits(tmp_path):
    """A file unlinked while open (and an O_TMPFILE file) is invisible to a folder walk; on a
    host-backed /job it used host disk for the job's whole life. Outside: the job's open
    deleted files, as the host sees them, never exceed work_mb + tmp_mb + shm_mb, and none is
    on the host work dir's file system."""
    r, log, work, s, took = run_job(
        """
        import os, time
        held = []
        for where in ("/job", "/tmp", "/dev/shm"):
            f = open(f"{where}/ghost", "wb"); os.unlink(f"{where}/ghost"); held.append(f)
            try:
                for i in range(400):
                    f.write(b"x" * (1 << 20)); f.flush()
            except OSError as e:
                print(where, "stopped after", i, "MB:", e.strerror, flush=True)
        try:
            fd = os.open("/job", os.O_TMPFILE | os.O_WRONLY, 0o600)
            for i in range(400):
                os.write(fd, b"y" * (1 << 20))
        except OSError as e:
            print("O_TMPFILE stopped:", e.strerror, flush=True)
        time.sleep(1.5)  # hold everything while the host looks
    """,
        tmp_path,
        work_mb=24,
        tmp_mb=16,
        shm_mb=8,
    )
    assert "/job stopped after" in log and "No space left on device" in log, log
    assert s.max_deleted_bytes <= (24 + 16 + 8) * MB, s.max_deleted_bytes
    assert s.max_deleted_bytes > 0, "the sampler saw nothing: the test did not look"
    assert os.stat(work).st_dev not in s.devices, "a deleted file lived on the host work dir's disk"
    assert took < 25


def test_a_sparse_giant_result_never_lands_on_the_host(tmp_path):
    """result.json truncated to 300 MB (sparse, a few blocks): outside, the host work dir holds
    no such file after the run (the job is killed for its apparent size, nothing is copied back)."""
    r, log, work, s, took = run_job(
        """
        import os, time
        os.makedirs("/job/.blender/x", exist_ok=True)
        with open("/job/.blender/x/result.json", "wb") as f:
            f.truncate(300 << 20)
        time.sleep(5)
    """,
        tmp_path,
        work_mb=64,
        poll_s=0.05,
    )
    assert "past the limit" in r.quota, (r, log)
    biggest = max((p.stat().st_size for p in work.rglob("*") if p.is_file()), default=0)
    assert biggest < MB and took < 20


# ---------------------------------------------------------------- tasks: RLIMIT_NPROC does not bind root


def test_a_thread_bomb_is_bounded_by_the_pids_cgroup_even_as_root(tmp_path):
    """Outside: the job's task count, summed over its processes in the host's /proc, never
    passes pids_max (RLIMIT_NPROC does not bind uid 0; the cgroup does), and the job's cgroup
    is gone afterwards."""
    kind = iso.pids_limit_kind()
    if not kind.startswith("cgroup"):  # a machine without a writable cgroup: rlimits only, as --check says
        pytest.skip(f"not applicable: no pids cgroup here ({kind})")
    r, log, work, s, took = run_job(
        """
        import threading, time
        n = 0
        try:
            while n < 5000:
                threading.Thread(target=time.sleep, args=(3,), daemon=True).start(); n += 1
        except RuntimeError as e:
            print("threads:", n, e, flush=True)
        time.sleep(1)
    """,
        tmp_path,
        pids_max=40,
    )
    assert "threads:" in log, log
    assert 0 < s.max_tasks <= 40, s.max_tasks
    groups = Path(iso._cgroup_parent()[0], iso._CGROUP_GROUP)
    left = [p.name for p in groups.iterdir() if p.name.startswith(f"job-{os.getpid()}-")] if groups.is_dir() else []
    assert left == [], f"job cgroups left behind: {left}"


def test_tmpfs_pages_and_heap_are_bounded_by_the_memory_cgroup(tmp_path):
    """The job's tmpfs pages (a deleted file in /job) and heap count against no rlimit; with a
    memory cgroup of 96 MB, outside: the job's resident memory plus the deleted files it holds,
    summed from the host's /proc, never passes 96 MB, and the job is ended (the OOM killer)."""
    kind = iso.memory_limit_kind()
    if not kind.startswith("cgroup"):  # a machine without a writable cgroup: rlimits only, as --check says
        pytest.skip(f"not applicable: no memory cgroup here ({kind})")
    r, log, work, s, took = run_job(
        """
        import os, time
        f = open("/job/ghost", "wb"); os.unlink("/job/ghost")
        for i in range(60):
            f.write(b"x" * (1 << 20)); f.flush()
        print("60 MB in /job", flush=True)
        heap = []
        for i in range(400):
            heap.append(bytearray(1 << 20))
        print("heap", len(heap), flush=True)
        time.sleep(2)
    """,
        tmp_path,
        work_mb=128,
        memory_max_mb=96,
    )
    assert "60 MB in /job" in log and "heap 400" not in log, log
    assert r.returncode != 0, r
    assert 0 < s.max_mem_bytes <= 96 * MB + 4 * MB, s.max_mem_bytes


# ---------------------------------------------------------------- fds, signals, /proc, devices


def test_the_job_inherits_no_parent_fd(tmp_path):
    """The parent passes bwrap a seccomp fd, an info pipe, a block pipe and one fd per input
    file. Outside: while the job sleeps, it holds nothing but its stdio (the log pipe and
    /dev/null) and what it opened itself."""
    r, log, work, s, took = run_job(
        """
        import os, time
        for fd in range(3, 256):
            try:
                os.write(fd, b"INJECTED")
            except OSError:
                pass
        time.sleep(1)
    """,
        tmp_path,
    )
    assert r.returncode == 0, log
    odd = {t for t in s.fd_targets if not (t.startswith("pipe:") or t == "/dev/null" or t.startswith("/job"))}
    assert odd == set(), odd
    pipes = {t for t in s.fd_targets if t.startswith("pipe:")}
    assert len(pipes) <= 1, f"the job holds more than its log pipe: {pipes}"


def test_signals_to_every_pid_and_group_reach_nothing_outside(tmp_path):
    """kill(-1), killpg of every group id up to 4096 and kill of the host pid of an outside
    sleeper (in the parent's own process group): outside, the sleeper is alive afterwards."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        r, log, work, s, took = run_job(
            f"""
            import os, signal
            for sig in (signal.SIGKILL, signal.SIGTERM):
                for pid in ({sleeper.pid}, {os.getpid()}, {os.getppid()}):
                    try: os.kill(pid, sig)
                    except OSError: pass
                for g in range(2, 4096):
                    try: os.killpg(g, sig)
                    except OSError: pass
            print("sent", flush=True)
            os.kill(-1, signal.SIGKILL)
        """,
            tmp_path,
        )
        assert sleeper.poll() is None, "an outside process was killed"
        assert took < 25
    finally:
        sleeper.kill()
        sleeper.wait()


def test_proc_and_device_tricks_leak_nothing(tmp_path, monkeypatch):
    """The job reads every /proc path that could lead back to the parent (its environ through
    pid 1, /proc/self/root/.., mountinfo, /proc/1/cwd) and writes to /dev/kmsg, /dev/console
    and /dev/tty. Outside: the parent's secret and a host file's content are nowhere in the
    log, and the host kernel log has no line from the job."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    host_file = tmp_path / "host-secret.txt"
    host_file.write_text("HOSTFILE-" + SECRET)
    mark = f"KMSG-{uuid.uuid4().hex[:8]}"
    r, log, work, s, took = run_job(
        f"""
        import os, glob
        seen = []
        for p in ["/proc/1/environ", "/proc/self/environ", "/proc/1/cmdline", "/proc/self/mountinfo",
                  "/proc/1/root/{host_file}", "/proc/self/root/../../{host_file}", "/proc/1/cwd/../{host_file.name}",
                  "{host_file}"] + glob.glob("/proc/*/environ"):
            try:
                seen.append(open(p, "rb").read(1 << 16))
            except OSError as e:
                seen.append(repr(e).encode())
        for dev in ("/dev/kmsg", "/dev/console", "/dev/tty"):
            try:
                with open(dev, "w") as f: f.write("{mark}\\n")
            except OSError as e:
                print(dev, e.strerror)
        print(b"".join(seen).decode("latin-1"))
    """,
        tmp_path,
    )
    assert SECRET not in log and "HOSTFILE" not in log, "a secret reached the job"
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True)
    if dmesg.returncode == 0:
        assert mark not in dmesg.stdout, "the job wrote to the host kernel log"


def test_processes_and_timeouts_leave_nothing_behind(tmp_path):
    """A job that tries fork, vfork-like clone(CLONE_VM|CLONE_VFORK), clone(CLONE_PARENT) and
    posix_spawn, then blocks on a FIFO it made in /job past its timeout, while a non-daemon
    thread sleeps. Outside: no process of the job after run_jailed, which returns within the
    timeout plus the kill grace, and the job's cgroup is gone."""
    r, log, work, s, took = run_job(
        """
        import ctypes, os, threading, time
        libc = ctypes.CDLL(None, use_errno=True)
        for flags in (0x11, 0x4111, 0x8011):  # SIGCHLD; |CLONE_VM|CLONE_VFORK; |CLONE_PARENT
            pid = libc.syscall(56, flags, 0, 0, 0, 0)
            if pid == 0:
                time.sleep(60); os._exit(0)
            print("clone", hex(flags), pid, ctypes.get_errno(), flush=True)
        for f in (os.fork, lambda: os.posix_spawn("/usr/bin/sleep", ["sleep", "60"], {})):
            try: print("started", f(), flush=True)
            except OSError as e: print("refused", e.strerror, flush=True)
        threading.Thread(target=time.sleep, args=(120,)).start()
        os.mkfifo("/job/wait")
        open("/job/wait").read()
    """,
        tmp_path,
        timeout_s=3,
    )
    assert r.timed_out and took < 3 + 15, (r, took)
    assert "started" not in log, log


def test_links_fifos_and_sockets_in_the_work_dir_never_reach_the_host(tmp_path):
    """After the job, what it left in /job is copied to the host work dir. It leaves a symlink
    to /etc/shadow where an output goes, a FIFO, a Unix socket, a hard link and a folder chain
    deeper than PATH_MAX. Outside: the host work dir holds only plain files and folders, none
    of them a link, and nothing of /etc/shadow."""
    r, log, work, s, took = run_job(
        """
        import os, socket
        os.makedirs("/job/out", exist_ok=True)
        os.symlink("/etc/shadow", "/job/out/asset.glb")
        os.symlink("/", "/job/root")
        os.mkfifo("/job/out/asset.blend")
        sk = socket.socket(socket.AF_UNIX); sk.bind("/job/out/asset.fbx")
        os.link("/job/job.py", "/job/out/hard")
        d = os.open("/job", os.O_RDONLY)
        for i in range(120):
            os.mkdir("d" * 200, dir_fd=d); n = os.open("d" * 200, os.O_RDONLY, dir_fd=d); os.close(d); d = n
    """,
        tmp_path,
    )
    kinds = set()  # what the host work dir holds, by lstat: never following anything the job made
    for dirpath, dirnames, filenames in os.walk(work, followlinks=False):
        for name in dirnames + filenames:
            mode = os.lstat(os.path.join(dirpath, name)).st_mode
            kinds.add("dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else oct(stat.S_IFMT(mode)))
    assert kinds <= {"dir", "file"}, kinds
    assert not (work / "out" / "asset.glb").exists() and not (work / "root").exists()
    assert iso.remove_tree(work)


# ---------------------------------------------------------------- what the executor hands on (Blender)

BOX = """
import bpy
bpy.ops.mesh.primitive_cube_add(size=1)
"""


def _sandbox(**kw) -> SandboxSettings:
    base = {"timeout_s": 90, "cpu_s": 90, "memory_mb": 4096, "work_mb": 256}
    base.update(kw)
    return SandboxSettings(**base)


def _run(src: str, out: Path, runtime, formats=("glb",), **kw):
    bwrap()
    return asyncio.run(run_script(src, out_dir=out, formats=list(formats), sandbox=_sandbox(**kw), runtime=runtime))


def _forged_glb(doc: dict, blob: bytes = b"") -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js
    if blob:
        blob += b"\0" * (-len(blob) % 4)
        body += struct.pack("<II", len(blob), 0x004E4942) + blob
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


@pytest.mark.blender
def test_forged_glb_outputs_are_refused(blender_runtime, tmp_path):
    """The script replaces the executor's own export (it runs in the same interpreter) and
    writes a GLB whose image is ``file:///etc/shadow`` (a viewer would read that path on the
    user's machine) or whose buffer is larger than its BIN chunk. Outside: the run fails with
    the reason and nothing is left in the output folder."""
    cases = {
        "external uri": {
            "asset": {"version": "2.0"},
            "images": [{"uri": "file:///etc/shadow"}],
            "buffers": [{"byteLength": 4}],
        },
        "buffer past the chunk": {"asset": {"version": "2.0"}, "buffers": [{"byteLength": 1 << 30}]},
    }
    for what, doc in cases.items():
        data = _forged_glb(doc, b"\0\0\0\0")
        src = BOX + textwrap.dedent(f"""
            import __main__
            def _export(fmt, path, _data={data!r}, _open=open):
                _open(path, "wb").write(_data)
            __main__._export = _export
        """)
        out = tmp_path / what.replace(" ", "-")
        r = _run(src, out, blender_runtime)
        assert not r.ok and "glb output was refused" in r.error, (what, r.error, r.log_tail[-800:])
        assert not out.exists() or list(out.iterdir()) == [], (what, list(out.iterdir()))


@pytest.mark.blender
def test_a_save_handler_cannot_plant_auto_run_code_in_the_blend(blender_runtime, tmp_path):
    """bpy.app.handlers.save_pre fires during the executor's own .blend save: the handler adds a
    registered text block (auto-runs when the file is opened with scripts allowed) and a
    scripted driver. Outside: the .blend is refused (read as data, never loaded) and is not in
    the output folder; the GLB of the same run is not handed on either."""
    src = BOX + textwrap.dedent("""
        import bpy
        from bpy.app.handlers import persistent
        @persistent
        def plant(*_, bpy=bpy):  # the executor clears the script's globals after it runs: bind what it needs
            t = bpy.data.texts.new("startup.py")
            t.write("import os; os.system('touch /tmp/pwned')")
            t.use_module = True
            fc = bpy.data.objects[0].driver_add("location", 0)
            fc.driver.type = "SCRIPTED"
            fc.driver.expression = "__import__('os').getpid()"
        bpy.app.handlers.save_pre.append(plant)
    """)
    out = tmp_path / "out"
    r = _run(src, out, blender_runtime, formats=("glb", "blend"))
    assert not r.ok and "blend output was refused" in r.error and "Text datablock" in r.error, (
        r.error,
        r.log_tail[-800:],
    )
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.blender
def test_hostile_result_json_and_special_files_leave_the_parent_standing(blender_runtime, tmp_path):
    """result.json replaced by 400000 nested brackets (a recursive parser's stack), then the
    output replaced by a FIFO (a reader that opens it hangs). Outside: run_script returns
    within its timeout with a failure, and the output folder is empty."""
    nested = BOX + textwrap.dedent("""
        import _job
        def write_json(path, obj):
            with open(path, "w") as f:
                f.write("[" * 400000 + "]" * 400000)
        _job.write_json = write_json
    """)
    t0 = time.perf_counter()
    r = _run(nested, tmp_path / "a", blender_runtime, timeout_s=60)
    assert not r.ok and time.perf_counter() - t0 < 60, r.error
    fifo = BOX + textwrap.dedent("""
        import __main__, os
        __main__._export = lambda fmt, path, _os=os: _os.mkfifo(path)
    """)
    t0 = time.perf_counter()
    r = _run(fifo, tmp_path / "b", blender_runtime, timeout_s=60)
    assert not r.ok and "could not be taken" in r.error and time.perf_counter() - t0 < 60, r.error
    for d in (tmp_path / "a", tmp_path / "b"):
        assert not d.exists() or list(d.iterdir()) == []


# ---------------------------------------------------------------- ordinary scripts still succeed

LEGIT_MODIFIERS = """
import bpy
bpy.ops.mesh.primitive_cube_add(size=1)
base = bpy.context.active_object
for kind, attrs in (("ARRAY", {"count": 3}), ("BEVEL", {"width": 0.05}), ("SOLIDIFY", {"thickness": 0.02})):
    m = base.modifiers.new(kind.title(), kind)
    for k, v in attrs.items():
        setattr(m, k, v)
bpy.ops.mesh.primitive_uv_sphere_add(radius=0.4, location=(0.5, 0, 0))
cutter = bpy.context.active_object
b = base.modifiers.new("Cut", "BOOLEAN")
b.object, b.operation = cutter, "DIFFERENCE"
cutter.hide_render = cutter.hide_viewport = True
mat = bpy.data.materials.new("Steel")
mat.use_nodes = True
mat.node_tree.nodes["Principled BSDF"].inputs["Metallic"].default_value = 0.9
base.data.materials.append(mat)
"""

LEGIT_BMESH_OS = """
import bpy, bmesh, os, sys, json, math, random
out = sys.argv[sys.argv.index("--output") + 1]
assert out == os.environ["COMFY_AVATAR_OUTPUT"]
folder = os.path.dirname(out)
random.seed(1)
bm = bmesh.new()
for i in range(8):
    a = i / 8 * math.tau
    bmesh.ops.create_cube(bm, size=0.2, matrix=__import__("mathutils").Matrix.Translation((math.cos(a), math.sin(a), 0)))
me = bpy.data.meshes.new("Ring")
bm.to_mesh(me)
bm.free()
bpy.context.scene.collection.objects.link(bpy.data.objects.new("Ring", me))
with open(os.path.join(folder, "notes.json"), "w") as f:
    json.dump({"parts": 8}, f)
with open("/tmp/scratch.txt", "w") as f:
    f.write("ok")
print("wrote", os.path.join(os.getcwd(), "out"), os.path.exists(os.path.join(folder, "notes.json")))
"""

LEGIT_SELF_EXPORT = """
import bpy, os, pathlib
from mathutils import Vector
path = pathlib.Path(os.environ["COMFY_AVATAR_OUTPUT"])
bpy.ops.mesh.primitive_cylinder_add(radius=0.3, depth=1.0, location=Vector((0, 0, 0.5)))
bpy.ops.object.shade_smooth()
bpy.ops.export_scene.gltf(filepath=str(path), export_format="GLB")
assert path.is_file() and path.stat().st_size > 0
"""


@pytest.mark.blender
@pytest.mark.parametrize(
    "name, src", [("modifiers", LEGIT_MODIFIERS), ("bmesh-os", LEGIT_BMESH_OS), ("self-export", LEGIT_SELF_EXPORT)]
)
def test_ordinary_scripts_still_succeed_and_pass_the_output_checks(blender_runtime, tmp_path, name, src):
    out = tmp_path / "out"
    r = _run(src, out, blender_runtime, formats=("glb", "blend"))
    assert r.ok, r.error + "\n" + r.log_tail[-1500:]
    assert set(r.outputs) == {"glb", "blend"} and r.result["triangles"] > 10
    assert output_check.check_glb(r.outputs["glb"]) == ""
    assert output_check.check_blend(r.outputs["blend"]) == ""


# ---------------------------------------------------------------- the host-side output checks on forged bytes (no Blender)


def _blend5(*blocks: tuple[bytes, int, bytes]) -> bytes:
    """A Blender 5 file (17-byte header, 32-byte block heads) of (code, sdna index, data) blocks."""
    out = b"BLENDER17-01v0500"
    for code, sdna, data in blocks + ((b"ENDB", 0, b""),):
        out += struct.pack("<4siQqq", code, sdna, 0x1000, len(data), 1) + data
    return out


@pytest.mark.parametrize(
    "data, needle",
    [
        (b"glTF" + struct.pack("<II", 2, 999), "header says 999 bytes"),
        (_forged_glb({"asset": {"version": "2.0"}})[:-2], "header says"),
        (struct.pack("<4sII", b"glTF", 2, 28) + struct.pack("<II", 100, 0x4E4F534A) + b"{}  {}  ", "past the end"),
        (_forged_glb({"a": json.loads("[" * 70 + "]" * 70)}), "nests deeper than 64"),
        (_forged_glb({"buffers": [{"byteLength": 4, "uri": "../../../etc/passwd"}]}), "points outside the file"),
        (
            _forged_glb({"buffers": [{"byteLength": 4}], "bufferViews": [{"buffer": 0, "byteLength": 8}]}, b"\0" * 4),
            "runs outside buffer 0",
        ),
        (_forged_glb({"bufferViews": [{"buffer": 3, "byteLength": 1}]}), "does not exist"),
    ],
)
def test_forged_glb_bytes_are_refused(tmp_path, data, needle):
    p = tmp_path / "x.glb"
    p.write_bytes(data)
    assert needle in output_check.check_glb(p)


def test_a_sound_glb_passes(tmp_path):
    p = tmp_path / "ok.glb"
    p.write_bytes(
        _forged_glb(
            {
                "asset": {"version": "2.0"},
                "buffers": [{"byteLength": 8}],
                "bufferViews": [{"buffer": 0, "byteLength": 8}],
            },
            b"\0" * 8,
        )
    )
    assert output_check.check_glb(p) == ""


@pytest.mark.parametrize(
    "data, needle",
    [
        (b"\x28\xb5\x2f\xfd" + b"\0" * 64, "compressed"),
        (b"\x1f\x8b" + b"\0" * 64, "compressed"),
        (b"NOTBLEND" * 4, "not a .blend"),
        (_blend5((b"TX\0\0", 0, b"print('hi')")), "Text datablock"),
        (_blend5((b"LI\0\0", 0, b"/etc/other.blend")), "linked library"),
        (_blend5((b"OB\0\0", 0, b"x" * 8))[:-40], "past the end"),
        (b"BLENDER17-01v0500" + struct.pack("<4siQqq", b"DATA", 0, 0, 1 << 40, 1), "past the end"),
        (_blend5((b"OB\0\0", 0, b"x" * 8)), "no struct catalogue"),
    ],
)
def test_forged_blend_bytes_are_refused(tmp_path, data, needle):
    """Read as data, never loaded: every defect is a refusal with the reason, never an exception."""
    p = tmp_path / "x.blend"
    p.write_bytes(data)
    assert needle in output_check.check_blend(p)


def test_hard_links_cannot_amplify_the_copy_back(tmp_path):
    """One 8 MB file hard-linked 500 times takes 8 MB of the job's tmpfs but would be 4 GB if
    every name were copied to the host. Outside: the host work dir holds at most work_mb."""
    r, log, work, s, took = run_job(
        """
        import os
        with open("/job/big", "wb") as f:
            f.write(b"z" * (8 << 20))
        for i in range(500):
            os.link("/job/big", f"/job/l{i}")
    """,
        tmp_path,
        work_mb=32,
    )
    held = sum(p.stat().st_size for p in work.rglob("*") if p.is_file() and not p.is_symlink())
    assert held <= 32 * MB + 64 * 1024, held  # work_mb of copies, plus the parent's own inputs (job.py)
    assert r.quota, r  # the job is refused for what it left, not silently cut
