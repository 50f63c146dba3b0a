#!/usr/bin/env bash
# Search a cell with NAO.
#   scripts/train_search.sh cnn --config=smoke [flags]             NAO-WS (weight sharing, default)
#   scripts/train_search.sh rnn --mode=nao --config=smoke [flags]  NAO (every architecture trained alone)
set -euo pipefail
cd "$(dirname "$0")/.."
task="${1:-}"
case "$task" in
  cnn|rnn) shift ;;
  *) echo "usage: scripts/train_search.sh {cnn|rnn} [--mode=ws|nao] [--flag=value ...]" >&2; exit 2 ;;
esac
module="train_search"
args=()
for arg in "$@"; do
  case "$arg" in
    --mode=ws) module="train_search" ;;
    --mode=nao) module="train_search_nao" ;;
    --mode=*) echo "error: --mode must be ws (NAO-WS, weight sharing) or nao (no weight sharing), got ${arg#--mode=}" >&2; exit 2 ;;
    *) args+=("$arg") ;;
  esac
done
if [ ! -f "$task/$module.py" ]; then
  echo "error: $task/$module.py is missing from this checkout" >&2
  exit 2
fi
exec python -m "$task.$module" ${args[@]+"${args[@]}"}
