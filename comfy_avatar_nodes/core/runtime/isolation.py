"""OS isolation for code the pack does not trust, with bubblewrap (``bwrap``, Linux).

Two uses:

- **Model-written Blender scripts** (core/executor/sandbox.py -> blender.run_blender(jail=...)):
  :func:`jail_argv` starts the job in new user, pid, net, ipc, uts and cgroup namespaces
  (``--die-with-parent``, ``--new-session``, no further user namespaces), as uid/gid 65534,
  with a cleared environment, read-only binds of only the system libraries (/usr and the
  merged-usr links), ``/etc/ld.so.cache`` and the Blender runtime's own folders, a fresh /proc
  (its /proc/sys and the other host-wide writable files read-only or hidden), a minimal /dev,
  size-limited private tmpfs /tmp and /dev/shm, a read-only root, no network (an empty
  loopback of its own) and one writable folder, ``/job``: a tmpfs of ``work_mb`` that the
  kernel enforces (files deleted while open count too), filled from the host work dir at the
  start and copied back by the parent afterwards (:func:`copy_tree_out`); its task count is a
  pids cgroup limit (:class:`PidsCgroup`), which binds root where RLIMIT_NPROC does not. A seccomp
  filter (:func:`seccomp_filter`) refuses what namespaces do not cover: new processes (only
  threads may be created), ptrace and other processes' memory, keyrings, bpf, perf,
  io_uring, userfaultfd, mount and namespace calls, kernel modules, reboot, non-Unix
  sockets, terminal injection and the x32 ABI.
  :func:`run_jailed` then runs it without trusting anything the job can touch: its output
  comes over a pipe into a log file the job cannot reach (capped), the work dir's size and
  file count are watched and the job is killed past them, and results are read only through
  :func:`open_regular` (a regular file inside the work dir, no symlink anywhere on the way,
  size-capped), copied out, then the dir is removed (:func:`remove_tree`).
- **Model workers** (trusted code, untrusted inputs; core/runtime/workers.py):
  :func:`net_argv` only unshares the network (the whole file system and the GPU stay).

:func:`check` says whether bubblewrap works here (a real launch with every option above,
cached); callers fail closed when it does not. Nothing here imports bpy or any model code.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import logging
import os
import platform
import re
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..config import PACK_DIR
from ..errors import AvatarError
from .procs import kill_group

log = logging.getLogger("comfy_avatar.isolation")

INSIDE_WORK = "/job"
"""Where the job's work dir appears inside the sandbox (its cwd and HOME's parent)."""
SANDBOX_UID = 65534
SANDBOX_HOSTNAME = "sandbox"
INSTALL_FIX = (
    "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; Fedora: `dnf install bubblewrap`) "
    "on a Linux host that allows user namespaces (sysctl kernel.unprivileged_userns_clone=1 / "
    "user.max_user_namespaces > 0; in a container: run it with --security-opt seccomp=unconfined "
    "or as a privileged container), or set sandbox.bwrap to its path; as a last resort, on a machine "
    "where nobody untrusted can reach the prompt, set sandbox.isolation: none (not isolated, warned on "
    "every run)"
)
# Host-wide /proc files the job could write as its mapped user (when the parent runs as root,
# the sandbox's uid is host uid 0 without capabilities, and sysctl/proc checks go by uid):
# bound read-only over the job's own /proc. Files that only leak host information are hidden.
PROC_READONLY = (
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/mtrr",
    "/proc/pressure",
    "/proc/irq",
    "/proc/bus",
    "/proc/acpi",
    "/proc/fs",
    "/proc/driver",
    "/proc/tty",
    "/proc/sysvipc",
)
# Kernel files that help an exploit (heap layout, symbols); readable because the sandbox user
# is the host's uid 0 when ComfyUI runs as root.
PROC_HIDDEN = (
    "/proc/keys",
    "/proc/key-users",
    "/proc/timer_list",
    "/proc/kallsyms",
    "/proc/modules",
    "/proc/slabinfo",
    "/proc/vmallocinfo",
    "/proc/iomem",
    "/proc/ioports",
)
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")
# Never bound (nor a folder above one of them): they would expose the machine, not a runtime.
_NEVER_BIND = (
    "/",
    "/root",
    "/home",
    "/etc",
    "/var",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/tmp",
    "/mnt",
    "/media",
    "/srv",
    "/opt",
    "/boot",
)


class IsolationUnavailable(AvatarError):
    """bubblewrap cannot run here, so an untrusted script is refused (it is never run unisolated)."""


# ---------------------------------------------------------------- seccomp (classic BPF, no libseccomp)

# Syscall numbers: x86_64 from asm/unistd_64.h, aarch64 from asm-generic/unistd.h (tests compare
# both tables with the headers when they are installed).
_SYSCALLS = {
    "x86_64": {
        "ptrace": 101,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "kcmp": 312,
        "process_madvise": 440,
        "pidfd_getfd": 438,
        "keyctl": 250,
        "add_key": 248,
        "request_key": 249,
        "bpf": 321,
        "perf_event_open": 298,
        "userfaultfd": 323,
        "unshare": 272,
        "setns": 308,
        "mount": 165,
        "umount2": 166,
        "pivot_root": 155,
        "chroot": 161,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "move_mount": 429,
        "open_tree": 428,
        "mount_setattr": 442,
        "open_by_handle_at": 304,
        "name_to_handle_at": 303,
        "kexec_load": 246,
        "kexec_file_load": 320,
        "init_module": 175,
        "finit_module": 313,
        "delete_module": 176,
        "reboot": 169,
        "swapon": 167,
        "swapoff": 168,
        "acct": 163,
        "quotactl": 179,
        "quotactl_fd": 443,
        "syslog": 103,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "lookup_dcookie": 212,
        "vhangup": 153,
        "iopl": 172,
        "ioperm": 173,
        "uselib": 134,
        "fork": 57,
        "vfork": 58,
        "memfd_create": 319,
        "memfd_secret": 447,
        "shmget": 29,
        "clone": 56,
        "clone3": 435,
        "socket": 41,
        "ioctl": 16,
    },
    "aarch64": {
        "ptrace": 117,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "kcmp": 272,
        "process_madvise": 440,
        "pidfd_getfd": 438,
        "keyctl": 219,
        "add_key": 217,
        "request_key": 218,
        "bpf": 280,
        "perf_event_open": 241,
        "userfaultfd": 282,
        "unshare": 97,
        "setns": 268,
        "mount": 40,
        "umount2": 39,
        "pivot_root": 41,
        "chroot": 51,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "move_mount": 429,
        "open_tree": 428,
        "mount_setattr": 442,
        "open_by_handle_at": 265,
        "name_to_handle_at": 264,
        "kexec_load": 104,
        "kexec_file_load": 294,
        "init_module": 105,
        "finit_module": 273,
        "delete_module": 106,
        "reboot": 142,
        "swapon": 224,
        "swapoff": 225,
        "acct": 89,
        "quotactl": 60,
        "quotactl_fd": 443,
        "syslog": 116,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "lookup_dcookie": 18,
        "vhangup": 58,
        "memfd_create": 279,
        "memfd_secret": 447,
        "shmget": 194,
        "clone": 220,
        "clone3": 435,
        "socket": 198,
        "ioctl": 29,
    },
}
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# Refused with EPERM: every name in a table except the four checked by argument below.
_CHECKED = ("clone", "clone3", "socket", "ioctl")
_CLONE_THREAD = 0x00010000
_CLONE_NEW_ANY = 0x7E020000  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_AF_UNIX = 1
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C
_RET_ALLOW, _RET_KILL, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_LD_ABS_W, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_X32_BIT = 0x40000000


def seccomp_filter(machine: str | None = None) -> bytes | None:
    """The job's seccomp program (struct sock_filter[], as bwrap --seccomp reads it), or None on
    an architecture without a table here (then only the namespaces apply; check() says so).

    Refused (EPERM): new processes (clone without CLONE_THREAD, fork, vfork; clone3 answers
    ENOSYS so libc falls back to clone for threads), clone with namespace flags, ptrace,
    process_vm_*, kcmp, pidfd_getfd, process_madvise, keyrings, bpf, perf_event_open,
    userfaultfd, unshare/setns, every mount call, open_by_handle_at, kernel modules, kexec,
    reboot, swap, acct, quotactl, syslog, io_uring, iopl/ioperm, memory outside the address-space
    limit and the size-limited tmpfs mounts (memfd_create, memfd_secret, SysV shmget: their pages
    count against neither), socket() of any family but
    AF_UNIX, ioctl TIOCSTI/TIOCLINUX. Another architecture's calls (int 0x80 on x86_64) kill
    the process; x32 calls answer ENOSYS.
    """
    arch = (machine or platform.machine()).lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    table = _SYSCALLS.get(arch)
    if table is None:
        return None
    prog: list[tuple[int, Any, Any, int]] = []  # (code, jt label, jf label, k); labels resolved below
    labels: dict[str, int] = {}

    def op(code: int, k: int, jt: Any = 0, jf: Any = 0) -> None:
        prog.append((code, jt, jf, k))

    def label(name: str) -> None:
        labels[name] = len(prog)

    op(_LD_ABS_W, 4)  # seccomp_data.arch
    op(_JEQ, _AUDIT_ARCH[arch], jt="nr", jf="kill")
    label("kill")
    op(_RET, _RET_KILL)
    label("nr")
    op(_LD_ABS_W, 0)  # seccomp_data.nr
    if arch == "x86_64":
        op(_JGE, _X32_BIT, jt="enosys")
    for name, nr in sorted(table.items(), key=lambda kv: kv[1]):
        if name not in _CHECKED:
            op(_JEQ, nr, jt="eperm")
    op(_JEQ, table["clone3"], jt="enosys")
    op(_JEQ, table["clone"], jt="clone")
    op(_JEQ, table["socket"], jt="socket")
    op(_JEQ, table["ioctl"], jt="ioctl")
    op(_RET, _RET_ALLOW)
    label("clone")
    op(_LD_ABS_W, 16)  # args[0] (flags), low 32 bits
    op(_JSET, _CLONE_NEW_ANY, jt="eperm")
    op(_JSET, _CLONE_THREAD, jt="allow", jf="eperm")
    label("socket")
    op(_LD_ABS_W, 16)  # args[0] (domain)
    op(_JEQ, _AF_UNIX, jt="allow", jf="eperm")
    label("ioctl")
    op(_LD_ABS_W, 24)  # args[1] (request), low 32 bits
    op(_JEQ, _TIOCSTI, jt="eperm")
    op(_JEQ, _TIOCLINUX, jt="eperm")
    label("allow")
    op(_RET, _RET_ALLOW)
    label("eperm")
    op(_RET, _RET_ERRNO | errno.EPERM)
    label("enosys")
    op(_RET, _RET_ERRNO | errno.ENOSYS)

    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(prog):
        offs = []
        for target in (jt, jf):
            if isinstance(target, str):
                delta = labels[target] - i - 1
                if not 0 <= delta <= 255:
                    raise ValueError(f"seccomp jump to {target} out of range ({delta})")
                offs.append(delta)
            else:
                offs.append(int(target))
        out += struct.pack("<HBBI", code, offs[0], offs[1], k & 0xFFFFFFFF)
    return bytes(out)


# ---------------------------------------------------------------- finding and checking bubblewrap


@dataclass(frozen=True)
class Status:
    """Whether bubblewrap works here. ``problem``/``fix`` say why not and what to do."""

    ok: bool
    bwrap: str = ""
    version: str = ""
    seccomp: bool = False
    problem: str = ""
    fix: str = INSTALL_FIX
    launch_s: float = 0.0
    pids: str = ""  # what bounds a job's task count here (pids_limit_kind)

    def describe(self) -> str:
        if self.ok:
            sc = "seccomp filter on" if self.seccomp else f"no seccomp table for {platform.machine()}"
            return (
                f"bubblewrap {self.version} at {self.bwrap} works ({sc}; a sandbox launch took {self.launch_s:.3f} s; "
                f"task limit: {self.pids or pids_limit_kind()})"
            )
        return f"not available: {self.problem}"


def find_bwrap(value: str = "bwrap") -> str | None:
    """``value`` as a path, or looked up on PATH (then /usr/bin, /usr/local/bin); None when absent."""
    value = (value or "bwrap").strip()
    if os.sep in value:
        p = Path(value).expanduser()
        return str(p) if p.is_file() and os.access(p, os.X_OK) else None
    return shutil.which(value) or shutil.which(value, path="/usr/bin:/usr/local/bin:/bin")


def _version(bwrap: str) -> tuple[str, tuple[int, ...]]:
    out = subprocess.run(
        [bwrap, "--version"],
        capture_output=True,
        text=True,
        timeout=10,
        env={"PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL,
    )
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out.stdout + out.stderr)
    if not m:
        raise OSError(f"`{bwrap} --version` printed no version ({(out.stdout + out.stderr).strip()[:200]!r})")
    nums = tuple(int(g) for g in m.groups() if g is not None)
    return ".".join(map(str, nums)), nums


_status_cache: dict[str, Status] = {}
_status_lock = threading.Lock()


def check(bwrap: str = "bwrap", *, refresh: bool = False) -> Status:
    """Launch an empty sandbox with every option a job gets (namespaces, binds, seccomp, limits)
    and report whether it worked. A working bwrap is remembered per ``bwrap`` value for the life
    of the process; a failure is probed again next time (~0.05 s), so installing bubblewrap
    takes effect without a restart."""
    key = bwrap or "bwrap"
    with _status_lock:
        if not refresh and key in _status_cache:
            return _status_cache[key]
    status = _check(key)
    if status.ok:
        with _status_lock:
            _status_cache[key] = status
    if not status.ok:
        log.warning("bubblewrap isolation is not available: %s", status.problem)
    return status


def _check(value: str) -> Status:
    if not sys_is_linux():
        return Status(False, problem=f"bubblewrap needs Linux; this is {platform.system()}")
    path = find_bwrap(value)
    if path is None:
        return Status(False, problem=f"no bubblewrap executable: {value!r} is not a file and not on PATH")
    try:
        version, nums = _version(path)
    except (OSError, subprocess.SubprocessError) as e:
        return Status(False, bwrap=path, problem=f"could not run {path} --version ({e})")
    if nums < (0, 8):
        return Status(
            False,
            bwrap=path,
            version=version,
            problem=f"bubblewrap {version} is too old (0.8.0 or newer is needed for --disable-userns)",
        )
    with tempfile.TemporaryDirectory(prefix="comfy-avatar-bwrap-check-") as tmp:
        work = Path(tmp, "job")
        work.mkdir()
        jail = Jail(bwrap=path, ro_paths=())
        probe = ["/usr/bin/test", "-w", INSIDE_WORK]
        argv, fds = jail.argv(probe, work, {"PATH": "/usr/bin:/bin"})
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                argv,
                pass_fds=fds,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=30,
                env=launch_env(),
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError) as e:
            return Status(False, bwrap=path, version=version, problem=f"could not start {path} ({e})")
        finally:
            for fd in fds:
                os.close(fd)
        took = time.perf_counter() - t0
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        why = err[-1] if err else f"exit code {proc.returncode}"
        return Status(False, bwrap=path, version=version, problem=f"{path} could not start a sandbox: {why}")
    why = _check_work_fs(path)
    if why:
        return Status(False, bwrap=path, version=version, problem=why)
    return Status(
        True,
        bwrap=path,
        version=version,
        seccomp=seccomp_filter() is not None,
        fix="",
        launch_s=took,
        pids=pids_limit_kind(),
    )


def _check_work_fs(bwrap: str) -> str:
    """ "" when the parent can take hold of a job's /job tmpfs here (run_jailed's handshake through
    /proc/PID/root; a /proc mounted with hidepid or a ptrace policy could forbid it), else why not."""
    with tempfile.TemporaryDirectory(prefix="comfy-avatar-bwrap-check-") as tmp:
        work = Path(tmp, "job")
        work.mkdir()
        jail = Jail(bwrap=bwrap, ro_paths=(), work_mb=16)
        info_r, info_w = os.pipe()
        blk_r, blk_w = os.pipe()
        argv, fds = jail.argv(["/usr/bin/true"], work, {"PATH": "/usr/bin:/bin"}, info_fd=info_w, block_fd=blk_r)
        try:
            proc = subprocess.Popen(
                argv,
                pass_fds=(*fds, info_w, blk_r),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=launch_env(),
                start_new_session=True,
            )
        except OSError as e:
            for fd in (info_r, blk_w):
                os.close(fd)
            return f"could not start {bwrap} ({e})"
        finally:
            for fd in (*fds, info_w, blk_r):
                os.close(fd)
        init = _SandboxInit(info_r)
        try:
            os.close(_take_work_fs(init, 16 * 1024 * 1024))
            return ""
        except OSError as e:
            return f"the parent cannot reach a sandbox's /job tmpfs through /proc ({e}); is /proc mounted with hidepid?"
        finally:
            try:
                os.write(blk_w, b"1")
            except OSError:
                pass
            os.close(blk_w)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            init.wait_gone(5)


def sys_is_linux() -> bool:
    return platform.system() == "Linux"


def launch_env() -> dict[str, str]:
    """The environment bwrap itself runs with. Not the parent's: the sandbox's pid 1 is bwrap, and
    a job can read /proc/1/environ, so nothing secret may be in it (--clearenv only cleans the job's)."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


# ---------------------------------------------------------------- the jail


def _system_binds() -> list[str]:
    """/usr read-only, and /bin, /sbin, /lib* as the host has them (merged-usr links or folders)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        top = f"/{name}"
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for f in ETC_FILES:
        if os.path.exists(f):
            args += ["--ro-bind", f, f]
    return args


@dataclass(frozen=True)
class Jail:
    """How one untrusted job runs. ``bwrap`` empty: no OS isolation (sandbox.isolation: none),
    only the parent's distrust of the work dir (pipes, safe reads, size watch, removal).

    ``ro_paths``: host folders the job may read (bound read-only at the same path), e.g. the
    Blender runtime and blender_cli/. Sizes in MB; ``work_mb``/``max_files`` bound the work dir
    (polled every ``poll_s``), ``log_mb`` the log kept from the job's output.
    """

    bwrap: str = ""
    ro_paths: tuple[str, ...] = ()
    tmp_mb: int = 512
    shm_mb: int = 64
    work_mb: int = 2048
    max_files: int = 20000
    log_mb: int = 8
    poll_s: float = 0.25
    seccomp: bool = True
    # The job's /job is a tmpfs of ``work_mb`` (the kernel refuses writes past it, deleted-but-open
    # files included), filled from the host work dir at the start and copied back by the parent
    # after the job; False binds the host work dir itself (only polled: the old behaviour).
    work_tmpfs: bool = True
    # Tasks (processes + threads) of the job, as a pids cgroup limit that binds uid 0 too
    # (0: no cgroup; see :class:`PidsCgroup`). RLIMIT_NPROC does not bind root.
    pids_max: int = 512
    # The job's memory in MB as a memory cgroup limit, its tmpfs pages included (0: none).
    memory_max_mb: int = 0

    @property
    def isolated(self) -> bool:
        return bool(self.bwrap)

    def inside(self, path: str | os.PathLike[str], work: Path) -> str:
        """``path`` (under ``work``) as the job sees it."""
        if not self.isolated:
            return str(path)
        rel = Path(path).absolute().relative_to(work.absolute())
        return str(PurePosixPath(INSIDE_WORK, *rel.parts)) if rel.parts else INSIDE_WORK

    def map_env(self, env: Mapping[str, str], work: Path) -> dict[str, str]:
        """Environment values that name ``work`` or a path under it, rewritten to the job's view."""
        if not self.isolated:
            return dict(env)
        root = str(work.absolute())
        out = {}
        for k, v in env.items():
            if v == root or v.startswith(root + os.sep):
                v = INSIDE_WORK + v[len(root) :]
            out[k] = v
        return out

    def argv(
        self,
        command: Sequence[str],
        work: Path,
        env: Mapping[str, str],
        info_fd: int | None = None,
        block_fd: int | None = None,
    ) -> tuple[list[str], list[int]]:
        """The bwrap command line running ``command`` with ``env`` (already in the job's view),
        and the fds to pass (the seccomp program and, with ``work_tmpfs``, one per input file
        copied into the job's /job; the caller closes them after the start).
        ``info_fd``: where bwrap writes the sandbox's pid 1 and namespaces (--info-fd);
        ``block_fd``: bwrap waits for a byte on it after setting the sandbox up and before
        starting ``command`` (--block-fd), so the parent can take hold of the /job tmpfs first."""
        if not self.isolated:
            return list(command), []
        mb = 1024 * 1024
        args = [
            self.bwrap,
            "--unshare-user",
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_UID),
            "--hostname",
            SANDBOX_HOSTNAME,
        ]
        args += _system_binds()
        args += ["--proc", "/proc"]
        for p in PROC_READONLY:
            args += ["--ro-bind-try", p, p]
        for p in PROC_HIDDEN:
            if os.path.exists(p):
                args += ["--ro-bind", "/dev/null", p]
        args += [
            "--dev",
            "/dev",
            "--size",
            str(self.shm_mb * mb),
            "--tmpfs",
            "/dev/shm",
            "--size",
            str(self.tmp_mb * mb),
            "--tmpfs",
            "/tmp",
        ]
        # The runtime's folders after the private /tmp and /dev/shm: a runtime (or a checkout, as
        # CI's) that lives under /tmp would otherwise be hidden by the tmpfs mounted over it.
        for p in self.ro_paths:
            args += ["--ro-bind", p, p]
        fds: list[int] = []
        if self.work_tmpfs:
            args += ["--size", str(self.work_mb * mb), "--tmpfs", INSIDE_WORK]
            try:
                args += _tmpfs_inputs(work.absolute(), fds)
            except BaseException:
                for fd in fds:
                    os.close(fd)
                raise
        else:
            args += ["--bind", str(work.absolute()), INSIDE_WORK]
        args += [
            "--chdir",
            INSIDE_WORK,
            "--remount-ro",
            "/dev",
            "--remount-ro",
            "/",
            "--clearenv",
        ]
        for k, v in env.items():
            args += ["--setenv", k, v]
        if info_fd is not None:
            args += ["--info-fd", str(info_fd)]
        if block_fd is not None:
            args += ["--block-fd", str(block_fd)]
        prog = seccomp_filter() if self.seccomp else None
        if prog is not None:
            fds.append(_data_fd(prog))
            args += ["--seccomp", str(fds[-1])]
        return args + ["--", *command], fds


