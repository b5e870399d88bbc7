#!/usr/bin/env bash
# Builds the drop-in library: target/<profile>/libaio.so.1 (soname
# libaio.so.1, libaio's version nodes), from the uaio-capi static library.
# Usage: scripts/build-libaio.sh [release|debug]   (default: release)
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-release}"
flag=()
[ "$profile" = release ] && flag=(--release)
cargo build -q "${flag[@]}" -p uaio-capi -p uaio-cli
out="target/$profile"
gcc -O2 -fPIC -c -o "$out/uaio-compat.o" crates/uaio-capi/compat.c
gcc -shared -o "$out/libaio.so.1" "$out/uaio-compat.o" \
    -Wl,-soname,libaio.so.1 \
    -Wl,--version-script=crates/uaio-capi/libaio.map \
    -Wl,--whole-archive "$out/libuaio_capi.a" -Wl,--no-whole-archive \
    -Wl,-z,now -lpthread -ldl -lm -lc
echo "$out/libaio.so.1"
