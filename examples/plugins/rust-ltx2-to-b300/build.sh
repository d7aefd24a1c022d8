#!/usr/bin/env bash
# Builds plugin.wasm: the crate for wasm32-wasip2 with the workspace's
# `plugin` profile (size-optimised, LTO, panic=abort). The Rust toolchain and
# the wasm32-wasip2 target are pinned in the repository's rust-toolchain.toml.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../../.. && pwd)
# Shares the host build script's plugin target dir, so the SDK is built once.
target=${CARGO_TARGET_DIR:-$root/target}/plugin-build
env -u CARGO_TARGET_DIR -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_TARGET \
    cargo build --locked --target wasm32-wasip2 --profile plugin -p rust-ltx2-to-b300 \
    --target-dir "$target"
cp "$target/wasm32-wasip2/plugin/rust_ltx2_to_b300.wasm" plugin.wasm
