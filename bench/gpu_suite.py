"""One suite for a GPU machine: every throughput the paper-scale jobs depend on, in one table.

    bench/gpu_suite.sh                    # paper configs, on the first GPU and then on all GPUs
    bench/gpu_suite.sh --tiny             # tiny networks; runs anywhere (the CPU too)
    bench/gpu_suite.sh --tiny --precisions=fp32 --modes=switch --noxla   # what the test runs

Measures, each after untimed warm-up steps (tracing included):
  - the controller: seconds per training epoch (1,000 cells, batch 100), dot and Bahdanau;
  - the CNN supernet at the NAO-WS config (N=2, F=20, batch 160): training images/s and scoring
    cells/s (500 images a cell), for each op selection (switch, select, select under XLA) and each
    precision;
  - the NAONet final network (N=6, F=36, batch 128): training images/s per precision, with and
    without XLA;
  - the RNN language model (d=850, V=10k, batch 64 x 35) and the RNN supernet (d=300, batch
    256 x 35): training tokens/s per precision; supernet scoring cells/s;
  - the input pipelines alone: CIFAR training batches with augmentation (images/s), BPTT windows
    of a batchified stream (tokens/s), and the FLOPs of one NAONet forward pass (what the CIFAR
    pipeline has to keep up with);
  - with two or more GPUs, the fp32 trainings again under MirroredStrategy over all of them;
then extrapolates the paper-config times (NAO-WS CNN and RNN searches, NAONet final training) from
the fastest measured rows. The table goes to stdout and to --out. `--parts` measures a subset, e.g.
`--parts=pipelines` (CPU-only work, seconds).
"""

import os
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import nao_tf  # noqa: E402,F401  (quiet TensorFlow start-up)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from nao_tf.commands import cli  # noqa: E402
from cnn import data as cnn_data  # noqa: E402
from cnn.model import NASNetwork  # noqa: E402
from cnn.cells import named_arch  # noqa: E402
from cnn.search_space import NAO_WS_SPACE  # noqa: E402
from cnn.supernet import Supernet as CnnSupernet, arch_tensor  # noqa: E402
from cnn.training import OptimConfig, Trainer, disable_graph_optimizer  # noqa: E402
from nao_tf.algorithm.controller import Controller, ControllerConfig  # noqa: E402
from nao_tf.algorithm.controller_train import ControllerTrainer  # noqa: E402
from nao_tf.runtime import precision  # noqa: E402
from nao_tf.runtime.distribute import get_strategy  # noqa: E402
from rnn.data import batchify, get_batch  # noqa: E402
from rnn.model import RNNModel  # noqa: E402
from rnn.search_space import RnnSearchSpace, resolve_arch  # noqa: E402
from rnn.supernet import Supernet as RnnSupernet, arch_array  # noqa: E402
from rnn.training import LMStep, train_windows  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("tiny", False, "Tiny networks and few steps: checks that the suite runs.")
flags.DEFINE_list("precisions", list(precision.PRECISIONS), "Precisions to measure.")
flags.DEFINE_list("modes", ["switch", "select", "select_xla"], "CNN supernet op selections.")
flags.DEFINE_bool("xla", True, "Also measure the NAONet final network under XLA.")
PARTS = ("controller", "final", "rnn", "pipelines", "supernet")
flags.DEFINE_list("parts", list(PARTS), "What to measure (a job's time is extrapolated when its "
                  "parts are measured).")
flags.DEFINE_string("out", "bench/results/gpu_suite.md", "Where the table is written.")

PAPER = dict(controller_archs=1000, controller_batch=100, controller_epochs=2,
             supernet=(2, 20, 160), score_images=500, final=(6, 36, 128), lm=(850, 10000, 64),
             rnn_supernet=(300, 10000, 256), bptt=35, warmup=2, steps=5, score_cells=8)
TINY = dict(controller_archs=40, controller_batch=20, controller_epochs=1,
            supernet=(1, 8, 16), score_images=32, final=(1, 8, 16), lm=(16, 50, 4),
            rnn_supernet=(16, 50, 4), bptt=8, warmup=1, steps=2, score_cells=2)
