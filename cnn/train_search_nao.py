"""NAO without weight sharing on CIFAR: every candidate cell is trained on its own.

    scripts/train_search.sh cnn --mode=nao --data_dir=data/cifar-10-batches-py \
        --output_dir=runs/nao_c10 [--devices=/gpu:0,/gpu:1] [flags]
    scripts/train_search.sh cnn --mode=nao --config=smoke --output_dir=runs/nao_smoke

The original's manual pipeline (`NAO/README.md`, 11 steps) as one resumable command: a pool of
random cells in the NAONet space (`--space=naonet`: NAO_pytorch's 11 ops; `naonet_19`: the TF
release's 19), each trained from scratch with the original
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
(arch.txt, train_state.json with the per-epoch validation accuracy, TensorBoard events,
score.json; its checkpoints are deleted once the score is known). Killed at any moment, the same
command resumes: a cell whose score was recorded is never trained again, and a cell killed
mid-training resumes from its last finished epoch.
"""

import dataclasses
import math
from typing import Any

import keras
import tensorflow as tf

from cnn import data as data_lib
from cnn import train_final
from cnn.configs import CONFIGS
from cnn.costs import CostNetworkConfig
from cnn.data import CifarData
from cnn.search_space import CellArch
from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.commands import cli, standalone_search
from nao_tf.commands.task import Candidates
from nao_tf.common.errors import NaoError
from nao_tf.common.io import fingerprint
from nao_tf.runtime.standalone import ArchDirs, TrainingDiverged, build_lock, read_imported
from nao_tf.runtime.train_loop import Diverged, train_epochs

# The per-architecture schedule: these settings of `cnn.train_final.FinalConfig`, with the
# `nao_search` preset's values as defaults (cnn/configs.py).
SCHEDULE = ("num_cells", "filters", "epochs", "batch_size", "eval_batch_size", "lr_max", "lr_min",
            "t0", "t_mul", "nesterov", "l2_reg", "grad_bound", "drop_path_keep_prob", "keep_prob",
            "use_aux_head", "aux_weight", "cutout_size", "num_valid", "network",
            "standardization")


@dataclasses.dataclass(frozen=True)
class NaoTaskConfig:
    """The task's other flags: data, divergence, imports, seed."""

    dataset: str = cli.option("cifar10", "Dataset.", data_lib.DATASETS, identity=True)
    data_dir: str = cli.option("", "Directory with the python-pickle batches or a prepared "
                               "tensorflow-datasets directory (unused for synthetic).")
    data_source: str = cli.option("auto", "How to read --data_dir.", ["auto", "tfds", "pickle"])
    synthetic_train_images: int = cli.option(2048, "Training images of --dataset=synthetic "
                                             "(valid included).", identity=True)
    on_diverge: str = cli.option("chance", "A training whose loss becomes NaN: 'chance' scores "
                                 "it with the best validation accuracy reached before, else "
                                 "chance accuracy (1 / classes); 'error' stops.",
                                 ["chance", "error"])
    import_score_kind: str = cli.option("error", "What --import_scores holds: 'error' (the "
                                        "original's valid_error_rate, a fraction) or 'accuracy' "
                                        "(a fraction).", ["error", "accuracy"])
    log_every_steps: int = cli.option(100, "Progress line of a training every k steps.", minimum=1)
    seed: int = cli.option(0, "Random seed of the search and of every training.", identity=True)


@dataclasses.dataclass(frozen=True)
class NaoSearchConfig:
    """Each candidate's training (a final training's settings, those of `SCHEDULE` offered) and
    the task's other flags."""

    schedule: train_final.FinalConfig = cli.section(
        train_final.FinalConfig, only=SCHEDULE, defaults=CONFIGS["nao_search"],
        help_prefix="Each candidate's training: ", identity=set(SCHEDULE) - {"eval_batch_size"})
    task: NaoTaskConfig = cli.section(NaoTaskConfig)
    costs: CostNetworkConfig = cli.section(CostNetworkConfig,
                                           only=("final_num_cells", "final_filters"))


# `--config=smoke`: defaults for a minutes-long offline run.
SMOKE: dict[str, Any] = dict(
    dataset="synthetic", synthetic_train_images=320, num_valid=64, num_cells=1, filters=8,
    epochs=2, batch_size=32, eval_batch_size=64, seed_archs=6, iterations=1, top_k=4,
    new_archs=4, controller_epochs=30, controller_batch_size=8, log_every_steps=1000, seed=1)


