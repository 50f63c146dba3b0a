"""Train a fixed CNN architecture from scratch on CIFAR or ImageNet and evaluate it (the
original's `train_final`, and NAO_pytorch's `train_imagenet.py`).

    python -m cnn.train_final --config=nao_ws --data_dir=data/cifar-10-batches-py \
        --output_dir=runs/nao_ws_c10 [--arch=NAME|"40 ints"|best_arch.json] [flags]
    python -m cnn.train_final --config=imagenet_mobile --data_dir=/data/imagenet \
        --output_dir=runs/naonet_a_imagenet

`--config` (nao_ws, naonet, the NAO_pytorch naonet_a_36 / naonet_b_36 / naonet_a_128 /
naonet_v2_36, imagenet_mobile; see cnn/configs.py) sets the defaults of the original final scripts;
flags given explicitly win. The command is `nao_tf.final_training`'s over this task (`TASK`):
it writes into --output_dir flags.json, train_state.json, checkpoints/ (every epoch),
tensorboard/, results.json, and export/ (a SavedModel for inference). Re-running the same
command resumes after the last finished epoch; --overwrite starts fresh. With a TF_CONFIG naming
several workers, the same command on each trains one network across them; only the chief writes
(docs/distributed.md).
"""

import os
import time
from typing import Any

import tensorflow as tf

from nao_tf import cli, final_training
from nao_tf.errors import NaoError
from nao_tf.io import fingerprint
from nao_tf.precision import PRECISION_HELP, PRECISIONS
from cnn.configs import CONFIGS, preset
from cnn.data import DATASETS
from cnn.imagenet import TFDS_NAMES, image_size_for

