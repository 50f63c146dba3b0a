"""NAO without weight sharing on PTB: every candidate recurrent cell is trained on its own.

    scripts/train_search.sh rnn --mode=nao --data_dir=data/penn --output_dir=runs/nao_ptb \
        [--devices=/gpu:0,/gpu:1] [flags]
    scripts/train_search.sh rnn --mode=nao --config=smoke --output_dir=runs/nao_rnn_smoke

The original's pipeline (`NAO/README.md`, spec original-rnn.md 4.3) as one resumable command: a
pool of random cells, each trained from scratch with the original per-architecture schedule
(`train_ptb_search.sh`, the `ptb_search` preset of rnn/configs.py: the d = 850 PTB model, SGD lr
20 then NT-ASGD, 600 epochs); its score is the best validation perplexity (lower is better). The
controller (the TF original's non-weight-sharing EPD: embedding 96, LSTM 96 over all 22 tokens,
predictor 3 x 200, normalised Bahdanau attention, trade-off 0.8, batch 50, 1000 epochs) learns from
every cell measured so far, generates up to 300 new cells per iteration from the top 100 with
lambda in {10, 20, 30}, and the new cells are trained in turn; 2 iterations by default.

With several devices (`--devices`, default every visible GPU) one cell trains per device.
`--import_archs` / `--import_scores` start from cells already trained (the original's `*.arch`
strings, one per line, in the NAO code table unless `--import_arch_codes=project`, and its
`valid_ppl` file, one perplexity per line). `--config=smoke` is a minutes-long offline run on a
generated corpus with tiny models.

Writes into --output_dir: state.json (the search, resumable), history.jsonl, pool.<i>.txt/.perf,
best_arch.json (for `scripts/train_final.sh rnn --arch=.../best_arch.json`), controller/,
tensorboard/, best_arch.png/.dot, train_settings.json, and archs/<hash>/ per cell (the trainer's
flags.json, train_state.json, tb/, score.json; its checkpoints are deleted once the score is
known). Killed at any moment, the same command resumes: a cell whose score was recorded is never
trained again, and a cell killed mid-training resumes from its last finished epoch.
"""

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import tensorflow as tf
from absl import flags

from nao_tf import cli
from nao_tf.controller import ControllerConfig
from nao_tf.errors import NaoError
from nao_tf.search import (CONTROLLER_OPTION_FLAGS, NAOSearch, SearchConfig, SearchResult,
                           check_controller_options, controller_options)
from nao_tf.standalone import (ArchDirs, StandaloneEvaluator, TrainingDiverged, parse_devices,
                               read_imported, write_settings)
from rnn.configs import CONFIGS
from rnn.data import read_corpus, write_generated_corpus
from rnn.search_space import RnnCell, RnnSearchSpace, cell_graphs, convert_nao_codes
from rnn.train_final import FLAG_HELP, FinalTrainer, TrainParams
from rnn.training import perplexity

# The per-architecture schedule: every TrainParams field but the run directory and the cell.
SCHEDULE_KEYS = tuple(f.name for f in dataclasses.fields(TrainParams)
                      if f.name not in ("output_dir", "arch", "arch_nao_codes", "overwrite"))
SCHEDULE_DEFAULTS: dict[str, Any] = {**dataclasses.asdict(TrainParams()), **CONFIGS["ptb_search"]}
# (name, default, help[, enum values]) of the search's own flags.
OTHER_FLAGS: tuple[tuple, ...] = (
    ("config", "", "smoke: a minutes-long offline run (generated corpus, tiny models, small "
     "pool); '' = the original's settings.", ["", "smoke"]),
    ("output_dir", "", "Run directory (required)."),
    ("overwrite", False, "Delete --output_dir first and start a new search."),
    ("devices", "", "Comma-separated devices, one cell training on each at a time (default: every "
     "visible GPU, else the CPU)."),
    ("on_diverge", "uniform", "A cell still diverging after --max_rollbacks: 'uniform' scores it "
     "with the best validation perplexity reached before, else the vocabulary size (the "
     "perplexity of a uniform predictor); 'error' stops.", ["uniform", "error"]),
    ("import_archs", "", "File of already-trained cells, one 22-integer cell per line."),
    ("import_scores", "", "Their validation perplexities (the original's valid_ppl), one per "
     "line, in the same order."),
    ("import_arch_codes", "nao", "Activation code table of --import_archs: 'nao' (the original "
     "no-WS files: 2=identity, 3=sigmoid) or 'project' (2=sigmoid, 3=identity).",
     ["nao", "project"]),
    ("seed_archs", 1000, "Size of the first pool (imported cells first, then random ones)."),
    ("iterations", 2, "Controller rounds; the pool is trained iterations + 1 times."),
    ("top_k", 100, "Seeds for generation: the best k of the pool."),
    ("new_archs", 300, "New cells generated per iteration."),
    ("random_archs", 0, "Fresh random cells added per iteration (the original adds none)."),
    ("max_lambda", 30.0, "Largest step size lambda of the generation."),
    ("lambda_step", 10.0, "lambda = lambda_step, 2 lambda_step, ... up to --max_lambda."),
    ("controller_epochs", 1000, "Controller training epochs per iteration."),
    ("controller_batch_size", 50, "Controller batch."),
    *CONTROLLER_OPTION_FLAGS,
)

