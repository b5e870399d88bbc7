#!/usr/bin/env bash
# Every test: formatting, lints, unit tests, doc tests, and the conformance
# suite (each case against kernel AIO and against uaio).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
