"""The original configurations, as flag defaults, and building a model from flags.

Final training (`rnn.train_final`): `--config=ptb` is NAO/rnn/train_ptb_final.sh (and
NAO-WS/rnn/train_final.sh); `--config=wt2` is NAO/rnn/train_wt2_final.sh; `--config=ptb_search`
is NAO/rnn/train_ptb_search.sh, the per-architecture schedule of NAO without weight sharing (the
PTB final model for 600 epochs; `rnn.train_search_nao` trains every candidate with it). Flags not
named here keep the original train.py defaults, which the flag definitions in `rnn.train_final` carry.
Search (`rnn.train_search`): its flag defaults are NAO-WS/rnn/train_search.sh; `--config=smoke`
is a minutes-long offline run on a generated corpus. Explicit command-line flags override a config.
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
    "ptb_search": dict(data_dir="data/penn", emsize=850, epochs=600, batch_size=64, dropout=0.75,
                       dropouth=0.25, dropoutx=0.75, dropouti=0.2, dropoute=0.0, wdecay=8e-7),
}

SEARCH_CONFIGS: dict[str, dict[str, Any]] = {
    "smoke": dict(data_dir="", emsize=32, batch_size=16, epochs=10, eval_every_epochs=5,
                  lr=20.0, clip=0.25, dropout=0.3, dropouth=0.2, dropoutx=0.3, dropouti=0.1,
                  eval_windows=0, eval_arch_batch=8, save_every_seconds=10.0, log_interval=20,
                  seed_archs=60, new_archs=20, random_archs=5, top_k=20, controller_epochs=100,
                  controller_emb=16, controller_hidden=32, controller_mlp_layers=2,
                  controller_mlp_hidden=32, controller_batch_size=20, controller_lr=3e-3),
}

def build_model(params: Mapping[str, Any], arch: RnnCell, vocab_size: int) -> RNNModel:
    """The language model for flag values `params` (emsize and the dropout rates)."""
    return RNNModel(arch, vocab_size, int(params["emsize"]), dropout=params["dropout"],
                    dropouth=params["dropouth"], dropoutx=params["dropoutx"],
                    dropouti=params["dropouti"], dropoute=params["dropoute"], name="lm")
