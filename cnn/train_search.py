"""NAO with weight sharing (NAO-WS) on CIFAR: search a normal and a reduction cell.

    scripts/train_search.sh cnn --data_dir=data/cifar-10-batches-py --output_dir=runs/search_c10
    scripts/train_search.sh cnn --config=smoke --output_dir=runs/search_smoke

The original `NAO-WS/cnn/train_search.sh` as one resumable command (defaults = its settings): a
pool of 1,000 random cells; a supernet (N = 2, F = 20, batch 160, aux head, SGDR 0.05 -> 0.0005
with T_0 = 10, T_mul = 2, Nesterov momentum, l2 1e-4 on sum(w^2), dropout keep 0.9) trained 150
epochs on the 45k/5k split with one pool architecture per step; every 30 epochs the whole pool is
scored on 500 validation images, the controller (embedding 48, LSTM 96, MLP 3 x 100, normalised
Bahdanau attention, trade-off 0.8, symmetry augmentation) is trained 1,000 epochs (warm start), and
500 new cells are generated from the top 100 (lambda = 1, 2, ... up to 100); the new pool is the
best old cells + the new ones + 50 random. `--config=smoke` is a minutes-long offline run on
synthetic images with a tiny supernet and a small pool.

Writes into --output_dir: state.json (the search, resumable), history.jsonl, pool.<i>.txt/.perf
(the original's arch_pool / arch_pool.perf, best first), best_arch.json (best cell and the top 5
with their scores; `scripts/train_final.sh cnn --arch=<it>` trains it), best_arch.png / .dot (the
best cells, redrawn after every evaluation and logged to TensorBoard), supernet/ (checkpoints),
controller/, tensorboard/, search_settings.json. Killed at any moment, the same command resumes:
finished supernet epochs, scores and controller rounds are not redone.
"""

import dataclasses
import os
import time
from typing import Any

from absl import flags

from nao_tf import cli
from nao_tf.errors import NaoError
from nao_tf.search import CONTROLLER_OPTION_FLAGS, check_controller_options, controller_options

_DATASETS = ["cifar10", "cifar100", "synthetic"]
# (name, default, help[, enum values]); the type of the default picks the absl flag kind.
FLAG_SPECS: tuple[tuple, ...] = (
    ("config", "", "smoke: a minutes-long offline run (synthetic images, tiny supernet, small "
     "pool); '' = the original NAO-WS search.", ["", "smoke"]),
    ("output_dir", "", "Run directory (required)."),
    ("overwrite", False, "Delete --output_dir first and start a new search."),
    ("dataset", "cifar10", "Dataset.", _DATASETS),
    ("data_dir", "", "Directory with the python-pickle batches or a prepared tensorflow-datasets "
     "directory (unused for synthetic)."),
    ("data_source", "auto", "How to read --data_dir.", ["auto", "tfds", "pickle"]),
    ("num_valid", 5000, "Validation images held out from the end of the training set."),
    ("synthetic_train_images", 2048, "Images of --dataset=synthetic (validation included)."),
    # The supernet.
    ("num_cells", 2, "N: normal cells per stage of the supernet (3N + 2 cells)."),
    ("filters", 20, "F: width of the supernet's first stage."),
    ("batch_size", 160, "Global training batch of the supernet."),
    ("epochs", 150, "Supernet training epochs in all."),
    ("eval_every_epochs", 30, "Score the pool (then train the controller and generate) every k "
     "epochs; the pool is scored epochs / k times."),
    ("lr_max", 0.05, "SGDR maximum learning rate."),
    ("lr_min", 0.0005, "SGDR minimum learning rate."),
    ("t0", 10, "SGDR: epochs of the first cycle."),
    ("t_mul", 2, "SGDR: cycle length multiplier."),
    ("nesterov", True, "Nesterov momentum 0.9."),
    ("l2_reg", 1e-4, "Adds l2_reg * sum(w^2) over every supernet variable to the loss."),
    ("grad_bound", 5.0, "Clip the global gradient norm to this (0: no clipping, the original's "
     "effective behaviour)."),
    ("keep_prob", 0.9, "Keep probability of the dropout before the classifier."),
    ("use_aux_head", True, "Auxiliary classifier after the second reduction."),
    ("aux_weight", 0.4, "Loss weight of the auxiliary head."),
    ("sample_policy", "uniform", "Architecture trained at each step: uniform over the pool, or "
     "params (probability proportional to the stand-alone parameter count, NAO V2).",
     ["uniform", "params"]),
    ("op_selection", "switch", "switch: run only the chosen op (tf.switch_case); select: run "
     "every candidate and keep the chosen (no control flow).", ["switch", "select"]),
    ("eval_images", 500, "Validation images each architecture is scored on (the same ones every "
     "time)."),
    ("eval_batch_size", 500, "Scoring batch."),
    ("save_every_seconds", 600.0, "Supernet checkpoint within an epoch at least this often (and "
     "at the end of every epoch)."),
    ("log_every_steps", 50, "Supernet progress line and TensorBoard scalars every k steps."),
    ("data_format", "channels_last", "Image layout inside the supernet (channels_first only on "
     "GPUs).", ["channels_last", "channels_first"]),
    # The search loop and the controller.
    ("seed_archs", 1000, "Size of the first pool."),
    ("arch_pool", "", "File of seed cells (one 40-integer cell per line) instead of random ones."),
    ("top_k", 100, "Seeds for generation: the best k of the pool."),
    ("new_archs", 500, "New cells generated per iteration."),
    ("random_archs", 50, "Fresh random cells added to each new pool."),
    ("max_lambda", 100.0, "Largest step size lambda of the generation."),
    ("lambda_step", 1.0, "lambda = lambda_step, 2 lambda_step, ... up to --max_lambda."),
    ("controller_epochs", 1000, "Controller training epochs per iteration."),
    ("controller_batch_size", 100, "Controller batch."),
    ("controller_attention", "bahdanau", "Decoder attention: the TF original's normalised "
     "Bahdanau or the PyTorch port's dot attention.", ["bahdanau", "dot"]),
    ("controller_lr", 1e-3, "Controller Adam learning rate."),
    ("controller_trade_off", 0.8, "Predictor share of the controller loss (the rest: "
     "reconstruction)."),
    ("symmetry", True, "Augment the controller's data by swapping the branches of a node."),
    ("seed", 0, "Random seed (pool, supernet weights, sampling, data order); 0 = not fixed for "
     "the weights and data order."),
    *CONTROLLER_OPTION_FLAGS,
)
FLAG_NAMES = tuple(spec[0] for spec in FLAG_SPECS)

