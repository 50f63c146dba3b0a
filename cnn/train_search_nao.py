"""NAO without weight sharing on CIFAR: every candidate cell is trained on its own.

    scripts/train_search.sh cnn --mode=nao --data_dir=data/cifar-10-batches-py \
        --output_dir=runs/nao_c10 [--devices=/gpu:0,/gpu:1] [flags]
    scripts/train_search.sh cnn --mode=nao --config=smoke --output_dir=runs/nao_smoke

The original's manual pipeline (`NAO/README.md`, 11 steps) as one resumable command: a pool of
random cells in the NAONet space (11 ops), each trained from scratch with the original
search-phase schedule (`--config` defaults = the `nao_search` preset of cnn/configs.py: N = 3,
F = 32, 25 epochs on the 45k/5k split, validation every epoch); its score is the best validation
accuracy. The controller (the TF original's non-weight-sharing EPD: embedding 32, LSTM 96, linear
predictor, normalised Bahdanau attention, trade-off 0.8, batch 50, 1000 epochs) learns from every
architecture measured so far, generates up to 300 new cells per iteration from the top 100 with
lambda in {10, 20, 30}, and the new cells are trained in turn; 2 iterations by default.

With several devices (`--devices`, default every visible GPU) one architecture trains per device.
`--import_archs` / `--import_scores` start from cells already trained (one 40-integer cell per
line and one score per line; `--import_score_kind=error` for the original's `valid_error_rate`,
converted to accuracy = 1 - error). `--config=smoke` is a minutes-long offline run on synthetic
images with tiny networks.

Writes into --output_dir: state.json (the search, resumable), history.jsonl, pool.<i>.txt/.perf,
best_arch.json (for `scripts/train_final.sh cnn --arch=.../best_arch.json`), best_arch.png/.dot
(the cells drawn), controller/, tensorboard/, train_settings.json, and archs/<hash>/ per cell
(arch.txt, results.json with the per-epoch validation accuracy, TensorBoard events, score.json; its
checkpoints are deleted once the score is known). Killed at any moment, the same command resumes:
a cell whose score was recorded is never trained again, and a cell killed mid-training resumes
from its last finished epoch.
"""

import dataclasses
import math
import os
import shutil
from typing import Any, Sequence

import keras
import tensorflow as tf
from absl import flags

from cnn import data as data_lib
from cnn.configs import CONFIGS
from cnn.data import CifarData, steps_per_epoch
from cnn.fit import RESULTS_FILE, LoopConfig, fit
from cnn.model import NASNetwork, count_params
from cnn.search_space import NAONET_SPACE, CellArch, CellSpace, cell_graphs
from cnn.training import OptimConfig, Trainer
from nao_tf import cli
from nao_tf.controller import ControllerConfig
from nao_tf.errors import NaoError
from nao_tf.io import read_json
from nao_tf.search import (CONTROLLER_OPTION_FLAGS, NAOSearch, SearchConfig, SearchResult,
                           check_controller_options, controller_options)
from nao_tf.standalone import (ArchDirs, StandaloneEvaluator, TrainingDiverged, parse_devices,
                               read_imported, write_settings)

_DATASETS = ["cifar10", "cifar100", "synthetic"]
# The per-architecture schedule; defaults come from the `nao_search` preset (cnn/configs.py).
SCHEDULE_FLAGS: tuple[tuple, ...] = (
    ("num_cells", "N: normal cells per stage of each candidate network."),
    ("filters", "F: width of the first stage of each candidate network."),
    ("epochs", "Training epochs per architecture."),
    ("batch_size", "Training batch per architecture."),
    ("eval_batch_size", "Validation batch."),
    ("lr_max", "Maximum learning rate (cosine, epoch-granular, restarts every --t0 epochs)."),
    ("lr_min", "Minimum learning rate."),
    ("t0", "Epochs of the cosine cycle (100: a quarter cycle in 25 epochs, as the original)."),
    ("t_mul", "Cycle length multiplier."),
    ("nesterov", "Nesterov momentum (the original search used plain momentum)."),
    ("l2_reg", "Adds l2_reg * sum(w^2) to the loss (5e-4 * sum(w^2)/2 = 2.5e-4)."),
    ("grad_bound", "Clip the global gradient norm to this (0: no clipping)."),
    ("drop_path_keep_prob", "Drop-path keep probability (last cell, end of training)."),
    ("keep_prob", "Keep probability of the dropout before the classifier."),
    ("use_aux_head", "Auxiliary classifier after the second reduction."),
    ("aux_weight", "Loss weight of the auxiliary head."),
    ("cutout_size", "Cutout square side (0: none)."),
    ("num_valid", "Validation images held out from the end of the training set."),
)
# (name, default, help[, enum values]) of the other flags.
OTHER_FLAGS: tuple[tuple, ...] = (
    ("config", "", "smoke: a minutes-long offline run (synthetic images, tiny networks, small "
     "pool); '' = the original's settings.", ["", "smoke"]),
    ("output_dir", "", "Run directory (required)."),
    ("overwrite", False, "Delete --output_dir first and start a new search."),
    ("dataset", "cifar10", "Dataset.", _DATASETS),
    ("data_dir", "", "Directory with the python-pickle batches or a prepared tensorflow-datasets "
     "directory (unused for synthetic)."),
    ("data_source", "auto", "How to read --data_dir.", ["auto", "tfds", "pickle"]),
    ("synthetic_train_images", 2048, "Training images of --dataset=synthetic (valid included)."),
    ("devices", "", "Comma-separated devices, one architecture training on each at a time "
     "(default: every visible GPU, else the CPU)."),
    ("on_diverge", "chance", "A training whose loss becomes NaN: 'chance' scores it with the best "
     "validation accuracy reached before, else chance accuracy (1 / classes); 'error' stops.",
     ["chance", "error"]),
    ("import_archs", "", "File of already-trained cells, one 40-integer cell per line."),
    ("import_scores", "", "Their scores, one per line, in the same order."),
    ("import_score_kind", "error", "What --import_scores holds: 'error' (the original's "
     "valid_error_rate, a fraction) or 'accuracy' (a fraction).", ["error", "accuracy"]),
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
    ("log_every_steps", 100, "Progress line of a training every k steps."),
    ("seed", 0, "Random seed of the search and of every training."),
)

