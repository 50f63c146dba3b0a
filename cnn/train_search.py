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

from cnn import data as data_lib
from cnn.costs import CostNetworkConfig
from cnn.data import CifarData
from cnn.search_evaluator import SupernetEvaluator, SupernetSchedule
from cnn.supernet import Supernet
from cnn.training import OptimConfig, Trainer, disable_graph_optimizer
from nao_tf.algorithm.controller import ATTENTIONS
from nao_tf.algorithm.evaluators import EVAL_EPOCHS_HELP, parse_eval_epochs
from nao_tf.commands import cli, weight_sharing_search
from nao_tf.common.errors import NaoError
from nao_tf.common.io import fingerprint
from nao_tf.runtime.distribute import get_strategy
from nao_tf.runtime.precision import PRECISIONS, PRECISION_HELP

option = cli.option
# What of `OptimConfig` the supernet offers: SGDR with Nesterov momentum 0.9 (a flag), l2 on
# sum(w^2), clipping, the aux head's weight.
SUPERNET_SGD = ("lr_max", "lr_min", "t0", "t_mul", "nesterov", "l2_reg", "grad_bound",
                "aux_weight")


@dataclasses.dataclass(frozen=True)
class SearchDataConfig:
    """The CIFAR training split the supernet trains on, with the validation images held out."""

    dataset: str = option("cifar10", "Dataset.", data_lib.DATASETS, identity=True)
    data_dir: str = option("", "Directory with the python-pickle batches or a prepared "
                           "tensorflow-datasets directory (unused for synthetic).")
    data_source: str = option("auto", "How to read --data_dir.", ["auto", "tfds", "pickle"])
    num_valid: int = option(5000, "Validation images held out from the end of the training set.",
                            identity=True, minimum=1)
    synthetic_train_images: int = option(2048, "Images of --dataset=synthetic (validation "
                                         "included).", identity=True)


@dataclasses.dataclass(frozen=True)
class SupernetConfig:
    """The supernet, its training and the scoring of the pool. `identity`: what its checkpoint
    depends on; the learning rate and gradient bound are not, since a rerun after a divergence
    lowers them."""

    num_cells: int = option(2, "N: normal cells per stage of the supernet (3N + 2 cells).",
                            identity=True, minimum=1)
    filters: int = option(20, "F: width of the supernet's first stage.", identity=True, minimum=1)
    batch_size: int = option(160, "Global training batch of the supernet.", identity=True,
                             minimum=1)
    epochs: int = option(150, "Supernet training epochs in all.", identity=True, minimum=1)
    eval_every_epochs: int = option(30, "Score the pool (then train the controller and generate) "
                                    "every k epochs; the pool is scored epochs / k times.",
                                    identity=True, minimum=1)
    eval_epochs: str = option("", EVAL_EPOCHS_HELP, identity=True)
    sgd: OptimConfig = cli.section(
        OptimConfig, only=SUPERNET_SGD, defaults=dict(lr_min=0.0005, l2_reg=1e-4),
        identity=set(SUPERNET_SGD) - {"lr_max", "grad_bound"})
    keep_prob: float = option(0.9, "Keep probability of the dropout before the classifier.",
                              identity=True)
    drop_path_keep_prob: float = option(1.0, "Drop-path keep probability p of every branch "
                                        "output in training, cell l of 3N+2 keeping "
                                        "1 - (l+1)/(3N+2) * progress * (1 - p) (the PyTorch V1 "
                                        "search: 0.9); 1 = none (the TF original).",
                                        identity=True)
    use_aux_head: bool = option(True, "Auxiliary classifier after the second reduction.",
                                identity=True)
    sample_policy: str = option("uniform", "Architecture trained at each step: uniform over the "
                                "pool, or params (probability proportional to the stand-alone "
                                "parameter count, NAO V2).", ["uniform", "params"], identity=True)
    op_selection: str = option("switch", "switch: run only the chosen op (tf.switch_case); "
                               "select: run every candidate and keep the chosen (no control "
                               "flow).", ["switch", "select"])
    precision: str = option("fp32", PRECISION_HELP, PRECISIONS)
    jit_compile: bool = option(False, "XLA-compile the supernet's forward/backward pass (needs "
                               "--op_selection=select).")
    eval_images: int = option(500, "Validation images each architecture is scored on (the same "
                              "ones every time).", identity=True, minimum=1)
    eval_batch_size: int = option(500, "Scoring batch.", minimum=1)
    score_dropout: bool = option(False, "Keep the classifier dropout (1 - keep_prob) on while "
                                 "scoring cells, with one fixed mask, as the TF original (its "
                                 "search graph always runs in training mode).", identity=True)
    supernet_reduction: str = option("stride2", "stride2: reduction cells with stride-2 ops on "
                                     "the cell inputs (as the PyTorch port and the final "
                                     "network); tf: the TF original's stride-1 cell on h[i-1] and "
                                     "its factorized reduction (h[i-2] dropped).",
                                     ["stride2", "tf"], identity=True)
    supernet_base_conv: bool = option(True, "The final network's unconditional ReLU-1x1-BN on "
                                      "h[i-1] in every supernet cell; --nosupernet_base_conv: "
                                      "without it, as both original supernets.", identity=True)
    save_every_seconds: float = option(600.0, "Supernet checkpoint within an epoch at least this "
                                       "often (and at the end of every epoch).")
    log_every_steps: int = option(50, "Supernet progress line and TensorBoard scalars every k "
                                  "steps.", minimum=1)
    data_format: str = option("channels_last", "Image layout inside the supernet (channels_first "
                              "only on GPUs).", ["channels_last", "channels_first"],
                              identity=True)