# `--config=smoke`: defaults for a minutes-long offline run on 2 CPU cores. Its controller trains
# long enough, with enough weight on reconstruction, to decode its 16 cells back (Hamming
# distance about 1 of 40 tokens), so the new cells it generates are decoded, not collapsed.
SMOKE: dict[str, Any] = dict(
    dataset="synthetic", synthetic_train_images=320, num_valid=64, num_cells=1, filters=8,
    batch_size=32, epochs=2, eval_every_epochs=1, t0=1, t_mul=2, eval_images=64,
    eval_batch_size=64, log_every_steps=4, seed_archs=16, top_k=8, new_archs=8, random_archs=2,
    max_lambda=20.0, controller_epochs=300, controller_batch_size=16,
    controller_attention="dot", controller_lr=5e-3, controller_trade_off=0.5, seed=1)

# Flags the supernet's checkpoint depends on: a run resumes only with the same values.
RESUME_KEYS = ("dataset", "data_dir", "synthetic_train_images", "num_valid", "num_cells",
               "filters", "batch_size", "epochs", "eval_every_epochs", "lr_max", "lr_min", "t0",
               "t_mul", "nesterov", "l2_reg", "grad_bound", "keep_prob", "use_aux_head",
               "aux_weight", "sample_policy", "eval_images", "data_format", "seed")


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Defines this command's flags in `fv` (the global FLAGS when run as a script)."""
    cli.define_flags(FLAG_SPECS, fv)


def apply_config(fv: flags.FlagValues) -> None:
    """`--config=smoke` sets the defaults of every flag not given on the command line."""
    if fv.config == "smoke":
        cli.apply_preset(fv, SMOKE)


def check_flags(fv: flags.FlagValues) -> None:
    """Stops with one line on settings that cannot work, before anything is written."""
    if not fv.output_dir:
        raise NaoError("--output_dir is required (where the search state and results go)")
    if fv.epochs < 1 or fv.eval_every_epochs < 1:
        raise NaoError("--epochs and --eval_every_epochs must be positive")
    if fv.filters % 2:
        raise NaoError(f"--filters={fv.filters} must be even (factorized reductions halve it)")
    for name in ("batch_size", "eval_images", "eval_batch_size", "seed_archs"):
        if fv[name].value < 1:
            raise NaoError(f"--{name} must be positive")
    if fv.top_k > fv.seed_archs:
        raise NaoError(f"--top_k={fv.top_k} exceeds the pool size --seed_archs={fv.seed_archs}")
    if not 0.0 <= fv.controller_trade_off <= 1.0:
        raise NaoError(f"--controller_trade_off={fv.controller_trade_off} must be in [0, 1]")
    check_controller_options(lambda name: fv[name].value)


def read_seed_pool(path: str, space) -> list:
    """Cells of `--arch_pool`, one per line (the original's arch_pool file)."""
    from nao_tf.errors import InvalidArchitectureError
    from nao_tf.io import read_lines

    archs = []
    for lineno, text in read_lines(path):
        try:
            archs.append(space.parse(text))
        except InvalidArchitectureError as err:
            raise NaoError(f"{path}:{lineno}: {err}") from None
    if not archs:
        raise NaoError(f"{path}: no cells; one 40-integer cell per line")
    return archs


