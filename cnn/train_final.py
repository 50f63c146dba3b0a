"""Train a fixed CNN architecture from scratch on CIFAR and evaluate it (the original `train_final`).

    python -m cnn.train_final --config=nao_ws --data_dir=data/cifar-10-batches-py \
        --output_dir=runs/nao_ws_c10 [--arch=NAME|"40 ints"|best_arch.json] [flags]

`--config` (nao_ws | naonet, see cnn/configs.py) sets the defaults of the original final scripts;
flags given explicitly win. Writes into --output_dir: flags.json, checkpoints/ (every epoch),
tensorboard/, results.json, export/ (a SavedModel for inference). Re-running the same command
resumes from the last checkpoint; --overwrite starts fresh.
"""

import os
import shutil
import sys
import time
from typing import Any, Sequence

from absl import flags, logging

from nao_tf import cli
from nao_tf.errors import NaoError, StateError
from nao_tf.io import atomic_write_json, read_json

FLAGS = flags.FLAGS

flags.DEFINE_string("config", None, "Preset of the original final scripts: nao_ws or naonet.")
flags.DEFINE_string("arch", "nao_ws", "Architecture: a name (nao_ws, naonet, naonet_a), 40 "
                    "integers (normal then reduction cell), or a best_arch.json path.")
flags.DEFINE_enum("dataset", "cifar10", ["cifar10", "cifar100", "synthetic"], "Dataset.")
flags.DEFINE_string("data_dir", None, "Directory with the python-pickle batches or a prepared "
                    "tensorflow-datasets directory (unused for synthetic).")
flags.DEFINE_enum("data_source", "auto", ["auto", "tfds", "pickle"], "How to read --data_dir.")
flags.DEFINE_enum("split", "final", ["final", "search"], "final: all 50k training images; search: "
                  "45k train + the last 5k as validation.")
flags.DEFINE_integer("num_valid", 5000, "Validation images held out by --split=search.")
flags.DEFINE_integer("synthetic_train_images", 2048, "Training images of --dataset=synthetic.")
flags.DEFINE_integer("synthetic_test_images", 512, "Test images of --dataset=synthetic.")
flags.DEFINE_string("output_dir", None, "Run directory (required).")
flags.DEFINE_bool("overwrite", False, "Delete this run's previous state in --output_dir first.")
flags.DEFINE_integer("num_cells", 5, "N: normal cells per stage (3N + 2 cells in all).")
flags.DEFINE_integer("filters", 36, "F: width of the first stage (doubled at each reduction).")
flags.DEFINE_integer("stem_multiplier", 3, "The stem has stem_multiplier * F channels.")
flags.DEFINE_integer("epochs", 630, "Training epochs.")
flags.DEFINE_integer("batch_size", 144, "Global training batch (split across replicas).")
flags.DEFINE_integer("eval_batch_size", 128, "Global evaluation batch.")
flags.DEFINE_enum("lr_schedule", "sgdr", ["sgdr", "cosine"], "sgdr: epoch-granular cosine with "
                  "warm restarts (T_0, T_mul); cosine: one per-step cosine over all epochs.")
flags.DEFINE_float("lr_max", 0.05, "Maximum learning rate.")
flags.DEFINE_float("lr_min", 0.0001, "Minimum learning rate.")
flags.DEFINE_integer("t0", 10, "SGDR: epochs of the first cycle (T_0).")
flags.DEFINE_integer("t_mul", 2, "SGDR: cycle length multiplier (T_mul).")
flags.DEFINE_bool("nesterov", True, "Nesterov momentum (NAO-WS) or plain momentum (NAO).")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_float("l2_reg", 2e-4, "Adds l2_reg * sum(w^2) over all trainable variables.")
flags.DEFINE_float("grad_bound", 5.0, "Clip the global gradient norm to this (0: no clipping).")
flags.DEFINE_float("drop_path_keep_prob", 0.6, "Drop-path keep probability of the last cell at "
                   "the end of training (linear in depth and in training progress).")
