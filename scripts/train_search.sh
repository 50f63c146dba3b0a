#!/usr/bin/env bash
# Search a cell with NAO.
#   scripts/train_search.sh cnn --config=smoke [flags]             NAO-WS (weight sharing, default)
#   scripts/train_search.sh rnn --mode=nao --config=smoke [flags]  NAO (every architecture trained alone)
# TASK is any importable task package with a train_search (NAO-WS) and/or train_search_nao (NAO)
# module. Relative paths in the flags are relative to the directory the script is run from.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
task="${1:-}"
case "$task" in
  ''|-*) echo "usage: scripts/train_search.sh TASK [--mode=ws|nao] [--flag=value ...]   (TASK: cnn, rnn, or a task package)" >&2; exit 2 ;;
esac
shift
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
if ! python "$repo/scripts/find_module.py" "$task.$module" 2>/dev/null; then
  echo "error: no module $task.$module; a task package provides $module.py for this mode (cnn and rnn do)" >&2
  exit 2
fi
exec python -m "$task.$module" ${args[@]+"${args[@]}"}
