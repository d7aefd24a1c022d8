#!/usr/bin/env bash
# Builds plugin.wasm from app.py with componentize-py (pinned below).
# Usage: ./build.sh [WIT_DIR]   (default: the repository's wit/)
set -euo pipefail
cd "$(dirname "$0")"
COMPONENTIZE_PY_VERSION=0.25.1
wit=${1:-../../../wit}
if ! command -v componentize-py >/dev/null; then
    echo "componentize-py not found: pip install componentize-py==$COMPONENTIZE_PY_VERSION" >&2
    exit 127
fi
have=$(componentize-py --version | awk '{print $2}')
if [ "$have" != "$COMPONENTIZE_PY_VERSION" ]; then
    echo "warning: componentize-py $have, this example is pinned to $COMPONENTIZE_PY_VERSION" >&2
fi
componentize-py -d "$wit" -w scheduler componentize app -o plugin.wasm
