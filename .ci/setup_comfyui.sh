#!/usr/bin/env bash
# Sets up the real ComfyUI the comfyui test tier runs against, outside the checkout (idempotent):
# ComfyUI 0.8.0 from ../shared/comfyui, its own venv, the pack installed the way the README tells
# users (cloned into custom_nodes/, requirements.txt into ComfyUI's Python), Debian's Chromium and
# playwright (which drives the system browser; it downloads none). Prints the variables to export.
#
#     bash .ci/setup_comfyui.sh [WORKDIR]      (default /tmp/concept-unlearn-comfyui)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-${COMFYUI_WORK:-/tmp/concept-unlearn-comfyui}}
TARBALL=${COMFYUI_TARBALL:-$REPO/../shared/comfyui/ComfyUI-0.8.0.tar.gz}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
log() { echo "[setup_comfyui] $*" >&2; }

if [ ! -f "$WORK/ComfyUI/main.py" ]; then
    log "unpacking $TARBALL"
    tar xzf "$TARBALL" -C "$WORK"
fi
if [ ! -x "$WORK/venv/bin/python" ]; then
    python3 -m venv "$WORK/venv"
fi
PY="$WORK/venv/bin/python"
# torch first, with a torchvision that imports beside it (shared/comfyui/README.md)
if ! "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
    log "installing torch 2.14.1 + torchvision 0.29.1 into ComfyUI's venv"
    "$PY" -m pip install -q torch==2.14.1 torchvision==0.29.1
fi
log "installing ComfyUI's requirements"
"$PY" -m pip install -q -r "$WORK/ComfyUI/requirements.txt" requests playwright

# The pack, as the README's install section says.
PACK="$WORK/ComfyUI/custom_nodes/comfyui-concept-unlearn"
rm -rf "$PACK"
git clone -q "$REPO" "$PACK"
"$PY" -m pip install -q -r "$PACK/requirements.txt"

if [ ! -x /usr/bin/chromium ]; then
    log "installing Debian's chromium"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi
echo "export COMFYUI_PATH=$WORK/ComfyUI COMFYUI_PYTHON=$PY CHROMIUM=/usr/bin/chromium"
