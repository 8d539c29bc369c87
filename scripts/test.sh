#!/usr/bin/env bash
# The project's test command (README, CI, docs/testing.md).
#   bash scripts/test.sh [pytest args]          the whole suite (layering is tests/test_layering.py), serial
#   bash scripts/test.sh --fast [pytest args]   the unit layer only: no process, router, database,
#                                               browser or emulator (integration) and no year-long run (slow),
#                                               on one pytest-xdist worker per core (-n 0 after --fast: serial)
set -euo pipefail
cd "$(dirname "$0")/.."

# Compiled bytecode is kept between runs: where PYTHONDONTWRITEBYTECODE is set (containers often set
# it), every run would compile ~500 modules again, and pytest would rewrite the asserts of its
# plugins' packages (schemathesis, hypothesis …) again: ~7 s of CPU per run and per worker.  The cache
# goes to PYTHONPYCACHEPREFIX (by default under .pytest_cache/, ignored by git), not beside the sources.
if [[ -n "${PYTHONDONTWRITEBYTECODE:-}" ]]; then
    unset PYTHONDONTWRITEBYTECODE
    export PYTHONPYCACHEPREFIX="${PYTHONPYCACHEPREFIX:-$PWD/.pytest_cache/pycache}"
fi

if [[ "${1:-}" == "--fast" ]]; then
    shift
    workers=()
    if python -c "import xdist" 2>/dev/null; then  # pytest-xdist: the dev extra
        workers=(-n "${HOMETWIN_TEST_WORKERS:-auto}" --dist worksteal)
    else
        echo "scripts/test.sh: pytest-xdist is not installed (pip install -e '.[dev]'): the unit layer runs serially" >&2
    fi
    exec python -m pytest -m "not integration and not slow" --durations=5 "${workers[@]}" "$@"
fi
exec python -m pytest "$@"
