#!/usr/bin/env bash
# Search a cell with NAO.
#   scripts/train_search.sh cnn --config=smoke [flags]
#   scripts/train_search.sh rnn --config=smoke [flags]
set -euo pipefail
cd "$(dirname "$0")/.."
task="${1:-}"
case "$task" in
  cnn|rnn) shift; exec python -m "$task.train_search" "$@" ;;
  *) echo "usage: scripts/train_search.sh {cnn|rnn} [--flag=value ...]" >&2; exit 2 ;;
esac
