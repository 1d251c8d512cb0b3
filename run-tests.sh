#!/usr/bin/env bash
# Every test: set up what is missing, the lint gate (tools/lint.sh: rustfmt
# and clippy -D warnings on host, kernel and user crates; skip it with
# LINT=0), then `cargo test` at the root (host unit tests of percpu/, mm/,
# bootfmt/, comparison/ and the QEMU integration tests in tests/).  Extra
# arguments go to `cargo test`.  Ends with the number of
# skipped tests and their names (the skip log `<target>/test-skips.log`,
# written by `comparison::skip`); with env CI set a test never skips, it fails.
set -euo pipefail
cd "$(dirname "$0")"
tools/setup.sh
target=$(cargo metadata --no-deps --format-version 1 \
    | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
skips="${target:-target}/test-skips.log"
rm -f "$skips"
status=0
lint=0
if [ "${LINT:-1}" != 0 ]; then
    tools/lint.sh || lint=$?
fi
cargo test "$@" || status=$?
if ((lint)); then
    echo "run-tests: the lint gate failed (tools/lint.sh)"
    status=$lint
fi
count=0
if [ -s "$skips" ]; then count=$(sort -u "$skips" | wc -l); fi
echo "run-tests: $count skipped test(s)"
if ((count)); then sort -u "$skips"; fi
exit "$status"
