"""What a compiled step costs before it runs: build, trace and first-call time of every compiled
step of the project, at the sizes of the `--config=smoke` runs, and its steady step for scale.

    python bench/trace_bench.py                          # every step, one fresh process each
    python bench/trace_bench.py --steps=cnn_supernet --repeats=3

For each step, in a process of its own (so no trace, function cache or graph-optimiser setting
carries over): `build` creates the network, its optimiser and every variable; `trace` is
`get_concrete_function` on the step's inputs (Python running the step's code and creating its
ops); `first call` is the first execution of the traced step (TensorFlow instantiates its
function bodies, then runs it once); `step` is the median of the next calls. Each is reported as
CPU seconds of the process (robust to a busy machine) and wall seconds; `ops` counts the nodes of
the traced graph and of every function body in its library.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import nao_tf  # noqa: E402,F401  (TensorFlow without its start-up lines)

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
STEPS = ("cnn_supernet", "cnn_final", "nb201_supernet", "nb201_final", "rnn_supernet", "rnn_lm",
         "controller")
flags.DEFINE_list("steps", list(STEPS), f"Networks whose compiled steps are measured: {STEPS}.")
flags.DEFINE_integer("repeats", 1, "Fresh processes per network (the median is reported).")
flags.DEFINE_integer("calls", 3, "Steady calls after the first (their median is `step`).")
flags.DEFINE_string("one", "", "Measure this network in this process (internal).")
flags.DEFINE_string("output", "", "Also write the results as JSON here.")

# A compiled step: (name, tf.function, inputs of call k).
Step = tuple[str, Callable, Callable[[int], tuple]]


def _cnn(network: str) -> list[Step]:
    import keras
    import numpy as np
    import tensorflow as tf

    from cnn.model import NASNetwork
    from cnn.search_space import NAO_WS_SPACE
    from cnn.supernet import Supernet, arch_tensor
    from cnn.training import OptimConfig, Trainer, disable_graph_optimizer

    keras.utils.set_random_seed(0)
    cells = NAO_WS_SPACE.sample_unique(8, np.random.default_rng(0))
    images = lambda n, k: tf.random.stateless_normal([n, 32, 32, 3], [k, 0])  # noqa: E731
    labels = lambda n: tf.zeros([n], tf.int64)  # noqa: E731
    cfg = OptimConfig(epochs=2, steps_per_epoch=8, lr_max=0.05, l2_reg=1e-4)
    strategy = tf.distribute.get_strategy()
    if network == "supernet":  # `cnn.train_search --config=smoke`: N=1, F=8, batch 32, score 64
        disable_graph_optimizer()
        trainer = Trainer(strategy, lambda: Supernet(1, 8, 10, dropout_rate=0.1), cfg, 32)
        arch = lambda k: tf.constant(arch_tensor(cells[k % len(cells)]))  # noqa: E731
        return [("train", trainer._train_step, lambda k: (images(32, k), labels(32), arch(k))),
                ("score", trainer._eval_step, lambda k: (images(64, k), labels(64), arch(k)))]
    trainer = Trainer(strategy, lambda: NASNetwork(cells[0], 1, 8, 10, drop_path_keep_prob=0.8,
                                                   dropout_rate=0.2), cfg, 32)
    return [("train", trainer._train_step, lambda k: (images(32, k), labels(32))),
            ("eval", trainer._eval_step, lambda k: (images(64, k), labels(64)))]


def _nb201(network: str) -> list[Step]:
    import numpy as np
    import tensorflow as tf

    from nb201 import task as nb201

    config = nb201.Nb201Config(**{k: v for k, v in nb201.SMOKE.items() if k != "dataset"},
                               dataset="synthetic", epochs=2, num_valid=64)
    data = nb201.load_data(config, "search")
    cells = nb201.SPACE.sample_unique(8, np.random.default_rng(0))
    images = lambda n, k: tf.random.stateless_normal([n, 32, 32, 3], [k, 0])  # noqa: E731
    labels = lambda n: tf.zeros([n], tf.int64)  # noqa: E731
    if network == "supernet":
        from cnn.training import disable_graph_optimizer

        disable_graph_optimizer()
        trainer = nb201.trainer(config, data, None)
        arch = lambda k: tf.constant(cells[k % len(cells)], tf.int32)  # noqa: E731
        return [("train", trainer._train_step, lambda k: (images(32, k), labels(32), arch(k))),
                ("score", trainer._eval_step, lambda k: (images(64, k), labels(64), arch(k)))]
    trainer = nb201.trainer(config, data, cells[0])
    return [("train", trainer._train_step, lambda k: (images(32, k), labels(32))),
            ("eval", trainer._eval_step, lambda k: (images(64, k), labels(64)))]


def _rnn(network: str) -> list[Step]:
    import numpy as np
    import tensorflow as tf

    from rnn.model import RNNModel
    from rnn.search_space import NAMED_ARCHS, RnnSearchSpace
    from rnn.supernet import Supernet, arch_array
    from rnn.training import LMStep

    space = RnnSearchSpace()
    strategy = tf.distribute.get_strategy()
    batch, bptt, vocab, units = 8, 10, 100, 32
    ids = lambda k: tf.constant(np.random.default_rng(k).integers(  # noqa: E731
        0, vocab, (bptt, batch)).astype(np.int32))
    lr, seed = tf.constant(1.0), tf.constant([0, 1], tf.int64)
    if network == "supernet":
        model = Supernet(vocab, units)
        step = LMStep(model, strategy, batch, clip=0.25, wdecay=5e-7, beta=1e-3)
        cells = arch_array(space.sample_unique(8, np.random.default_rng(0)))
        return [("train", step._compiled_train_step,
                 lambda k: (ids(k), ids(k + 1), model.initial_hidden(batch), lr, seed,
                            cells[k % len(cells)])),
                ("score", step.score, lambda k: (ids(k), ids(k + 1), cells[None, k % len(cells)]))]
    model = RNNModel(space.parse(NAMED_ARCHS["NAO"]), vocab, units)
    step = LMStep(model, strategy, batch, clip=0.25, wdecay=5e-7, beta=1e-3)
    return [("train", step._compiled_train_step,
             lambda k: (ids(k), ids(k + 1), model.initial_hidden(batch), lr, seed)),
            ("eval", step.eval_step, lambda k: (ids(k), ids(k + 1), model.initial_hidden(batch)))]


def _controller() -> list[Step]:
    import numpy as np

    from cnn.search_space import NAO_WS_SPACE
    from nao_tf.algorithm.controller import Controller, ControllerConfig
    from nao_tf.algorithm.controller_train import ControllerTrainer
    from nao_tf.algorithm.generate import ControllerInference

    # The CNN search's controller at `--config=smoke` (dot attention, batch 16).
    config = ControllerConfig.for_space(NAO_WS_SPACE, attention="dot", batch_size=16)
    model = Controller(config, NAO_WS_SPACE.valid_token_mask())
    trainer, inference = ControllerTrainer(model), ControllerInference(model)
    rng = np.random.default_rng(0)
    tokens = NAO_WS_SPACE.encode(NAO_WS_SPACE.sample_unique(16, rng))
    scores = rng.uniform(size=16).astype(np.float32)
    return [("train epoch", trainer.train_epoch,
              lambda k: (tokens[None], scores[None])),
            ("encode", inference._encode, lambda k: (tokens,)),
            ("decode", inference._step_decode, lambda k: (tokens, np.float32(k + 1)))]


def build(name: str) -> list[Step]:
    if name == "controller":
        return _controller()
    task, network = name.split("_", 1)
    return {"cnn": _cnn, "nb201": _nb201, "rnn": _rnn}[task](network)


class Clock:
    def __init__(self):
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def lap(self) -> dict[str, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        out = {"cpu_s": round(cpu - self.cpu, 3), "wall_s": round(wall - self.wall, 3)}
        self.cpu, self.wall = cpu, wall
        return out


def measure_one(name: str) -> list[dict]:
    clock = Clock()
    steps = build(name)
    built = clock.lap()
    rows = []
    for label, function, inputs in steps:
        clock.lap()
        concrete = function.get_concrete_function(*inputs(0))
        traced = clock.lap()
        _block(function(*inputs(0)))
        first = clock.lap()
        calls = []
        for k in range(1, FLAGS.calls + 1):
            _block(function(*inputs(k)))
            calls.append(clock.lap())
        graph = concrete.graph.as_graph_def()
        ops = len(graph.node) + sum(len(f.node_def) for f in graph.library.function)
        rows.append({"step": f"{name} {label}", "build": built, "trace": traced, "first": first,
                     "call": {k: statistics.median(c[k] for c in calls) for k in calls[0]},
                     "ops": ops, "functions": len(graph.library.function)})
        built = {"cpu_s": 0.0, "wall_s": 0.0}  # the network's build is counted once
    return rows


def _block(outputs) -> None:
    """Waits for the step's outputs (host copies)."""
    import tensorflow as tf

    for t in tf.nest.flatten(outputs):
        if hasattr(t, "numpy"):
            t.numpy()


def main(_):
    if FLAGS.one:
        print(json.dumps(measure_one(FLAGS.one)))
        return
    results = []
    for name in FLAGS.steps:
        runs = []
        for _ in range(FLAGS.repeats):
            out = subprocess.run([sys.executable, __file__, f"--one={name}",
                                  f"--calls={FLAGS.calls}"], capture_output=True, text=True,
                                 env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            if out.returncode:
                sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        for rows in zip(*runs):
            row = dict(rows[0])
            for key in ("build", "trace", "first", "call"):
                row[key] = {k: statistics.median(r[key][k] for r in rows) for k in rows[0][key]}
            results.append(row)
            print(f"{row['step']:<26} build {row['build']['cpu_s']:6.1f}  trace "
                  f"{row['trace']['cpu_s']:6.1f}  first call {row['first']['cpu_s']:6.1f}  step "
                  f"{row['call']['cpu_s']:6.2f} CPU s   (wall {row['build']['wall_s']:.1f} / "
                  f"{row['trace']['wall_s']:.1f} / {row['first']['wall_s']:.1f} / "
                  f"{row['call']['wall_s']:.2f})  {row['ops']} ops, {row['functions']} functions",
                  flush=True)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump({"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"),
                       "results": results}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
