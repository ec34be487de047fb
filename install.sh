#!/usr/bin/env bash
# Install rocket (editable, with test extras). On a machine without an NVIDIA GPU, torch's CPU build is
# installed first so pip does not pull a multi-GB CUDA build; the package's own torch range stays open.
# Override the CPU torch requirement with ROCKET_CPU_TORCH (e.g. ROCKET_CPU_TORCH="torch==2.9.1").
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "$PYTHON" -m pip install --quiet "torch>=2.4"
  else
    "$PYTHON" -m pip install --quiet "${ROCKET_CPU_TORCH:-torch==2.13.0}"
  fi
fi
"$PYTHON" -m pip install --quiet -e ".[dev]"
