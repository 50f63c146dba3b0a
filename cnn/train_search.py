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
import time
from typing import Any

import keras
from absl import flags

from cnn import data as data_lib
from cnn.data import CifarData
from cnn.search_evaluator import SupernetEvaluator, SupernetSchedule
from cnn.search_space import NAO_WS_SPACE, cell_graphs
from cnn.supernet import Supernet
from cnn.training import OptimConfig, Trainer, disable_graph_optimizer
from nao_tf import cli, weight_sharing_search
from nao_tf.distribute import get_strategy
from nao_tf.errors import NaoError
from nao_tf.io import fingerprint
from nao_tf.precision import PRECISION_HELP, PRECISIONS
from nao_tf.search import EVAL_EPOCHS_HELP, parse_eval_epochs

_DATASETS = ["cifar10", "cifar100", "synthetic"]
# The task's flags, (name, default, help[, enum values]); the search loop's are
# nao_tf.weight_sharing_search.SEARCH_FLAGS.
TASK_FLAGS: tuple[tuple, ...] = (
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
    ("eval_epochs", "", EVAL_EPOCHS_HELP),
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
    ("precision", "fp32", PRECISION_HELP, list(PRECISIONS)),
    ("jit_compile", False, "XLA-compile the supernet's forward/backward pass (needs "
     "--op_selection=select)."),
    ("eval_images", 500, "Validation images each architecture is scored on (the same ones every "
     "time)."),
    ("eval_batch_size", 500, "Scoring batch."),
    ("score_dropout", False, "Keep the classifier dropout (1 - keep_prob) on while scoring cells, "
     "with one fixed mask, as the TF original (its search graph always runs in training mode)."),
    ("supernet_reduction", "stride2", "stride2: reduction cells with stride-2 ops on the cell "
     "inputs (as the PyTorch port and the final network); tf: the TF original's stride-1 cell on "
     "h[i-1] and its factorized reduction (h[i-2] dropped).", ["stride2", "tf"]),
    ("supernet_base_conv", True, "The final network's unconditional ReLU-1x1-BN on h[i-1] in every "
     "supernet cell; --nosupernet_base_conv: without it, as both original supernets."),
    ("save_every_seconds", 600.0, "Supernet checkpoint within an epoch at least this often (and "
     "at the end of every epoch)."),
    ("log_every_steps", 50, "Supernet progress line and TensorBoard scalars every k steps."),
    ("data_format", "channels_last", "Image layout inside the supernet (channels_first only on "
     "GPUs).", ["channels_last", "channels_first"]),
    # The controller.
    ("controller_attention", "bahdanau", "Decoder attention: the TF original's normalised "
     "Bahdanau or the PyTorch port's dot attention.", ["bahdanau", "dot"]),
    ("controller_lr", 1e-3, "Controller Adam learning rate."),
    ("controller_trade_off", 0.8, "Predictor share of the controller loss (the rest: "
     "reconstruction)."),
    ("seed", 0, "Random seed (pool, supernet weights, sampling, data order); 0 = not fixed for "
     "the weights and data order."),
)
# `--config=smoke`: defaults for a minutes-long offline run on 2 CPU cores. Its controller trains
# long enough, with enough weight on reconstruction, to decode its 16 cells back (Hamming
# distance about 1 of 40 tokens), so the new cells it generates are decoded, not collapsed.
SMOKE: dict[str, Any] = dict(
    dataset="synthetic", synthetic_train_images=320, num_valid=64, num_cells=1, filters=8,
    batch_size=32, epochs=2, eval_every_epochs=1, t0=1, t_mul=2, eval_images=64,
    eval_batch_size=64, log_every_steps=4, seed_archs=16, top_k=8, new_archs=8, random_archs=2,
    max_lambda=20.0, controller_epochs=300, controller_batch_size=16,
    controller_attention="dot", controller_lr=5e-3, controller_trade_off=0.5, seed=1)

# Flags the supernet's checkpoint depends on: a run resumes only with the same values. The
# learning rate and gradient bound are left out: a rerun after a divergence lowers them.
RESUME_KEYS = ("dataset", "data_fingerprint", "synthetic_train_images", "num_valid", "num_cells",
               "filters", "batch_size", "epochs", "eval_every_epochs", "eval_epochs", "lr_min",
               "t0", "t_mul", "nesterov", "l2_reg", "keep_prob", "use_aux_head", "aux_weight",
               "sample_policy", "eval_images", "score_dropout", "supernet_reduction",
               "supernet_base_conv", "data_format", "seed")


