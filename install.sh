#!/usr/bin/env bash
# Install rocket (editable, with test extras). On a machine without an NVIDIA GPU, torch's CPU build is
# installed first so pip does not pull a multi-GB CUDA build; the package's own torch range stays open.
# Override the CPU torch requirement with ROCKET_CPU_TORCH (e.g. ROCKET_CPU_TORCH="torch==2.9.1").
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
# An OS-managed Python outside a virtualenv (PEP 668, e.g. Debian's /usr/bin/python3) refuses pip installs:
# say what to do instead of failing halfway through pip's own message.
if [ -z "${PIP_BREAK_SYSTEM_PACKAGES:-}" ] && "$PYTHON" -c '
import sys, sysconfig, pathlib
in_venv = sys.prefix != sys.base_prefix
sys.exit(0 if not in_venv and (pathlib.Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED").exists() else 1)'; then
  echo "install.sh: $("$PYTHON" -c 'import sys; print(sys.executable)') is managed by the OS (PEP 668);" \
       "make a virtualenv first: python3 -m venv .venv && . .venv/bin/activate && bash install.sh" \
       "(or set PIP_BREAK_SYSTEM_PACKAGES=1 to install into it anyway)" >&2
  exit 2
fi
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "$PYTHON" -m pip install --quiet "torch>=2.4"
  else
    "$PYTHON" -m pip install --quiet "${ROCKET_CPU_TORCH:-torch==2.13.0}"
  fi
fi
"$PYTHON" -m pip install --quiet -e ".[dev]"
