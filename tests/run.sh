#!/usr/bin/env bash
# The project's one test command (README "Run the tests"); .ci/run calls exactly this.
#
#   bash tests/run.sh                 everything: installs what the tests need, ruff + mypy, then pytest
#   bash tests/run.sh --fast [ARGS]   inner loop: no ComfyUI set-up, no Blender/ComfyUI tests
#   bash tests/run.sh ARGS            pytest ARGS (e.g. -k name, tests/test_x.py) after the installs
#
# On a fresh machine it installs:
#   .venv/                  Python 3.11 dev venv with the pack (editable) + test extra
#   .runtime/blender-venv/  Blender runtime: pip bpy + bpy-vrm-format (skipped if BLENDER_BIN is set)
#   tests/js/node_modules/  gltf-validator, three, @pixiv/three-vrm (from the committed lock file)
#   ComfyUI for the end-to-end tests, chosen in this order:
#     COMFYUI_DIR set         that checkout (its venv or COMFYUI_PYTHON), one pytest run
#     COMFYUI_REPO set        cloned at COMFYUI_REF into .runtime/ComfyUI (install.py --comfyui), one run
#     ../shared/comfyui/      ComfyUI 0.8.0 and 0.3.64 from the bundles there into .runtime/comfyui-<v>
#                             (once; reused): the whole suite against 0.8.0, then the ComfyUI tests
#                             (-m comfyui) against 0.3.64
#     none of these           ComfyUI tests skip locally (and fail under CI=true)
# Under CI=true a skipped Blender, ComfyUI or browser test is a failure (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || { echo "tests/run.sh: $PY not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2; exit 2; }

fast=0
if [[ "${1:-}" == "--fast" ]]; then fast=1; shift; fi

"$PY" install.py --dev $([[ $fast == 1 ]] && echo --no-blender)
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error

# Lint and types first (seconds): ruff (pyflakes, bugbear, imports, pyupgrade) + format, mypy on core/ and driver/.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

if [[ $fast == 1 ]]; then
  exec .venv/bin/python -m pytest -m "not blender and not comfyui" "$@"
fi

# torch for ComfyUI's own venv; these versions lie on this project's machines' disk (../shared/comfyui/README.md).
export COMFYUI_TORCH="${COMFYUI_TORCH:-torch==2.14.1 torchvision==0.29.1}"
shared=../shared/comfyui
versions=()
if [[ -n "${COMFYUI_DIR:-}" ]]; then
  "$PY" install.py --no-deps --no-blender --comfyui
elif [[ -n "${COMFYUI_REPO:-}" ]]; then
  "$PY" install.py --no-deps --no-blender --comfyui
  export COMFYUI_DIR="$PWD/.runtime/ComfyUI"
elif [[ -d "$shared" ]]; then
  versions=(0.8.0 0.3.64)
  for v in "${versions[@]}"; do
    COMFYUI_REPO="$shared/ComfyUI-$v.bundle" COMFYUI_REF="v$v" \
      "$PY" install.py --no-deps --no-blender --comfyui --comfyui-dir ".runtime/comfyui-$v"
  done
fi

if [[ ${#versions[@]} -eq 0 ]]; then
  exec .venv/bin/python -m pytest "$@"
fi

# Both ComfyUI versions: the whole suite against the newest, then every ComfyUI test against the older.
status=0
for v in "${versions[@]}"; do
  echo "=== tests against ComfyUI $v ==="
  args=("$@")
  [[ "$v" != "${versions[0]}" ]] && args=(-m comfyui "$@")
  rc=0
  COMFYUI_DIR="$PWD/.runtime/comfyui-$v" .venv/bin/python -m pytest "${args[@]}" || rc=$?
  # pytest's 5 = "no test selected": fine when the caller's own filter selected no ComfyUI test
  [[ $rc == 5 && $# -gt 0 ]] && rc=0
  [[ $rc != 0 ]] && status=$rc
done
exit $status
