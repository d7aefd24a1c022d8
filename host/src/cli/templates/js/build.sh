#!/usr/bin/env bash
# Builds plugin.wasm from app.js with componentize-js (pinned in package.json).
set -euo pipefail
cd "$(dirname "$0")"
[ -x node_modules/.bin/componentize-js ] || npm install --no-audit --no-fund
rm -f plugin.wasm
# No HTTP and no fetch event: plugins get no network, and the host links no wasi:http.
node_modules/.bin/componentize-js app.js --wit wit --world-name {{kind}} \
    --disable http fetch-event -o plugin.wasm
test -s plugin.wasm
