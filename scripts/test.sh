#!/usr/bin/env bash
# Install (the package, then the system tools the tests use), then run the linter and the
# whole test suite (fast, slow and shared-data tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/test_tools.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
# The dashboard's unit tests (Vitest); install.sh has installed frontend/node_modules.
if [ -d frontend/node_modules ]; then
    (cd frontend && npm test)
elif [ "${CI:-}" = "true" ]; then
    echo "error: frontend/node_modules is missing under CI=true (install.sh needs npm)" >&2
    exit 1
fi
# A throwaway PostgreSQL server for the store tests (unless FEDMETAMAL_TEST_POSTGRES_URL names
# one already), stopped when this script exits; pytest's exit status is kept.
if [ -z "${FEDMETAMAL_TEST_POSTGRES_URL:-}" ]; then
    pg_env=$(mktemp)
    if bash scripts/postgres.sh "$pg_env"; then
        # shellcheck source=/dev/null
        source "$pg_env"
        trap 'bash scripts/postgres.sh --stop "$FEDMETAMAL_TEST_POSTGRES_DIR"' EXIT
    else
        echo "warning: scripts/postgres.sh did not start PostgreSQL; the PostgreSQL store" \
            "tests skip (and fail under CI=true)" >&2
    fi
    rm -f "$pg_env"
fi
.venv/bin/python -m pytest -q -m "" "$@"
