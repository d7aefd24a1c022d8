#!/usr/bin/env bash
# Builds plugin.wasm from app.py with componentize-py.
set -euo pipefail
cd "$(dirname "$0")"
command -v componentize-py >/dev/null || {
    echo "componentize-py not found: pip install componentize-py=={{componentize_py}}" >&2
    exit 127
}
componentize-py -d wit -w {{kind}} componentize app -o plugin.wasm
