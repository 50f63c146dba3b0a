"""Controller throughput: seconds per training epoch and seconds to generate new architectures.

Setting of the issue (and of the NAO_pytorch V1 controller): 1,000 architectures of length 40
(vocab 11, two tokens folded per encoder step), batch 100, embedding 48, hidden 96, MLP 3 x 200;
generation of 300 new architectures from 100 seeds with lambda = 1, 2, ... .

    python bench/controller_bench.py [--epochs=10] [--attention=dot,bahdanau] [--batch_shards=2]
        [--intra_op_threads=1 --inter_op_threads=2]
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import nao_tf  # noqa: E402,F401  (TensorFlow without its start-up lines)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from nao_tf.commands import cli  # noqa: E402
from nao_tf.algorithm.controller import Controller, ControllerConfig  # noqa: E402
from nao_tf.algorithm.controller_train import ControllerTrainer, normalize_scores  # noqa: E402
from nao_tf.algorithm.generate import ControllerInference, generate_new, step_sizes  # noqa: E402
from nao_tf.spaces.synthetic import SyntheticObjective, SyntheticSpace  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("epochs", 10, "Timed training epochs (after one warm-up epoch).")
flags.DEFINE_list("attention", ["dot", "bahdanau"], "Attention variants to time.")
flags.DEFINE_integer("archs", 1000, "Training architectures.")
flags.DEFINE_integer("intra_op_threads", 0, "TensorFlow intra-op threads (0: TensorFlow's default).")
flags.DEFINE_integer("inter_op_threads", 0, "TensorFlow inter-op threads (0: TensorFlow's default).")
flags.DEFINE_integer("batch_shards", 2, "ControllerConfig.batch_shards.")


def bench(attention: str) -> dict:
    space = SyntheticSpace(num_nodes=10, choices=5)
    rng = np.random.default_rng(0)
    archs = space.sample_unique(FLAGS.archs, rng)
    objective = SyntheticObjective(space)
    tokens = space.encode(archs)
    targets = normalize_scores(np.array([objective(a) for a in archs]), True)
    config = ControllerConfig.for_space(space, emb_size=48, hidden_size=96, mlp_layers=3, mlp_hidden=200,
                                        batch_size=100, batch_shards=FLAGS.batch_shards,
                                        attention=attention)
    trainer = ControllerTrainer(Controller(config, space.valid_token_mask()), augment=space.random_equivalent)
    trainer.fit(tokens, targets, 1, rng)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(tokens, targets, FLAGS.epochs, rng)
    epoch_wall = (time.perf_counter() - wall) / FLAGS.epochs
    epoch_cpu = (time.process_time() - cpu) / FLAGS.epochs
    inference = ControllerInference(trainer.model)
    seeds = archs[:100]
    seen = {space.canonical_key(a) for a in archs}
    generate_new(inference, space, seeds, 300, seen, step_sizes(100.0))  # warm-up: traces once
    wall = time.perf_counter()
    result = generate_new(inference, space, seeds, 300, seen, step_sizes(100.0))
    generate_wall = time.perf_counter() - wall
    return dict(attention=attention, epoch_s=epoch_wall, epoch_cpu_s=epoch_cpu,
                generate_s=generate_wall, new=len(result.archs), lambda_reached=result.step_size,
                traces=trainer.train_epoch.experimental_get_tracing_count())


def main(argv):
    del argv
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("attention | s/epoch (wall) | s/epoch (CPU) | generate 300 from 100 seeds (s) | lambda reached")
    for attention in FLAGS.attention:
        r = bench(attention)
        print(f"{r['attention']:>9} | {r['epoch_s']:14.3f} | {r['epoch_cpu_s']:13.3f} | "
              f"{r['generate_s']:31.3f} | {r['lambda_reached']:g} ({r['new']} new, {r['traces']} trace)")


if __name__ == "__main__":
    cli.run(main)