_DATASETS = [*DATASETS, *TFDS_NAMES]
# (name, default, help[, enum values]); the type of the default picks the absl flag kind.
FLAG_SPECS: tuple[tuple, ...] = (
    ("arch", "nao_ws", "Architecture: a published cell's name (python -m cnn.cells lists them), "
     "40 integers (normal then reduction cell), or a best_arch.json path."),
    ("dataset", "cifar10", "Dataset.", _DATASETS),
    ("data_dir", "", "Directory with the python-pickle batches, a prepared tensorflow-datasets "
     "directory, or (ImageNet-like sets) an image folder with train/ and val/ (unused for "
     "synthetic)."),
    ("data_source", "auto", "How to read --data_dir.", ["auto", "tfds", "pickle", "folder"]),
    ("image_size", 0, "Image side of the ImageNet-like sets (0: 224, or 64 for imagenet64)."),
    ("split", "final", "final: all training images; search: all but the last --num_valid, which "
     "are the validation set.", ["final", "search"]),
    ("num_valid", 5000, "Validation images held out by --split=search."),
    ("synthetic_train_images", 2048, "Training images of --dataset=synthetic."),
    ("synthetic_test_images", 512, "Test images of --dataset=synthetic."),
    ("num_cells", 5, "N: normal cells per stage (3N + 2 cells in all)."),
    ("filters", 36, "F: width of the first stage (doubled at each reduction)."),
    ("stem_multiplier", 3, "The stem has stem_multiplier * F channels."),
    ("network", "nao_ws", "nao_ws: the NAO-WS fixed network (also NAO_pytorch's); nao: the TF NAO "
     "release's NAO/cnn/model.py, as NAONet was trained there; imagenet: NAO_pytorch's ImageNet "
     "network (cnn/model.py).", ["nao_ws", "nao", "imagenet"]),
    ("standardization", "dataset", "dataset: per-channel mean and std of the training split, "
     "padding with the mean; per_image: the TF NAO release's (zero-pad the raw pixels, then "
     "standardise each image).", ["dataset", "per_image"]),
    ("epochs", 630, "Training epochs."),
    ("batch_size", 144, "Global training batch (split across replicas)."),
    ("batch_per_replica", False, "--batch_size, --eval_batch_size and --lr_max are per replica: "
     "the global batch and learning rate grow with the replicas (the original ImageNet scripts: "
     "128 images and lr 0.1 per GPU)."),
    ("eval_batch_size", 128, "Global evaluation batch."),
    ("lr_schedule", "sgdr", "sgdr: epoch-granular cosine with warm restarts (T_0, T_mul); "
     "cosine: one per-step cosine over all epochs; step: times --gamma every --decay_period "
     "epochs.", ["sgdr", "cosine", "step"]),
    ("lr_max", 0.05, "Maximum learning rate."),
    ("lr_min", 0.0001, "Minimum learning rate."),
    ("t0", 10, "SGDR: epochs of the first cycle (T_0)."),
    ("t_mul", 2, "SGDR: cycle length multiplier (T_mul)."),
    ("gamma", 0.97, "Step schedule: learning-rate factor per decay."),
    ("decay_period", 1, "Step schedule: epochs between two decays."),
    ("nesterov", True, "Nesterov momentum (NAO-WS) or plain momentum (NAO)."),
    ("momentum", 0.9, "SGD momentum."),
    ("l2_reg", 2e-4, "Adds l2_reg * sum(w^2) over all trainable variables to the loss."),
    ("grad_bound", 5.0, "Clip the global gradient norm to this (0: no clipping)."),
    ("drop_path_keep_prob", 0.6, "Drop-path keep probability of the last cell at the end of "
     "training (linear in depth and in training progress)."),
    ("keep_prob", 0.8, "Keep probability of the dropout before the classifier."),
    ("use_aux_head", True, "Auxiliary classifier after the second reduction."),
    ("aux_weight", 0.4, "Loss weight of the auxiliary head."),
    ("label_smoothing", 0.0, "Label smoothing of the cross-entropy."),
    ("cutout_size", 0, "Cutout square side (0: no cutout)."),
    ("eval_every_epochs", 1, "Evaluate test (and valid) accuracy every k epochs."),
    ("log_every_steps", 50, "Progress line and TensorBoard scalars every k steps."),
    ("keep_checkpoints", 5, "Checkpoints kept (one per epoch)."),
    ("precision", "fp32", PRECISION_HELP, list(PRECISIONS)),
    ("jit_compile", False, "XLA-compile the forward/backward pass."),
    ("sync_bn", True, "Batch-norm statistics over the global batch when training on several "
     "replicas (same results as one replica); per-replica statistics otherwise."),
    ("data_format", "channels_last", "Image layout inside the network (channels_first only on "
     "GPUs).", ["channels_last", "channels_first"]),
    ("seed", 0, "Random seed (weights, data order, augmentation); 0 = not fixed."),
)
FLAG_NAMES = tuple(spec[0] for spec in FLAG_SPECS)

# Flags that shape the model or its data: a run directory cannot be resumed with other values.
RESUME_KEYS = ("arch", "dataset", "data_fingerprint", "num_cells", "filters", "stem_multiplier",
               "network", "standardization", "use_aux_head", "batch_size", "batch_per_replica",
               "split", "image_size")


def check_flags(fv: Any) -> None:
    """Stops with one line on a flag that cannot work, before anything is read or written."""
    value = lambda name: getattr(fv, name)  # noqa: E731
    cli.check_at_least(value, 1, "num_cells", "filters", "stem_multiplier", "epochs",
                       "batch_size", "eval_batch_size", "t0", "t_mul", "eval_every_epochs",
                       "log_every_steps", "keep_checkpoints", "decay_period")
    cli.check_at_least(value, 0, "lr_min", "l2_reg", "grad_bound", "label_smoothing",
                       "cutout_size", "aux_weight", "image_size")
    cli.check_keep_probability(value, "keep_prob", "drop_path_keep_prob")
    if fv.lr_max <= 0 or fv.gamma <= 0:
        raise NaoError(f"--lr_max={fv.lr_max} and --gamma={fv.gamma} must be positive")
    imagenet = fv.dataset in TFDS_NAMES
    if imagenet != (fv.network == "imagenet"):
        raise NaoError(f"--dataset={fv.dataset} with --network={fv.network}: the ImageNet-like "
                       "sets train the ImageNet network (--network=imagenet, which "
                       "--config=imagenet_mobile sets) and it trains only on them")
    if imagenet and (fv.split != "final" or fv.cutout_size):
        raise NaoError("the ImageNet-like sets train on all training images and report the "
                       "validation images (--split=final), without cutout (--cutout_size=0)")
    size = image_size_for(fv.dataset, fv.image_size)
    if imagenet and fv.use_aux_head and size < 193:
        raise NaoError(f"the ImageNet aux head needs 7x7 after the second reduction, images of "
                       f"193 pixels or more (here {size}); pass --use_aux_head=false")