# `--config=smoke`: defaults for a minutes-long offline run.
SMOKE: dict[str, Any] = dict(
    dataset="synthetic", synthetic_train_images=320, num_valid=64, num_cells=1, filters=8,
    epochs=2, batch_size=32, eval_batch_size=64, seed_archs=6, iterations=1, top_k=4,
    new_archs=4, controller_epochs=30, controller_batch_size=8, log_every_steps=1000, seed=1)

# Settings of the per-architecture training: a run resumes only with the same values.
RESUME_KEYS = ("dataset", "synthetic_train_images", "num_valid", "num_cells",
               "filters", "epochs", "batch_size", "lr_max", "lr_min", "t0", "t_mul", "nesterov",
               "l2_reg", "grad_bound", "drop_path_keep_prob", "keep_prob", "use_aux_head",
               "aux_weight", "cutout_size", "seed")


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    schedule = CONFIGS["nao_search"]
    specs = [(name, schedule[name], help_text) for name, help_text in SCHEDULE_FLAGS]
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


def _check_fraction(score: float) -> str | None:
    if 0.0 <= score <= 1.0:
        return None
    return (f"score {score} is outside [0, 1]; accuracy and error rates are fractions "
            "(0.05 for 5%)")


def read_imports(fv: flags.FlagValues, space: CellSpace) -> list[tuple[CellArch, float]]:
    """The (cell, accuracy) pairs of --import_archs / --import_scores ([] when not given)."""
    if bool(fv.import_archs) != bool(fv.import_scores):
        raise NaoError("--import_archs and --import_scores go together: one file of cells, one "
                       "of their scores")
    if not fv.import_archs:
        return []
    convert = (lambda e: 1.0 - e) if fv.import_score_kind == "error" else None
    return read_imported(space, fv.import_archs, fv.import_scores, convert=convert,
                         check=_check_fraction)


class CifarArchTrainer:
    """`(arch, device) -> best validation accuracy`: trains one candidate network from scratch
    with the per-architecture schedule in its own directory (resuming from its last finished
    epoch if a killed run left one)."""

    def __init__(self, data: CifarData, settings: dict[str, Any], dirs: ArchDirs):
        self.data, self.s, self.dirs = data, settings, dirs

    def __call__(self, arch: CellArch, device: str) -> float:
        s, out = self.s, self.dirs.path(arch)
        cfg = OptimConfig(
            epochs=s["epochs"], steps_per_epoch=steps_per_epoch(len(self.data.train),
                                                                s["batch_size"]),
            lr_schedule="sgdr", lr_max=s["lr_max"], lr_min=s["lr_min"], t0=s["t0"],
            t_mul=s["t_mul"], momentum=0.9, nesterov=s["nesterov"], l2_reg=s["l2_reg"],
            grad_bound=s["grad_bound"], aux_weight=s["aux_weight"])

        def build_model() -> NASNetwork:
            return NASNetwork(arch, s["num_cells"], s["filters"], self.data.num_classes,
                              use_aux_head=s["use_aux_head"],
                              drop_path_keep_prob=s["drop_path_keep_prob"],
                              dropout_rate=1.0 - s["keep_prob"])

        trainer = DivergenceCheckingTrainer(tf.distribute.OneDeviceStrategy(device),
                                            build_model, cfg, s["batch_size"])
        loop = LoopConfig(output_dir=str(out), batch_size=s["batch_size"],
                          eval_batch_size=s["eval_batch_size"], cutout_size=s["cutout_size"],
                          eval_every_epochs=1, log_every_steps=s["log_every_steps"],
                          keep_checkpoints=1, seed=s["seed"] or None)
        extra = {"arch": self.dirs.to_string(arch), "params": count_params(trainer.model),
                 "device": device}
        try:
            results = fit(trainer, self.data, loop, extra)
        except TrainingDiverged as err:
            path = os.path.join(out, RESULTS_FILE)
            history = read_json(path).get("history", []) if os.path.exists(path) else []
            raise TrainingDiverged(str(err), best_valid_accuracy(history)) from None
        best = best_valid_accuracy(results["history"])
        if best is None or not all(math.isfinite(r["valid_loss"]) for r in results["history"]):
            raise TrainingDiverged("validation loss became NaN", best)
        return best


