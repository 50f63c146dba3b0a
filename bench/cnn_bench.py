"""Training throughput (images/s) of the fixed CIFAR network, end to end on synthetic data.

Each configuration builds the network and the trainer exactly as `cnn.train_final` does, feeds the
real tf.data pipeline (augmentation included) with synthetic CIFAR-shaped images, runs `--warmup`
steps (tracing included) and then times `--steps` steps.

    python bench/cnn_bench.py                       # every configuration, default and XLA
    python bench/cnn_bench.py --configs=naonet_b_36 --variants=default --steps=5

Configurations:
  nao_ws_final  NAO-WS final: the NAO-WS cell, N=5, F=36, batch 128, aux head.
  naonet_b_36   NAONet-B-36 of the PyTorch port: N=6, F=36, batch 128, aux head, with the NAO-WS
                cell string (the port's own NAONet-B string is not in the specification).
  search_size   the search-size network: NAO-WS cell, N=2, F=20, batch 128, aux head.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import nao_tf  # noqa: E402,F401  (TensorFlow without its start-up lines)

from absl import flags  # noqa: E402

from nao_tf.commands import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["nao_ws_final", "naonet_b_36", "search_size"], "Configurations.")
flags.DEFINE_list("variants", ["default", "xla"], "default: tf.function; xla: jit_compile=True.")
flags.DEFINE_integer("warmup", 2, "Untimed steps (the first includes tracing).")
flags.DEFINE_integer("steps", 5, "Timed steps.")
flags.DEFINE_integer("batch_size", 128, "Global batch.")
flags.DEFINE_enum("precision", "fp32", ["fp32", "bf16", "fp16"], "Mixed precision policy.")

CONFIGS = {
    "nao_ws_final": dict(arch="nao_ws", num_cells=5, filters=36),
    "naonet_b_36": dict(arch="nao_ws", num_cells=6, filters=36),
    "search_size": dict(arch="nao_ws", num_cells=2, filters=20),
}


def measure(name: str, variant: str) -> dict:
    import keras

    from cnn import data as data_lib
    from cnn.model import NASNetwork, count_params
    from cnn.cells import named_arch
    from cnn.training import OptimConfig, Trainer
    from nao_tf.runtime.distribute import get_strategy

    conf = CONFIGS[name]
    keras.utils.set_random_seed(0)
    batch = FLAGS.batch_size
    train, _ = data_lib.synthetic_splits(max(1024, 4 * batch), 0)
    split = data_lib.Split(train.images, train.labels)
    mean, std = train.images.reshape(-1, 3).mean(0) / 255, train.images.reshape(-1, 3).std(0) / 255
    strategy = get_strategy()
    cfg = OptimConfig(epochs=1, steps_per_epoch=1000, nesterov=True, precision=FLAGS.precision)
    arch = named_arch(conf["arch"])
    trainer = Trainer(strategy, lambda: NASNetwork(
        arch, conf["num_cells"], conf["filters"], 10, use_aux_head=True, drop_path_keep_prob=0.6,
        dropout_rate=0.2), cfg, batch, jit_compile=variant == "xla")
    ds = strategy.experimental_distribute_dataset(
        data_lib.train_dataset(split, batch, mean.astype("float32"), std.astype("float32")))
    it = iter(ds)
    t = time.perf_counter()
    for _ in range(FLAGS.warmup):
        trainer.train_step(*next(it))
    warm = time.perf_counter() - t
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(FLAGS.steps):
        stats = trainer.train_step(*next(it))
    seconds = time.perf_counter() - t
    cpu_seconds = time.process_time() - cpu
    keras.backend.clear_session()
    return {"config": name, "variant": variant, "N": conf["num_cells"], "F": conf["filters"],
            "batch": batch, "params": count_params(trainer.model),
            "images_per_sec": batch * FLAGS.steps / seconds, "sec_per_step": seconds / FLAGS.steps,
            "cpu_sec_per_step": cpu_seconds / FLAGS.steps,
            "warmup_sec": warm, "loss": stats["loss"]}


def main(argv):
    del argv
    rows = []
    for name in FLAGS.configs:
        for variant in FLAGS.variants:
            row = measure(name, variant)
            rows.append(row)
            print(f"{row['config']:<13} {row['variant']:<8} images/s {row['images_per_sec']:7.2f}"
                  f"  (s/step {row['sec_per_step']:.2f}, CPU s/step {row['cpu_sec_per_step']:.2f}, "
                  f"warm-up {row['warmup_sec']:.0f}s)",
                  flush=True)
    print()
    print("| config | N | F | batch | params | variant | images/s | s/step | CPU s/step |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['N']} | {r['F']} | {r['batch']} | {r['params'] / 1e6:.2f}M | "
              f"{r['variant']} | {r['images_per_sec']:.1f} | {r['sec_per_step']:.2f} | "
              f"{r['cpu_sec_per_step']:.2f} |")


if __name__ == "__main__":
    cli.run(main)
