#!/usr/bin/env bash
# Train a found architecture from scratch and evaluate it.
#   scripts/train_final.sh cnn --config=nao_ws --arch=runs/search/best_arch.json [flags]
#   scripts/train_final.sh rnn --config=ptb --arch=NAO_WS [flags]
set -euo pipefail
cd "$(dirname "$0")/.."
task="${1:-}"
case "$task" in
  cnn|rnn) shift; exec python -m "$task.train_final" "$@" ;;
  *) echo "usage: scripts/train_final.sh {cnn|rnn} [--flag=value ...]" >&2; exit 2 ;;
esac
