"""Training throughput (tokens/s) of the RNN language model's compiled step.

    python bench/rnn_bench.py                       # PTB final config: V=10000, d=850, B=64, T=35
    python bench/rnn_bench.py --emsize=700 --vocab=33278   # WT2 final config

Times `LMStep.train_step` (forward, backward, clip, decay, SGD update, hidden-state carry) on
random token ids, after warm-up steps, for each variant in --variants: `graph` (tf.function, one
trace for every BPTT length) and `xla` (the same step with jit_compile=True). Prints a table with
wall-clock tokens/s and tokens per CPU-second of this process (less sensitive to other load on
a shared machine), and the load average before and after.
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
from nao_tf.runtime.distribute import get_strategy  # noqa: E402
from rnn.configs import CONFIGS, build_model  # noqa: E402
from rnn.model import count_params  # noqa: E402
from rnn.search_space import resolve_arch  # noqa: E402
from rnn.training import LMStep  # noqa: E402

flags.DEFINE_integer("emsize", 850, "embedding = hidden size d")
flags.DEFINE_integer("vocab", 10000, "vocabulary size")
flags.DEFINE_integer("batch_size", 64, "batch size")
flags.DEFINE_integer("bptt", 35, "sequence length per step")
flags.DEFINE_string("arch", "NAO", "architecture (name or 22 ints)")
flags.DEFINE_integer("warmup", 3, "untimed steps")
flags.DEFINE_integer("steps", 10, "timed steps")
flags.DEFINE_list("variants", ["graph", "xla"], "graph and/or xla")
FLAGS = flags.FLAGS


def bench_variant(jit: bool) -> tuple[float, float, float, int]:
    """(tokens/s, tokens per CPU-second, ms/step, params) for one variant."""
    strategy = get_strategy()
    arch, _ = resolve_arch(FLAGS.arch)
    params = dict(CONFIGS["ptb"], emsize=FLAGS.emsize)
    with strategy.scope():
        model = build_model(params, arch, FLAGS.vocab)
    step = LMStep(model, strategy, FLAGS.batch_size, clip=0.25, wdecay=8e-7, beta=1e-3,
                  jit_compile=jit)
    rng = np.random.default_rng(0)
    shape = (FLAGS.bptt, FLAGS.batch_size)
    x = rng.integers(0, FLAGS.vocab, shape).astype(np.int32)
    y = rng.integers(0, FLAGS.vocab, shape).astype(np.int32)
    hidden = model.initial_hidden(FLAGS.batch_size)
    for k in range(FLAGS.warmup):
        loss, hidden = step.train_step(x, y, hidden, 20.0, (0, k))
    float(loss)
    start, cpu_start = time.perf_counter(), time.process_time()
    for k in range(FLAGS.steps):
        loss, hidden = step.train_step(x, y, hidden, 20.0, (1, k))
    float(loss)
    seconds = (time.perf_counter() - start) / FLAGS.steps
    cpu_seconds = (time.process_time() - cpu_start) / FLAGS.steps
    tokens = FLAGS.bptt * FLAGS.batch_size
    return tokens / seconds, tokens / cpu_seconds, 1000 * seconds, count_params(model)


def main(argv: Sequence[str]) -> None:
    del argv
    print(f"RNN LM train step: V={FLAGS.vocab} d={FLAGS.emsize} B={FLAGS.batch_size} "
          f"T={FLAGS.bptt} arch={FLAGS.arch}; {FLAGS.warmup} warm-up + {FLAGS.steps} timed steps; "
          f"TF {tf.__version__}, devices {[d.name for d in tf.config.list_logical_devices()]}")
    print(f"load average before: {os.getloadavg()[0]:.1f}, CPUs: {os.cpu_count()}")
    print("| variant | params | ms/step | tokens/s | tokens per CPU-second |")
    print("|---|---|---|---|---|")
    for variant in FLAGS.variants:
        tokens_per_s, tokens_per_cpu_s, ms, n_params = bench_variant(jit=variant == "xla")
        print(f"| {variant} | {n_params / 1e6:.2f}M | {ms:.0f} | {tokens_per_s:.0f} | "
              f"{tokens_per_cpu_s:.0f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    cli.run(main)