def _check_fraction(score: float) -> str | None:
    if 0.0 <= score <= 1.0:
        return None
    return (f"score {score} is outside [0, 1]; accuracy and error rates are fractions "
            "(0.05 for 5%)")


def read_imports(c: NaoSearchConfig, space: SearchSpace, archs_path: str,
                 scores_path: str) -> list[tuple[CellArch, float]]:
    """The (cell, accuracy) pairs of --import_archs / --import_scores."""
    convert = (lambda e: 1.0 - e) if c.task.import_score_kind == "error" else None
    return read_imported(space, archs_path, scores_path, convert=convert, check=_check_fraction)


class CifarArchTrainer:
    """`(arch, device) -> best validation accuracy`: trains one candidate network from scratch
    with the per-architecture schedule in its own directory, as `cnn.train_final` with those
    settings would (resuming after its last finished epoch if a killed run left one)."""

    def __init__(self, data: CifarData, schedule: train_final.FinalConfig, dirs: ArchDirs):
        self.data, self.dirs, self.config = data, dirs, schedule

    def __call__(self, arch: CellArch, device: str) -> float:
        strategy = tf.distribute.OneDeviceStrategy(device)
        with build_lock:  # seeds Keras, then builds the network
            trainee = train_final.build(self.config, (arch, self.data), strategy)
        try:
            history = train_epochs(trainee, self.dirs.path(arch), strategy,
                                   self.config.optim.epochs, keep_checkpoints=1)["history"]
        except Diverged as err:
            raise TrainingDiverged(str(err), best_valid_accuracy(err.state["history"])) from None
        best = best_valid_accuracy(history)
        if best is None or not all(math.isfinite(r["valid_loss"]) for r in history):
            raise TrainingDiverged("validation loss became NaN", best)
        return best


def best_valid_accuracy(history: list[dict[str, Any]]) -> float | None:
    """The score: the best validation accuracy over the epochs of `history` (the per-epoch
    records) whose validation loss is finite (a diverged network's NaN logits still give an
    accuracy, a meaningless one); None when there is none."""
    return max((r["valid_accuracy"] for r in history if math.isfinite(r["valid_loss"])),
               default=None)


def check(c: NaoSearchConfig) -> tuple[dict[str, Any], CifarData]:
    """The per-architecture settings and the data; returns the settings record and the data."""
    schedule, sgd = c.schedule, c.schedule.optim.sgd
    cli.check_keep_probability(cli.config_values(schedule).get, "keep_prob",
                               "drop_path_keep_prob")
    if sgd.lr_max <= 0 or sgd.lr_min < 0:
        raise NaoError(f"--lr_max={sgd.lr_max} must be positive and --lr_min={sgd.lr_min} "
                       "not negative")
    if schedule.network.network == "imagenet":
        raise NaoError("--network=imagenet is the ImageNet network; the search trains CIFAR "
                       "networks: --network=nao_ws or nao")
    d = schedule.data
    data = data_lib.load(d.dataset, d.data_dir or None, d.data_source, "search", d.num_valid,
                         (d.synthetic_train_images, 0), seed=c.task.seed)
    data = dataclasses.replace(data, test=None)  # the search never looks at the test set
    settings = cli.Flags(NaoSearchConfig).values(c)
    return {**settings, "data_fingerprint": fingerprint(d.data_dir)}, data


def candidates(c: NaoSearchConfig, data: CifarData, dirs: ArchDirs) -> Candidates:
    tf.get_logger().setLevel("ERROR")  # every cell is a new network: its steps trace anew
    if c.task.seed:
        keras.utils.set_random_seed(c.task.seed)
    net = c.schedule.network
    return Candidates(
        CifarArchTrainer(data, c.schedule, dirs),
        failed_score=1.0 / data.num_classes if c.task.on_diverge == "chance" else None,
        summary=f"{c.task.dataset}, {len(data.train)} training / {len(data.valid)} validation "
                f"images; each cell N={net.num_cells} F={net.filters}, "
                f"{c.schedule.optim.epochs} epochs")


if __name__ == "__main__":
    from cnn.task import TASK

    standalone_search.main(TASK)
