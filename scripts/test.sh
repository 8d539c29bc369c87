#!/usr/bin/env bash
# The project's test command (README, CI): layering contract, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
lint-imports
python -m pytest "$@"
