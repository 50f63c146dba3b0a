#!/usr/bin/env bash
# Search a cell with NAO.
#   scripts/train_search.sh cnn --config=smoke [flags]
#   scripts/train_search.sh rnn --config=smoke [flags]
set -euo pipefail
cd "$(dirname "$0")/.."
task="${1:-}"
case "$task" in
  cnn|rnn) shift ;;
  *) echo "usage: scripts/train_search.sh {cnn|rnn} [--flag=value ...]" >&2; exit 2 ;;
esac
if [ ! -f "$task/train_search.py" ]; then
  echo "error: the $task search (weight sharing) is not part of this version yet;" \
       "see README.md for what runs today" >&2
  exit 2
fi
exec python -m "$task.train_search" "$@"
