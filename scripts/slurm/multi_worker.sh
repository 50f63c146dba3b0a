#!/usr/bin/env bash
# One training across the nodes of a SLURM allocation: one worker per node, each on all of its
# GPUs (TensorFlow's MultiWorkerMirroredStrategy, configured by TF_CONFIG). Run through
# scripts/slurm/train_final.sh or train_search.sh (sbatch those); the first argument names the
# scripts/ command, the rest are its arguments.
# NAO_TF_PORT: the workers' port (default 12345).
set -euo pipefail
repo="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
port="${NAO_TF_PORT:-12345}"
workers="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed "s/\$/:$port/" | paste -sd, -)"
# shellcheck disable=SC2016  # expanded by each task's shell, where SLURM_PROCID is its index
srun --ntasks-per-node=1 bash -c '
  TF_CONFIG="$(python3 -c "import json, os, sys
print(json.dumps({\"cluster\": {\"worker\": sys.argv[1].split(\",\")},
                  \"task\": {\"type\": \"worker\", \"index\": int(os.environ[\"SLURM_PROCID\"])}}))" "$0")"
  export TF_CONFIG
  exec "$1/scripts/$2.sh" "${@:3}"' "$workers" "$repo" "$@"