@dataclasses.dataclass(frozen=True)
class SearchTaskConfig:
    """The task's settings: data, supernet, the controller's attention and learning rate, seed."""

    data: SearchDataConfig = cli.section(SearchDataConfig)
    supernet: SupernetConfig = cli.section(SupernetConfig)
    controller_attention: str = option("bahdanau", "Decoder attention: the TF original's "
                                       "normalised Bahdanau, the PyTorch NAO-WS/rnn controller's "
                                       "dot attention, or the PyTorch V1 port's Luong 'general' "
                                       "attention.", list(ATTENTIONS))
    controller_lr: float = option(1e-3, "Controller Adam learning rate.")
    controller_trade_off: float = option(0.8, "Predictor share of the controller loss (the rest: "
                                         "reconstruction).")
    controller_mlp_hidden: int = option(100, "Width of the predictor's 3 hidden layers (the "
                                        "PyTorch V1 port: 200).", minimum=1)
    controller_encoder_dropout: float = option(0.1, "Encoder dropout of the controller (the "
                                               "PyTorch V1 port: 0).", minimum=0.0,
                                               maximum=0.99)
    seed: int = option(0, "Random seed (pool, supernet weights, sampling, data order); 0 = not "
                       "fixed for the weights and data order.", identity=True)
    costs: CostNetworkConfig = cli.section(CostNetworkConfig)


# `--config=smoke`: defaults for a minutes-long offline run on 2 CPU cores. Its controller trains
# long enough, with enough weight on reconstruction, to decode its 16 cells back (Hamming
# distance about 1 of 40 tokens), so the new cells it generates are decoded, not collapsed.
SMOKE: dict[str, Any] = dict(
    dataset="synthetic", synthetic_train_images=320, num_valid=64, num_cells=1, filters=8,
    batch_size=32, epochs=2, eval_every_epochs=1, t0=1, t_mul=2, eval_images=64,
    eval_batch_size=64, log_every_steps=4, seed_archs=16, top_k=8, new_archs=8, random_archs=2,
    max_lambda=20.0, controller_epochs=300, controller_batch_size=16,
    controller_attention="dot", controller_lr=5e-3, controller_trade_off=0.5, seed=1)

# `--config=nao_pytorch_v1`: the NAO-WS search of the PyTorch port, `NAO_V1/train_search.py` at
# NAO_pytorch 418ff71 (the search that found NAONet-B), each value from its argparse defaults
# unless said otherwise. PyTorch's SGD weight decay wd is l2_reg = wd / 2 here (both add wd * w to
# the gradient); its `CosineAnnealingLR(optimizer, child_epochs, child_lr_min)` is one
# epoch-granular cosine, SGDR with T_0 = epochs and T_mul = 1.
NAO_PYTORCH_V1: dict[str, Any] = dict(
    # The supernet: NASWSNetworkCIFAR(10, child_layers, child_nodes, child_channels,
    # child_keep_prob, child_drop_path_keep_prob, child_use_aux_head, steps), lines 32-46, 133.
    num_cells=3, filters=20, batch_size=64, epochs=150, eval_images=500, eval_batch_size=500,
    keep_prob=1.0, drop_path_keep_prob=0.9, use_aux_head=False,
    eval_every_epochs=30,  # --child_eval_epochs '30': the pool is scored every 30 epochs
    # SGD(lr 0.025, momentum=0.9, weight_decay=3e-4), no Nesterov, cosine to 0.001, clip 5
    # (lines 39-44, 139-150).
    lr_max=0.025, lr_min=0.001, t0=150, t_mul=1, nesterov=False, l2_reg=1.5e-4, grad_bound=5.0,
    # One pool cell per step, uniformly (`utils.sample_arch(arch_pool, None)`, line 282); real
    # stride-2 reduction cells without the fixed network's extra 1x1 on h[i-1]
    # (`model_search.py` `Node`, `Cell`); scored in eval mode (no dropout) with batch statistics
    # (`bn_train=True`, line 316).
    sample_policy="uniform", supernet_reduction="stride2", supernet_base_conv=False,
    score_dropout=False,
    # The controller (lines 55-76): embedding 48, LSTM 96, MLP 3 x 200 with dropout 0.1,
    # encoder dropout 0, trade-off 0.8, Adam 1e-3 with weight decay 1e-4, 1,000 epochs of
    # batches of 100; PyTorch modules (`controller_style=pytorch`) with Luong attention
    # (`decoder.py` `Attention`); branch-swap augmentation (`NAODataset(swap=True)`, line 755).
    controller_mlp_hidden=200, controller_encoder_dropout=0.0, controller_trade_off=0.8,
    controller_lr=1e-3, controller_attention="general", controller_style="pytorch",
    controller_epochs=1000, controller_batch_size=100, symmetry=True,
    # The pool (lines 52-54, 771-795): 600 random cells; 300 new ones decoded from the top 100
    # with lambda = 1, 2, ... until the loop breaks after lambda 51; the new pool is the best
    # 600 - 300 old cells and the new ones, no random cells.
    seed_archs=600, top_k=100, new_archs=300, random_archs=0, max_lambda=51.0, lambda_step=1.0)


