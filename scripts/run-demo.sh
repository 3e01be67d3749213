#!/usr/bin/env bash
# The README's first command: install everything, then run the main job (alpha demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/alpha demo "$@"
