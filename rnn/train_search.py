"""Search a recurrent cell with NAO-WS (weight sharing) on PTB / WikiText-2.

    scripts/train_search.sh rnn --data_dir=data/penn --output_dir=runs/search_ptb
    scripts/train_search.sh rnn --config=smoke --output_dir=runs/smoke     # minutes, offline

The original NAO-WS/rnn/train_search.sh is the default: 1000 random seed cells, a d=300 supernet
trained 1000 epochs (batch 256, SGD lr 0.25, clip 10) with one cell drawn from the pool per step,
the pool scored by validation loss every 200 epochs, then a controller round (embedding 48,
LSTM 96, 4 x 200 MLP, dot attention, 1000 epochs) that generates 300 new cells with lambda up to
30 from the top 100, plus 50 random ones. `--config=smoke` shrinks everything and, without
`--data_dir`, generates a small corpus into `--output_dir/corpus`.

`--output_dir` receives flags.json, the search state and results (state.json, history.jsonl,
pool.<i>.txt/.perf, best_arch.json, best_arch.png/.dot, tensorboard/), the controller checkpoint
and the supernet (supernet/: state.json, ckpt/, tb/). Re-running the same command resumes where
it stopped (mid-epoch for the supernet); `--overwrite` starts afresh. Train the result with
`scripts/train_final.sh rnn --arch=<output_dir>/best_arch.json`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from absl import flags

from nao_tf import cli
from nao_tf.controller import ControllerConfig
from nao_tf.distribute import get_strategy
from nao_tf.errors import NaoError
from nao_tf.run_dir import RunDir
from nao_tf.search import (CONTROLLER_OPTION_FLAGS, NAOSearch, SearchConfig, SearchResult,
                           check_controller_options, controller_options)
from rnn.configs import SEARCH_CONFIGS
from rnn.data import read_corpus, write_generated_corpus
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
    eval_windows: int = 256
    eval_arch_batch: int = 4
    save_every_seconds: float = 300.0
    log_interval: int = 50
    # Controller and pool.
    seed_archs: int = 1000
    new_archs: int = 300
    random_archs: int = 50
    top_k: int = 100
    max_lambda: float = 30.0
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
    eval_every_epochs="supernet epochs between pool evaluations (epochs must be a multiple)",
    eval_windows="validation windows of bptt tokens per score, spread over the whole validation "
                 "split (0: all of it)",
    eval_arch_batch="cells scored side by side in one call",
    save_every_seconds="supernet checkpoint interval within an epoch (also after every epoch)",
    log_interval="supernet steps between progress lines",
    seed_archs="random cells in the first pool", new_archs="cells generated per controller round",
    random_archs="fresh random cells added to each new pool",
    top_k="best cells the controller starts generation from",
    max_lambda="largest step size lambda in the embedding space",
    controller_epochs="controller training epochs per round",
    controller_emb="controller token embedding size",
    controller_hidden="controller LSTM size (2 x controller_emb: token pairs are folded)",
    controller_mlp_layers="predictor hidden layers", controller_mlp_hidden="predictor width",
    controller_batch_size="controller batch", controller_lr="controller Adam learning rate",
    seed="random seed", **{name: help_text for name, _, help_text, *_ in CONTROLLER_OPTION_FLAGS})


def supernet_params(p: SearchParams) -> SupernetParams:
    names = {f.name for f in dataclasses.fields(SupernetParams)}
    return SupernetParams(**{k: v for k, v in dataclasses.asdict(p).items() if k in names})


def search_config(p: SearchParams) -> SearchConfig:
    """The outer loop: one evaluation every `eval_every_epochs` supernet epochs."""
    return SearchConfig(seed_archs=p.seed_archs, iterations=p.epochs // p.eval_every_epochs - 1,
                        top_k=p.top_k, new_archs=p.new_archs, random_archs=p.random_archs,
                        max_lambda=p.max_lambda, lambda_step=1.0,
                        controller_epochs=p.controller_epochs, train_on="pool",
                        normalization="minmax", symmetry=False, seed=p.seed,
                        **controller_options(lambda name: getattr(p, name))[1])


def controller_config(p: SearchParams, space: RnnSearchSpace) -> ControllerConfig:
    """The NAO-WS/rnn PyTorch controller (dot attention, predictor dropout 0)."""
    return ControllerConfig.for_space(
        space, emb_size=p.controller_emb, hidden_size=p.controller_hidden, encoder_layers=1,
        decoder_layers=1, mlp_layers=p.controller_mlp_layers, mlp_hidden=p.controller_mlp_hidden,
        encoder_dropout=0.1, mlp_dropout=0.0, attention="dot", trade_off=0.8, weight_decay=1e-4,
        learning_rate=p.controller_lr, max_gradient_norm=5.0,
        batch_size=p.controller_batch_size, seed=p.seed,
        **controller_options(lambda name: getattr(p, name))[0])


def check_params(p: SearchParams) -> None:
    """Stops on inconsistent flags before anything is written."""
    if not p.output_dir:
        raise NaoError("--output_dir is required")
    if p.eval_every_epochs < 1 or p.epochs < p.eval_every_epochs or \
            p.epochs % p.eval_every_epochs:
        raise NaoError(f"--epochs={p.epochs} must be a positive multiple of "
                       f"--eval_every_epochs={p.eval_every_epochs}")
    for name in ("emsize", "batch_size", "bptt", "seed_archs", "top_k", "controller_epochs",
                 "eval_arch_batch"):
        if getattr(p, name) < 1:
            raise NaoError(f"--{name} must be at least 1, got {getattr(p, name)}")
    if p.eval_windows < 0:
        raise NaoError(f"--eval_windows must be 0 (all) or positive, got {p.eval_windows}")
    check_controller_options(lambda name: getattr(p, name))


def run_search(p: SearchParams, log=print) -> SearchResult:
    """Runs (or resumes) the search; returns its `SearchResult`."""
    check_params(p)
    out = Path(p.output_dir)
    corpus = read_corpus(p.data_dir) if p.data_dir else None
    record = dataclasses.asdict(p)
    record.pop("overwrite")
    RunDir(out, SupernetParams.IDENTITY).prepare(record, p.overwrite)
    if corpus is None:  # --config=smoke: a generated corpus inside the run directory
        p = dataclasses.replace(p, data_dir=str(write_generated_corpus(out / "corpus", p.seed)))
        corpus = read_corpus(p.data_dir)
    space = RnnSearchSpace()
    strategy = get_strategy()
    if p.batch_size % strategy.num_replicas_in_sync:
        strategy = get_strategy([strategy.extended.worker_devices[0]])
    evaluator = SupernetEvaluator(supernet_params(p), corpus, out / "supernet", strategy, log)
    log(f"corpus {p.data_dir}: vocabulary {corpus.vocab_size}, tokens train={len(corpus.train)} "
        f"valid={len(corpus.valid)}")
    search = NAOSearch(space, evaluator, search_config(p), controller_config(p, space), out,
                       log=log, graphs=cell_graphs)
    result = search.run()
    log(f"best cell (validation loss {result.best_score:.4f} on the supernet): "
        f"{space.to_string(result.best_arch)}\n{space.describe(result.best_arch)}\n"
        f"train it: scripts/train_final.sh rnn --arch={out / 'best_arch.json'} "
        "--output_dir=...")
    return result


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """absl flags for every `SearchParams` field, plus `--config`."""
    flags.DEFINE_enum("config", None, sorted(SEARCH_CONFIGS),
                      "preset (sets flag defaults; explicit flags win)", flag_values=flag_values)
    cli.define_dataclass_flags(SearchParams, _HELP, flag_values)


def params_from_flags(values: flags.FlagValues) -> SearchParams:
    """`SearchParams` from parsed flags: defaults < `--config` < explicit flags."""
    return cli.dataclass_from_flags(SearchParams, values, SEARCH_CONFIGS.get(values.config))

if __name__ == "__main__":
    define_flags()
    cli.run(lambda _: run_search(params_from_flags(flags.FLAGS), log=cli.say))