_MAX_INPUTS = 256  # files the parent puts into a job's /job (a script, job.json ...): far more than any job has


def _tmpfs_inputs(work: Path, fds: list[int]) -> list[str]:
    """bwrap options that recreate the host work dir (made by the parent: trusted) inside the job's
    /job tmpfs: ``--dir`` for each folder, ``--file FD`` for each regular file (the fds are
    appended to ``fds``). Links and anything else are not carried."""
    args: list[str] = []
    for dirpath, dirnames, filenames in os.walk(work, followlinks=False):
        rel = os.path.relpath(dirpath, work)
        inside = INSIDE_WORK if rel == "." else str(PurePosixPath(INSIDE_WORK, *Path(rel).parts))
        for d in sorted(dirnames):
            if not os.path.islink(os.path.join(dirpath, d)):
                args += ["--dir", f"{inside}/{d}"]
        for f in sorted(filenames):
            full = os.path.join(dirpath, f)
            try:
                fd = os.open(full, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                continue  # a link: not carried
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                continue
            fds.append(fd)
            if len(fds) > _MAX_INPUTS:
                raise AvatarError(
                    f"sandbox work dir {work}",
                    f"it holds more than {_MAX_INPUTS} files to copy into the job",
                    "give a job only its script and inputs",
                )
            args += ["--perms", "0644", "--file", str(fd), f"{inside}/{f}"]
    return args


def _data_fd(data: bytes) -> int:
    """A read-only fd holding ``data`` (a memfd, else an unlinked temp file), at offset 0."""
    try:
        fd = os.memfd_create("comfy-avatar-seccomp", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        with tempfile.TemporaryFile() as f:
            fd = os.dup(f.fileno())
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def net_argv(bwrap: str, command: Sequence[str]) -> list[str]:
    """``command`` with only the network unshared (model workers: the file system, /dev with the
    GPU and /proc stay as they are; an empty loopback, no route out). No --die-with-parent: it
    fires when the *thread* that started bwrap ends, and workers are started from pool threads;
    the worker ends on EOF of its stdin and its process group is killed instead."""
    return [bwrap, "--dev-bind", "/", "/", "--unshare-net", "--", *command]


_net_cache: dict[str, str] = {}  # bwrap value -> the path that worked


def check_net(bwrap: str = "bwrap") -> tuple[str | None, str]:
    """(bwrap path, "") when ``bwrap --unshare-net`` works here, else (None, why). A success is
    remembered for the process; a failure is probed again at the next worker start."""
    key = bwrap or "bwrap"
    if key in _net_cache:
        return _net_cache[key], ""
    path = find_bwrap(key) if sys_is_linux() else None
    why = "" if path else f"no bubblewrap ({key!r} not found{'' if sys_is_linux() else '; not Linux'})"
    if path:
        try:
            proc = subprocess.run(
                net_argv(path, ["/usr/bin/true"]),
                capture_output=True,
                text=True,
                timeout=30,
                env=launch_env(),
                stdin=subprocess.DEVNULL,
            )
            if proc.returncode != 0:
                why = f"{path} --unshare-net failed: {(proc.stderr or '').strip()[-300:] or proc.returncode}"
        except (OSError, subprocess.SubprocessError) as e:
            why = f"could not run {path} ({e})"
    if not why and path:
        _net_cache[key] = path
        return path, ""
    return None, why


# ---------------------------------------------------------------- what a runtime needs to read

_ROOTS_PROBE = (
    "import json, sys, importlib.util as u\n"
    "s = u.find_spec('bpy')\n"
    "print(json.dumps({'prefixes': [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix],"
    " 'path': sys.path, 'bpy': list(s.submodule_search_locations or []) if s else []}))"
)


def safe_root(path: str) -> str | None:
    """``path`` if it may be bound read-only into a sandbox: an existing folder that is not the
    root, /root, /home, /etc ... itself, and holds neither the pack nor the user's home."""
    p = os.path.abspath(path)
    if not os.path.isdir(p) or p in _NEVER_BIND:
        return None
    home = os.path.expanduser("~")
    for guarded in (str(PACK_DIR), home):
        if guarded and (guarded == p or guarded.startswith(p.rstrip(os.sep) + os.sep)):
            return None
    return p


def _minimal(paths: Sequence[str]) -> tuple[str, ...]:
    """Drop duplicates, /usr (bound anyway) and folders inside another listed folder."""
    keep: list[str] = []
    for p in sorted(set(paths), key=len):
        if p == "/usr" or p.startswith("/usr/"):
            continue
        if any(p == k or p.startswith(k.rstrip(os.sep) + os.sep) for k in keep):
            continue
        keep.append(p)
    return tuple(sorted(keep))


@functools.lru_cache(maxsize=16)
def runtime_roots(kind: str, executable: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The host folders a Blender runtime reads: for a bpy Python its venv, base prefix and every
    sys.path folder (asked of that Python, nothing imported); for a Blender binary its install
    folder. Both the path and its real path, since venvs hold absolute symlinks. Unsafe roots
    (see :func:`safe_root`) raise IsolationUnavailable: the runtime must live elsewhere."""
    exe = Path(executable)
    wanted: list[str] = list(extra)
    if kind == "binary":
        wanted += [str(exe.parent), str(exe.resolve().parent)]
    else:
        env = {"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1", "LANG": "C.UTF-8"}
        try:
            out = subprocess.run(
                [str(exe), "-I", "-c", _ROOTS_PROBE],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                stdin=subprocess.DEVNULL,
            )
            data = json.loads(out.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
            raise IsolationUnavailable(
                f"Blender runtime {exe}",
                f"could not ask it for its folders ({e})",
                "check the runtime with `python install.py --check`",
            ) from None
        wanted += data["prefixes"] + [p for p in data["path"] if p] + data["bpy"]
        wanted += [str(exe.parent.parent), str(exe.resolve().parent.parent)]
    found: list[str] = []
    for p in wanted:
        if not p or not os.path.isabs(p) or not os.path.exists(p):
            continue  # zip entries of sys.path that do not exist, relative entries
        if not os.path.isdir(p):
            p = os.path.dirname(p)
        for cand in {os.path.abspath(p), os.path.realpath(p)}:
            if safe_root(cand) is None:
                if cand in _NEVER_BIND or cand.startswith("/usr"):
                    continue  # the system dirs are bound anyway / never
                raise IsolationUnavailable(
                    f"Blender runtime {exe}",
                    f"it reads {cand}, which holds the pack or a home folder and so is never bound into the sandbox",
                    "install the runtime in its own folder (python install.py makes "
                    "<pack>/.runtime/blender-venv) or point BLENDER_BIN at a Blender install",
                )
            found.append(cand)
    return _minimal(found)


# ---------------------------------------------------------------- reading what the job left


class UntrustedFile(Exception):
    """A file in the work dir that the parent refuses to read (not regular, a link, too big ...)."""


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # (absent on Windows, where no job is ever jailed; the module must import)
_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_O_FILE = (
    os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
)


def open_regular(root: str | os.PathLike[str], rel: str, max_bytes: int) -> int:
    """An fd of the regular file ``root/rel`` opened without following any symlink on the way
    (each folder by O_NOFOLLOW|O_DIRECTORY from the one above), never blocking (a FIFO is
    refused, not waited on), and at most ``max_bytes`` big. Raises UntrustedFile."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or any(p in ("..", ".", "") for p in parts):
        raise UntrustedFile(f"{rel!r} is not a plain relative path")
    try:
        dfd = os.open(root, _O_DIR)
    except OSError as e:
        raise UntrustedFile(f"the work dir cannot be opened ({e.strerror})") from None
    try:
        for part in parts[:-1]:
            try:
                nfd = os.open(part, _O_DIR, dir_fd=dfd)
            except OSError as e:
                raise UntrustedFile(f"{rel}: {part} is not a plain folder ({e.strerror})") from None
            os.close(dfd)
            dfd = nfd
        try:
            fd = os.open(parts[-1], _O_FILE, dir_fd=dfd)
        except OSError as e:
            what = "a symlink" if e.errno == errno.ELOOP else e.strerror
            raise UntrustedFile(f"{rel} cannot be opened ({what})") from None
    finally:
        os.close(dfd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UntrustedFile(f"{rel} is not a regular file")
    if st.st_size > max_bytes:
        os.close(fd)
        raise UntrustedFile(f"{rel} is {st.st_size} bytes, over the {max_bytes}-byte limit")
    os.set_blocking(fd, True)
    return fd


def read_regular(root: str | os.PathLike[str], rel: str, max_bytes: int) -> bytes:
    """The bytes of ``root/rel`` (see :func:`open_regular`), never more than ``max_bytes``."""
    fd = open_regular(root, rel, max_bytes)
    try:
        chunks, total = [], 0
        while total <= max_bytes:
            b = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not b:
                break
            chunks.append(b)
            total += len(b)
    finally:
        os.close(fd)
    if total > max_bytes:
        raise UntrustedFile(f"{rel} grew past the {max_bytes}-byte limit while being read")
    return b"".join(chunks)


def read_json(root: str | os.PathLike[str], rel: str, max_bytes: int = 4 << 20) -> Any:
    """Parsed JSON from ``root/rel`` or None when it is absent, unsafe, too big or not JSON."""
    try:
        return json.loads(read_regular(root, rel, max_bytes).decode("utf-8"))
    except (UntrustedFile, UnicodeDecodeError, ValueError, RecursionError):
        return None


def copy_out(root: str | os.PathLike[str], rel: str, dest: str | os.PathLike[str], max_bytes: int) -> int:
    """Copy ``root/rel`` (see :func:`open_regular`) to ``dest`` (temp name, then rename); bytes copied."""
    dest = Path(dest)
    fd = open_regular(root, rel, max_bytes)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    total = 0
    try:
        with os.fdopen(fd, "rb", closefd=True) as src, open(tmp, "wb") as out:
            while True:
                b = src.read(1 << 20)
                if not b:
                    break
                total += len(b)
                if total > max_bytes:
                    raise UntrustedFile(f"{rel} grew past the {max_bytes}-byte limit while being copied")
                out.write(b)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return total


def remove_tree(path: str | os.PathLike[str]) -> bool:
    """Remove a work dir the job may have booby-trapped: symlinks are removed, never followed
    (shutil.rmtree's fd-based walk), folders it made unreadable are opened up first. True when gone."""
    path = Path(path)
    if not os.path.lexists(path):
        return True
    try:
        shutil.rmtree(path, ignore_errors=True)
    except RecursionError:  # a folder chain deeper than Python's recursion (made with dir fds)
        pass
    if os.path.lexists(path) and shutil.which("rm"):
        # GNU rm walks any depth without following links and stays on this file system
        subprocess.run(
            ["rm", "-rf", "--one-file-system", "--", os.fspath(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    if os.path.lexists(path):
        for dirpath, dirnames, _ in os.walk(path, topdown=True, followlinks=False):
            for d in dirnames:
                full = os.path.join(dirpath, d)
                if not os.path.islink(full):
                    try:
                        os.chmod(full, 0o700)
                    except OSError:
                        pass
        try:
            os.chmod(path, 0o700)
        except OSError:
            pass
        shutil.rmtree(path, ignore_errors=True)
    return not os.path.lexists(path)


def tree_usage(root: str | os.PathLike[str], stop_bytes: int, stop_entries: int) -> tuple[int, int]:
    """(bytes, entries) under ``root``, without following links; stops counting once either limit
    is passed (a job may make millions of entries). A file counts with the larger of its blocks on
    disk and its apparent size (a sparse file is copied out at its full size). A folder that cannot
    be read (a chain deeper than PATH_MAX, say) counts as over the limit: what cannot be measured
    is not allowed to grow."""
    used, entries = 0, 0
    stack = [os.fspath(root)]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except FileNotFoundError:  # the job removed it meanwhile
            continue
        except OSError:
            return stop_bytes + 1, entries
        with it:
            for e in it:
                entries += 1
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError:  # e.g. ENAMETOOLONG deep in a chain: not measurable, so not allowed
                    return stop_bytes + 1, entries
                used += max(getattr(st, "st_blocks", 0) * 512, st.st_size if stat.S_ISREG(st.st_mode) else 0)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
                if used > stop_bytes or entries > stop_entries:
                    return used, entries
    return used, entries


# ---------------------------------------------------------------- cgroup limits that bind root

_CGROUP_ROOT = "/sys/fs/cgroup"
_CGROUP_V2 = "/sys/fs/cgroup"
_CGROUP_GROUP = "comfy-avatar-jobs"
# v1 file / v2 file that holds each controller's limit
_LIMIT_FILES = {"pids": ("pids.max", "pids.max"), "memory": ("memory.limit_in_bytes", "memory.max")}


def _own_cgroup(controller: str) -> str:
    """This process's cgroup path for ``controller`` ("" = the v2 unified line), from /proc/self/cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        if (controller and controller in ctrls.split(",")) or (not controller and ctrls == ""):
            return path
    return ""


def _cgroup_parent(controller: str = "pids") -> tuple[str, str]:
    """(folder under which a job's ``controller`` cgroup is made, "v1"/"v2"), or ("", why not)."""
    why = []
    v1 = os.path.join(_CGROUP_ROOT, controller)
    if os.path.isfile(os.path.join(v1, "cgroup.procs")):
        base = os.path.join(v1, _own_cgroup(controller).lstrip("/"))
        if os.access(base, os.W_OK):
            return base, "v1"
        why.append(f"cgroup v1 {controller} at {base} is not writable")
    if os.path.isfile(os.path.join(_CGROUP_V2, "cgroup.controllers")):
        base = os.path.join(_CGROUP_V2, _own_cgroup("").lstrip("/"))
        try:
            ctrl = Path(base, "cgroup.subtree_control").read_text().split()
        except OSError:
            ctrl = []
        if controller in ctrl and os.access(base, os.W_OK):
            return base, "v2"
        why.append(f"cgroup v2 at {base} does not delegate the {controller} controller to this user")
    return "", "; ".join(why) or f"no {controller} cgroup controller mounted"


class PidsCgroup:
    """The job's own cgroups: ``pids.max`` (the kernel refuses a fork or a new thread past it
    whatever the uid: RLIMIT_NPROC exempts root, and ComfyUI often runs as root) and, when
    asked, a memory limit (the job's RSS plus the pages of its tmpfs /job, /tmp and /dev/shm,
    which RLIMIT_AS does not count; past it the kernel's OOM killer ends the job, nothing
    else). The job's launcher joins them between fork and exec (:meth:`join`), so bwrap and
    everything it starts count; the sandbox has no /sys and its own cgroup namespace, so it
    cannot leave. Removed after the job (:meth:`remove`)."""

    def __init__(self, paths: Sequence[str], limit: int, memory_bytes: int = 0) -> None:
        self.paths, self.limit, self.memory_bytes = list(paths), limit, memory_bytes
        self.path = self.paths[0] if self.paths else ""
        self._procs = [os.path.join(p, "cgroup.procs").encode() for p in self.paths]

    @classmethod
    def make(cls, limit: int, memory_bytes: int = 0) -> PidsCgroup | None:
        """Fresh cgroups limited to ``limit`` tasks (and ``memory_bytes``, 0 = none), or None
        (logged) where no pids cgroup can be made; a memory cgroup that cannot be made is logged
        and left out."""
        if limit <= 0 or not sys_is_linux():
            return None
        name = f"job-{os.getpid()}-{time.monotonic_ns()}"
        made: list[str] = []
        for controller, value in (("pids", limit), ("memory", memory_bytes)):
            if value <= 0:
                continue
            parent, kind = _cgroup_parent(controller)
            if not parent:
                if controller == "pids":
                    log.info("no pids cgroup for sandbox jobs (%s): only RLIMIT_NPROC, which does not bind root", kind)
                    return None
                log.info("no memory cgroup for sandbox jobs (%s): the tmpfs mounts come on top of RLIMIT_AS", kind)
                continue
            path = os.path.join(parent, _CGROUP_GROUP, name)
            limit_file = _LIMIT_FILES[controller][0 if kind == "v1" else 1]
            try:
                if path not in made:
                    os.makedirs(path)
                    made.append(path)
                Path(path, limit_file).write_text(f"{int(value)}\n")
            except OSError as e:
                log.warning("could not set up the job's %s cgroup at %s (%s)", controller, path, e)
                if controller == "pids":
                    cls(made, 0).remove()
                    return None
        return cls(made, limit, memory_bytes) if made else None

    def join(self) -> None:
        """Move the calling process into the cgroups (runs in the child between fork and exec:
        plain syscalls only). Raises OSError, so a job never starts outside its limits."""
        pid = str(os.getpid()).encode()
        for procs in self._procs:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def remove(self) -> None:
        for path in reversed(self.paths):
            for _ in range(50):  # empty once the last task of the job has been reaped
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
            else:
                log.warning("could not remove the job's cgroup %s", path)


def pids_limit_kind() -> str:
    """What bounds a sandbox job's task count here, in words (install.py --check)."""
    parent, kind = _cgroup_parent("pids")
    if parent:
        return f"cgroup {kind} pids.max (under {parent}; binds root too)"
    return f"RLIMIT_NPROC only ({kind}); it does not bind root, so run ComfyUI as a normal user"


def memory_limit_kind() -> str:
    """What bounds a sandbox job's memory here, tmpfs pages included (install.py --check)."""
    parent, kind = _cgroup_parent("memory")
    if parent:
        return f"cgroup {kind} memory limit (under {parent}; RSS and the job's tmpfs pages)"
    return f"RLIMIT_AS only ({kind}); the job's tmpfs /job, /tmp and /dev/shm come on top of it"


# ---------------------------------------------------------------- the job's /job tmpfs

_WORK_FS_WAIT_S = 20.0


def _hold_work_fs(pid: int, size: int, proc_alive: Callable[[], bool]) -> int:
    """An fd of the job's /job tmpfs, taken through /proc/PID/root while bwrap waits on its
    --block-fd (set up, the job not started: nothing the job does can be in the way). bwrap
    writes --info-fd before it sets the sandbox up, so wait until the process's root is no
    longer the host's and /job is a folder of the exact size asked (a tmpfs of its own).
    Holding the fd keeps the tmpfs alive after the sandbox ends, so the parent can read it."""
    host = os.stat("/")
    deadline = time.monotonic() + _WORK_FS_WAIT_S
    why = "it did not appear"
    while time.monotonic() < deadline and proc_alive():
        try:
            r = os.stat(f"/proc/{pid}/root")
            if (r.st_dev, r.st_ino) != (host.st_dev, host.st_ino):
                fd = os.open(f"/proc/{pid}/root{INSIDE_WORK}", _O_DIR)
                st, vfs = os.fstat(fd), os.fstatvfs(fd)
                if stat.S_ISDIR(st.st_mode) and vfs.f_blocks * vfs.f_frsize == size:
                    return fd
                os.close(fd)
                why = f"/job is {vfs.f_blocks * vfs.f_frsize} bytes, not the {size} asked"
        except OSError as e:
            why = e.strerror or str(e)
        time.sleep(0.002)
    raise OSError(f"the sandbox's /job tmpfs could not be taken hold of ({why})")


_MAX_REL_PATH = 1024  # longer relative paths are not copied out: host tools (and PATH_MAX) must handle every one


def copy_tree_out(src_fd: int, dest: Path, max_bytes: int, max_entries: int, max_depth: int = 64) -> str:
    """Copy the regular files and folders under the folder fd ``src_fd`` (the ended job's /job)
    into ``dest`` (a host folder the parent made), never following a link, never opening a
    FIFO or device, at most ``max_bytes`` (apparent sizes: a sparse file copies out whole),
    ``max_entries`` entries, ``max_depth`` levels and relative paths of ``_MAX_REL_PATH``
    characters (a deep chain of long names would make a host path past PATH_MAX).
    "" when everything fit, else what did not."""
    budget, entries = max_bytes, 0
    dest_fd = os.open(dest, _O_DIR)
    stack = [(os.dup(src_fd), dest_fd, 0, 0)]
    skipped = ""
    try:
        while stack:
            sfd, dfd, depth, plen = stack.pop()
            try:
                with os.scandir(sfd) as it:
                    names = [(e.name, e.stat(follow_symlinks=False)) for e in it]
                for name, st in names:
                    entries += 1
                    if entries > max_entries:
                        return f"more than {max_entries} entries"
                    if plen + 1 + len(name) > _MAX_REL_PATH:
                        skipped = f"paths longer than {_MAX_REL_PATH} characters were not copied"
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        if depth + 1 > max_depth:
                            skipped = f"folders deeper than {max_depth} levels were not copied"
                            continue
                        try:
                            os.mkdir(name, 0o755, dir_fd=dfd)
                        except FileExistsError:
                            pass
                        nd = os.open(name, _O_DIR, dir_fd=dfd)
                        try:
                            ns = os.open(name, _O_DIR, dir_fd=sfd)
                        except OSError:
                            os.close(nd)
                            continue
                        stack.append((ns, nd, depth + 1, plen + 1 + len(name)))
                    elif stat.S_ISREG(st.st_mode):
                        if st.st_size > budget:
                            return f"more than {max_bytes} bytes of files"
                        budget -= st.st_size
                        _copy_file_at(sfd, dfd, name, st.st_size)
            finally:
                os.close(sfd)
                os.close(dfd)
    finally:
        for sfd, dfd, _, _ in stack:
            os.close(sfd)
            os.close(dfd)
    return skipped


def _copy_file_at(sfd: int, dfd: int, name: str, size: int) -> None:
    src = os.open(name, _O_FILE, dir_fd=sfd)
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            return
        os.set_blocking(src, True)
        try:
            os.unlink(name, dir_fd=dfd)  # a file the parent put there (job.json ...): replaced, not written through
        except FileNotFoundError:
            pass
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        dst = os.open(name, flags, 0o644, dir_fd=dfd)
        try:
            left = size  # the size seen in the listing: the job has ended, nothing can grow it now
            while left > 0:
                b = os.read(src, min(left, 1 << 20))
                if not b:
                    break
                os.write(dst, b)
                left -= len(b)
        finally:
            os.close(dst)
    finally:
        os.close(src)


# ---------------------------------------------------------------- running a job


@dataclass
class JailedRun:
    returncode: int
    timed_out: bool
    log_path: Path
    log_bytes: int = 0
    log_dropped: int = 0
    quota: str = ""  # why the job was killed for its work dir ("" = it was not)
    duration_s: float = 0.0
    pid_namespace: str = ""  # "pid:[inode]" of the job's namespace (bwrap's --info-fd), "" without isolation


class _LogPump:
    """Copies the job's output pipe into a log file: the first ``cap`` bytes, then only a rolling
    tail (so the end of a flood still shows). A thread with select, so it never blocks shutdown."""

    TAIL = 256 * 1024

    def __init__(self, fd: int, path: Path, cap: int) -> None:
        self.fd, self.path, self.cap = fd, path, cap
        self.written = 0
        self.dropped = 0
        self._tail: deque[bytes] = deque()
        self._tail_len = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="jail-log")
        self._out = open(path, "wb")  # noqa: SIM115 - closed by the thread
        self._thread.start()

    def _keep_tail(self, b: bytes) -> None:
        self._tail.append(b)
        self._tail_len += len(b)
        while self._tail_len - len(self._tail[0]) >= self.TAIL:
            self._tail_len -= len(self._tail.popleft())

    def _run(self) -> None:
        import select

        try:
            while True:
                r, _, _ = select.select([self.fd], [], [], 0.1)
                if not r:
                    if self._stop.is_set():
                        break
                    continue
                b = os.read(self.fd, 65536)
                if not b:
                    break
                room = self.cap - self.written
                if room > 0:
                    self._out.write(b[:room])
                    self._out.flush()
                    self.written += min(room, len(b))
                    b = b[room:]
                if b:
                    self.dropped += len(b)
                    self._keep_tail(b)
        except OSError:
            pass
        finally:
            if self.dropped:
                tail = b"".join(self._tail)[-self.TAIL :]
                shown = len(tail)
                self._out.write(
                    f"\n[... {self.dropped - shown} bytes of output dropped (log cap {self.cap} bytes); "
                    f"last {shown} bytes follow ...]\n".encode()
                )
                self._out.write(tail)
            self._out.close()
            os.close(self.fd)

    def finish(self, grace_s: float = 2.0) -> None:
        """Wait for EOF up to ``grace_s`` (a process outside the job's control may hold the pipe
        open when isolation is off), then stop reading."""
        self._thread.join(grace_s)
        self._stop.set()
        self._thread.join(5)


class _SandboxInit:
    """The sandbox's pid 1, from bwrap's --info-fd, held by a pidfd: when bwrap is killed, the
    kernel ends the namespace's processes asynchronously, and pid 1 exits only after all of
    them, so waiting for it means nothing of the job is left when run_jailed returns. It is
    only waited on, never signalled."""

    def __init__(self, fd: int) -> None:
        self.fd, self.pidfd, self.pid_namespace, self.pid = fd, -1, "", 0
        self.got_pid = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True, name="jail-info")
        self._thread.start()

    def _read(self) -> None:
        data = b""
        try:
            while len(data) < 65536:
                b = os.read(self.fd, 4096)
                if not b:
                    break
                data += b
            info = json.loads(data.decode())
            self.pid_namespace = f"pid:[{int(info['pid-namespace'])}]"
            self.pid = int(info["child-pid"])
            self.pidfd = os.pidfd_open(self.pid)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # it never started, or it has gone already
        finally:
            self.got_pid.set()
            os.close(self.fd)

    def wait_gone(self, timeout_s: float = 10.0) -> None:
        import select

        self._thread.join(timeout_s)
        if self.pidfd < 0:
            return
        try:
            if not select.select([self.pidfd], [], [], timeout_s)[0]:
                log.error("the sandbox's processes did not end %g s after bwrap did", timeout_s)
        finally:
            os.close(self.pidfd)


def _take_work_fs(init: _SandboxInit, size: int) -> int:
    import select

    if not init.got_pid.wait(_WORK_FS_WAIT_S) or not init.pid:
        raise OSError("bwrap reported no sandbox process")
    pid, pidfd = init.pid, init.pidfd

    def alive() -> bool:  # the pidfd is readable once that very process has exited
        if pidfd < 0:  # no pidfd_open (Linux < 5.3): the pid's /proc entry is all there is
            return os.path.exists(f"/proc/{pid}")
        return not select.select([pidfd], [], [], 0)[0]

    fd = _hold_work_fs(pid, size, alive)
    if not alive():  # it ended while /proc/PID was opened: the pid may name another process now
        os.close(fd)
        raise OSError("the sandbox's pid 1 ended during setup")
    return fd


async def run_jailed(
    cmd: Sequence[str],
    *,
    work: Path,
    env: Mapping[str, str],
    jail: Jail,
    log_path: Path,
    timeout_s: float | None,
    preexec: Callable[[], None] | None = None,
) -> JailedRun:
    """Run ``cmd`` (already in the job's view) under ``jail``; see the module doc.

    The process group is killed on timeout, on a work dir over its limits, on cancel and after
    a normal exit. With bwrap, killing the group kills bwrap, whose death takes the job's whole
    pid namespace with it (--die-with-parent, then the kernel ends every process of a namespace
    whose pid 1 died); no process of the job outlives this call.
    """
    tmpfs = jail.isolated and jail.work_tmpfs
    info_r, info_w = os.pipe() if jail.isolated else (-1, -1)
    blk_r, blk_w = os.pipe() if tmpfs else (-1, -1)
    own = [fd for fd in (info_w, blk_r) if fd >= 0]
    argv, fds = jail.argv(cmd, work, env, info_fd=info_w if jail.isolated else None, block_fd=blk_r if tmpfs else None)
    read_fd, write_fd = os.pipe()
    os.set_inheritable(write_fd, True)
    cgroup = PidsCgroup.make(jail.pids_max, jail.memory_max_mb * 1024 * 1024) if jail.isolated else None
    spawn: dict[str, Any] = {"start_new_session": True, "pass_fds": tuple(fds) + tuple(own)}
    if cgroup is not None or preexec is not None:

        def _pre() -> None:  # between fork and exec: join the job's pids cgroup, then the rlimits
            if cgroup is not None:
                cgroup.join()
            if preexec is not None:
                preexec()

        spawn["preexec_fn"] = _pre
    pump: _LogPump | None = None
    t0 = time.perf_counter()
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                cwd=str(work),
                env=launch_env() if jail.isolated else dict(env),
                close_fds=True,
                **spawn,
            )
        except (OSError, subprocess.SubprocessError) as e:
            os.close(read_fd)
            for fd in (info_r, blk_w):
                if fd >= 0:
                    os.close(fd)
            if cgroup is not None:
                cgroup.remove()
            raise AvatarError(f"sandbox launcher {argv[0]}", f"could not start it ({e})", INSTALL_FIX) from None
    finally:
        os.close(write_fd)
        for fd in fds + own:
            os.close(fd)
    pump = _LogPump(read_fd, log_path, jail.log_mb * 1024 * 1024)
    init = _SandboxInit(info_r) if jail.isolated else None
    quota = ""
    timed_out = False
    work_fd = -1
    if tmpfs and init is not None:
        try:
            work_fd = await asyncio.to_thread(_take_work_fs, init, jail.work_mb * 1024 * 1024)
            os.write(blk_w, b"1")  # bwrap starts the job now
        except OSError as e:
            quota = f"the sandbox could not be set up: {e}"
            log.error("%s", quota)
            kill_group(proc)
        finally:
            os.close(blk_w)
    watch_root = f"/proc/self/fd/{work_fd}" if work_fd >= 0 else work

    async def watch() -> None:
        nonlocal quota
        cap, files = jail.work_mb * 1024 * 1024, jail.max_files
        while proc.returncode is None and not quota:
            used, entries = await asyncio.to_thread(tree_usage, watch_root, cap, files)
            if used > cap or entries > files:
                quota = (
                    f"the script filled its work dir past the limit ({used // (1024 * 1024)} MB / {entries} "
                    f"entries; limits sandbox.work_mb={jail.work_mb}, {files} entries) and was killed"
                )
                kill_group(proc)
                return
            await asyncio.sleep(jail.poll_s)

    watcher = asyncio.ensure_future(watch())
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout_s if timeout_s and timeout_s > 0 else None)
        except asyncio.TimeoutError:
            timed_out = True
            kill_group(proc)
            await proc.wait()
    finally:
        kill_group(proc)
        watcher.cancel()
        if init is not None:
            await asyncio.to_thread(init.wait_gone)
        await asyncio.to_thread(pump.finish)
        if cgroup is not None:
            await asyncio.to_thread(cgroup.remove)
        if work_fd >= 0:
            try:
                vfs = os.fstatvfs(work_fd)
                if not quota and vfs.f_bavail * vfs.f_frsize < min(1 << 20, vfs.f_blocks * vfs.f_frsize // 50):
                    # full: the kernel refused the job's writes past work_mb (its result among them, likely)
                    quota = (
                        f"the script filled its work dir past the limit (sandbox.work_mb={jail.work_mb} MB; "
                        "writes past it failed with 'No space left on device')"
                    )
                if not quota:  # what the job left in /job, into the host work dir, under the same caps
                    short = await asyncio.to_thread(
                        copy_tree_out, work_fd, work, jail.work_mb * 1024 * 1024, jail.max_files
                    )
                    if short.startswith("more than"):
                        quota = f"the script left {short} in its work dir (limits sandbox.work_mb={jail.work_mb}, {jail.max_files} entries)"
                    elif short:
                        log.warning("sandbox job: %s", short)
            except OSError as e:
                quota = f"the job's work dir could not be copied out ({e})"
            finally:
                os.close(work_fd)
    rc = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    if jail.isolated and 128 < rc < 128 + 65:
        rc = 128 - rc  # bwrap exits 128+N for a job killed by signal N: report it as a direct child's -N
    return JailedRun(
        rc,
        timed_out,
        log_path,
        pump.written,
        pump.dropped,
        quota,
        time.perf_counter() - t0,
        init.pid_namespace if init is not None else "",
    )


__all__ = [
    "Jail",
    "JailedRun",
    "Status",
    "IsolationUnavailable",
    "UntrustedFile",
    "check",
    "check_net",
    "find_bwrap",
    "seccomp_filter",
    "net_argv",
    "runtime_roots",
    "safe_root",
    "open_regular",
    "read_regular",
    "read_json",
    "copy_out",
    "remove_tree",
    "tree_usage",
    "copy_tree_out",
    "PidsCgroup",
    "pids_limit_kind",
    "memory_limit_kind",
    "run_jailed",
    "launch_env",
    "INSIDE_WORK",
    "INSTALL_FIX",
]
