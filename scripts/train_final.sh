#!/usr/bin/env bash
# Train a found architecture from scratch and evaluate it.
#   scripts/train_final.sh cnn --config=nao_ws --arch=runs/search/best_arch.json [flags]
#   scripts/train_final.sh rnn --config=ptb --arch=NAO_WS [flags]
# TASK is any importable task package with a train_final module. Relative paths in the flags are
# relative to the directory the script is run from.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
task="${1:-}"
case "$task" in
  ''|-*) echo "usage: scripts/train_final.sh TASK [--flag=value ...]   (TASK: cnn, rnn, or a task package)" >&2; exit 2 ;;
esac
shift
if ! python "$repo/scripts/find_module.py" "$task.train_final" 2>/dev/null; then
  echo "error: no module $task.train_final; a task package provides train_final.py (cnn and rnn do)" >&2
  exit 2
fi
exec python -m "$task.train_final" "$@"