def check(fv: flags.FlagValues) -> tuple[dict[str, Any], CifarData]:
    """The supernet's flags and the data; returns the settings record and the data."""
    value = lambda name: fv[name].value  # noqa: E731
    cli.check_at_least(value, 1, "num_cells", "filters", "batch_size", "epochs",
                       "eval_every_epochs", "t0", "t_mul", "eval_images", "eval_batch_size",
                       "num_valid", "log_every_steps")
    if fv.filters % 2:
        raise NaoError(f"--filters={fv.filters} must be even (factorized reductions halve it)")
    cli.check_keep_probability(value, "keep_prob")
    parse_eval_epochs(fv.eval_epochs, fv.epochs)
    if fv.jit_compile and fv.op_selection != "select":
        raise NaoError("--jit_compile needs --op_selection=select (XLA compiles the switch "
                       "supernet's 100+ branch functions for many minutes)")
    if not 0.0 <= fv.controller_trade_off <= 1.0:
        raise NaoError(f"--controller_trade_off={fv.controller_trade_off} must be in [0, 1]")
    data = data_lib.load(fv.dataset, fv.data_dir or None, fv.data_source, "search",
                         fv.num_valid, (fv.synthetic_train_images, 0), seed=fv.seed)
    data = dataclasses.replace(data, test=None)  # the search never looks at the test set
    replicas = get_strategy().num_replicas_in_sync
    for name in ("batch_size", "eval_batch_size"):
        if fv[name].value % replicas:
            raise NaoError(f"--{name}={fv[name].value} does not split evenly over {replicas} "
                           "replicas")
    names = [spec[0] for spec in TASK_FLAGS] + sorted(weight_sharing_search.COMMON_FLAG_NAMES)
    settings = {name: fv[name].value for name in names if name != "overwrite"}
    return {**settings, "data_fingerprint": fingerprint(fv.data_dir)}, data


def evaluator(fv: flags.FlagValues, data: CifarData) -> SupernetEvaluator:
    if fv.seed:
        keras.utils.set_random_seed(fv.seed)
    keras.config.set_image_data_format(fv.data_format)
    strategy = get_strategy()
    steps = data_lib.steps_per_epoch(len(data.train), fv.batch_size)
    schedule = SupernetSchedule(
        epochs=fv.epochs, eval_every_epochs=fv.eval_every_epochs,
        eval_epochs=parse_eval_epochs(fv.eval_epochs, fv.epochs), steps_per_epoch=steps,
        batch_size=fv.batch_size, sample_policy=fv.sample_policy, eval_images=fv.eval_images,
        eval_batch_size=fv.eval_batch_size, seed=fv.seed,
        save_every_seconds=fv.save_every_seconds, log_every_steps=fv.log_every_steps)
    cfg = OptimConfig(epochs=fv.epochs, steps_per_epoch=steps, lr_schedule="sgdr",
                      lr_max=fv.lr_max, lr_min=fv.lr_min, t0=fv.t0, t_mul=fv.t_mul,
                      momentum=0.9, nesterov=fv.nesterov, l2_reg=fv.l2_reg,
                      grad_bound=fv.grad_bound, aux_weight=fv.aux_weight,
                      precision=fv.precision, seed=fv.seed)
    started = time.perf_counter()
    disable_graph_optimizer()
    trainer = Trainer(strategy, lambda: Supernet(
        fv.num_cells, fv.filters, data.num_classes, use_aux_head=fv.use_aux_head,
        dropout_rate=1.0 - fv.keep_prob, op_selection=fv.op_selection,
        score_dropout=fv.score_dropout, reduction=fv.supernet_reduction,
        base_conv=fv.supernet_base_conv), cfg, fv.batch_size,
        fv.jit_compile)
    params = int(sum(v.shape.num_elements() for v in trainer.model.trainable_variables))
    cli.say(f"NAO-WS on {fv.dataset}: {len(data.train)} training / {len(data.valid)} validation "
            f"images; supernet N={fv.num_cells} F={fv.filters} ({params:,} shared weights, op "
            f"selection '{fv.op_selection}', {fv.precision}), {steps} steps/epoch x {fv.epochs} epochs, batch "
            f"{fv.batch_size} over {strategy.num_replicas_in_sync} replica(s); built in "
            f"{time.perf_counter() - started:.0f}s")
    return SupernetEvaluator(trainer, data, schedule, fv.output_dir, fv.num_cells, fv.filters,
                             log=cli.say)


def controller(fv: flags.FlagValues) -> dict[str, Any]:
    """The TF original's NAO-WS controller (attention and learning rate are flags)."""
    return dict(emb_size=48, hidden_size=96, mlp_layers=3, mlp_hidden=100, encoder_dropout=0.1,
                mlp_dropout=0.1, attention=fv.controller_attention,
                trade_off=fv.controller_trade_off, weight_decay=1e-4,
                learning_rate=fv.controller_lr, max_gradient_norm=5.0)


TASK = weight_sharing_search.WeightSharingTask(
    name="cnn", space=NAO_WS_SPACE, flags=TASK_FLAGS, presets={"smoke": SMOKE},
    identity=RESUME_KEYS, check=check, evaluator=evaluator, controller=controller,
    score_name="validation accuracy", graphs=cell_graphs,
    final_command="scripts/train_final.sh cnn --config=nao_ws")


if __name__ == "__main__":
    weight_sharing_search.main(TASK)
