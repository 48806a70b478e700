"""A real RabbitMQ broker for tests: Debian's rabbitmq-server 3.10 on 127.0.0.1, own everything.

    with RabbitServer(tmp_path) as rmq:
        rmq.url              # amqp://guest:guest@127.0.0.1:PORT/%2F  (guest may log in from loopback)
        rmq.restart()        # stop the node and start it again on the same data (durability tests)

Each broker gets its own AMQP port, Erlang distribution port, node name, epmd port
(ERL_EPMD_PORT: its own epmd, not the machine's), Mnesia/log/pid/plugins/feature-flags files and
HOME (the Erlang cookie) inside one temp folder, so several test runs and a system RabbitMQ never
meet. As root the node runs as the `rabbitmq` user (the Debian scripts refuse to run a node as
root, and a root-owned data dir fails with eacces): the folder is chowned to it. The node is
stopped with `rabbitmqctl stop` (falling back to killing its process group), and the epmd it
started, which `rabbitmqctl stop` leaves behind, is stopped by its pid.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> str | None:
    """None when a broker can be started here, else the reason (for a skip)."""
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        return "rabbitmq-server is not installed (apt-get install -y --no-install-recommends rabbitmq-server)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("rabbitmq")
        except KeyError:
            return "running as root and there is no 'rabbitmq' user to run the node"
    return None


class RabbitServer:
    def __init__(self, *, start_timeout_s: float = 60.0) -> None:
        # In the system temp folder, not pytest's: the rabbitmq user must be able to reach it
        # (pytest's tmp_path parents are private to root).
        self.base = Path(tempfile.mkdtemp(prefix="ca-rmq-"))
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.node = f"ca{uuid.uuid4().hex[:8]}@localhost"
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            self._run_as = ["runuser", "-p", "-u", "rabbitmq", "--"]
        for sub in ("mnesia", "log", "home"):
            (self.base / sub).mkdir()
        (self.base / "enabled_plugins").write_text("[].\n")
        if self._run_as:
            user = pwd.getpwnam("rabbitmq")
            for p in [self.base, *self.base.rglob("*")]:
                os.chown(p, user.pw_uid, user.pw_gid)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def env(self) -> dict[str, str]:
        b = self.base
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(b / "home"),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
            "RABBITMQ_LOG_BASE": str(b / "log"),
            "RABBITMQ_PID_FILE": str(b / "node.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(b / "feature_flags"),
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq"),  # rabbitmq.conf, absent: the defaults
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(b / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS": "",
        }

    def start(self) -> RabbitServer:
        self._log = open(self.base / "server.out", "ab")  # noqa: SIM115 - the node's life
        self.proc = subprocess.Popen(
            [*self._run_as, str(RABBIT_BIN / "rabbitmq-server")],
            env=self.env(),
            cwd=self.base,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()  # the epmd it started outlives it
                raise RuntimeError(f"rabbitmq-server exited {self.proc.returncode if self.proc else '?'}: {tail}")
            if self._amqp_ready():
                return self
            time.sleep(0.2)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"rabbitmq-server did not open port {self.port} in {self.start_timeout_s} s: {tail}")

    def _amqp_ready(self) -> bool:
        """The AMQP handshake answers (the port opens a moment before the node accepts logins)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"AMQP\x00\x00\x09\x01")
                s.settimeout(2)
                return len(s.recv(8)) > 0
        except OSError:
            return False

    def log_tail(self, n: int = 30) -> str:
        lines: list[str] = []
        for p in [self.base / "server.out", *sorted((self.base / "log").glob("*.log"))]:
            if p.is_file():
                lines += p.read_text(errors="replace").splitlines()[-n:]
        return "\n".join(lines[-n:])

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._run_as, str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env(),
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def queue_depths(self) -> dict[str, tuple[int, int]]:
        """queue -> (ready, unacknowledged), from rabbitmqctl."""
        cp = self.ctl("list_queues", "-q", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged")
        out = {}
        for line in cp.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                out[parts[0]] = (int(parts[1]), int(parts[2]))
        return out

    def stop_node(self) -> None:
        """Stop the node (data kept); the epmd stays for a restart."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.ctl("stop", timeout=60)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        self._log.close()

    def restart(self) -> None:
        self.stop_node()
        self.start()

    def stop(self) -> None:
        try:
            self.stop_node()
        finally:
            self._stop_epmd()
            shutil.rmtree(self.base, ignore_errors=True)

    def _stop_epmd(self) -> None:
        """The `epmd -daemon` this node started on its own ERL_EPMD_PORT (found by its port)."""
        for pid in _pids_listening(self.epmd_port):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def __enter__(self) -> RabbitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pids_listening(port: int) -> list[int]:
    """Pids of processes with a listening TCP socket on ``port`` (from /proc, no lsof needed)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "0A":
                inodes.add(f[9])
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    pids.append(int(proc.name))
                    break
        except OSError:
            continue
    return pids
