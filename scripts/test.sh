#!/usr/bin/env bash
# The project's test command (README, CI, docs/testing.md).
#   bash scripts/test.sh [pytest args]          the whole suite (layering is tests/test_layering.py)
#   bash scripts/test.sh --fast [pytest args]   the unit layer only: no process, router, database,
#                                               browser or emulator (integration) and no year-long run (slow)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--fast" ]]; then
    shift
    exec python -m pytest -m "not integration and not slow" --durations=5 "$@"
fi
exec python -m pytest "$@"
