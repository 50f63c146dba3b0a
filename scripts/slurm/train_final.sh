#!/usr/bin/env bash
# One final training (cnn or rnn) across the nodes of a SLURM allocation, one worker per node:
#   cd nao-tf && sbatch --nodes=2 --gpus-per-node=4 scripts/slurm/train_final.sh cnn \
#       --config=naonet --data_dir=/shared/cifar-10-batches-py --output_dir=/shared/runs/naonet
# Submit from the project's directory (the same path on every node); --output_dir on storage every
# node reads (only the chief, worker 0, writes there; a restarted job resumes from its checkpoints).
#SBATCH --ntasks-per-node=1
#SBATCH --job-name=nao-tf
exec "${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/scripts/slurm/multi_worker.sh" \
  train_final "$@"