def best_valid_accuracy(history: list[dict[str, Any]]) -> float | None:
    """The score: the best validation accuracy over the epochs of `history` (fit's per-epoch
    records) whose validation loss is finite (a diverged network's NaN logits still give an
    accuracy, a meaningless one); None when there is none."""
    return max((r["valid_accuracy"] for r in history if math.isfinite(r["valid_loss"])),
               default=None)


class DivergenceCheckingTrainer(Trainer):
    """A `Trainer` whose step raises `TrainingDiverged` on a NaN/inf loss (the evaluator then
    applies --on_diverge)."""

    def train_step(self, images, labels) -> dict[str, float]:
        stats = super().train_step(images, labels)
        if not math.isfinite(stats["loss"]):
            raise TrainingDiverged(f"training loss became {stats['loss']} at step {self.step}")
        return stats


def run(fv: flags.FlagValues) -> SearchResult:
    """Runs (or resumes) the search for parsed flags `fv`; returns the `SearchResult`."""
    apply_config(fv)
    if not fv.output_dir:
        raise NaoError("--output_dir is required (where the search state and results go)")
    check_controller_options(lambda name: fv[name].value)

    space = NAONET_SPACE
    imported = read_imports(fv, space)
    tf.get_logger().setLevel("ERROR")  # every cell is a new network: its steps trace anew
    devices = parse_devices(fv.devices)
    data = data_lib.load(fv.dataset, fv.data_dir or None, fv.data_source, "search",
                         fv.num_valid, (fv.synthetic_train_images, 0), seed=fv.seed)
    data = dataclasses.replace(data, test=None)  # the search never looks at the test set
    if fv.overwrite and os.path.isdir(fv.output_dir):
        shutil.rmtree(fv.output_dir)
    settings = {name: fv[name].value for name, _ in SCHEDULE_FLAGS}
    settings.update({name: fv[name].value for name in (
        "dataset", "data_dir", "synthetic_train_images", "log_every_steps", "seed")})
    write_settings(os.path.join(fv.output_dir, "train_settings.json"), settings, RESUME_KEYS)
    if fv.seed:
        keras.utils.set_random_seed(fv.seed)
    print(f"NAO (no weight sharing) on {fv.dataset}: {len(data.train)} training / "
          f"{len(data.valid)} validation images; each cell N={fv.num_cells} F={fv.filters}, "
          f"{fv.epochs} epochs; devices: {', '.join(devices)}", flush=True)

    dirs = ArchDirs(os.path.join(fv.output_dir, "archs"), space.to_string, scratch=("checkpoints",))
    evaluator = StandaloneEvaluator(
        CifarArchTrainer(data, settings, dirs), higher_is_better=True, devices=devices, dirs=dirs,
        failed_score=1.0 / data.num_classes if fv.on_diverge == "chance" else None,
        to_string=space.to_string, log=_say)
    controller_extra, search_extra = controller_options(lambda name: fv[name].value)
    config = SearchConfig(
        seed_archs=fv.seed_archs, iterations=fv.iterations, top_k=fv.top_k,
        new_archs=fv.new_archs, random_archs=fv.random_archs, max_lambda=fv.max_lambda,
        lambda_step=fv.lambda_step, controller_epochs=fv.controller_epochs, train_on="history",
        symmetry=False, seed=fv.seed, **search_extra)
    controller = ControllerConfig.for_space(
        space, emb_size=32, hidden_size=96, mlp_layers=0, mlp_hidden=100, encoder_dropout=0.1,
        mlp_dropout=0.0, attention="bahdanau", trade_off=0.8, weight_decay=1e-4,
        learning_rate=1e-3, max_gradient_norm=5.0, batch_size=fv.controller_batch_size,
        seed=fv.seed, **controller_extra)
    search = NAOSearch(space, evaluator, config, controller, fv.output_dir, log=_say,
                       save_every_seconds=0.0, imported=imported or None, graphs=cell_graphs)
    result = search.run()
    print(f"best cell (validation accuracy {result.best_score:.4f}, {result.evaluated} cells "
          f"trained or imported):\n{space.describe(result.best_arch)}\n"
          f"written to {os.path.join(fv.output_dir, 'best_arch.json')}; train it with "
          "scripts/train_final.sh cnn --config=naonet --arch=<that file>", flush=True)
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
