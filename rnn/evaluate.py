"""Evaluate a trained language model (the best checkpoint of a `rnn.train_final` run).

    python -m rnn.evaluate --run_dir=runs/ptb_nao [--data_dir=...] [--batch_size=1]

Reads the run's flags.json (architecture, sizes, corpus), restores best/, and computes the mean
NLL per predicted token and the perplexity of the valid and test splits in fixed `bptt` chunks with
the hidden state carried along (test batch 1, as the original). Writes `--output_dir`
(default RUN_DIR/eval): flags.json and results.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import tensorflow as tf
from absl import flags

from nao_tf.commands import cli
from nao_tf.common.errors import NaoError, StateError
from nao_tf.common.io import atomic_write_json, read_json
from nao_tf.common.resume import restore
from rnn.configs import build_model
from rnn.data import batchify, read_corpus
from rnn.search_space import RnnSearchSpace
from rnn.training import LMStep, perplexity


def evaluate_run(run_dir: str | os.PathLike, data_dir: str | None = None, batch_size: int = 1,
                 valid_batch_size: int = 10) -> dict[str, Any]:
    """Perplexities of the best model of `run_dir` on valid (batch 10) and test (`batch_size`)."""
    run_dir = Path(run_dir)
    best = run_dir / "best" / "model"
    if not (run_dir / "flags.json").exists() or not (run_dir / "best" / "model.index").exists():
        raise StateError(f"{run_dir}: no trained model (flags.json and best/model); train one "
                         "with `scripts/train_final.sh rnn --output_dir=...` first")
    params = read_json(run_dir / "flags.json")
    data_dir = data_dir or params["data_dir"]
    corpus = read_corpus(data_dir)
    if params.get("vocab_size") != corpus.vocab_size:
        raise StateError(f"{data_dir} has a vocabulary of {corpus.vocab_size} words but the model "
                         f"was trained with {params.get('vocab_size')}; use the training corpus")
    space = RnnSearchSpace()
    arch = space.parse(params["arch"])
    model = build_model(params, arch, corpus.vocab_size)
    restore(tf.train.Checkpoint(model=model), best, exact=False)
    lm = LMStep(model, tf.distribute.get_strategy(), int(params["batch_size"]), clip=0.0,
                wdecay=0.0, beta=0.0)
    bptt = int(params["bptt"])
    valid_loss = lm.evaluate(batchify(corpus.valid, valid_batch_size), bptt)
    test_loss = lm.evaluate(batchify(corpus.test, batch_size), bptt)
    return {"run_dir": str(run_dir), "data_dir": str(data_dir), "arch": space.to_string(arch),
            "valid_loss": valid_loss, "valid_ppl": perplexity(valid_loss),
            "valid_batch_size": valid_batch_size, "test_loss": test_loss,
            "test_ppl": perplexity(test_loss), "test_batch_size": batch_size}


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    run_dir: str = cli.option("", "output_dir of a rnn.train_final run")
    data_dir: str = cli.option("", "corpus directory (default: the run's)")
    batch_size: int = cli.option(1, "test batch size")
    valid_batch_size: int = cli.option(10, "validation batch size")
    output_dir: str = cli.option("", "where to write results (default RUN_DIR/eval)")


def main(argv: Sequence[str]) -> None:
    f = flags.FLAGS
    if not f.run_dir:
        raise NaoError("--run_dir is required (the output_dir of a rnn.train_final run)")
    out = Path(f.output_dir or Path(f.run_dir) / "eval")
    atomic_write_json(out / "flags.json", {k: f[k].value for k in
                                           ("run_dir", "data_dir", "batch_size",
                                            "valid_batch_size", "output_dir")})
    results = evaluate_run(f.run_dir, f.data_dir, f.batch_size, f.valid_batch_size)
    atomic_write_json(out / "results.json", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cli.define_flags([EvaluateConfig])
    cli.run(main)
