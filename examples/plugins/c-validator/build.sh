#!/usr/bin/env bash
# Builds plugin.wasm from validator.c:
#   1. wit-bindgen c writes the bindings of the `validator` world into gen/;
#   2. clang 14 compiles a wasm32-wasi core module (a reactor: no main)
#      against Debian's wasi-libc;
#   3. wasm-tools component new wraps it into a component.
# The module imports nothing from WASI (no stdio, no files, no clock), so no
# preview-1 adapter is needed: the component imports only comfyume's `log`.
# Pinned: Debian clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32;
# wit-bindgen-cli 0.46.0 and wasm-tools 1.239.0 (cargo install --locked).
set -euo pipefail
cd "$(dirname "$0")"
wit=${1:-../../../wit}
CLANG=${CLANG:-$(command -v clang-14 || command -v clang)}
if [ -d /usr/share/wasi-sysroot ]; then
    sysroot=(--sysroot=/usr/share/wasi-sysroot)
else
    sysroot=() # Debian's wasi-libc: /usr/include/wasm32-wasi, /usr/lib/wasm32-wasi
fi
rm -rf gen plugin.wasm validator.core.wasm
wit-bindgen c "$wit" --world validator --out-dir gen >/dev/null
"$CLANG" --target=wasm32-wasi "${sysroot[@]}" -mexec-model=reactor -O2 -Wall -Werror \
    -Wno-unused-function -Igen \
    validator.c gen/validator.c gen/validator_component_type.o \
    -o validator.core.wasm
wasm-tools component new validator.core.wasm -o plugin.wasm
wasm-tools validate --features component-model plugin.wasm
