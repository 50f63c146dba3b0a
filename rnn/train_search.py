"""Search a recurrent cell with NAO-WS (weight sharing) on PTB / WikiText-2.

    scripts/train_search.sh rnn --data_dir=data/penn --output_dir=runs/search_ptb
    scripts/train_search.sh rnn --config=smoke --output_dir=runs/smoke     # minutes, offline

The original NAO-WS/rnn/train_search.sh is the default: 1000 random seed cells, a d=300 supernet
trained 1000 epochs (batch 256, SGD lr 0.25, clip 10) with one cell drawn from the pool per step,
the pool scored by validation loss every 200 epochs, then a controller round (embedding 48,
LSTM 96, 4 x 200 MLP, dot attention, 1000 epochs) that generates 300 new cells with lambda up to
30 from the top 100, plus 50 random ones. `--config=smoke` shrinks everything and, without
`--data_dir`, generates a small corpus into `--output_dir/corpus`. The command is the shared
`nao_tf.weight_sharing_search` with this module's `TASK`.

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
from absl import flags

from nao_tf import cli, weight_sharing_search
from nao_tf.controller import STYLES
from nao_tf.distribute import strategy_for_batch, writable_dir
from nao_tf.errors import NaoError
from nao_tf.io import fingerprint
from nao_tf.precision import PRECISION_HELP, PRECISIONS
from nao_tf.search import CONTROLLER_OPTION_FLAGS, EVAL_EPOCHS_HELP, parse_eval_epochs
from rnn.configs import SEARCH_CONFIGS
from rnn.data import Corpus, read_corpus, write_generated_corpus
from rnn.search_evaluator import SupernetEvaluator, SupernetParams
from rnn.search_space import RnnSearchSpace, cell_graphs


@dataclasses.dataclass
class SearchParams:
    """Every flag of the search; defaults are NAO-WS/rnn/train_search.sh."""

    output_dir: str = ""
    data_dir: str = "data/penn"
    overwrite: bool = False
    # Supernet (child).
    emsize: int = 300
    batch_size: int = 256
    bptt: int = 35
    lr: float = 0.25
    clip: float = 10.0
    wdecay: float = 5e-7
    beta: float = 1e-3
    dropout: float = 0.75
    dropouth: float = 0.25
    dropoutx: float = 0.75
    dropouti: float = 0.2
    dropoute: float = 0.0
    epochs: int = 1000
    eval_every_epochs: int = 200
    eval_epochs: str = ""
    eval_windows: int = 256
    eval_arch_batch: int = 4
    save_every_seconds: float = 300.0
    log_interval: int = 50
    precision: str = cli.enum_field("fp32", PRECISIONS)
    jit_compile: bool = False
    # Controller and pool.
    seed_archs: int = 1000
    new_archs: int = 300
    random_archs: int = 50
    top_k: int = 100
    max_lambda: float = 30.0
    lambda_step: float = 1.0
    arch_pool: str = ""
    symmetry: bool = False  # the recurrent cell has no equivalent rewrites
    controller_epochs: int = 1000
    controller_emb: int = 48
    controller_hidden: int = 96
    controller_mlp_layers: int = 4
    controller_mlp_hidden: int = 200
    controller_batch_size: int = 100
    controller_lr: float = 1e-3
    # Beyond the original (nao_tf.search.CONTROLLER_OPTION_FLAGS; defaults: the original).
    predictor_heads: int = 1
    ranking_weight: float = 0.0
    oversample: float = 1.0
    acquisition: str = "mean"
    ucb_beta: float = 1.0
    mutations: int = 0
    beam_width: int = 0
    seed: int = 1267


_HELP = dict(
    output_dir="run directory (created; re-running resumes)",
    data_dir="corpus directory with train.txt, valid.txt, test.txt (--config=smoke without it: "
             "a generated corpus)",
    overwrite="delete --output_dir and start fresh",
    emsize="supernet embedding size = hidden size d", batch_size="supernet training batch",
    bptt="BPTT length (training: this, or half w.p. 0.05; scoring windows: this)",
    lr="supernet SGD learning rate (scaled per step by length / bptt)",
    clip="global gradient-norm clip (0: none)", wdecay="coupled L2 weight decay",
    beta="temporal activation regularisation (TAR) weight",
    dropout="locked dropout on the cell output",
    dropouth="variational dropout on h_{t-1} and node inputs",
    dropoutx="variational dropout on x_t", dropouti="locked dropout on the embedding output",
    dropoute="embedding (word) dropout", epochs="supernet training epochs in all",
    eval_every_epochs="supernet epochs between pool evaluations (and one at the end)",
    eval_epochs=EVAL_EPOCHS_HELP,
    eval_windows="validation windows of bptt tokens per score, spread over the whole validation "
                 "split (0: all of it)",
    eval_arch_batch="cells scored side by side in one call",
    save_every_seconds="supernet checkpoint interval within an epoch (also after every epoch)",
    log_interval="supernet steps between progress lines",
    precision=PRECISION_HELP,
    jit_compile="XLA-compile the supernet's training step",
    seed_archs="random cells in the first pool", new_archs="cells generated per controller round",
    random_archs="fresh random cells added to each new pool",
    top_k="best cells the controller starts generation from",
    max_lambda="largest step size lambda in the embedding space",
    lambda_step="lambda = lambda_step, 2 lambda_step, ... up to --max_lambda",
    arch_pool="file of seed cells (one 22-integer cell per line) instead of random ones",
    symmetry="augment the controller's data with equivalent rewrites (the cell has none)",
    controller_epochs="controller training epochs per round",
    controller_emb="controller token embedding size",
    controller_hidden="controller LSTM size (2 x controller_emb: token pairs are folded)",
    controller_mlp_layers="predictor hidden layers", controller_mlp_hidden="predictor width",
    controller_batch_size="controller batch", controller_lr="controller Adam learning rate",
    seed="random seed", **{name: help_text for name, _, help_text, *_ in CONTROLLER_OPTION_FLAGS})


def params(fv: flags.FlagValues) -> SearchParams:
    """The typed view of parsed flags `fv` (every `SearchParams` field is a flag)."""
    return SearchParams(**{f.name: fv[f.name].value for f in dataclasses.fields(SearchParams)})


def supernet_params(p: SearchParams) -> SupernetParams:
    names = {f.name for f in dataclasses.fields(SupernetParams)}
    return SupernetParams(**{k: v for k, v in dataclasses.asdict(p).items() if k in names})


def check_params(p: SearchParams) -> None:
    """Stops on inconsistent flags before anything is written."""
    if not p.output_dir:
        raise NaoError("--output_dir is required")
    value = lambda name: getattr(p, name)  # noqa: E731
    cli.check_at_least(value, 1, "epochs", "eval_every_epochs", "emsize", "batch_size", "bptt",
                       "eval_arch_batch", "log_interval", "controller_emb", "controller_hidden")
    cli.check_at_least(value, 0, "eval_windows", "controller_mlp_layers")
    parse_eval_epochs(p.eval_epochs, p.epochs)


def check(fv: flags.FlagValues) -> tuple[dict[str, Any], Corpus | None]:
    """The supernet's flags and the corpus (None: --config=smoke generates one)."""
    p = params(fv)
    check_params(p)
    record = dataclasses.asdict(p)
    record.pop("overwrite")
    record["data_fingerprint"] = fingerprint(p.data_dir)
    return record, read_corpus(p.data_dir) if p.data_dir else None