flags.DEFINE_float("keep_prob", 0.8, "Keep probability of the dropout before the classifier.")
flags.DEFINE_bool("use_aux_head", True, "Auxiliary classifier after the second reduction.")
flags.DEFINE_float("aux_weight", 0.4, "Loss weight of the auxiliary head.")
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing of the cross-entropy.")
flags.DEFINE_integer("cutout_size", 0, "Cutout square side (0: no cutout).")
flags.DEFINE_integer("eval_every_epochs", 1, "Evaluate test (and valid) accuracy every k epochs.")
flags.DEFINE_integer("log_every_steps", 50, "Progress line and TensorBoard scalars every k steps.")
flags.DEFINE_integer("keep_checkpoints", 5, "Checkpoints kept (one per epoch).")
flags.DEFINE_enum("precision", "fp32", ["fp32", "bf16", "fp16"], "Mixed precision policy.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the forward/backward pass.")
flags.DEFINE_bool("sync_bn", True, "Batch-norm statistics over the global batch when training on "
                  "several replicas (identical results to one replica); per-replica otherwise.")
flags.DEFINE_enum("data_format", "channels_last", ["channels_last", "channels_first"],
                  "Image layout inside the network (channels_first only on GPUs).")
flags.DEFINE_integer("seed", None, "Random seed (weights, data order, augmentation).")

# Flags that shape the model or its data: a run directory cannot be resumed with other values.
RESUME_KEYS = ("arch", "dataset", "num_cells", "filters", "stem_multiplier", "use_aux_head",
               "batch_size", "split", "precision")
STATE_PATHS = ("checkpoints", "tensorboard", "export", "results.json", "flags.json")


def apply_config() -> None:
    """Sets the --config preset as defaults of every flag not given on the command line."""
    from cnn.configs import preset

    if not FLAGS.config:
        return
    for name, value in preset(FLAGS.config, FLAGS.dataset).items():
        if not FLAGS[name].present:
            setattr(FLAGS, name, value)


