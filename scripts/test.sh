#!/usr/bin/env bash
# The project's test command (README, CI): the whole test suite (layering is tests/test_layering.py).
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pytest "$@"
