#!/usr/bin/env bash
# Install FedMetaMal and everything it needs into .venv (created if missing).
# torch is installed first, pinned by constraints.txt, so no other package pulls a CUDA build.
# With Node.js/npm available, the web dashboard (frontend/) is built into
# src/fedmetamal/web/static/ first, so `fedmetamal serve` can serve it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if command -v npm >/dev/null 2>&1; then
  echo "building the web dashboard (frontend/) with npm $(npm --version), node $(node --version)"
  (cd frontend && npm ci --no-audit --no-fund && npm run build)
elif [ -f src/fedmetamal/web/static/index.html ]; then
  echo "warning: npm not found; keeping the dashboard already built in src/fedmetamal/web/static/" >&2
else
  echo "warning: npm not found, so the web dashboard will NOT be built; fedmetamal serve will" \
    "run without it. Install Node.js >= 20.19 (with npm) and rerun scripts/install.sh." >&2
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt torch
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
echo "installed: $(.venv/bin/fedmetamal version) in $(pwd)/.venv"