# The paper-config jobs the rates are extrapolated to.
CNN_SEARCH = dict(epochs=150, images=45_000, evaluations=5, pool=1000, controller_epochs=5 * 1000)
RNN_SEARCH = dict(epochs=1000, tokens=929_589, evaluations=5, pool=1000,
                  controller_epochs=5 * 1000)
NAONET_FINAL = dict(epochs=600, images=50_000)


def per_call(fn: Callable[[], object], warmup: int, calls: int) -> float:
    """Seconds per call of `fn` (which must wait for its result) after `warmup` calls."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def controller_epoch(c: dict, attention: str) -> float:
    rng = np.random.default_rng(0)
    archs = NAO_WS_SPACE.sample_unique(c["controller_archs"], rng)
    config = ControllerConfig.for_space(NAO_WS_SPACE, emb_size=48, hidden_size=96, mlp_layers=3,
                                        mlp_hidden=100, batch_size=c["controller_batch"],
                                        attention=attention)
    trainer = ControllerTrainer(Controller(config, NAO_WS_SPACE.valid_token_mask()),
                                augment=NAO_WS_SPACE.random_equivalent)
    tokens, targets = NAO_WS_SPACE.encode(archs), rng.uniform(size=len(archs))
    return per_call(lambda: trainer.fit(tokens, targets, 1, rng), 1, c["controller_epochs"])


def _images(count: int) -> tuple[cnn_data.Split, np.ndarray, np.ndarray]:
    split, _ = cnn_data.synthetic_splits(count, 0)
    pixels = split.images.reshape(-1, 3) / 255
    return split, pixels.mean(0).astype("float32"), pixels.std(0).astype("float32")


def cnn_rates(c: dict, strategy: tf.distribute.Strategy, build: Callable[[], keras.Model],
              batch: int, policy: str, jit_compile: bool, archs: list | None
              ) -> tuple[float, float | None]:
    """(training images/s, scoring cells/s or None) of a CIFAR network on augmented batches."""
    keras.utils.set_random_seed(0)
    cfg = OptimConfig(epochs=1, steps_per_epoch=1000, precision=policy)
    trainer = Trainer(strategy, build, cfg, batch, jit_compile)
    split, mean, std = _images(max(4 * batch, c["score_images"]))
    batches = iter(strategy.experimental_distribute_dataset(
        cnn_data.train_dataset(split, batch, mean, std, seed=1)))
    arch = [] if archs is None else [archs[0]]
    seconds = per_call(lambda: trainer.train_step(*next(batches), *arch), c["warmup"], c["steps"])
    if archs is None:
        return batch / seconds, None
    images, labels = next(iter(strategy.experimental_distribute_dataset(
        cnn_data.eval_dataset(split, c["score_images"], mean, std))))
    cells = iter(archs * 2)
    score = per_call(lambda: float(trainer.correct_count(images, labels, next(cells))), 1,
                     c["score_cells"])
    return batch / seconds, 1.0 / score


def cnn_supernet(c: dict, strategy, mode: str, policy: str) -> tuple[float, float | None]:
    n, f, batch = c["supernet"]
    archs = [tf.constant(arch_tensor(a)) for a in
             NAO_WS_SPACE.sample_unique(c["score_cells"] + 1, np.random.default_rng(0))]
    op_selection = mode.removesuffix("_xla")
    disable_graph_optimizer()
    return cnn_rates(c, strategy, lambda: CnnSupernet(n, f, 10, use_aux_head=True,
                                                      dropout_rate=0.1,
                                                      op_selection=op_selection),
                     batch, policy, mode.endswith("_xla"), archs)


def naonet(c: dict, strategy, policy: str, jit_compile: bool) -> float:
    n, f, batch = c["final"]
    return cnn_rates(c, strategy, lambda: NASNetwork(
        named_arch("naonet"), n, f, 10, use_aux_head=True, drop_path_keep_prob=0.6,
        dropout_rate=0.2), batch, policy, jit_compile, None)[0]


def rnn_rates(c: dict, strategy, key: str, policy: str) -> tuple[float, float | None]:
    """(training tokens/s, supernet scoring cells/s or None) of the language model or supernet."""
    d, vocab, batch = c[key]
    bptt, rng = c["bptt"], np.random.default_rng(0)
    cells = RnnSearchSpace().sample_unique(c["score_cells"] + 1, rng)
    keras.utils.set_random_seed(0)
    with strategy.scope(), precision.policy(policy):
        model = (RNNModel(resolve_arch("NAO")[0], vocab, d) if key == "lm"
                 else RnnSupernet(vocab, d))
    lm = LMStep(model, strategy, batch, clip=0.25, wdecay=8e-7, beta=1e-3)
    x, y = (tf.constant(rng.integers(0, vocab, (bptt, batch)), tf.int32) for _ in range(2))
    arch = [] if key == "lm" else [tf.constant(arch_array(cells[:1])[0])]
    state = {"hidden": tf.zeros([batch, d]), "step": 0}

    def train():
        state["step"] += 1
        loss, state["hidden"] = lm.train_step(x, y, state["hidden"], 1.0, (0, state["step"]),
                                              *arch)
        float(loss)

    seconds = per_call(train, c["warmup"], c["steps"])
    if key == "lm":
        return bptt * batch / seconds, None
    pool = tf.constant(arch_array(cells[:4]))  # 4 cells a call, as --eval_arch_batch
    score = per_call(lambda: lm.score(x, y, pool).numpy(), 1, 1)
    return bptt * batch / seconds, len(pool) / score


def forward_gflops(model: keras.Model, *args) -> float:
    """GFLOP of one forward pass of `model` on one 32x32 image, counted by TensorFlow's profiler
    (a multiply-add counts 2)."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    function = tf.function(lambda x: model(x, *args, training=False)).get_concrete_function(
        tf.TensorSpec([1, 32, 32, 3], tf.float32))
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    graph = convert_variables_to_constants_v2(function).graph
    return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops / 1e9


