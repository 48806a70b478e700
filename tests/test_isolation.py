"""OS isolation (core/runtime/isolation.py) without Blender: the seccomp program, the bwrap
command line, the parent's distrust of the work dir, fail-closed refusal, and small jobs run
in a real sandbox with the host Python (fast: ~0.1 s a launch).

Where a test needs bubblewrap it skips locally without it and fails under CI=true (CI installs it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import need

from comfy_avatar_nodes.core.config import PACK_DIR, SandboxSettings, load_settings
from comfy_avatar_nodes.core.executor import sandbox as sb
from comfy_avatar_nodes.core.runtime import isolation as iso
from comfy_avatar_nodes.core.runtime.blender import BlenderRuntime

HOST_PY = os.path.realpath(sys.executable)  # the base interpreter, outside the pack (pyenv here)
HOST_PREFIX = sys.base_prefix
SECRET = "sk-canary-iso-6b0f3e"


def bwrap_status() -> iso.Status:
    st = iso.check()
    need(st.ok, f"bubblewrap isolation is not available here: {st.problem}")
    return st


def py_jail(**kw) -> iso.Jail:
    return iso.Jail(bwrap=bwrap_status().bwrap, ro_paths=(HOST_PREFIX,), **kw)


def run_py(code: str, tmp_path: Path, jail: iso.Jail | None = None, timeout_s: float = 30, env=None):
    """Run ``code`` with the host Python in a jail; (JailedRun, log text, work dir, seconds)."""
    base = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    work = base / "job"
    work.mkdir(parents=True)
    (work / "job.py").write_text(textwrap.dedent(code))
    jail = jail or py_jail()
    log = base / "job.log"
    t0 = time.perf_counter()
    r = asyncio.run(
        iso.run_jailed(
            [HOST_PY, "-I", "-S", "job.py"],
            work=work,
            env=env or {"PATH": "/usr/bin:/bin"},
            jail=jail,
            log_path=log,
            timeout_s=timeout_s,
        )
    )
    return r, log.read_text(errors="replace"), work, time.perf_counter() - t0


# ---------------------------------------------------------------- seccomp


def _header_numbers(path: str, pattern: str) -> dict[str, int]:
    text = Path(path).read_text()
    return {m.group(1): int(m.group(2)) for m in re.finditer(pattern, text)}


@pytest.mark.parametrize(
    "arch, header, pattern",
    [
        ("x86_64", "/usr/include/x86_64-linux-gnu/asm/unistd_64.h", r"#define __NR_(\w+)\s+(\d+)"),
        ("aarch64", "/usr/include/asm-generic/unistd.h", r"#define __NR(?:3264)?_(\w+)\s+(\d+)"),
    ],
)
def test_seccomp_tables_match_the_kernel_headers(arch, header, pattern):
    if not Path(header).is_file():
        pytest.skip(f"not applicable: {header} is not installed (linux-libc-dev)")
    nums = _header_numbers(header, pattern)
    table = iso._SYSCALLS[arch]
    wrong = {name: (nr, nums.get(name)) for name, nr in table.items() if nums.get(name) != nr}
    assert not wrong, f"syscall numbers differ from {header}: {wrong}"


def test_seccomp_program_is_well_formed():
    prog = iso.seccomp_filter("x86_64")
    assert prog and len(prog) % 8 == 0 and len(prog) // 8 < 4096
    first = prog[:8]
    assert first[:2] == (0x20).to_bytes(2, "little") and first[4:] == (4).to_bytes(4, "little")  # ld arch
    assert iso.seccomp_filter("aarch64") and iso.seccomp_filter("riscv64") is None


def test_seccomp_and_namespaces_in_a_real_sandbox(tmp_path):
    """Each refused call is tried from inside; threads, AF_UNIX sockets and plain files still work."""
    r, log, work, _ = run_py(
        """
        import ctypes, errno, os, socket, threading
        libc = ctypes.CDLL(None, use_errno=True)
        def sc(name, nr, *args):
            res = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
            print(name, "ERR" if res == -1 else "OK", errno.errorcode.get(ctypes.get_errno(), ""), flush=True)
        sc("ptrace", 101, 16, 1, 0, 0)          # PTRACE_ATTACH to pid 1
        sc("unshare_user", 272, 0x10000000)
        sc("mount", 165, 0, 0, 0, 0, 0)
        sc("keyctl", 250, 0, 0, 0, 0, 0)
        sc("bpf", 321, 0, 0, 0)
        sc("io_uring_setup", 425, 1, 0)
        sc("perf_event_open", 298, 0, 0, -1, -1, 0)
        sc("userfaultfd", 323, 0)
        sc("clone3", 435, 0, 0)
        sc("x32_getpid", 0x40000000 + 39)
        sc("setns", 308, 0, 0)
        sc("memfd_create", 319, 0, 0)
        sc("shmget", 29, 0, 1 << 20, 0o1000 | 0o600)
        for fam, name in ((socket.AF_INET, "inet"), (socket.AF_INET6, "inet6"), (socket.AF_NETLINK, "netlink"),
                          (socket.AF_PACKET, "packet")):
            try:
                socket.socket(fam, socket.SOCK_RAW if fam == socket.AF_PACKET else socket.SOCK_DGRAM); print(name, "OK")
            except OSError as e:
                print(name, "ERR", errno.errorcode.get(e.errno, ""))
        try:
            os.fork(); print("fork OK")
        except OSError as e:
            print("fork ERR", errno.errorcode.get(e.errno, ""))
        a, b = socket.socketpair(); a.send(b"x"); print("unix", "OK" if b.recv(1) == b"x" else "ERR")
        out = []
        t = threading.Thread(target=lambda: out.append(1)); t.start(); t.join(); print("thread", "OK" if out else "ERR")
        open("/job/ok.txt", "w").write("fine"); print("workdir", "OK")
        for p in ("/proc/sys/kernel/core_pattern", "/etc/x", "/usr/x", "/x", HOST):
            try:
                os.open(p, os.O_WRONLY | os.O_CREAT); print("write", p, "OK")
            except OSError as e:
                print("write", p, "ERR", errno.errorcode.get(e.errno, ""))
        print("uid", os.getuid())
        print("ROOT", " ".join(sorted(os.listdir("/"))))
        print("ETC", " ".join(sorted(os.listdir("/etc"))))
        print("ROOTHOME", " ".join(sorted(os.listdir("/root"))) if os.path.isdir("/root") else "-")
        print("ENV", " ".join(sorted(os.environ)))
        print("DONE")
    """.replace("HOST", repr(str(tmp_path / "host.txt"))),
        tmp_path,
    )
    assert r.returncode == 0, log
    lines = dict(line.split(" ", 1) for line in log.splitlines() if " " in line)
    for name in (
        "ptrace",
        "unshare_user",
        "mount",
        "keyctl",
        "bpf",
        "io_uring_setup",
        "perf_event_open",
        "userfaultfd",
        "setns",
        "memfd_create",
        "shmget",
        "inet",
        "inet6",
        "netlink",
        "packet",
        "fork",
    ):
        assert lines[name].startswith("ERR EPERM"), (name, lines[name])
    assert lines["clone3"] == "ERR ENOSYS" and lines["x32_getpid"] == "ERR ENOSYS"
    assert lines["unix"] == "OK" and lines["thread"] == "OK" and lines["workdir"] == "OK"
    assert "write /proc/sys/kernel/core_pattern ERR EROFS" in log
    assert f"write {tmp_path / 'host.txt'} ERR" in log and not (tmp_path / "host.txt").exists()
    assert lines["uid"] == "65534" and set(lines["ETC"].split()) <= {"ld.so.cache", "localtime"}
    root = set(lines["ROOT"].split())
    assert root <= {
        "bin",
        "sbin",
        "lib",
        "lib32",
        "lib64",
        "libx32",
        "usr",
        "etc",
        "proc",
        "dev",
        "tmp",
        "job",
        "root",
        "opt",
        "work",
        "home",
    }, root  # mount points of the binds only
    assert lines["ROOTHOME"] in ("-", ".pyenv"), lines["ROOTHOME"]  # only the folder above the Python prefix
    assert set(lines["ENV"].split()) <= {"PATH", "PWD", "LC_CTYPE"}
    assert (work / "ok.txt").read_text() == "fine"


def test_the_i386_abi_kills_the_job(tmp_path):
    """int 0x80 (32-bit syscalls, which a filter for x86_64 numbers would not see) ends the process."""
    if iso.platform.machine() != "x86_64":
        pytest.skip("not applicable: x86_64 only")
    r, log, _, _ = run_py(
        """
        import ctypes, mmap
        code = b"\\xb8\\x14\\x00\\x00\\x00\\xcd\\x80\\xc3"   # mov eax, 20 (getpid); int 0x80; ret
        buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        buf.write(code)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        print("calling", flush=True)
        print("RETURNED", ctypes.CFUNCTYPE(ctypes.c_int)(addr)(), flush=True)
    """,
        tmp_path,
    )
    assert "calling" in log and "RETURNED" not in log
    assert r.returncode == -31, (r.returncode, log)  # SIGSYS


# ---------------------------------------------------------------- the command line


def test_jail_argv_binds_only_what_the_job_needs(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    work = tmp_path / "job"
    work.mkdir()
    jail = iso.Jail(bwrap="/usr/bin/bwrap", ro_paths=("/opt/rt",), tmp_mb=100, work_mb=10)
    argv, fds = jail.argv(["/opt/rt/bin/python", "x.py"], work, {"HOME": "/job/home"})
    try:
        joined = " ".join(argv)
        for flag in (
            "--unshare-user",
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
        ):
            assert flag in argv
        assert argv[argv.index("--uid") + 1] == "65534" and argv[argv.index("--gid") + 1] == "65534"
        binds = [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a in ("--bind", "--ro-bind", "--bind-try")]
        writable = [b for i, b in enumerate(binds) if argv[argv.index(b[0]) - 1] == "--bind"]
        assert writable == []  # no host folder is writable: /job is a tmpfs of work_mb the kernel enforces
        assert f"--size {10 * 1024 * 1024} --tmpfs /job" in " ".join(argv)
        sources = {s for s, _ in binds}
        assert "/" not in sources and "/root" not in sources and "/home" not in sources and "/etc" not in sources
        assert str(PACK_DIR) not in sources and ("/opt/rt", "/opt/rt") in binds
        assert "--ro-bind-try /proc/sys /proc/sys" in joined and "--remount-ro /" in joined
        assert f"--size {100 * 1024 * 1024} --tmpfs /tmp" in joined
        assert argv[argv.index("--seccomp") + 1] == str(fds[0])
        assert argv[-3:] == ["--", "/opt/rt/bin/python", "x.py"] and SECRET not in joined
        assert SECRET not in str(iso.launch_env())
    finally:
        for fd in fds:
            os.close(fd)
    assert iso.Jail().argv(["a"], work, {}) == (["a"], [])  # isolation none: the command as is


def test_runtime_roots_never_expose_the_pack_or_a_home(tmp_path):
    assert iso.safe_root("/") is None and iso.safe_root("/root") is None and iso.safe_root("/home") is None
    assert iso.safe_root(str(PACK_DIR)) is None and iso.safe_root(str(PACK_DIR.parent)) is None
    assert iso.safe_root(str(PACK_DIR / "blender_cli")) == str(PACK_DIR / "blender_cli")
    bdir = tmp_path / "blender-4.2"
    bdir.mkdir()
    assert iso.runtime_roots("binary", str(bdir / "blender")) == (str(bdir),)
    dev = iso.runtime_roots("python", sys.executable)  # the dev venv: its base prefix and the venv itself
    assert HOST_PREFIX in dev and str(PACK_DIR) not in dev and "/root" not in dev
    # a runtime whose sys.path holds the pack (or a home folder) is refused, with the fix
    fake = tmp_path / "fakepy"
    fake.write_text(f'#!/bin/sh\necho \'{{"prefixes": [], "path": ["{PACK_DIR}"], "bpy": []}}\'\n')
    fake.chmod(0o755)
    with pytest.raises(iso.IsolationUnavailable, match="holds the pack or a home folder"):
        iso.runtime_roots("python", str(fake))


def test_blender_runtime_roots(blender_runtime):
    roots = iso.runtime_roots(blender_runtime.kind, str(blender_runtime.executable))
    assert roots and "/root" not in roots and str(PACK_DIR) not in roots
    assert all(iso.safe_root(r) == r for r in roots)


# ---------------------------------------------------------------- reading what a job left


def test_open_regular_refuses_everything_but_a_plain_file(tmp_path):
    work = tmp_path / "job"
    (work / "out").mkdir(parents=True)
    (work / "out" / "ok.glb").write_bytes(b"glTF" * 10)
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    os.symlink(secret, work / "out" / "link.glb")
    os.symlink(tmp_path, work / "dirlink")
    os.mkfifo(work / "out" / "fifo.glb")
    (work / "out" / "sub").mkdir()
    (work / "out" / "big.glb").write_bytes(b"x" * 1000)
    assert iso.read_regular(work, "out/ok.glb", 100) == b"glTF" * 10
    t0 = time.perf_counter()
    for rel, why in [
        ("out/link.glb", "symlink"),
        ("dirlink/secret.txt", "not a plain folder"),
        ("out/fifo.glb", "not a regular file"),
        ("out/sub", "not a regular file"),
        ("out/big.glb", "over the 100-byte limit"),
        ("../secret.txt", "not a plain relative path"),
        (str(secret), "not a plain relative path"),
        ("out/missing.glb", "cannot be opened"),
    ]:
        with pytest.raises(iso.UntrustedFile, match=why):
            iso.read_regular(work, rel, 100)
    assert time.perf_counter() - t0 < 2  # the FIFO did not block
    assert iso.read_json(work, "out/link.glb") is None
    dest = tmp_path / "copied.glb"
    assert iso.copy_out(work, "out/ok.glb", dest, 100) == 40 and dest.read_bytes() == b"glTF" * 10
    with pytest.raises(iso.UntrustedFile):
        iso.copy_out(work, "out/link.glb", tmp_path / "c2.glb", 100)
    assert not (tmp_path / "c2.glb").exists() and not list(tmp_path.glob(".c2.glb*"))
    (work / "deep.json").write_text("[" * 100000 + "]" * 100000)
    assert iso.read_json(work, "deep.json") is None  # RecursionError is not a crash


def test_remove_tree_never_follows_links_out(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    work = tmp_path / "base" / "job"
    (work / "a" / "b").mkdir(parents=True)
    os.symlink(outside, work / "escape")
    os.symlink(outside / "keep.txt", work / "a" / "keep-link")
    os.symlink("../../..", work / "a" / "b" / "up")
    (work / "a" / "b" / "f").write_text("x")
    os.chmod(work / "a" / "b", 0)
    os.chmod(work / "a", 0)
    assert iso.remove_tree(tmp_path / "base")
    assert not (tmp_path / "base").exists() and (outside / "keep.txt").read_text() == "keep"


def test_tree_usage_stops_early(tmp_path):
    for i in range(50):
        (tmp_path / f"f{i}").write_bytes(b"x" * 5000)
    used, entries = iso.tree_usage(tmp_path, 10**9, 10)
    assert entries == 11
    used, entries = iso.tree_usage(tmp_path, 10**9, 10**6)
    assert entries == 50 and used >= 50 * 4096


# ---------------------------------------------------------------- fail closed


def test_check_reports_a_missing_bwrap(tmp_path):
    st = iso.check(str(tmp_path / "no" / "bwrap"), refresh=True)
    assert not st.ok and "no bubblewrap executable" in st.problem and "apt-get install bubblewrap" in st.fix
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    st = iso.check(str(fake), refresh=True)
    assert not st.ok  # no version: refused before any launch
    assert st.describe().startswith("not available")


def test_untrusted_script_is_refused_without_isolation(tmp_path, monkeypatch):
    """isolation unavailable (sandbox.bwrap names a missing binary): refused with the fix, never run."""
    settings = load_settings({"COMFY_AVATAR__SANDBOX__BWRAP": str(tmp_path / "missing" / "bwrap")})
    assert settings.sandbox.isolation == "bwrap"

    async def must_not_run(*a, **k):
        raise AssertionError("the script was started although isolation is unavailable")

    monkeypatch.setattr(sb, "run_blender", must_not_run)
    rt = BlenderRuntime("python", Path(HOST_PY), "5.0.1")
    canary = tmp_path / "ran.txt"
    src = f"open({str(canary)!r}, 'w').write('ran')\n"
    with pytest.raises(sb.IsolationUnavailable) as ei:
        asyncio.run(
            sb.run_script(src, out_dir=tmp_path / "out", sandbox=settings.sandbox, runtime=rt, blender=settings.blender)
        )
    msg = str(ei.value)
    assert "only under OS isolation" in msg and "not run" in msg and str(tmp_path / "missing" / "bwrap") in msg
    assert "apt-get install bubblewrap" in msg and "sandbox.isolation: none" in msg
    assert not canary.exists() and not (tmp_path / "out").exists()


def test_isolation_mode_is_checked_and_none_warns_every_run(tmp_path, caplog):
    rt = BlenderRuntime("python", Path(HOST_PY), "5.0.1")
    s = load_settings({}).blender
    with pytest.raises(sb.AvatarError, match="'bwarp' is not a mode"):
        sb.jail_for(SandboxSettings(isolation="bwarp"), rt, s)
    caplog.set_level(logging.WARNING, "comfy_avatar.sandbox")
    for _ in range(2):
        jail = sb.jail_for(SandboxSettings(isolation="none"), rt, s)
        assert not jail.isolated
    warned = [r for r in caplog.records if "WITHOUT OS isolation" in r.getMessage()]
    assert len(warned) == 2


# ---------------------------------------------------------------- the parent's side of a run


def test_log_flood_is_capped_and_the_run_returns(tmp_path):
    r, log, _, took = run_py(
        """
        import os
        chunk = b"flood " * 10000 + b"\\n"
        for _ in range(1000):      # ~60 MB
            os.write(1, chunk)
        os.write(2, b"THE END\\n")
    """,
        tmp_path,
        jail=py_jail(log_mb=1),
    )
    assert r.returncode == 0 and took < 30
    assert len(log.encode()) < 1024 * 1024 + iso._LogPump.TAIL + 1000
    assert "bytes of output dropped" in log and log.rstrip().endswith("THE END")


def test_work_dir_quota_and_file_count_kill_the_job(tmp_path):
    r, log, work, took = run_py(
        """
        import os
        i = 0
        while True:
            with open(f"/job/f{i}", "wb") as f:
                f.write(os.urandom(1 << 20))
            i += 1
    """,
        tmp_path,
        jail=py_jail(work_mb=20, poll_s=0.05),
        timeout_s=60,
    )
    # the kernel refuses the write past work_mb (a tmpfs of that size): the job stops with ENOSPC
    assert "No space left on device" in log and r.returncode != 0 and took < 30, (r, log)
    assert "filled its work dir past the limit" in r.quota
    used, _ = iso.tree_usage(work, 1 << 40, 1 << 30)
    assert used < 200 * 1024 * 1024
    r, log, work, took = run_py(
        """
        import os
        i = 0
        while True:
            os.mkdir(f"/job/d{i}"); i += 1
    """,
        tmp_path,
        jail=py_jail(max_files=500, poll_s=0.05),
        timeout_s=60,
    )
    assert "entries" in r.quota and took < 30


def _pid_ns_members(inode: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (
                    os.readlink(d / "ns" / "pid") == inode
                    and (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
                ):
                    found.append(int(d.name))
            except OSError:
                continue
    return found


def test_timeout_kills_the_whole_job_and_nothing_outside(tmp_path):
    outside = subprocess.Popen(["sleep", "120"])
    try:
        r, log, _, took = run_py(
            f"""
            import os, signal, threading, time
            print("NS", os.readlink("/proc/self/ns/pid"), flush=True)
            for pid in ({outside.pid}, 1, -1):
                try:
                    os.kill(pid, signal.SIGKILL); print("kill", pid, "OK", flush=True)
                except OSError as e:
                    print("kill", pid, "ERR", e.errno, flush=True)
            try:
                fd = os.pidfd_open({outside.pid}); signal.pidfd_send_signal(fd, signal.SIGKILL); print("pidfd OK")
            except OSError as e:
                print("pidfd ERR", e.errno, flush=True)
            for _ in range(20):
                threading.Thread(target=time.sleep, args=(600,)).start()
            time.sleep(600)
        """,
            tmp_path,
            timeout_s=3,
        )
        assert r.timed_out and took < 15, (took, log)
        ns = re.search(r"NS (pid:\[\d+\])", log).group(1)
        assert ns != os.readlink("/proc/self/ns/pid") and r.pid_namespace == ns  # its own pid namespace
        assert _pid_ns_members(ns) == [], "a process of the job outlived run_jailed"
        assert outside.poll() is None, "a process outside the sandbox was killed"
    finally:
        outside.kill()
        outside.wait()


def test_loopback_listener_receives_nothing(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.2)
    port, got = srv.getsockname()[1], []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                got.append(srv.accept())
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(f"\0comfy-avatar-canary-{port}")
    abstract.listen(1)
    try:
        r, log, _, _ = run_py(
            f"""
            import socket
            for fam, addr in ((socket.AF_INET, ("127.0.0.1", {port})), (socket.AF_UNIX, "\\0comfy-avatar-canary-{port}")):
                try:
                    s = socket.socket(fam); s.settimeout(2); s.connect(addr); s.sendall(b"hi"); print("CONNECTED", addr)
                except OSError as e:
                    print("NOCONN", e)
        """,
            tmp_path,
        )
        assert r.returncode == 0 and "CONNECTED" not in log and log.count("NOCONN") == 2
        abstract.settimeout(0.5)
        with pytest.raises(OSError):
            abstract.accept()
    finally:
        stop.set()
        t.join(2)
        srv.close()
        abstract.close()
    assert got == []


def test_install_check_reports_isolation(tmp_path):
    """install.py --check says whether isolation works, and with the fix when it does not."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFY_AVATAR")}
    proc = subprocess.run(
        [sys.executable, str(PACK_DIR / "install.py"), "--check"], capture_output=True, text=True, timeout=300, env=env
    )
    lines = [ln for ln in proc.stdout.splitlines() if "isolation" in ln or "model workers" in ln]
    st = iso.check()
    if st.ok:
        assert any(ln.startswith("[comfy-avatar] sandbox isolation: OK: bubblewrap") for ln in lines), proc.stdout
    kind = iso.pids_limit_kind()  # which limit bounds a job's tasks: the cgroup, or RLIMIT_NPROC with the caveat
    assert f"[comfy-avatar] sandbox task limit: {kind}, sandbox.nproc=" in proc.stdout, proc.stdout
    assert f"[comfy-avatar] sandbox memory limit: {iso.memory_limit_kind()}" in proc.stdout, proc.stdout
    env["COMFY_AVATAR__SANDBOX__BWRAP"] = str(tmp_path / "missing-bwrap")
    proc = subprocess.run(
        [sys.executable, str(PACK_DIR / "install.py"), "--check"], capture_output=True, text=True, timeout=300, env=env
    )
    out = proc.stdout
    assert "sandbox isolation: NOT available: no bubblewrap executable" in out
    assert "refuses model-written scripts until it works. Fix: install bubblewrap" in out
    assert "model workers: host network" in out and proc.stderr.strip() == "", proc.stderr


