#!/usr/bin/env bash
# Set up (idempotent) and run the test suite. Tests that need a real ComfyUI run when
# COMFYUI_PATH points at a ComfyUI checkout whose Python environment is usable; else they skip.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install -q torch==2.13.0   # the CPU build; see README
fi
"$PY" -m pip install -q -e ".[test]"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$PY" -m pytest -q -ra --strict-markers --durations=40 "$@"
