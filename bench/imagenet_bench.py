"""ImageNet in the mobile setting: the input pipeline alone, and NAONet-A training at 224x224.

`--parts=pipeline`: images/s of `cnn.imagenet`'s training pipeline (read, decode only the
random crop, resize to 224, flip, colour jitter, normalise; batched and prefetched, as training
reads it) over a generated folder of JPEGs of ImageNet's typical size (about 500x375); the first
batch is not timed. `--parts=train`: images/s of the NAONet-A ImageNet network's training step
(`--config=imagenet_mobile`'s network, aux head, label smoothing), fed from memory, for each
`--precisions` policy and with and without XLA (`--xla`); `--warmup` untimed steps (tracing),
then `--steps` timed ones. `--parts=workers`: what one worker's pipeline decodes and how long it
takes per global step when `--workers` machines share each global batch (`input_context`, as
`distribute_datasets_from_function` gives each worker), against one pipeline decoding the whole
batch (each worker before); each timed alone, as on a machine of its own.

    python bench/imagenet_bench.py --parts=pipeline,train --batch_size=32
    python bench/imagenet_bench.py --parts=workers --batch_size=32 --workers=2
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import nao_tf  # noqa: E402,F401  (TensorFlow without its start-up lines)

from absl import flags  # noqa: E402

from nao_tf.commands import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("parts", ["pipeline", "train"], "What to measure.")
flags.DEFINE_integer("batch_size", 32, "Global batch.")
flags.DEFINE_integer("images", 1024, "Generated JPEGs for the pipeline.")
flags.DEFINE_integer("batches", 30, "Timed pipeline batches.")
flags.DEFINE_integer("warmup", 1, "Untimed training steps (the first traces).")
flags.DEFINE_integer("steps", 3, "Timed training steps.")
flags.DEFINE_list("precisions", ["fp32"], "Mixed-precision policies to train under.")
flags.DEFINE_bool("xla", False, "Also train with jit_compile=True.")
flags.DEFINE_integer("workers", 2, "--parts=workers: machines sharing each global batch.")


def _timed_batches(data, input_context=None) -> tuple[int, float]:
    """(images per batch, seconds per batch) of `FLAGS.batches` batches after the first."""
    batches = iter(data.train_dataset(FLAGS.batch_size, seed=1, input_context=input_context))
    images = int(next(batches)[0].shape[0])
    start = time.perf_counter()
    for _ in range(FLAGS.batches):
        next(batches)
    return images, (time.perf_counter() - start) / FLAGS.batches


def _folder(tmp: str):
    from cnn import imagenet

    imagenet.write_image_folder(tmp, classes=8, train_per_class=FLAGS.images // 8,
                                val_per_class=1, size=(375, 500))
    return imagenet.load("imagenet", tmp, image_size=224)


def pipeline_rate() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        images, seconds = _timed_batches(_folder(tmp))
        return images / seconds


def per_worker() -> list[str]:
    """One line each: a worker's pipeline decoding the whole global batch, then its share."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        data = _folder(tmp)
        lines = []
        for label, context in (("whole batch (before)", None),
                               (f"its share of {FLAGS.workers} (after)",
                                tf.distribute.InputContext(FLAGS.workers, 0, FLAGS.workers))):
            images, seconds = _timed_batches(data, context)
            lines.append(f"one worker's pipeline, {label}: {images} images decoded per step, "
                         f"{1000 * seconds:.0f} ms per step")
        return lines


def train_rate(precision: str, jit_compile: bool) -> float:
    import numpy as np
    import tensorflow as tf

    from cnn.cells import named_arch
    from cnn.model import NASNetwork
    from cnn.training import OptimConfig, Trainer

    cfg = OptimConfig(epochs=250, steps_per_epoch=10_000, lr_schedule="step", lr_max=0.1,
                      nesterov=False, label_smoothing=0.1, l2_reg=1.5e-5, precision=precision)
    trainer = Trainer(tf.distribute.get_strategy(), lambda: NASNetwork(
        named_arch("naonet_a"), 4, 42, 1000, use_aux_head=True, image_size=224,
        network="imagenet"), cfg, FLAGS.batch_size, jit_compile)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=(FLAGS.batch_size, 224, 224, 3)), tf.float32)
    labels = tf.constant(rng.integers(0, 1000, FLAGS.batch_size), tf.int32)
    for _ in range(FLAGS.warmup):
        trainer.train_step(images, labels)
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        trainer.train_step(images, labels)
    return FLAGS.steps * FLAGS.batch_size / (time.perf_counter() - start)


def main(_):
    import tensorflow as tf

    print(f"batch {FLAGS.batch_size}, {os.cpu_count()} CPU cores, "
          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}")
    if "pipeline" in FLAGS.parts:
        print(f"input pipeline (generated 500x375 JPEGs -> 224): {pipeline_rate():8.1f} images/s",
              flush=True)
    if "workers" in FLAGS.parts:
        for line in per_worker():
            print(line, flush=True)
    if "train" in FLAGS.parts:
        for precision in FLAGS.precisions:
            for jit in (False, True) if FLAGS.xla else (False,):
                rate = train_rate(precision, jit)
                print(f"NAONet-A 224x224 train step, {precision}{', XLA' if jit else ''}: "
                      f"{rate:8.2f} images/s", flush=True)


if __name__ == "__main__":
    cli.run(main)
