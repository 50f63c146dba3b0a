#!/usr/bin/env bash
# Download a language-modelling corpus (needs internet), checking MD5 sums.
#   scripts/get_data.sh ptb [DATA_DIR]   -> DATA_DIR/penn/{train,valid,test}.txt        (default data/)
#   scripts/get_data.sh wt2 [DATA_DIR]   -> DATA_DIR/wikitext-2/{train,valid,test}.txt
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
corpus="${1:-}"
data_dir="${2:-data}"
case "$corpus" in
  ptb|wt2) exec python -m rnn.data download --corpus="$corpus" --data_dir="$data_dir" ;;
  *) echo "usage: scripts/get_data.sh {ptb|wt2} [DATA_DIR]" >&2; exit 2 ;;
esac
