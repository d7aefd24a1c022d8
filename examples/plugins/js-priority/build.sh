#!/usr/bin/env bash
# Builds plugin.wasm from app.js with componentize-js (pinned in package.json,
# installed by `npm ci`). Usage: ./build.sh [WIT_DIR] (default: the repo's wit/)
set -euo pipefail
cd "$(dirname "$0")"
src_wit=${1:-../../../wit}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "node/npm not found" >&2
    exit 127
fi
if [ ! -x node_modules/.bin/componentize-js ]; then
    npm ci --no-audit --no-fund
fi
# componentize-js wants the WIT folder inside the working directory.
rm -rf wit && mkdir wit && cp "$src_wit"/*.wit wit/
rm -f plugin.wasm
# No HTTP and no fetch event: a plugin is given no network, and the host's
# linker has no wasi:http. stdio, random and clocks stay (the host grants
# them as empty/deterministic WASI interfaces).
node_modules/.bin/componentize-js app.js --wit wit --world-name scheduler \
    --disable http fetch-event -o plugin.wasm
test -s plugin.wasm
