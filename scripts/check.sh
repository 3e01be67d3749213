#!/usr/bin/env bash
# The README's second command, and exactly what CI runs (.ci/run): install everything, then every
# check and every test. The integration tests start their own Kafka broker and schema registry on
# free ports under a temporary directory, and stop them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
step() { printf '\n[check] %s\n' "$*"; }
step "ruff";          .venv/bin/ruff check .
step "ruff format";   .venv/bin/ruff format --check .
step "mypy (strict)"; .venv/bin/mypy
step "import layers"; .venv/bin/lint-imports
step "pytest";        .venv/bin/pytest "$@"
