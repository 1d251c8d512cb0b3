#!/usr/bin/env bash
# The main job: set up what is missing, then boot the kernel on every core of
# this machine under TCG and report (`comparison boot`).  Extra arguments go to
# `comparison boot` (see README.md).
set -euo pipefail
cd "$(dirname "$0")"
tools/setup.sh
exec cargo run --release --quiet -p comparison -- boot "$@"
