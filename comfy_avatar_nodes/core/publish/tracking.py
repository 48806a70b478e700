"""Record a pipeline run in MLflow: params, metrics, tags and the produced files.

    from comfy_avatar_nodes.core.publish.tracking import log_run, asset_record
    params, metrics = asset_record(vrm_handle, "vrm")
    info = log_run("avatars", "alice-v2", params, metrics, [Path(vrm_handle["path"])], {"stage": "rig"})
    info.run_id, info.artifact_uri

Tracking URI: ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else a sqlite file
``<blender.runtime_dir>/mlflow/mlflow.db`` with a file artifact root beside it (offline, no
server). MLflow is imported inside :func:`log_run` (about 2 s): a Python without it loses
this one node, with an error that says ``pip install mlflow``. The client is explicit
(``MlflowClient(tracking_uri=...)``), never MLflow's process-global active run.

Secrets never reach the store: a param or tag whose *name* looks secret (api_key, token,
password, credential ...) or whose *value* contains the value of a secret environment
variable (every ``*_env`` key variable in the config, ``tracking.secret_envs`` and any
KEY/TOKEN/SECRET/PASSWORD variable) is logged as ``[redacted]``; an artifact file that
contains such a value is refused before the run is created.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..assets import safe_name
from ..config import Settings, load_settings
from ..errors import AvatarError
from ..secrets import contains_secret, is_secret_name, redact, secret_values

log = logging.getLogger("comfy_avatar.tracking")

REDACTED_VALUE = "[redacted]"
MAX_KEY = 250  # MLflow's limit for param / metric / tag keys
MAX_PARAM_VALUE = 6000  # MLflow's limit for param values (it would truncate with a warning)
MAX_LIST_PARAM = 250  # lists in asset meta are logged as JSON only when this short
BATCH = 100  # MLflow accepts at most 100 params / tags per log_batch
_KEY_BAD = re.compile(r"[^\w.\- /:]")
INSTALL_FIX = "pip install mlflow (into ComfyUI's Python), or leave the Track run node out of the graph"


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    experiment_id: str
    artifact_uri: str
    tracking_uri: str = ""
    redacted: tuple[str, ...] = field(default=())  # names of params/tags whose values were withheld
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- where runs go


def tracking_target(settings: Settings | None = None, env: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """(tracking URI, artifact root URI or None to let the server decide)."""
    env = os.environ if env is None else env
    settings = settings or load_settings(env)
    uri = settings.tracking.uri.strip() or env.get("MLFLOW_TRACKING_URI", "").strip()
    root = settings.tracking.artifact_root.strip()
    if not uri:
        base = Path(settings.blender.runtime_dir).expanduser().absolute() / "mlflow"
        uri = "sqlite:///" + (base / "mlflow.db").as_posix()
        root = root or (base / "artifacts").as_uri()
    if root and "://" not in root:
        root = Path(root).expanduser().absolute().as_uri()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return uri, root or None


def _scrub(text: str, uri: str, secrets: list[str]) -> str:
    """``text`` without the URI's user:password part and without any secret value."""
    userinfo = urlsplit(uri).netloc.rpartition("@")[0]
    if userinfo:
        text = text.replace(userinfo + "@", "")
    return redact(text, secrets)[:500]