def run(fv: flags.FlagValues):
    """Runs (or resumes) the search for parsed flags `fv`; returns the `SearchResult`."""
    apply_config(fv)
    check_flags(fv)

    from cnn.search_space import NAO_WS_SPACE, cell_graphs

    space = NAO_WS_SPACE
    seed_pool = read_seed_pool(fv.arch_pool, space) if fv.arch_pool else None

    import keras

    from cnn import data as data_lib
    from cnn.search_evaluator import SupernetEvaluator, SupernetSchedule
    from cnn.search_trainer import SupernetTrainer
    from cnn.supernet import Supernet
    from cnn.training import OptimConfig
    from nao_tf.controller import ControllerConfig
    from nao_tf.distribute import get_strategy
    from nao_tf.run_dir import RunDir
    from nao_tf.search import NAOSearch, SearchConfig

    data = data_lib.load(fv.dataset, fv.data_dir or None, fv.data_source, "search",
                         fv.num_valid, (fv.synthetic_train_images, 0), seed=fv.seed)
    data = dataclasses.replace(data, test=None)  # the search never looks at the test set
    strategy = get_strategy()
    replicas = strategy.num_replicas_in_sync
    for name in ("batch_size", "eval_batch_size"):
        if fv[name].value % replicas:
            raise NaoError(f"--{name}={fv[name].value} does not split evenly over {replicas} "
                           "replicas")
    settings = {name: fv[name].value for name in FLAG_NAMES if name not in ("overwrite",)}
    RunDir(fv.output_dir, RESUME_KEYS, "search_settings.json").prepare(settings, fv.overwrite)
    if fv.seed:
        keras.utils.set_random_seed(fv.seed)
    keras.config.set_image_data_format(fv.data_format)
    steps = data_lib.steps_per_epoch(len(data.train), fv.batch_size)
    schedule = SupernetSchedule(
        epochs=fv.epochs, eval_every_epochs=fv.eval_every_epochs, steps_per_epoch=steps,
        batch_size=fv.batch_size, sample_policy=fv.sample_policy, eval_images=fv.eval_images,
        eval_batch_size=fv.eval_batch_size, seed=fv.seed,
        save_every_seconds=fv.save_every_seconds, log_every_steps=fv.log_every_steps)
    cfg = OptimConfig(epochs=fv.epochs, steps_per_epoch=steps, lr_schedule="sgdr",
                      lr_max=fv.lr_max, lr_min=fv.lr_min, t0=fv.t0, t_mul=fv.t_mul,
                      momentum=0.9, nesterov=fv.nesterov, l2_reg=fv.l2_reg,
                      grad_bound=fv.grad_bound, aux_weight=fv.aux_weight)
    started = time.perf_counter()
    trainer = SupernetTrainer(strategy, lambda: Supernet(
        fv.num_cells, fv.filters, data.num_classes, use_aux_head=fv.use_aux_head,
        dropout_rate=1.0 - fv.keep_prob, op_selection=fv.op_selection), cfg, fv.batch_size)
    params = int(sum(v.shape.num_elements() for v in trainer.model.trainable_variables))
    cli.say(f"NAO-WS on {fv.dataset}: {len(data.train)} training / {len(data.valid)} validation "
            f"images; supernet N={fv.num_cells} F={fv.filters} ({params:,} shared weights, op "
            f"selection '{fv.op_selection}'), {steps} steps/epoch x {fv.epochs} epochs, batch "
            f"{fv.batch_size} over {replicas} replica(s); built in "
            f"{time.perf_counter() - started:.0f}s")
    evaluator = SupernetEvaluator(trainer, data, schedule, fv.output_dir, fv.num_cells,
                                  fv.filters, log=cli.say)
    controller_extra, search_extra = controller_options(lambda name: fv[name].value)
    config = SearchConfig(
        seed_archs=fv.seed_archs, iterations=schedule.iterations, top_k=fv.top_k,
        new_archs=fv.new_archs, random_archs=fv.random_archs, max_lambda=fv.max_lambda,
        lambda_step=fv.lambda_step, controller_epochs=fv.controller_epochs, train_on="pool",
        symmetry=fv.symmetry, seed=fv.seed, **search_extra)
    controller = ControllerConfig.for_space(
        space, emb_size=48, hidden_size=96, mlp_layers=3, mlp_hidden=100, encoder_dropout=0.1,
        mlp_dropout=0.1, attention=fv.controller_attention, trade_off=fv.controller_trade_off,
        weight_decay=1e-4,
        learning_rate=fv.controller_lr, max_gradient_norm=5.0,
        batch_size=fv.controller_batch_size, seed=fv.seed, **controller_extra)
    search = NAOSearch(space, evaluator, config, controller, fv.output_dir, seed_pool=seed_pool,
                       log=cli.say, graphs=cell_graphs)
    result = search.run()
    best_path = os.path.join(fv.output_dir, "best_arch.json")
    cli.say(f"best cell (supernet validation accuracy {result.best_score:.4f}):\n"
            f"{space.describe(result.best_arch)}\ntop {len(result.top)}:\n"
            + "\n".join(f"  {score:.4f}  {space.to_string(a)}" for a, score in result.top)
            + f"\nwritten to {best_path}; train the best with: scripts/train_final.sh cnn "
            f"--config=nao_ws --arch={best_path}")
    return result



if __name__ == "__main__":
    define_flags()
    cli.run(lambda _: run(flags.FLAGS))