def test_the_executor_refuses_before_any_attempt(tmp_path, monkeypatch):
    """Through the repair loop too: no attempt is made, no output or attempts log written."""
    from comfy_avatar_nodes.core.executor.agent import build_asset

    async def must_not_run(*a, **k):
        raise AssertionError("the script was started although isolation is unavailable")

    monkeypatch.setattr(sb, "run_blender", must_not_run)
    settings = load_settings({"COMFY_AVATAR__SANDBOX__BWRAP": str(tmp_path / "missing" / "bwrap")})
    rt = BlenderRuntime("python", Path(HOST_PY), "5.0.1")
    with pytest.raises(sb.IsolationUnavailable, match="Fix: install bubblewrap"):
        asyncio.run(
            build_asset(
                {},
                coder=None,
                out_dir=tmp_path / "out",
                formats=["glb"],
                script="import bpy\nbpy.ops.mesh.primitive_cube_add()\n",
                sandbox=settings.sandbox,
                runtime=rt,
            )
        )
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def _deep_chain(root: Path, depth: int) -> None:
    """A folder chain deeper than PATH_MAX, made the way a job can: through directory fds."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        wfd = os.open("payload", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
        os.write(wfd, b"x" * 4096)
        os.close(wfd)
    finally:
        os.close(fd)


def test_a_chain_deeper_than_path_max_counts_as_over_the_limit_and_is_removed(tmp_path):
    """Red-team finding: such a chain was not counted (its folders cannot be opened by path) and
    shutil.rmtree raised RecursionError, so run_script raised and the data stayed on the host."""
    base = tmp_path / "work"
    base.mkdir()
    try:
        _deep_chain(base, 3000)
        used, _ = iso.tree_usage(base, 64 << 20, 20_000)
        assert used > 64 << 20
        assert iso.remove_tree(base)
        assert not base.exists()
    finally:  # never leave the chain behind: pytest's own clean-up of old tmp dirs would recurse on it
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(base)], check=False)


def test_a_sparse_file_counts_with_its_apparent_size(tmp_path):
    """Red-team finding: a 500 MB sparse output took no blocks, passed the quota, and was then copied
    out as 500 MB of real data."""
    f = tmp_path / "t.glb"
    with open(f, "wb") as fh:
        fh.truncate(500 << 20)
    used, entries = iso.tree_usage(tmp_path, 64 << 20, 20_000)
    assert entries == 1 and used >= 500 << 20
