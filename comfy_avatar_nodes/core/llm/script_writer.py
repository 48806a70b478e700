"""Script writer: requirements -> a Blender Python script (the coder role's model).

The prompt spells out the contract the sandbox enforces (core/executor/sandbox.py, blender_cli/
sandbox_exec.py: empty scene, output path in COMFY_AVATAR_OUTPUT and sys.argv, no network, no
processes), so a good model writes scripts that run the first time, and the repair prompt carries the
executor's error and log tail back when one fails. The contract's import allow-list is the
executor's: callers pass it in (``allowed_imports``), so this module never imports the executor,
which sits above llm/ (it drives the coder model).
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from .client import LLMClient, LLMError

log = logging.getLogger("comfy_avatar.scriptgen")

STAGE = "Script writer"
_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.S | re.I)


def system_prompt(blender_version: str, formats: list[str], allowed_imports: Sequence[str]) -> str:
    """The coder model's contract; it matches what sandbox_exec.py and the sandbox enforce."""
    return f"""You write Python scripts for Blender {blender_version} (bpy API of that version) that build one
3D object. The script runs headless (background mode, no UI, no viewport context) in an isolated sandbox.
Contract:
- The scene starts EMPTY. Build the object with bpy.ops primitives, bpy.data meshes or bmesh.
- Units are metres. Z is up. The object stands on Z=0, centred on X=Y=0. Apply the sizes given.
- Give objects and materials meaningful names. Colours: Principled BSDF "Base Color" or
  material.diffuse_color, as RGBA floats 0..1.
- Output: after your script ends, the executor exports the whole scene to {", ".join(formats)}; you do not
  need to export. The main output path is os.environ["COMFY_AVATAR_OUTPUT"] and is also in sys.argv
  (sys.argv[sys.argv.index("--") + 1:] == ["--output", PATH]). If you export or write a file yourself, write
  only there or in os.environ["COMFY_AVATAR_OUTPUT_DIR"] (also the current folder); /tmp is scratch;
  everything else is read-only.
- Imports: ordinary ones work ({", ".join(allowed_imports)}); os.path, sys.argv, pathlib and json
  are fine. The sandbox has no network (no sockets, downloads or URLs) and cannot start programs (no
  subprocess, os.system, multiprocessing); such calls fail.
- Headless: build the scene directly; do not register bpy.app.handlers or bpy.app.timers (the
  script runs once; an output carrying scripts, text blocks or scripted drivers is refused), and
  do not call UI-only operators or bpy.ops.wm.quit_blender.
- Finish in a few seconds; avoid huge loops. Leave Blender in object mode.
Reply with the complete script in ONE ```python code block and nothing else."""


def extract_code(answer: str) -> str:
    """The script in a model's answer: the longest ```python block, else the whole answer."""
    blocks = [b.strip() for b in _BLOCK.findall(answer)]
    if blocks:
        return max(blocks, key=len) + "\n"
    text = answer.strip()
    if text.startswith("```"):  # an unterminated fence
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return text + "\n"


def _ask(client: LLMClient, messages: list[dict[str, Any]]) -> str:
    answer = client.chat(messages, temperature=0.2)
    code = extract_code(answer)
    if not code.strip():
        raise LLMError(STAGE, "the coder model answered with no script", "check llm.coder.model, or try again")
    try:
        ast.parse(code)
    except SyntaxError as e:
        log.warning(
            "script writer: answer has a syntax error at line %s (%s); the executor will report it", e.lineno, e.msg
        )
    return code


def write_script(
    client: LLMClient,
    requirements: dict[str, Any],
    *,
    allowed_imports: Sequence[str],
    blender_version: str = "4.2",
    formats: list[str] | None = None,
) -> str:
    """A first script for ``requirements``; ``allowed_imports``: the executor's import allow-list."""
    formats = formats or list(requirements.get("output_formats") or ["glb"])
    user = "Build this object. Requirements (JSON, sizes in metres):\n" + json.dumps(
        requirements, indent=1, ensure_ascii=False
    )
    return _ask(
        client,
        [
            {"role": "system", "content": system_prompt(blender_version, formats, allowed_imports)},
            {"role": "user", "content": user},
        ],
    )


def repair_script(
    client: LLMClient,
    requirements: dict[str, Any],
    script: str,
    error: str,
    log_tail: str,
    *,
    allowed_imports: Sequence[str],
    blender_version: str = "4.2",
    formats: list[str] | None = None,
    attempt: int = 2,
) -> str:
    """Send the failed script, its error and the Blender log tail back; get a whole new script."""
    formats = formats or list(requirements.get("output_formats") or ["glb"])
    tail = "\n".join(log_tail.strip().splitlines()[-40:])
    user = "Build this object. Requirements (JSON, sizes in metres):\n" + json.dumps(
        requirements, indent=1, ensure_ascii=False
    )
    feedback = (
        f"Your script failed (this is attempt {attempt}).\nError: {error}\n"
        f"Last lines of the Blender log:\n{tail or '(empty)'}\n\n"
        "Fix the problem and reply with the complete corrected script in one ```python block."
    )
    return _ask(
        client,
        [
            {"role": "system", "content": system_prompt(blender_version, formats, allowed_imports)},
            {"role": "user", "content": user},
            {"role": "assistant", "content": f"```python\n{script.rstrip()}\n```"},
            {"role": "user", "content": feedback},
        ],
    )
