#!/usr/bin/env bash
# Every test: formatting, lints, unit tests, doc tests, and the conformance
# suite and the differential fuzzer (each case against kernel AIO and
# against uaio) on both backends, the seccomp fallback test, and unmodified
# programs (fio, qemu-img, C programs) on the drop-in library.
set -euo pipefail
cd "$(dirname "$0")/.."
# Programs the drop-in tests run (unmodified fio, qemu-img; gcc and libaio.h
# for the C ones; valgrind). They are required: when they are missing and
# cannot be installed, this fails now instead of skipping those tests.
need() {
    local m=()
    command -v fio >/dev/null || m+=(fio)
    command -v qemu-img >/dev/null || m+=(qemu-utils)
    command -v gcc >/dev/null || m+=(gcc)
    command -v valgrind >/dev/null || m+=(valgrind)
    [ -e /usr/include/libaio.h ] || m+=(libaio-dev)
    echo "${m[*]}"
}
if [ -n "$(need)" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(need) >/dev/null; } || true
fi
if [ -n "$(need)" ]; then
    echo "error: missing and not installable here: $(need) (apt-get install -y fio qemu-utils gcc valgrind libaio-dev)" >&2
    exit 1
fi
# Wanted, not required: mkfs.xfs for the tests that compare with the kernel
# on an XFS image (they say they were skipped without it).
if ! command -v mkfs.xfs >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xfsprogs >/dev/null; } || true
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# Every crate inherits the workspace's rust-version and lints; no dependency
# needs a newer Rust (clippy's incompatible_msrv, above, checks the API items
# the code uses against the same rust-version).
python3 scripts/check-manifests.py
echo "== all tests, automatic backend (io_uring here)"
cargo test --workspace
cargo test -p uaio --all-features; UAIO_BACKEND=threads cargo test -p uaio --all-features --test tokio_api; cargo run -q -p uaio --features tokio --example tokio_copy; cargo run -q -p uaio --features tokio --example direct_read
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features
echo "== engine tests and conformance suite on the thread-pool backend"
UAIO_BACKEND=threads cargo test -p uaio --tests
UAIO_BACKEND=threads cargo test -p uaio-conform --test conformance
UAIO_BACKEND=threads cargo test -p uaio-conform --test differential
echo "== unmodified programs on the drop-in libaio.so.1 (fio, qemu-img)"
bash scripts/test-dropin.sh
echo "== C programs (libaio API and raw syscall()) on the kernel and on uaio, outputs compared"
bash scripts/test-c-conformance.sh
echo "== fio comparison, quick (every workload on kernel AIO, uaio on both backends and io_uring; each run proven, no timing checked)"
bash scripts/fio-compare.sh --quick