def input_pipelines(c: dict) -> tuple[float, float]:
    """(augmented CIFAR training images/s, BPTT tokens/s) of the input pipelines alone."""
    batch = c["final"][2]
    split, mean, std = _images(max(8 * batch, 1024))
    batches = iter(cnn_data.train_dataset(split, batch, mean, std, cutout_size=16, seed=1))
    images = batch / per_call(lambda: next(batches)[0].numpy(), 5, 20 * c["steps"])
    stream = batchify(np.random.default_rng(0).integers(0, 10000, 200_000), 64, "stream")
    start, tokens = time.perf_counter(), 0
    for i, length in train_windows(stream, np.random.default_rng(0), 35, 20):
        x, y = get_batch(stream, i, length)
        tokens += tf.constant(x).shape.num_elements()
    return images, tokens / (time.perf_counter() - start)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def main(argv):
    del argv
    c = TINY if FLAGS.tiny else PAPER
    tf.get_logger().setLevel("ERROR")  # each measurement builds new functions: retrace warnings
    gpus = tf.config.list_logical_devices("GPU")
    device = gpus[0].name if gpus else "/cpu:0"
    described = (tf.config.experimental.get_device_details(
        tf.config.list_physical_devices("GPU")[0]).get("device_name", "GPU") if gpus else "CPU")
    rows: list[tuple[str, str, str, float]] = []

    def row(what: str, setting: str, unit: str, value: float) -> None:
        rows.append((what, setting, unit, value))
        print(f"{what:<22} {setting:<34} {value:12.2f} {unit}", flush=True)

    one = get_strategy([device])
    parts = set(FLAGS.parts)
    best: dict[str, tuple[float, str]] = {}  # job -> (seconds, fastest setting)

    def keep_best(job: str, seconds: float, setting: str) -> None:
        if job not in best or seconds < best[job][0]:
            best[job] = (seconds, setting)

    controller = None
    if "controller" in parts:
        for attention in ("dot", "bahdanau"):
            epoch = controller_epoch(c, attention)
            row("controller", f"{attention} attention", "s/epoch", epoch)
            controller = epoch if controller is None else min(controller, epoch)
    if "final" in parts:
        for policy in FLAGS.precisions:
            for jit_compile in (False, True)[:1 + FLAGS.xla]:
                rate = naonet(c, one, policy, jit_compile)
                setting = f"{policy}{', XLA' if jit_compile else ''}"
                row("naonet final train", setting, "images/s", rate)
                keep_best("NAONet final training",
                          NAONET_FINAL["epochs"] * NAONET_FINAL["images"] / rate, setting)
    if "rnn" in parts:
        for policy in FLAGS.precisions:
            row("rnn lm train", policy, "tokens/s", rnn_rates(c, one, "lm", policy)[0])
            train, score = rnn_rates(c, one, "rnn_supernet", policy)
            row("rnn supernet train", policy, "tokens/s", train)
            row("rnn supernet score", policy, "cells/s", score)
            keep_best("NAO-WS RNN search", RNN_SEARCH["epochs"] * RNN_SEARCH["tokens"] / train
                      + RNN_SEARCH["evaluations"] * RNN_SEARCH["pool"] / score, policy)
    if "pipelines" in parts:
        images, tokens = input_pipelines(c)
        row("input pipeline", "CIFAR, augmented + cutout", "images/s", images)
        row("input pipeline", "PTB BPTT windows", "tokens/s", tokens)
        n, f, _ = c["final"]  # what the CIFAR pipeline must keep up with
        row("naonet forward", f"N={n}, F={f}, one image", "GFLOP",
            forward_gflops(NASNetwork(named_arch("naonet"), n, f, 10, use_aux_head=False)))
    # The CNN supernets come last: they switch the graph optimiser off for the process.
    if "supernet" in parts:
        for policy in FLAGS.precisions:
            for mode in FLAGS.modes:
                train, score = cnn_supernet(c, one, mode, policy)
                row("cnn supernet train", f"{mode}, {policy}", "images/s", train)
                row("cnn supernet score", f"{mode}, {policy}", "cells/s", score)
                keep_best("NAO-WS CNN search",
                          CNN_SEARCH["epochs"] * CNN_SEARCH["images"] / train
                          + CNN_SEARCH["evaluations"] * CNN_SEARCH["pool"] / score,
                          f"{mode}, {policy}")
    if len(gpus) > 1:
        every = get_strategy()
        label = f"fp32, {len(gpus)} GPUs"
        if "final" in parts:
            row("naonet final train", label, "images/s", naonet(c, every, "fp32", False))
        if "rnn" in parts:
            row("rnn lm train", label, "tokens/s", rnn_rates(c, every, "lm", "fp32")[0])
            row("rnn supernet train", label, "tokens/s",
                rnn_rates(c, every, "rnn_supernet", "fp32")[0])
        if "supernet" in parts:
            row("cnn supernet train", f"select, {label}", "images/s",
                cnn_supernet(c, every, "select", "fp32")[0])
    controller_epochs = {"NAO-WS CNN search": CNN_SEARCH["controller_epochs"],
                         "NAO-WS RNN search": RNN_SEARCH["controller_epochs"]}
    extrapolated = [(job, setting, seconds + controller_epochs.get(job, 0) * (controller or 0))
                    for job, (seconds, setting) in best.items()
                    if job not in controller_epochs or controller is not None]
    lines = [f"# GPU suite ({'tiny' if FLAGS.tiny else 'paper configs'}) on {described}, "
             f"TensorFlow {tf.__version__}, {time.strftime('%Y-%m-%d')}", "",
             "| measured | setting | value | unit |", "|---|---|---|---|"]
    lines += [f"| {what} | {setting} | {value:.2f} | {unit} |"
              for what, setting, unit, value in rows]
    if extrapolated:
        lines += ["", "| paper-config job (one device) | fastest setting | time |",
                  "|---|---|---|"]
        lines += [f"| {job} | {setting} | {hours(seconds)} |" for job, setting, seconds
                  in extrapolated]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out + ".tmp", "w") as f:
        f.write(text)
    os.replace(FLAGS.out + ".tmp", FLAGS.out)


if __name__ == "__main__":
    cli.run(main)