# `--config=smoke`: defaults for a minutes-long offline run (no --data_dir: a generated corpus).
SMOKE: dict[str, Any] = dict(
    data_dir="", emsize=16, batch_size=16, eval_batch_size=10, bptt=12, max_seq_len_delta=4,
    epochs=2, log_interval=1000, seed_archs=6, iterations=1, top_k=4, new_archs=4,
    controller_epochs=30, controller_batch_size=8)

# Schedule values a run resumes only with (scores from different schedules must not mix).
RESUME_KEYS = tuple(k for k in SCHEDULE_KEYS if k not in ("data_dir", "log_interval",
                                                          "max_rollbacks", "jit_compile"))


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    specs = [(k, SCHEDULE_DEFAULTS[k], "Per-cell training: " + FLAG_HELP[k]) for k in SCHEDULE_KEYS]
    for name, default, help_text, *choices in specs + list(OTHER_FLAGS):
        if choices:
            flags.DEFINE_enum(name, default, choices[0], help_text, flag_values=fv)
        else:
            define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
                      float: flags.DEFINE_float, str: flags.DEFINE_string}[type(default)]
            define(name, default, help_text, flag_values=fv)


def apply_config(fv: flags.FlagValues) -> None:
    """`--config=smoke` sets the defaults of every flag not given on the command line."""
    if fv.config == "smoke":
        for name, value in SMOKE.items():
            if not fv[name].present:
                setattr(fv, name, value)


def _check_perplexity(score: float) -> str | None:
    return None if score >= 1.0 else (f"perplexity {score} is below 1; the file must hold "
                                      "validation perplexities (valid_ppl), not losses")


def read_imports(fv: flags.FlagValues, space: RnnSearchSpace) -> list[tuple[RnnCell, float]]:
    """The (cell, perplexity) pairs of --import_archs / --import_scores ([] when not given)."""
    if bool(fv.import_archs) != bool(fv.import_scores):
        raise NaoError("--import_archs and --import_scores go together: one file of cells, one "
                       "of their perplexities")
    if not fv.import_archs:
        return []
    parse = ((lambda text: space.parse(convert_nao_codes(text)))
             if fv.import_arch_codes == "nao" else space.parse)
    return read_imported(space, fv.import_archs, fv.import_scores, check=_check_perplexity,
                         parse=parse)


class _SearchPhaseTrainer(FinalTrainer):
    """FinalTrainer with the search's ending: the score is the best validation perplexity (no
    test evaluation), and a cell that keeps diverging raises `TrainingDiverged`."""

    def finish(self) -> dict[str, Any]:
        return {"valid_ppl": perplexity(self.state["best_val_loss"]),
                "best_epoch": self.state["best_epoch"], "epochs": self.state["epoch"]}

    def _rollback(self, err: Exception, failures: int) -> None:
        if failures > self.p.max_rollbacks:
            best = self.state["best_val_loss"] if self.state["best_epoch"] else None
            raise TrainingDiverged(f"{err} (diverged again after {self.p.max_rollbacks} "
                                   "rollbacks)", None if best is None else perplexity(best))
        super()._rollback(err, failures)


