#!/usr/bin/env bash
# The main job: set up what is missing, then run the default workload suite
# (ours, ours-global, ours-servers and Linux at 1..host cores under TCG,
# several workloads per boot, then the robustness boots of ours-servers:
# about 5-6 minutes on a 2-core machine), print the summary,
# per-structure, null-IPC and robustness tables and where the report is.
#   ./run-comparison.sh                      the default suite
#   ./run-comparison.sh --no-robustness      without the robustness boots
#   ./run-comparison.sh --runs 1 --cores 2   the suite with other options
#   ./run-comparison.sh boot --cores 4       any other `comparison` command
#   ./run-comparison.sh run ... / suite ...
# See README.md for the options and what the output means.
set -euo pipefail
cd "$(dirname "$0")"
tools/setup.sh
case "${1:-}" in
    boot | run | suite | help | --help | -h)
        exec cargo run --release --quiet -p comparison -- "$@" ;;
    *)
        exec cargo run --release --quiet -p comparison -- suite "$@" ;;
esac
