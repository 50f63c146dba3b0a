"""Throughput of the NAO-WS recurrent supernet: training tokens/s and pool-scoring cells/s.

    python bench/rnn_supernet_bench.py                      # the paper's search size and a small one
    python bench/rnn_supernet_bench.py --sizes=300:256:10000 --arch_batches=1,4,8

For each size d:B:V (embedding = hidden size d, batch B, vocabulary V) it times
`LMStep.train_step` (one cell drawn from a 100-cell pool per step, as the search does;
forward, hand-written backward, clip, weight decay, SGD update) on random ids with BPTT 35, and
`LMStep.score` on `--eval_windows` validation windows of 35 tokens for K cells per call,
for each K in --arch_batches. `--backward=autodiff` replaces the hand-written backward pass of
the training step by automatic differentiation through the same forward loop (for comparison).
Prints wall-clock and per-CPU-second rates, the load average, and
an estimate of the paper-config search time from the measured rates (see `estimate`).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import nao_tf  # noqa: E402,F401  (TensorFlow without its start-up lines)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from nao_tf.commands import cli  # noqa: E402
from rnn import supernet as supernet_module  # noqa: E402
from rnn.search_cell_loop import step_forward  # noqa: E402
from rnn.search_space import RnnSearchSpace  # noqa: E402
from rnn.model import count_params  # noqa: E402
from rnn.supernet import Supernet, arch_array  # noqa: E402
from rnn.training import LMStep  # noqa: E402

flags.DEFINE_list("sizes", ["300:256:10000", "64:32:6000"], "d:B:V per size to measure")
flags.DEFINE_integer("bptt", 35, "tokens per training step and per scoring window")
flags.DEFINE_integer("eval_windows", 256, "validation windows per score (the original: 256)")
flags.DEFINE_list("arch_batches", ["1", "4", "8"], "cells scored per call")
flags.DEFINE_integer("warmup", 2, "untimed training steps / scoring calls")
flags.DEFINE_integer("steps", 5, "timed training steps")
flags.DEFINE_enum("backward", "handwritten", ["handwritten", "autodiff"],
                  "training step's backward pass")
flags.DEFINE_integer("score_cells", 16, "cells scored in the timed scoring run")
FLAGS = flags.FLAGS

# The paper configuration (NAO-WS/rnn/train_search.sh) on PTB.
PTB_TRAIN_TOKENS = 929_589
EPOCHS, POOL, EVALUATIONS = 1000, 1000, 5


def autodiff_search_cell(x_proj, h0, mask_h, w0_h, w_nodes, preds, acts):
    """`run_search_cell` differentiated by automatic differentiation (the reference)."""
    onehots = tf.one_hot(acts, 4)
    steps = tf.shape(x_proj)[0]

    def body(t, h, outs):
        h, *_ = step_forward(x_proj[t], h, mask_h, w0_h, w_nodes, preds, onehots)
        return t + 1, h, outs.write(t, h)

    _, h, outs = tf.while_loop(lambda t, *_: t < steps, body,
                               (tf.constant(0), h0, tf.TensorArray(x_proj.dtype, size=steps)),
                               maximum_iterations=steps)
    return outs.stack(), h


def _timed(fn, repeats: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) per call."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    return ((time.perf_counter() - start) / repeats, (time.process_time() - cpu) / repeats)


def bench_size(d: int, batch: int, vocab: int) -> dict:
    space = RnnSearchSpace()
    rng = np.random.default_rng(0)
    pool = arch_array(space.sample_unique(100, rng))
    net = Supernet(vocab, d)
    step = LMStep(net, tf.distribute.get_strategy(), batch, clip=10.0, wdecay=5e-7,
                        beta=1e-3)
    x = rng.integers(0, vocab, (FLAGS.bptt, batch)).astype(np.int32)
    y = rng.integers(0, vocab, (FLAGS.bptt, batch)).astype(np.int32)
    state = {"hidden": net.initial_hidden(batch), "k": 0}

    def train():
        state["k"] += 1
        loss, state["hidden"] = step.train_step(x, y, state["hidden"], 0.25, (0, state["k"]),
                                                pool[state["k"] % len(pool)])
        float(loss)

    _timed(train, FLAGS.warmup)
    wall, cpu = _timed(train, FLAGS.steps)
    tokens = FLAGS.bptt * batch
    result = {"d": d, "B": batch, "V": vocab, "params": count_params(net),
              "train_ms": 1000 * wall, "train_tokens_s": tokens / wall,
              "train_tokens_cpu_s": tokens / cpu, "score": {}}
    vx = rng.integers(0, vocab, (FLAGS.bptt, FLAGS.eval_windows)).astype(np.int32)
    vy = rng.integers(0, vocab, (FLAGS.bptt, FLAGS.eval_windows)).astype(np.int32)
    for k in (int(v) for v in FLAGS.arch_batches):
        calls = max(1, FLAGS.score_cells // k)

        def score(k=k, calls=calls):
            for c in range(calls):
                step.score(vx, vy, pool[c * k:(c + 1) * k]).numpy()

        step.score(vx, vy, pool[:k]).numpy()  # warm-up
        wall, cpu = _timed(score, 1)
        result["score"][k] = (calls * k / wall, calls * k / cpu)
    return result


def estimate(train_step_s: float, score_cell_s: float) -> float:
    """Seconds for the paper-config search (1000 epochs of ~104 steps at B=256, T=35 on PTB,
    5 evaluations of a 1000-cell pool) from a step time and a per-cell scoring time; the
    controller rounds (4 x 1000 epochs of 10 batches) are left out (minutes on any device)."""
    steps_per_epoch = PTB_TRAIN_TOKENS // 256 // 35
    return EPOCHS * steps_per_epoch * train_step_s + EVALUATIONS * POOL * score_cell_s


def main(argv: Sequence[str]) -> None:
    del argv
    if FLAGS.backward == "autodiff":
        supernet_module.run_search_cell = autodiff_search_cell
    print(f"TF {tf.__version__}, devices {[d.name for d in tf.config.list_logical_devices()]}, "
          f"CPUs {os.cpu_count()}, load average before {os.getloadavg()[0]:.1f}")
    print(f"training: BPTT {FLAGS.bptt}, {FLAGS.backward} backward; scoring: {FLAGS.eval_windows} windows of {FLAGS.bptt} "
          "tokens per cell")
    print("| d | B | V | params | train ms/step | train tokens/s | tokens per CPU-s | "
          + " | ".join(f"score cells/s, per CPU-s (K={k})" for k in FLAGS.arch_batches) + " |")
    print("|---" * (7 + len(FLAGS.arch_batches)) + "|")
    results = []
    for size in FLAGS.sizes:
        d, batch, vocab = (int(v) for v in size.split(":"))
        r = bench_size(d, batch, vocab)
        results.append(r)
        print(f"| {d} | {batch} | {vocab} | {r['params']:,} | {r['train_ms']:.0f} | "
              f"{r['train_tokens_s']:.0f} | {r['train_tokens_cpu_s']:.0f} | "
              + " | ".join(f"{r['score'][int(k)][0]:.2f}, {r['score'][int(k)][1]:.2f}"
                           for k in FLAGS.arch_batches) + " |")
    print(f"load average after {os.getloadavg()[0]:.1f}")
    for r in results:
        if (r["d"], r["B"]) == (300, 256):
            best = max(v[0] for v in r["score"].values())
            hours = estimate(r["train_ms"] / 1000, 1 / best) / 3600
            print(f"paper-config search at this machine's measured rates: {hours:.0f} hours")


if __name__ == "__main__":
    cli.run(main)
