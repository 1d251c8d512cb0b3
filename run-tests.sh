#!/usr/bin/env bash
# Every test: set up what is missing, then `cargo test` at the root (host unit
# tests of percpu/, mm/, bootfmt/, comparison/ and the QEMU integration tests
# in tests/).  Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"
tools/setup.sh
exec cargo test "$@"
