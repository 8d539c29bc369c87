#!/usr/bin/env bash
# Set up a checkout (README, CI): the venv with everything the commands and the tests need, and the UI.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q -e '.[dev]'
# hometwin serve (FastAPI) in a second step: crossbar pins idna<2.6 and FastAPI's anyio needs
# idna>=2.8, which pip cannot resolve in one step; the router runs with the newer idna (docs/api.md)
if ! out=$(pip install -q -e '.[serve-test]' 2>&1); then printf '%s\n' "$out" >&2; exit 1; fi
printf '%s\n' "$out" | grep -v -e idna -e "resolver does not currently" -e '^$' >&2 || true  # pip names the pin

# The UI (Angular 21 needs Node >= 20.19): a clean install from the lockfile, the build that
# hometwin serve serves (ui/dist), and its unit tests.
if command -v npm >/dev/null; then
    (cd ui && npm ci --no-audit --no-fund && npm run build && npm test)
else
    echo "setup: npm not found — the UI is not built (hometwin serve answers 503 for it; the UI tests fail)" >&2
fi
