#!/usr/bin/env bash
# Every test: formatting, lints, unit tests, doc tests, and the conformance
# suite (each case against kernel AIO and against uaio) on both backends,
# plus the seccomp fallback test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
echo "== all tests, automatic backend (io_uring here)"
cargo test --workspace
echo "== engine tests and conformance suite on the thread-pool backend"
UAIO_BACKEND=threads cargo test -p uaio --tests
UAIO_BACKEND=threads cargo test -p uaio-conform --test conformance
echo "== unmodified programs on the drop-in libaio.so.1 (fio, qemu-img)"
bash scripts/test-dropin.sh
echo "== C programs (libaio API and raw syscall()) on the kernel and on uaio, outputs compared"
bash scripts/test-c-conformance.sh
