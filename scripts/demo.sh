#!/usr/bin/env bash
# Set up (idempotent) and run the demo on the embedded toy model.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install -q torch==2.13.0   # the CPU build; see README
fi
"$PY" -m pip install -q -e .
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec concept-unlearn demo "$@"