def evaluator(fv: flags.FlagValues, corpus: Corpus | None) -> SupernetEvaluator:
    p = params(fv)
    out = Path(p.output_dir)
    strategy = strategy_for_batch(p.batch_size)
    if corpus is None:  # a generated corpus inside the run directory (each worker its own)
        corpus_dir = Path(writable_dir(str(out), strategy)) / "corpus"
        p = dataclasses.replace(p, data_dir=str(write_generated_corpus(corpus_dir, p.seed)))
        corpus = read_corpus(p.data_dir)
    keras.utils.set_random_seed(p.seed)  # initial weights, dropout masks
    cli.say(f"corpus {p.data_dir}: vocabulary {corpus.vocab_size}, tokens "
            f"train={len(corpus.train)} valid={len(corpus.valid)}")
    return SupernetEvaluator(supernet_params(p), corpus, out / "supernet", strategy, cli.say)


def controller(fv: flags.FlagValues) -> dict[str, Any]:
    """The NAO-WS/rnn PyTorch controller (dot attention, predictor dropout 0, PyTorch's
    initialisers, dropout and weight decay: `nao_tf.controller.STYLES`)."""
    p = params(fv)
    return dict(emb_size=p.controller_emb, hidden_size=p.controller_hidden, encoder_layers=1,
                decoder_layers=1, mlp_layers=p.controller_mlp_layers,
                mlp_hidden=p.controller_mlp_hidden, encoder_dropout=0.1, mlp_dropout=0.0,
                attention="dot", trade_off=0.8, weight_decay=1e-4,
                learning_rate=p.controller_lr, max_gradient_norm=5.0, **STYLES["pytorch"])


TASK = weight_sharing_search.WeightSharingTask(
    name="rnn", space=RnnSearchSpace(),
    flags=[spec for spec in cli.dataclass_flag_specs(SearchParams, _HELP)
           if spec[0] not in weight_sharing_search.COMMON_FLAG_NAMES],
    defaults={name: getattr(SearchParams(), name)
              for name in weight_sharing_search.COMMON_FLAG_NAMES if hasattr(SearchParams, name)},
    presets=SEARCH_CONFIGS, identity=(*SupernetParams.IDENTITY, "data_fingerprint"),
    settings_file="flags.json",
    check=check, evaluator=evaluator, controller=controller,
    score_name="validation loss", search={"normalization": "minmax"}, graphs=cell_graphs,
    final_command="scripts/train_final.sh rnn --config=ptb")


if __name__ == "__main__":
    weight_sharing_search.main(TASK)
