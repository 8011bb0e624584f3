#!/usr/bin/env bash
# Install FedMetaMal and everything it needs into .venv (created if missing).
# torch is installed first, pinned by constraints.txt, so no other package pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt torch
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
echo "installed: $(.venv/bin/fedmetamal version) in $(pwd)/.venv"
