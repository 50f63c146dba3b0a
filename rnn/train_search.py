"""Search a recurrent cell with NAO-WS (weight sharing) on PTB / WikiText-2.

    scripts/train_search.sh rnn --data_dir=data/penn --output_dir=runs/search_ptb
    scripts/train_search.sh rnn --config=smoke --output_dir=runs/smoke     # minutes, offline

The original NAO-WS/rnn/train_search.sh is the default: 1000 random seed cells, a d=300 supernet
trained 1000 epochs (batch 256, SGD lr 0.25, clip 10) with one cell drawn from the pool per step,
the pool scored by validation loss every 200 epochs, then a controller round (embedding 48,
LSTM 96, 4 x 200 MLP, dot attention, 1000 epochs) that generates 300 new cells with lambda up to
30 from the top 100, plus 50 random ones. `--config=smoke` shrinks everything and, without
`--data_dir`, generates a small corpus into `--output_dir/corpus`. The command is the shared
`nao_tf.commands.weight_sharing_search` over `rnn.task.TASK`.

`--output_dir` receives flags.json, the search state and results (state.json, history.jsonl,
pool.<i>.txt/.perf, best_arch.json, best_arch.png/.dot, tensorboard/), the controller checkpoint
and the supernet (supernet/: state.json, ckpt/, tb/). Re-running the same command resumes where
it stopped (mid-epoch for the supernet); `--overwrite` starts afresh. Train the result with
`scripts/train_final.sh rnn --arch=<output_dir>/best_arch.json`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import keras

from nao_tf.algorithm.controller import STYLES
from nao_tf.algorithm.evaluators import parse_eval_epochs
from nao_tf.commands import cli, weight_sharing_search
from nao_tf.common.io import fingerprint
from nao_tf.runtime.distribute import strategy_for_batch, writable_dir
from rnn.data import Corpus, read_corpus, write_generated_corpus
from rnn.search_evaluator import SupernetEvaluator, SupernetParams


@dataclasses.dataclass
class SearchParams:
    """Every flag of the search (defaults: NAO-WS/rnn/train_search.sh): the run, the supernet
    (`SupernetParams`), the pool and the controller."""

    output_dir: str = cli.option("", "run directory (created; re-running resumes)")
    data_dir: str = cli.option("data/penn", "corpus directory with train.txt, valid.txt, "
                               "test.txt (--config=smoke without it: a generated corpus)")
    overwrite: bool = cli.option(False, "delete --output_dir and start fresh")
    supernet: SupernetParams = cli.section(SupernetParams)
    # The pool and the controller.
    seed_archs: int = cli.option(1000, "random cells in the first pool")
    new_archs: int = cli.option(300, "cells generated per controller round")
    random_archs: int = cli.option(50, "fresh random cells added to each new pool")
    top_k: int = cli.option(100, "best cells the controller starts generation from")
    max_lambda: float = cli.option(30.0, "largest step size lambda in the embedding space")
    symmetry: bool = cli.option(False, "augment the controller's data with equivalent rewrites "
                                "(the cell has none)")
    controller_emb: int = cli.option(48, "controller token embedding size", minimum=1)
    controller_hidden: int = cli.option(96, "controller LSTM size (2 x controller_emb: token "
                                        "pairs are folded)", minimum=1)
    controller_mlp_layers: int = cli.option(4, "predictor hidden layers", minimum=0)
    controller_mlp_hidden: int = cli.option(200, "predictor width")
    controller_lr: float = cli.option(1e-3, "controller Adam learning rate")


def check_params(p: SearchParams) -> None:
    """Stops on inconsistent flags before anything is written."""
    cli.check_bounds(p)
    parse_eval_epochs(p.supernet.eval_epochs, p.supernet.epochs)


def check(p: SearchParams) -> tuple[dict[str, Any], Corpus | None]:
    """The supernet's flags and the corpus (None: --config=smoke generates one)."""
    check_params(p)
    record = cli.config_values(p)
    record.pop("overwrite")
    record["data_fingerprint"] = fingerprint(p.data_dir)
    return record, read_corpus(p.data_dir) if p.data_dir else None


def supernet(p: SearchParams, corpus: Corpus | None) -> SupernetEvaluator:
    """The supernet over `corpus` (None: a generated one in the run directory)."""
    out, supernet = Path(p.output_dir), p.supernet
    strategy = strategy_for_batch(supernet.batch_size)
    data_dir = p.data_dir
    if corpus is None:  # a generated corpus inside the run directory (each worker its own)
        corpus_dir = Path(writable_dir(str(out), strategy)) / "corpus"
        data_dir = str(write_generated_corpus(corpus_dir, supernet.seed))
        corpus = read_corpus(data_dir)
    keras.utils.set_random_seed(supernet.seed)  # initial weights, dropout masks
    cli.say(f"corpus {data_dir}: vocabulary {corpus.vocab_size}, tokens "
            f"train={len(corpus.train)} valid={len(corpus.valid)}")
    return SupernetEvaluator(supernet, corpus, out / "supernet", strategy, cli.say)


def controller(p: SearchParams) -> dict[str, Any]:
    """The NAO-WS/rnn PyTorch controller (dot attention, predictor dropout 0, PyTorch's
    initialisers, dropout and weight decay: `nao_tf.algorithm.controller.STYLES`)."""
    return dict(emb_size=p.controller_emb, hidden_size=p.controller_hidden, encoder_layers=1,
                decoder_layers=1, mlp_layers=p.controller_mlp_layers,
                mlp_hidden=p.controller_mlp_hidden, encoder_dropout=0.1, mlp_dropout=0.0,
                attention="dot", trade_off=0.8, weight_decay=1e-4,
                learning_rate=p.controller_lr, max_gradient_norm=5.0, **STYLES["pytorch"])


if __name__ == "__main__":
    from rnn.task import TASK

    weight_sharing_search.main(TASK)
