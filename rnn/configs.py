"""The original final-training configurations, as flag defaults, and building a model from flags.

`--config=ptb` is NAO/rnn/train_ptb_final.sh (and NAO-WS/rnn/train_final.sh); `--config=wt2` is
NAO/rnn/train_wt2_final.sh. Flags not named here keep the original train.py defaults, which the
flag definitions in `rnn.train_final` carry. Explicit command-line flags override a config.
"""

from __future__ import annotations

from typing import Any, Mapping

from rnn.model import RNNModel
from rnn.search_space import RnnCell

CONFIGS: dict[str, dict[str, Any]] = {
    "ptb": dict(data_dir="data/penn", emsize=850, epochs=4000, batch_size=64, dropout=0.75,
                dropouth=0.25, dropoutx=0.75, dropouti=0.2, dropoute=0.0, wdecay=8e-7),
    "wt2": dict(data_dir="data/wikitext-2", emsize=700, epochs=2000, batch_size=64, dropout=0.75,
                dropouth=0.15, dropoutx=0.75, dropouti=0.2, dropoute=0.0, wdecay=5e-7),
}

# Flags that define the trained function: a run directory only resumes with the same values.
MODEL_KEYS = ("arch", "emsize", "vocab_size")


def build_model(params: Mapping[str, Any], arch: RnnCell, vocab_size: int) -> RNNModel:
    """The language model for flag values `params` (emsize and the dropout rates)."""
    return RNNModel(arch, vocab_size, int(params["emsize"]), dropout=params["dropout"],
                    dropouth=params["dropouth"], dropoutx=params["dropoutx"],
                    dropouti=params["dropouti"], dropoute=params["dropoute"], name="lm")