def check(c: SearchTaskConfig) -> tuple[dict[str, Any], CifarData]:
    """The supernet's settings and the data; returns the settings record and the data."""
    d, net = c.data, c.supernet
    value = cli.config_values(c).get
    cli.check_bounds(c)
    if net.filters % 2:
        raise NaoError(f"--filters={net.filters} must be even (factorized reductions halve it)")
    cli.check_keep_probability(value, "keep_prob", "drop_path_keep_prob")
    parse_eval_epochs(net.eval_epochs, net.epochs)
    if net.jit_compile and net.op_selection != "select":
        raise NaoError("--jit_compile needs --op_selection=select (XLA compiles the switch "
                       "supernet's 100+ branch functions for many minutes)")
    if not 0.0 <= c.controller_trade_off <= 1.0:
        raise NaoError(f"--controller_trade_off={c.controller_trade_off} must be in [0, 1]")
    data = data_lib.load(d.dataset, d.data_dir or None, d.data_source, "search", d.num_valid,
                         (d.synthetic_train_images, 0), seed=c.seed)
    data = dataclasses.replace(data, test=None)  # the search never looks at the test set
    replicas = get_strategy().num_replicas_in_sync
    for name in ("batch_size", "eval_batch_size"):
        if value(name) % replicas:
            raise NaoError(f"--{name}={value(name)} does not split evenly over {replicas} "
                           "replicas")
    return {**cli.config_values(c), "data_fingerprint": fingerprint(d.data_dir)}, data


def supernet(c: SearchTaskConfig, data: CifarData, output_dir: str) -> SupernetEvaluator:
    """The supernet evaluator: the shared weights, their SGDR schedule and the scoring."""
    net = c.supernet
    if c.seed:
        keras.utils.set_random_seed(c.seed)
    keras.config.set_image_data_format(net.data_format)
    strategy = get_strategy()
    steps = data_lib.steps_per_epoch(len(data.train), net.batch_size)
    schedule = SupernetSchedule(
        epochs=net.epochs, eval_every_epochs=net.eval_every_epochs,
        eval_epochs=parse_eval_epochs(net.eval_epochs, net.epochs), steps_per_epoch=steps,
        batch_size=net.batch_size, sample_policy=net.sample_policy, eval_images=net.eval_images,
        eval_batch_size=net.eval_batch_size, seed=c.seed,
        save_every_seconds=net.save_every_seconds, log_every_steps=net.log_every_steps)
    cfg = dataclasses.replace(net.sgd, epochs=net.epochs, steps_per_epoch=steps,
                              precision=net.precision, seed=c.seed)
    started = time.perf_counter()
    disable_graph_optimizer()
    trainer = Trainer(strategy, lambda: Supernet(
        net.num_cells, net.filters, data.num_classes, use_aux_head=net.use_aux_head,
        dropout_rate=1.0 - net.keep_prob, op_selection=net.op_selection,
        score_dropout=net.score_dropout, reduction=net.supernet_reduction,
        base_conv=net.supernet_base_conv, drop_path_keep_prob=net.drop_path_keep_prob), cfg,
        net.batch_size, net.jit_compile)
    params = int(sum(v.shape.num_elements() for v in trainer.model.trainable_variables))
    cli.say(f"NAO-WS on {c.data.dataset}: {len(data.train)} training / {len(data.valid)} "
            f"validation images; supernet N={net.num_cells} F={net.filters} ({params:,} shared "
            f"weights, op selection '{net.op_selection}', {net.precision}), {steps} steps/epoch x "
            f"{net.epochs} epochs, batch {net.batch_size} over "
            f"{strategy.num_replicas_in_sync} replica(s); built in "
            f"{time.perf_counter() - started:.0f}s")
    return SupernetEvaluator(trainer, data, schedule, output_dir, net.num_cells, net.filters,
                             log=cli.say)


def controller(c: SearchTaskConfig) -> dict[str, Any]:
    """The NAO-WS controller of both originals: what differs between them (attention, learning
    rate, MLP width, encoder dropout) are flags, the TF original's by default."""
    return dict(emb_size=48, hidden_size=96, mlp_layers=3, mlp_hidden=c.controller_mlp_hidden,
                encoder_dropout=c.controller_encoder_dropout, mlp_dropout=0.1,
                attention=c.controller_attention,
                trade_off=c.controller_trade_off, weight_decay=1e-4,
                learning_rate=c.controller_lr, max_gradient_norm=5.0)


if __name__ == "__main__":
    from cnn.task import TASK

    weight_sharing_search.main(TASK)
