#!/usr/bin/env bash
# One final training across the nodes of a SLURM allocation: one worker per node, each on all of
# its GPUs (TensorFlow's MultiWorkerMirroredStrategy, configured by TF_CONFIG).
#   cd nao-tf && sbatch --nodes=2 --gpus-per-node=4 scripts/slurm/train_final.sh cnn \
#       --config=naonet --data_dir=/shared/cifar-10-batches-py --output_dir=/shared/runs/naonet
# Submit from the project's directory (the same path on every node); --output_dir on storage every
# node reads (only the chief, worker 0, writes there; a restarted job resumes from its checkpoints).
# NAO_TF_PORT: the workers' port (default 12345). Multi-worker tasks: cnn (docs/distributed.md).
#SBATCH --ntasks-per-node=1
#SBATCH --job-name=nao-tf
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
  exec "$1/scripts/train_final.sh" "${@:2}"' "$workers" "$repo" "$@"
