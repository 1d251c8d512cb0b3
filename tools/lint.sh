#!/usr/bin/env bash
# The lint gate (run by run-tests.sh, so by CI): formatting, then clippy with
# warnings as errors on every kind of crate in the workspace — the host
# crates with their tests, examples and benches; the kernel and the
# built-in loader (bare metal); the user programs and workloads (static
# musl).  The lints themselves are in the root Cargo.toml
# (`[workspace.lints]`), so `cargo clippy` anywhere applies the same ones.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "lint: cargo fmt --all --check"
cargo fmt --all --check
echo "lint: clippy, host crates"
cargo clippy --all-targets -- -D warnings
echo "lint: clippy, kernel and loader (x86_64-unknown-none)"
cargo clippy --release -p kernel -p loader --target x86_64-unknown-none -- -D warnings
echo "lint: clippy, the servers kernel image (feature monolithic off)"
cargo clippy --profile servers-image -p kernel --no-default-features --target x86_64-unknown-none -- -D warnings
echo "lint: clippy, user programs and workloads (x86_64-unknown-linux-musl)"
cargo clippy --release -p userland -p workloads --target x86_64-unknown-linux-musl -- -D warnings
echo "lint: clean"
