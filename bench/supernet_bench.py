"""Throughput of the NAO-WS supernet: training images/s and pool-scoring architectures/s.

Builds the supernet and its trainer as `cnn.train_search` does, trains with one architecture
sampled uniformly per step from a pool of random architectures (real tf.data pipeline with
augmentation, synthetic CIFAR-shaped images), then scores pool architectures on one fixed
validation batch each. `--warmup` steps (tracing included) are not timed.

    python bench/supernet_bench.py                                  # both configs, both modes
    python bench/supernet_bench.py --configs=pytorch_v1 --modes=switch --steps=10

Configurations:
  nao_ws       the NAO-WS search (`NAO-WS/cnn/train_search.sh`): N=2, F=20, batch 160, aux head.
  pytorch_v1   NAO_pytorch V1's search supernet: N=3, F=20, batch 64 (aux head on here).
The estimate of a full paper-config search (150 supernet epochs of 45,000 images at batch 160, the
pool of 1,000 scored 5 times on 500 images) multiplies the measured rates; controller time is
measured separately in bench/controller_bench.py and is not included.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import nao_tf  # noqa: E402,F401  (TensorFlow without its start-up lines)

from absl import flags  # noqa: E402

from nao_tf.commands import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["nao_ws", "pytorch_v1"], "Configurations.")
flags.DEFINE_list("modes", ["switch", "select"], "Op selection: switch (run the chosen op only) "
                  "or select (run all candidates, gather the chosen).")
flags.DEFINE_integer("warmup", 3, "Untimed training steps (the first includes tracing).")
flags.DEFINE_integer("steps", 10, "Timed training steps.")
flags.DEFINE_integer("score_archs", 10, "Architectures scored (timed after one untimed).")
flags.DEFINE_integer("score_batch", 500, "Validation images per architecture.")
flags.DEFINE_integer("seed", 0, "Random seed.")

CONFIGS = {
    "nao_ws": dict(num_cells=2, filters=20, batch=160),
    "pytorch_v1": dict(num_cells=3, filters=20, batch=64),
}
PAPER = dict(epochs=150, train_images=45000, batch=160, pool=1000, evaluations=5, images=500)


def measure(name: str, mode: str) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from cnn import data as data_lib
    from cnn.search_space import NAO_WS_SPACE
    from cnn.supernet import Supernet, arch_tensor
    from cnn.training import OptimConfig, Trainer, disable_graph_optimizer
    from nao_tf.runtime.distribute import get_strategy

    conf = CONFIGS[name]
    keras.utils.set_random_seed(FLAGS.seed)
    batch = conf["batch"]
    train, valid = data_lib.synthetic_splits(max(1024, 4 * batch), FLAGS.score_batch,
                                             seed=FLAGS.seed)
    mean = (train.images.reshape(-1, 3).mean(0) / 255).astype("float32")
    std = (train.images.reshape(-1, 3).std(0) / 255).astype("float32")
    strategy = get_strategy()
    cfg = OptimConfig(epochs=150, steps_per_epoch=282, lr_max=0.05, lr_min=0.0005, l2_reg=1e-4)
    t = time.perf_counter()
    disable_graph_optimizer()
    trainer = Trainer(strategy, lambda: Supernet(
        conf["num_cells"], conf["filters"], 10, use_aux_head=True, dropout_rate=0.1,
        op_selection=mode), cfg, batch)
    build = time.perf_counter() - t
    rng = np.random.default_rng(FLAGS.seed)
    pool = [tf.constant(arch_tensor(a)) for a in NAO_WS_SPACE.sample_unique(100, rng)]
    it = iter(strategy.experimental_distribute_dataset(
        data_lib.train_dataset(train, batch, mean, std, seed=FLAGS.seed)))
    t = time.perf_counter()
    for _ in range(FLAGS.warmup):
        trainer.train_step(*next(it), pool[rng.integers(len(pool))])
    warm = time.perf_counter() - t
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(FLAGS.steps):
        stats = trainer.train_step(*next(it), pool[rng.integers(len(pool))])
    train_seconds = time.perf_counter() - t
    train_cpu = time.process_time() - cpu
    images, labels = next(iter(strategy.experimental_distribute_dataset(
        data_lib.eval_dataset(valid, FLAGS.score_batch, mean, std))))
    t = time.perf_counter()
    float(trainer.correct_count(images, labels, pool[0]))
    score_warm = time.perf_counter() - t
    t = time.perf_counter()
    for arch in pool[1:FLAGS.score_archs + 1]:
        float(trainer.correct_count(images, labels, arch))
    score_seconds = time.perf_counter() - t
    traces = (trainer.train_tracing_count, trainer.score_tracing_count)
    keras.backend.clear_session()
    archs_per_sec = FLAGS.score_archs / score_seconds
    return {"config": name, "mode": mode, "N": conf["num_cells"], "F": conf["filters"],
            "batch": batch, "images_per_sec": batch * FLAGS.steps / train_seconds,
            "cpu_sec_per_step": train_cpu / FLAGS.steps, "build_sec": build, "warmup_sec": warm,
            "score_warmup_sec": score_warm, "archs_per_sec": archs_per_sec,
            "score_images_per_sec": archs_per_sec * FLAGS.score_batch, "traces": traces,
            "loss": stats["loss"]}


def paper_estimate(row: dict) -> str:
    """Hours of a full paper-config search at this row's rates (supernet training + scoring)."""
    p = PAPER
    train_h = p["epochs"] * p["train_images"] / row["images_per_sec"] / 3600
    score_h = p["pool"] * p["evaluations"] / row["archs_per_sec"] / 3600
    return f"{train_h:.1f} h training + {score_h:.1f} h scoring = {train_h + score_h:.1f} h"


def main(argv):
    del argv
    rows = []
    for name in FLAGS.configs:
        for mode in FLAGS.modes:
            row = measure(name, mode)
            rows.append(row)
            print(f"{row['config']:<11} {row['mode']:<7} train {row['images_per_sec']:6.1f} "
                  f"images/s (CPU s/step {row['cpu_sec_per_step']:.2f}) | score "
                  f"{row['archs_per_sec']:5.2f} archs/s = {row['score_images_per_sec']:6.1f} "
                  f"images/s | build {row['build_sec']:.0f}s, warm-up {row['warmup_sec']:.0f}s, "
                  f"traces {row['traces']}", flush=True)
    print()
    print("| config | N | F | batch | op selection | train images/s | CPU s/step | score archs/s "
          "| score images/s | paper-config search at these rates |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['N']} | {r['F']} | {r['batch']} | {r['mode']} | "
              f"{r['images_per_sec']:.1f} | {r['cpu_sec_per_step']:.2f} | "
              f"{r['archs_per_sec']:.2f} | {r['score_images_per_sec']:.0f} | "
              f"{paper_estimate(r)} |")


if __name__ == "__main__":
    cli.run(main)
