#!/usr/bin/env bash
# The GPU suite (bench/gpu_suite.py): every throughput the paper-scale jobs depend on, one table.
#   bench/gpu_suite.sh           paper configs (about 8 minutes on one GPU)
#   bench/gpu_suite.sh --tiny    tiny networks, any machine
set -euo pipefail
exec python "$(dirname "$0")/gpu_suite.py" "$@"