def global_batches(fv: Any, strategy: tf.distribute.Strategy) -> tuple[int, int, float]:
    """(training batch, evaluation batch, lr_max) over all replicas (`--batch_per_replica`)."""
    replicas = strategy.num_replicas_in_sync
    scale = replicas if fv.batch_per_replica else 1
    if fv.batch_size * scale % replicas:
        raise NaoError(f"--batch_size={fv.batch_size} does not split evenly over "
                       f"{replicas} replicas")
    return fv.batch_size * scale, fv.eval_batch_size * scale, fv.lr_max * scale


def check(fv: Any, strategy: tf.distribute.Strategy) -> tuple[dict[str, Any], tuple]:
    """The flags, the architecture and the data; returns the settings record and (arch, data)."""
    check_flags(fv)
    from cnn import data as data_lib
    from cnn import imagenet
    from cnn.cells import load_arch
    from cnn.search_space import space_for

    arch = load_arch(fv.arch)
    if fv.network == "imagenet":
        data = imagenet.load(fv.dataset, fv.data_dir, fv.data_source,
                             imagenet.image_size_for(fv.dataset, fv.image_size))
    else:
        data = data_lib.load(fv.dataset, fv.data_dir or None, fv.data_source, fv.split,
                             fv.num_valid,
                             (fv.synthetic_train_images, fv.synthetic_test_images),
                             seed=fv.seed)
    global_batches(fv, strategy)
    settings = {name: getattr(fv, name) for name in FLAG_NAMES}
    settings.update(config=fv.config, output_dir=fv.output_dir, arch=space_for(arch).to_string(
        arch), data_fingerprint=fingerprint(fv.data_dir))
    return settings, (arch, data)