def shown_uri(uri: str) -> str:
    """The URI without any user:password part, for messages."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        parts = parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else ""))
    return urlunsplit(parts)


# ---------------------------------------------------------------- cleaning what gets logged


def clean_key(key: str) -> str:
    cleaned = _KEY_BAD.sub("_", str(key).strip())[:MAX_KEY]
    if not cleaned:
        raise AvatarError("params", "an empty name", "give every param, metric and tag a name")
    return cleaned


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, (Mapping, list, tuple)):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    return text if len(text) <= MAX_PARAM_VALUE else text[: MAX_PARAM_VALUE - 1] + "…"


def clean_params(
    values: Mapping[str, Any] | None, secrets: Iterable[str], what: str = "params"
) -> tuple[dict[str, str], list[str]]:
    """String values safe to log, and the names whose values were replaced by ``[redacted]``.

    An entry whose *name* contains a secret value is dropped (its name is not repeated)."""
    secrets = list(secrets)
    out: dict[str, str] = {}
    redacted: list[str] = []
    for raw_key, value in (values or {}).items():
        if contains_secret(str(raw_key), secrets):
            redacted.append(f"<{what} name holding a secret>")
            continue
        key = clean_key(raw_key)
        text = _as_text(value)
        if is_secret_name(key) or contains_secret(text, secrets):
            out[key] = REDACTED_VALUE
            redacted.append(key)
        else:
            out[key] = text
    if redacted:
        log.warning("tracking: withheld secret-looking %s: %s", what, ", ".join(redacted))
    return out, redacted


def clean_metrics(values: Mapping[str, Any] | None, secrets: Iterable[str]) -> dict[str, float]:
    secrets = list(secrets)
    out: dict[str, float] = {}
    for raw_key, value in (values or {}).items():
        if contains_secret(str(raw_key), secrets):
            continue
        key = clean_key(raw_key)
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, (int, float)):
            raise AvatarError(
                f"metrics.{key}", f"{type(value).__name__} is not a number", "log numbers as metrics and text as params"
            )
        if not math.isfinite(float(value)):
            raise AvatarError(f"metrics.{key}", f"{value} is not a finite number", "log a finite value")
        out[key] = float(value)
    return out


def check_artifacts(paths: Iterable[str | os.PathLike[str]], secrets: Iterable[str]) -> list[Path]:
    """Existing files, none holding a secret value (checked in overlapping chunks)."""
    needles = [s.encode() for s in secrets]
    overlap = max((len(n) for n in needles), default=1)
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise AvatarError("artifacts", f"{path} is not a file", "pass files written by upstream nodes")
        tail = b""
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                window = tail + block
                if any(n in window for n in needles):
                    raise AvatarError(
                        "artifacts",
                        f"{path.name} contains the value of a secret environment variable",
                        "do not log this file; remove the key from it",
                    )
                tail = window[-overlap:]
        files.append(path.absolute())
    return files


def _flatten(meta: Mapping[str, Any], prefix: str, depth: int = 2) -> Iterable[tuple[str, Any]]:
    for k, v in meta.items():
        key = f"{prefix}.{k}"
        if isinstance(v, Mapping):
            if depth > 1:
                yield from _flatten(v, key, depth - 1)
        elif isinstance(v, (list, tuple)):
            text = json.dumps(v, default=str)
            if len(text) <= MAX_LIST_PARAM:
                yield key, text
        elif v is None or isinstance(v, (str, int, float, bool)):
            yield key, v


def asset_record(handle: Mapping[str, Any], prefix: str) -> tuple[dict[str, Any], dict[str, float]]:
    """Params and metrics for one asset handle (Asset.to_dict()): file name, kind, sha256 and its
    meta (bone count, triangles, timings ...) as params; numbers and the file size as metrics."""
    path = Path(str(handle.get("path", "")))
    params: dict[str, Any] = {
        f"{prefix}.file": path.name,
        f"{prefix}.kind": handle.get("kind", ""),
        f"{prefix}.sha256": handle.get("sha256", ""),
    }
    metrics: dict[str, float] = {}
    if path.is_file():
        metrics[f"{prefix}.size_bytes"] = float(path.stat().st_size)
    for key, value in _flatten(dict(handle.get("meta") or {}), prefix):
        params[key] = value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            metrics[key] = float(value)
    return params, metrics


# ---------------------------------------------------------------- MLflow


def _mlflow(telemetry: bool) -> Any:
    if not telemetry:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        import mlflow.entities as entities
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        raise AvatarError("mlflow", f"is not installed in this Python ({e.name or e})", INSTALL_FIX) from None
    return MlflowClient, entities, MlflowException


def log_run(
    experiment: str,
    run_name: str = "",
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    artifacts: Iterable[str | os.PathLike[str]] = (),
    tags: Mapping[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    env: Mapping[str, str] | None = None,
) -> RunInfo:
    """Create one finished MLflow run with ``params``, ``metrics``, ``tags`` and the ``artifacts`` files.

    Everything is checked (secrets, numbers, files) before the run is created; if logging
    fails half-way, the run is marked FAILED and the error names the tracking URI."""
    t0 = time.perf_counter()
    env = os.environ if env is None else env
    settings = settings or load_settings(env)
    experiment = experiment.strip()
    if not experiment:
        raise AvatarError("experiment", "is empty", "name the MLflow experiment, e.g. avatars")
    secrets = secret_values(settings, env)
    clean_p, red_p = clean_params(params, secrets, "params")
    clean_t, red_t = clean_params(tags, secrets, "tags")
    clean_m = clean_metrics(metrics, secrets)
    files = check_artifacts(artifacts, secrets)
    if contains_secret(experiment, secrets):
        raise AvatarError(
            "experiment", "the name contains the value of a secret environment variable", "pick a plain experiment name"
        )
    run_name = run_name.strip()[:MAX_KEY]
    if contains_secret(run_name, secrets):
        run_name, red_t = "", red_t + ["run_name"]
    MlflowClient, entities, MlflowException = _mlflow(settings.tracking.telemetry)
    uri, root = tracking_target(settings, env)
    where = shown_uri(uri)
    try:
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            try:
                exp_id = client.create_experiment(
                    experiment, artifact_location=f"{root}/{safe_name(experiment, 'experiment')}" if root else None
                )
            except MlflowException:  # created meanwhile by another process
                exp = client.get_experiment_by_name(experiment)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        elif exp.lifecycle_stage == "deleted":
            raise AvatarError(
                "experiment",
                f"{experiment!r} was deleted in MLflow ({where})",
                "restore it in the MLflow UI (or `mlflow experiments restore`) or use another name",
            )
        else:
            exp_id = exp.experiment_id
        run = client.create_run(exp_id, run_name=run_name or None, tags=clean_t)
    except AvatarError:
        raise
    except Exception as e:  # noqa: BLE001 - MLflow raises many kinds (store, HTTP, sqlite)
        raise AvatarError(
            "tracking",
            f"cannot start a run at {where} ({type(e).__name__}: {_scrub(str(e), uri, secrets)})",
            "check tracking.uri / MLFLOW_TRACKING_URI and that the tracking server is up",
        ) from None
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        items_p = [entities.Param(k, v) for k, v in clean_p.items()]
        items_m = [entities.Metric(k, v, now, 0) for k, v in clean_m.items()]
        for i in range(0, max(len(items_p), len(items_m), 1), BATCH):
            client.log_batch(run_id, metrics=items_m[i : i + BATCH], params=items_p[i : i + BATCH])
        for f in files:
            client.log_artifact(run_id, str(f))
    except Exception as e:  # noqa: BLE001
        try:
            client.set_terminated(run_id, "FAILED")
        finally:
            raise AvatarError(
                "tracking",
                f"logging run {run_id} at {where} failed ({type(e).__name__}: {_scrub(str(e), uri, secrets)})",
                "check the tracking server and the artifact store permissions",
            ) from None
    client.set_terminated(run_id, "FINISHED")
    duration = round(time.perf_counter() - t0, 3)
    log.info(
        "tracking: run %s in experiment %r (%d params, %d metrics, %d files) at %s in %.2f s",
        run_id,
        experiment,
        len(clean_p),
        len(clean_m),
        len(files),
        where,
        duration,
    )
    return RunInfo(run_id, str(exp_id), run.info.artifact_uri, where, tuple(red_p + red_t), duration)
