#!/usr/bin/env bash
# The project's one test command (README "Run the tests"); .ci/run calls exactly this.
# On a fresh machine it installs what the tests need, then runs pytest:
#   .venv/                  Python 3.11 dev venv with the pack (editable) + test extra
#   .runtime/blender-venv/  Blender runtime: pip bpy + bpy-vrm-format (skipped if BLENDER_BIN is set)
#   tests/js/node_modules/  gltf-validator, three, @pixiv/three-vrm (from the committed lock file)
# ComfyUI end-to-end tests run only when COMFYUI_DIR points at a ComfyUI checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || { echo "tests/run.sh: $PY not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2; exit 2; }
"$PY" install.py --dev
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
exec .venv/bin/python -m pytest "$@"