def build(fv: Any, arch_and_data: tuple, strategy: tf.distribute.Strategy):
    """The network's `CnnTrainee`; prints the architecture, its size and the schedule."""
    import keras

    from cnn.model import NASNetwork, count_mult_adds, count_params
    from cnn.search_space import space_for
    from cnn.trainee import CnnTrainee, LoopConfig
    from cnn.training import OptimConfig, Trainer

    arch, data = arch_and_data
    space = space_for(arch)
    if fv.seed:
        keras.utils.set_random_seed(fv.seed)
    keras.config.set_image_data_format(fv.data_format)
    batch_size, eval_batch_size, lr_max = global_batches(fv, strategy)
    steps = data.steps_per_epoch(batch_size)
    cfg = OptimConfig(
        epochs=fv.epochs, steps_per_epoch=steps, lr_schedule=fv.lr_schedule,
        lr_max=lr_max, lr_min=fv.lr_min, t0=fv.t0, t_mul=fv.t_mul, gamma=fv.gamma,
        decay_period=fv.decay_period, momentum=fv.momentum, nesterov=fv.nesterov,
        l2_reg=fv.l2_reg, grad_bound=fv.grad_bound, aux_weight=fv.aux_weight,
        label_smoothing=fv.label_smoothing, precision=fv.precision, seed=fv.seed)
    sync_bn = fv.sync_bn and strategy.num_replicas_in_sync > 1

    def build_model() -> NASNetwork:
        return NASNetwork(arch, fv.num_cells, fv.filters, data.num_classes,
                          use_aux_head=fv.use_aux_head,
                          drop_path_keep_prob=fv.drop_path_keep_prob,
                          dropout_rate=1.0 - fv.keep_prob,
                          stem_multiplier=fv.stem_multiplier, image_size=data.image_size,
                          sync_bn=sync_bn, network=fv.network)

    t = time.perf_counter()
    trainer = Trainer(strategy, build_model, cfg, batch_size, fv.jit_compile)
    trainee = CnnTrainee(trainer, data, LoopConfig(
        batch_size=batch_size, eval_batch_size=eval_batch_size, cutout_size=fv.cutout_size,
        eval_every_epochs=fv.eval_every_epochs, log_every_steps=fv.log_every_steps,
        seed=fv.seed or None, standardization=fv.standardization))
    params = count_params(trainer.model)
    params_aux = count_params(trainer.model, include_aux_head=True)
    mult_adds = count_mult_adds(trainer.model) if fv.network == "imagenet" else None
    trainee.summary = {"arch": space.to_string(arch), "space": space.name, "params": params,
                       "params_with_aux_head": params_aux, "mult_adds": mult_adds,
                       "dataset": fv.dataset, "num_train_images": len(data.train),
                       "batch_size": batch_size}
    print(f"architecture ({space.name} space):\n{space.describe(arch)}")
    print(f"parameters: {params:,} ({params / 1e6:.2f}M; {params_aux:,} with the aux head) | "
          + (f"{mult_adds / 1e6:.1f}M multiply-adds at {data.image_size}x{data.image_size} | "
             if mult_adds else "")
          + f"N={fv.num_cells} F={fv.filters} | {len(data.train)} training images, "
          f"{steps} steps/epoch x {fv.epochs} epochs, batch {batch_size} over "
          f"{strategy.num_replicas_in_sync} replica(s) | built in {time.perf_counter() - t:.0f}s",
          flush=True)
    if data.test is None and fv.network != "imagenet":
        print(f"note: {fv.data_dir} has no test set (test_batch); test accuracy is skipped")
    return trainee


def finish(fv: Any, trainee, state: dict[str, Any], chief: bool) -> dict[str, Any]:
    """The results; the chief exports the network for inference."""
    from cnn.export import export_for_inference

    export_dir = os.path.join(fv.output_dir, "export")
    results = {**trainee.summary, **trainee.results(state), "export_dir": export_dir,
               "wall_seconds_this_run": state["wall_seconds_this_run"]}
    if chief:
        export_for_inference(trainee.trainer.model, export_dir, trainee.data.mean,
                             trainee.data.std,
                             "dataset" if fv.network == "imagenet" else fv.standardization,
                             trainee.data.image_size)
    test_acc = results["test_accuracy"]
    print(f"done: {results['steps']} steps; test accuracy "
          f"{'n/a' if test_acc is None else f'{test_acc:.4f}'}; "
          + (f"exported to {export_dir}" if chief else "the chief wrote the results"),
          flush=True)
    return results


TASK = final_training.FinalTask(
    name="cnn", flags=FLAG_SPECS, preset_names=tuple(CONFIGS),
    preset=lambda name, fv: preset(name, fv.dataset), identity=RESUME_KEYS, check=check,
    build=build, finish=finish,
    advice=lambda fv: "rerun the same command with a lower --lr_max (a resume may change it)",
    keep_checkpoints=lambda fv: fv.keep_checkpoints, owned=("export",))


def define_flags(fv: Any) -> None:
    """Defines this command's flags in `fv`."""
    final_training.define_flags(TASK, fv)


def train(fv: Any) -> dict[str, Any]:
    """Runs the command for parsed flags `fv` (the preset applied here); returns the results."""
    final_training.apply_config(TASK, fv)
    return final_training.run(TASK, fv)


if __name__ == "__main__":
    final_training.main(TASK)
