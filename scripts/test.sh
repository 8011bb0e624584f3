#!/usr/bin/env bash
# Install (the package, then the system tools the tests use), then run the linter and the
# whole test suite (fast, slow and shared-data tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/test_tools.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/python -m pytest -q -m "" "$@"