class PtbArchTrainer:
    """`(arch, device) -> best validation perplexity`: trains one cell from scratch in its own
    directory (resuming from its last finished epoch if a killed run left one)."""

    def __init__(self, schedule: dict[str, Any], dirs: ArchDirs, space: RnnSearchSpace):
        self.schedule, self.dirs, self.space = schedule, dirs, space

    def __call__(self, arch: RnnCell, device: str) -> float:
        params = TrainParams(output_dir=str(self.dirs.path(arch)), arch=self.space.to_string(arch),
                             **self.schedule)
        trainer = _SearchPhaseTrainer(params, tf.distribute.OneDeviceStrategy(device))
        return trainer.train()["valid_ppl"]


def run(fv: flags.FlagValues) -> SearchResult:
    """Runs (or resumes) the search for parsed flags `fv`; returns the `SearchResult`."""
    apply_config(fv)
    if not fv.output_dir:
        raise NaoError("--output_dir is required (where the search state and results go)")
    check_controller_options(lambda name: fv[name].value)
    space = RnnSearchSpace()
    imported = read_imports(fv, space)
    tf.get_logger().setLevel("ERROR")  # every cell is a new model: its steps trace anew
    devices = parse_devices(fv.devices)
    schedule = {k: fv[k].value for k in SCHEDULE_KEYS}
    if not schedule["data_dir"] and fv.config != "smoke":
        raise NaoError("--data_dir is required: a directory with train.txt, valid.txt and "
                       "test.txt (scripts/get_data.sh ptb)")
    vocab_size = read_corpus(schedule["data_dir"]).vocab_size if schedule["data_dir"] else None
    if fv.overwrite and os.path.isdir(fv.output_dir):
        shutil.rmtree(fv.output_dir)
    if not schedule["data_dir"]:  # --config=smoke: a generated corpus inside the run directory
        schedule["data_dir"] = str(write_generated_corpus(Path(fv.output_dir) / "corpus",
                                                          seed=fv.seed))
        vocab_size = read_corpus(schedule["data_dir"]).vocab_size
    write_settings(os.path.join(fv.output_dir, "train_settings.json"), schedule, RESUME_KEYS)
    print(f"NAO (no weight sharing) on {schedule['data_dir']} (vocabulary {vocab_size}): each "
          f"cell d={fv.emsize}, {fv.epochs} epochs; devices: {', '.join(devices)}", flush=True)

    dirs = ArchDirs(os.path.join(fv.output_dir, "archs"), space.to_string,
                    scratch=("ckpt", "best"))
    evaluator = StandaloneEvaluator(
        PtbArchTrainer(schedule, dirs, space), higher_is_better=False, devices=devices,
        dirs=dirs, failed_score=float(vocab_size) if fv.on_diverge == "uniform" else None,
        to_string=space.to_string, log=_say)
    controller_extra, search_extra = controller_options(lambda name: fv[name].value)
    config = SearchConfig(
        seed_archs=fv.seed_archs, iterations=fv.iterations, top_k=fv.top_k,
        new_archs=fv.new_archs, random_archs=fv.random_archs, max_lambda=fv.max_lambda,
        lambda_step=fv.lambda_step, controller_epochs=fv.controller_epochs, train_on="history",
        symmetry=False, seed=fv.seed, **search_extra)
    controller = ControllerConfig(
        vocab_size=space.vocab_size, source_length=space.source_length,
        encoder_length=space.source_length, emb_size=96, hidden_size=96, mlp_layers=3,
        mlp_hidden=200, encoder_dropout=0.1, mlp_dropout=0.1, attention="bahdanau",
        trade_off=0.8, weight_decay=1e-4, learning_rate=1e-3, max_gradient_norm=5.0,
        batch_size=fv.controller_batch_size, seed=fv.seed, **controller_extra)
    search = NAOSearch(space, evaluator, config, controller, fv.output_dir, log=_say,
                       save_every_seconds=0.0, imported=imported or None, graphs=cell_graphs)
    result = search.run()
    print(f"best cell (validation perplexity {result.best_score:.2f}, {result.evaluated} cells "
          f"trained or imported):\n{space.describe(result.best_arch)}\n"
          f"written to {os.path.join(fv.output_dir, 'best_arch.json')}; train it with "
          "scripts/train_final.sh rnn --config=ptb --arch=<that file>", flush=True)
    return result


def _say(message: str) -> None:
    print(message, flush=True)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise NaoError(f"unexpected arguments {' '.join(argv[1:])}; flags look like --name=value")
    run(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
