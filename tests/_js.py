"""Run the Node checks in tests/js (Khronos glTF-Validator, three.js + @pixiv/three-vrm) on a file.

    result = check_with_node(path)                  # check_vrm.mjs: validator + three-vrm load
    result = check_with_node(path, "check_gltf.mjs")  # validator only (plain .glb)

Skips the calling test with the reason when node or tests/js/node_modules is missing
(fails instead under CI=true, where tests/run.sh runs `npm ci --prefix tests/js` first).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from conftest import need

JS_DIR = Path(__file__).resolve().parent / "js"
NODE_PACKAGES = ("gltf-validator", "three", "@pixiv/three-vrm")


def node_ready() -> tuple[bool, str]:
    if shutil.which("node") is None:
        return False, "node is not on PATH (install Node.js >= 18 to run the glTF/VRM checks)"
    missing = [p for p in NODE_PACKAGES if not (JS_DIR / "node_modules" / p / "package.json").is_file()]
    if missing:
        return False, f"tests/js/node_modules lacks {', '.join(missing)} (run `npm ci --prefix tests/js`)"
    return True, ""


def check_with_node(path: str | Path, script: str = "check_vrm.mjs", timeout_s: float = 120) -> dict:
    """The script's JSON report; it has ok, errors, warnings, validator and (VRM) vrm."""
    ready, reason = node_ready()
    need(ready, reason)
    proc = subprocess.run(
        ["node", str(JS_DIR / script), str(Path(path).resolve())],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise AssertionError(f"{script} printed no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(lines[-1])
    result["exit_code"] = proc.returncode
    return result
