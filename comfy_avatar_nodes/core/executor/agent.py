"""The Blender executor with a repair loop: run a model-written script in the sandbox; when it
fails (refused, exception, timeout, no output, empty scene) send the error and log tail back
to the coder model, for a fixed number of attempts. Every attempt is kept in an attempts log
(JSON file beside the outputs, rewritten after each attempt so a crash still leaves it)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..assets import next_free_stem, write_json_atomic, write_text_atomic
from ..config import BlenderSettings, SandboxSettings, load_settings
from ..errors import AvatarError
from ..llm.client import LLMClient
from ..llm.script_writer import repair_script, write_script
from ..runtime.blender import BlenderRuntime, find_runtime
from .sandbox import ALLOWED_IMPORTS, FORMATS, run_script

log = logging.getLogger("comfy_avatar.agent")

STAGE = "Blender executor"


class AgentError(AvatarError):
    """Every attempt failed; ``attempts_log`` names the JSON file that shows what happened."""

    def __init__(self, problem: str, fix: str, attempts_log: Path, attempts: list[Attempt]) -> None:
        self.attempts_log = attempts_log
        self.attempts = attempts
        lines = [f"attempt {a.number}: [{a.stage}] {a.error[:300]}" for a in attempts]
        super().__init__(STAGE, problem, f"{fix}. Attempts log: {attempts_log}", detail="\n".join(lines))


@dataclass
class Attempt:
    number: int
    script: str
    ok: bool
    stage: str  # "static check" | "blender" | "script writer"
    error: str = ""
    duration_s: float = 0.0
    log_tail: str = ""
    blocked: list[str] = field(default_factory=list)
    script_sha256: str = ""


@dataclass
class AgentResult:
    outputs: dict[str, str]
    attempts: list[Attempt]
    attempts_log: str
    script_path: str
    log_path: str
    result: dict[str, Any]

    def attempts_json(self) -> str:
        return json.dumps([asdict(a) for a in self.attempts], indent=2)


def parse_formats(value: str | list[str] | tuple[str, ...], requirements: dict[str, Any] | None = None) -> list[str]:
    """ "glb+fbx", ["glb", "blend"] or "requirements" (the requirements' output_formats) -> formats."""
    if isinstance(value, str):
        if value.strip().lower() in ("requirements", "from requirements", "auto"):
            value = list((requirements or {}).get("output_formats") or ["glb"])
        else:
            value = [v for v in value.replace(",", "+").replace(" ", "+").split("+") if v]
    fmts = list(dict.fromkeys(v.strip().lower().lstrip(".") for v in value))
    bad = [f for f in fmts if f not in FORMATS]
    if not fmts or bad:
        raise AvatarError(
            f"{STAGE}: formats",
            f"{bad or 'nothing'} is not a supported choice",
            f"pick from {', '.join(FORMATS)} joined with '+', e.g. glb+fbx",
        )
    return fmts


async def build_asset(
    requirements: dict[str, Any],
    *,
    coder: LLMClient | None,
    out_dir: str | os.PathLike[str],
    name: str = "asset",
    formats: list[str] | None = None,
    max_attempts: int = 3,
    script: str | None = None,
    sandbox: SandboxSettings | None = None,
    runtime: BlenderRuntime | None = None,
    blender: BlenderSettings | None = None,
    on_attempt: Callable[[Attempt], None] | None = None,
) -> AgentResult:
    """Write (unless ``script`` is given), run and repair a script until it yields the asset.

    Outputs land in ``out_dir`` as ``<name>_NNNNN.<fmt>`` plus ``.py`` (final script),
    ``.log`` (last Blender log) and ``.attempts.json``.
    """
    if max_attempts < 1:
        raise AvatarError(f"{STAGE}: max_attempts", f"is {max_attempts}", "use 1 or more")
    if script is not None and not script.strip():
        raise AvatarError(f"{STAGE}: script", "is empty", "connect the Script Writer node's script output")
    if script is None and coder is None:
        raise AvatarError(f"{STAGE}: script", "no script and no coder model to write one", "connect the Script writer")
    formats = formats or parse_formats("requirements", requirements)
    if sandbox is None or blender is None:
        loaded = load_settings()
        sandbox, blender = sandbox or loaded.sandbox, blender or loaded.blender
    rt = runtime if runtime is not None else await asyncio.to_thread(find_runtime, blender)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = next_free_stem(out, name)
    attempts_log = out / f"{stem}.attempts.json"
    log_path = out / f"{stem}.log"
    staging = out / f".{stem}.staging"
    attempts: list[Attempt] = []

    def record(a: Attempt) -> None:
        attempts.append(a)
        write_json_atomic(
            attempts_log,
            {
                "stage": STAGE,
                "formats": formats,
                "requirements": requirements,
                "attempts": [asdict(x) for x in attempts],
            },
        )
        log.info("attempt %d: %s%s", a.number, "ok" if a.ok else f"FAILED [{a.stage}] ", a.error[:200])
        if on_attempt:
            on_attempt(a)

    try:
        if script is None:
            assert coder is not None
            try:
                code: str = await asyncio.to_thread(
                    write_script,
                    coder,
                    requirements,
                    allowed_imports=ALLOWED_IMPORTS,
                    blender_version=rt.version,
                    formats=formats,
                )
            except AvatarError as e:
                record(Attempt(1, "", False, "script writer", str(e)))
                raise
        else:
            code = script
        for n in range(1, max_attempts + 1):
            run = await run_script(
                code,
                out_dir=staging,
                name=stem,
                formats=formats,
                sandbox=sandbox,
                runtime=rt,
                keep_log=log_path,
                blender=blender,
            )
            att = Attempt(
                n,
                code,
                run.ok,
                run.stage,
                run.error,
                round(run.duration_s, 3),
                run.log_tail,
                run.blocked,
                hashlib.sha256(code.encode()).hexdigest(),
            )
            record(att)
            if run.ok:
                final: dict[str, str] = {}
                for fmt, path in run.outputs.items():
                    dest = out / f"{stem}.{fmt}"
                    os.replace(path, dest)
                    final[fmt] = str(dest)
                script_path = write_text_atomic(out / f"{stem}.py", code)
                return AgentResult(final, attempts, str(attempts_log), str(script_path), str(log_path), run.result)
            if n == max_attempts:
                break
            if coder is None:
                break
            try:
                code = await asyncio.to_thread(
                    repair_script,
                    coder,
                    requirements,
                    code,
                    run.error,
                    run.log_tail,
                    allowed_imports=ALLOWED_IMPORTS,
                    blender_version=rt.version,
                    formats=formats,
                    attempt=n + 1,
                )
            except AvatarError as e:
                record(Attempt(n + 1, "", False, "script writer", str(e)))
                raise AgentError(
                    f"the coder model could not repair the script: {e}",
                    "check the coder endpoint (llm.coder.*) and try again",
                    attempts_log,
                    attempts,
                ) from None
        last = attempts[-1]
        raise AgentError(
            f"the script failed in all {len(attempts)} attempt(s); last failure at the "
            f"{last.stage} stage: {last.error[:500]}",
            "rephrase the prompt, use a stronger coder model, or raise max_attempts",
            attempts_log,
            attempts,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
