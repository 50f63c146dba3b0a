#!/usr/bin/env bash
# One NAO-WS search (cnn or rnn) across the nodes of a SLURM allocation, one worker per node: the
# supernet trains and scores on all of them, the chief (worker 0) runs the controller rounds:
#   cd nao-tf && sbatch --nodes=2 --gpus-per-node=1 scripts/slurm/train_search.sh cnn \
#       --data_dir=/shared/cifar-10-batches-py --output_dir=/shared/runs/nao_ws
# Submit from the project's directory (the same path on every node); --output_dir on storage every
# node reads (only the chief writes there; a restarted job resumes from its state).
#SBATCH --ntasks-per-node=1
#SBATCH --job-name=nao-tf
exec "${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/scripts/slurm/multi_worker.sh" \
  train_search "$@"