def prepare_output_dir(output_dir: str, settings: dict[str, Any], overwrite: bool) -> None:
    """Clears it with --overwrite; refuses to resume a run made with different model/data flags."""
    if overwrite:
        for name in STATE_PATHS:
            path = os.path.join(output_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    flags_path = os.path.join(output_dir, "flags.json")
    if os.path.isdir(os.path.join(output_dir, "checkpoints")) and os.path.exists(flags_path):
        old = read_json(flags_path)
        changed = [k for k in RESUME_KEYS if k in old and old[k] != settings[k]]
        if changed:
            raise StateError(
                f"{output_dir} holds a run made with different {', '.join(changed)} ("
                + ", ".join(f"{k}: {old[k]!r} -> {settings[k]!r}" for k in changed)
                + "); use --overwrite to start fresh or choose another --output_dir")
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_json(flags_path, settings)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise NaoError(f"unexpected arguments {' '.join(argv[1:])}; flags look like --name=value")
    apply_config()
    if not FLAGS.output_dir:
        raise NaoError("--output_dir is required (where checkpoints and results go)")

    import keras

    from cnn import data as data_lib
    from cnn.export import export_for_inference
    from cnn.fit import LoopConfig, fit
    from cnn.model import NASNetwork, count_params
    from cnn.search_space import load_arch, space_for
    from cnn.training import OptimConfig, Trainer, set_precision
    from nao_tf.distribute import get_strategy

    arch = load_arch(FLAGS.arch)
    space = space_for(arch)
    settings = {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.modules[__name__])}
    settings["arch"] = space.to_string(arch)
    prepare_output_dir(FLAGS.output_dir, settings, FLAGS.overwrite)
    if FLAGS.seed is not None:
        keras.utils.set_random_seed(FLAGS.seed)
    keras.config.set_image_data_format(FLAGS.data_format)
    set_precision(FLAGS.precision)

    data = data_lib.load(FLAGS.dataset, FLAGS.data_dir, FLAGS.data_source, FLAGS.split,
                         FLAGS.num_valid,
                         (FLAGS.synthetic_train_images, FLAGS.synthetic_test_images),
                         seed=FLAGS.seed or 0)
    strategy = get_strategy()
    if FLAGS.batch_size % strategy.num_replicas_in_sync:
        raise NaoError(f"--batch_size={FLAGS.batch_size} does not split evenly over "
                       f"{strategy.num_replicas_in_sync} replicas")
    steps = data_lib.steps_per_epoch(len(data.train), FLAGS.batch_size)
    cfg = OptimConfig(
        epochs=FLAGS.epochs, steps_per_epoch=steps, lr_schedule=FLAGS.lr_schedule,
        lr_max=FLAGS.lr_max, lr_min=FLAGS.lr_min, t0=FLAGS.t0, t_mul=FLAGS.t_mul,
        momentum=FLAGS.momentum, nesterov=FLAGS.nesterov, l2_reg=FLAGS.l2_reg,
        grad_bound=FLAGS.grad_bound, aux_weight=FLAGS.aux_weight,
        label_smoothing=FLAGS.label_smoothing, precision=FLAGS.precision)
    sync_bn = FLAGS.sync_bn and strategy.num_replicas_in_sync > 1

    def build_model() -> NASNetwork:
        return NASNetwork(arch, FLAGS.num_cells, FLAGS.filters, data.num_classes,
                          use_aux_head=FLAGS.use_aux_head,
                          drop_path_keep_prob=FLAGS.drop_path_keep_prob,
                          dropout_rate=1.0 - FLAGS.keep_prob,
                          stem_multiplier=FLAGS.stem_multiplier, sync_bn=sync_bn)

    t = time.perf_counter()
    trainer = Trainer(strategy, build_model, cfg, FLAGS.batch_size, FLAGS.jit_compile)
    params = count_params(trainer.model)
    params_aux = count_params(trainer.model, include_aux_head=True)
    logging.info("architecture (%s space):\n%s", space.name, space.describe(arch))
    print(f"parameters: {params:,} ({params / 1e6:.2f}M; {params_aux:,} with the aux head) | "
          f"N={FLAGS.num_cells} F={FLAGS.filters} | {len(data.train)} training images, "
          f"{steps} steps/epoch x {FLAGS.epochs} epochs, batch {FLAGS.batch_size} over "
          f"{strategy.num_replicas_in_sync} replica(s) | built in {time.perf_counter() - t:.0f}s",
          flush=True)
    if data.test is None:
        logging.warning("%s has no test set (test_batch); test accuracy is skipped",
                        FLAGS.data_dir)
    loop = LoopConfig(output_dir=FLAGS.output_dir, batch_size=FLAGS.batch_size,
                      eval_batch_size=FLAGS.eval_batch_size, cutout_size=FLAGS.cutout_size,
                      eval_every_epochs=FLAGS.eval_every_epochs,
                      log_every_steps=FLAGS.log_every_steps,
                      keep_checkpoints=FLAGS.keep_checkpoints, seed=FLAGS.seed)
    extra = {"arch": space.to_string(arch), "space": space.name, "params": params,
             "params_with_aux_head": params_aux, "dataset": FLAGS.dataset,
             "num_train_images": len(data.train)}
    results = fit(trainer, data, loop, extra)
    export_dir = os.path.join(FLAGS.output_dir, "export")
    export_for_inference(trainer.model, export_dir, data.mean, data.std)
    results["export_dir"] = export_dir
    atomic_write_json(os.path.join(FLAGS.output_dir, "results.json"), results)
    test_acc = results["test_accuracy"]
    print(f"done: {results['steps']} steps; test accuracy "
          f"{'n/a' if test_acc is None else f'{test_acc:.4f}'}; exported to {export_dir}",
          flush=True)


if __name__ == "__main__":
    cli.run(main)
