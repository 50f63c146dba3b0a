"""Train a fixed CNN architecture from scratch on CIFAR or ImageNet and evaluate it (the
original's `train_final`, and NAO_pytorch's `train_imagenet.py`).

    python -m cnn.train_final --config=nao_ws --data_dir=data/cifar-10-batches-py \
        --output_dir=runs/nao_ws_c10 [--arch=NAME|"40 ints"|best_arch.json] [flags]
    python -m cnn.train_final --config=imagenet_mobile --data_dir=/data/imagenet \
        --output_dir=runs/naonet_a_imagenet

`--config` (nao_ws, naonet, the NAO_pytorch naonet_a_36 / naonet_b_36 / naonet_a_128 /
naonet_v2_36, imagenet_mobile; see cnn/configs.py) sets the defaults of the original final scripts;
flags given explicitly win. The command is `commands.final_training`'s over this task (`TASK`):
it writes into --output_dir flags.json, train_state.json, checkpoints/ (every epoch),
tensorboard/, results.json, and export/ (a SavedModel for inference). Re-running the same
command resumes after the last finished epoch; --overwrite starts fresh. With a TF_CONFIG naming
several workers, the same command on each trains one network across them; only the chief writes
(docs/distributed.md).
"""

import dataclasses
import os
import time
from typing import Any

import tensorflow as tf

from nao_tf.algorithm.search_space import load_arch
from nao_tf.commands import cli, final_training
from nao_tf.common.errors import NaoError
from nao_tf.common.io import fingerprint
from nao_tf.runtime.precision import PRECISIONS, PRECISION_HELP
from cnn.data import DATASETS, STANDARDIZATIONS
from cnn.imagenet import TFDS_NAMES, image_size_for
from cnn.training import OptimConfig, Trainer

_DATASETS = [*DATASETS, *TFDS_NAMES]
option = cli.option


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What the network trains and is evaluated on, and how the images are prepared."""

    dataset: str = option("cifar10", "Dataset.", _DATASETS, identity=True)
    data_dir: str = option("", "Directory with the python-pickle batches, a prepared "
                           "tensorflow-datasets directory, or (ImageNet-like sets) an image folder "
                           "with train/ and val/ (unused for synthetic).")
    data_source: str = option("auto", "How to read --data_dir.",
                              ["auto", "tfds", "pickle", "folder"])
    image_size: int = option(0, "Image side of the ImageNet-like sets (0: 224, or 64 for "
                             "imagenet64).", identity=True, minimum=0)
    split: str = option("final", "final: all training images; search: all but the last "
                        "--num_valid, which are the validation set.", ["final", "search"],
                        identity=True)
    num_valid: int = option(5000, "Validation images held out by --split=search.", minimum=1)
    synthetic_train_images: int = option(2048, "Training images of --dataset=synthetic.")
    synthetic_test_images: int = option(512, "Test images of --dataset=synthetic.")
    standardization: str = option("dataset", "dataset: per-channel mean and std of the training "
                                  "split, padding with the mean; per_image: the TF NAO release's "
                                  "(zero-pad the raw pixels, then standardise each image).",
                                  STANDARDIZATIONS, identity=True)
    cutout_size: int = option(0, "Cutout square side (0: no cutout).", minimum=0)


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """The network: the cell, the macro structure and its regularisers, and how it computes."""

    arch: str = option("nao_ws", "Architecture: a published cell's name (python -m cnn.cells lists "
                       "them), 40 integers (normal then reduction cell), or a best_arch.json "
                       "path.", identity=True)
    num_cells: int = option(5, "N: normal cells per stage (3N + 2 cells in all).", identity=True,
                            minimum=1)
    filters: int = option(36, "F: width of the first stage (doubled at each reduction).",
                          identity=True, minimum=1)
    stem_multiplier: int = option(3, "The stem has stem_multiplier * F channels.", identity=True,
                                  minimum=1)
    network: str = option("nao_ws", "nao_ws: the NAO-WS fixed network (also NAO_pytorch's); nao: "
                          "the TF NAO release's NAO/cnn/model.py, as NAONet was trained there; "
                          "imagenet: NAO_pytorch's ImageNet network (cnn/model.py).",
                          ["nao_ws", "nao", "imagenet"], identity=True)
    use_aux_head: bool = option(True, "Auxiliary classifier after the second reduction.",
                                identity=True)
    drop_path_keep_prob: float = option(0.6, "Drop-path keep probability of the last cell at the "
                                        "end of training (linear in depth and in training "
                                        "progress).")
    keep_prob: float = option(0.8, "Keep probability of the dropout before the classifier.")
    sync_bn: bool = option(True, "Batch-norm statistics over the global batch when training on "
                           "several replicas (same results as one replica); per-replica "
                           "statistics otherwise.")
    precision: str = option("fp32", PRECISION_HELP, PRECISIONS)
    jit_compile: bool = option(False, "XLA-compile the forward/backward pass.")
    data_format: str = option("channels_last", "Image layout inside the network (channels_first "
                              "only on GPUs).", ["channels_last", "channels_first"])


@dataclasses.dataclass(frozen=True)
class OptimizationConfig:
    """Epochs, batches, and the optimisation (`OptimConfig`, shared with the NAO-WS supernet)."""

    epochs: int = option(630, "Training epochs.", minimum=1)
    batch_size: int = option(144, "Global training batch (split across replicas).", identity=True,
                             minimum=1)
    batch_per_replica: bool = option(False, "--batch_size, --eval_batch_size and --lr_max are per "
                                     "replica: the global batch and learning rate grow with the "
                                     "replicas (the original ImageNet scripts: 128 images and lr "
                                     "0.1 per GPU).", identity=True)
    eval_batch_size: int = option(128, "Global evaluation batch.", minimum=1)
    sgd: OptimConfig = cli.section(OptimConfig)


@dataclasses.dataclass(frozen=True)
class FinalConfig:
    """Every setting of the command but the run directory's (`final_training.RunConfig`)."""

    data: DataConfig = cli.section(DataConfig)
    network: NetworkConfig = cli.section(NetworkConfig)
    optim: OptimizationConfig = cli.section(OptimizationConfig)
    eval_every_epochs: int = option(1, "Evaluate test (and valid) accuracy every k epochs.",
                                    minimum=1)
    log_every_steps: int = option(50, "Progress line and TensorBoard scalars every k steps.",
                                  minimum=1)
    keep_checkpoints: int = option(5, "Checkpoints kept (one per epoch).", minimum=1)
    seed: int = option(0, "Random seed (weights, data order, augmentation); 0 = not fixed.",
                       identity=True)


def check_config(c: FinalConfig) -> None:
    """Stops with one line on a setting that cannot work, before anything is read or written."""
    value = cli.config_values(c).get
    cli.check_bounds(c)
    cli.check_keep_probability(value, "keep_prob", "drop_path_keep_prob")
    data, network, optim = c.data, c.network, c.optim
    if optim.sgd.lr_max <= 0 or optim.sgd.gamma <= 0:
        raise NaoError(f"--lr_max={optim.sgd.lr_max} and --gamma={optim.sgd.gamma} must be "
                       "positive")
    imagenet = data.dataset in TFDS_NAMES
    if imagenet != (network.network == "imagenet"):
        raise NaoError(f"--dataset={data.dataset} with --network={network.network}: the "
                       "ImageNet-like sets train the ImageNet network (--network=imagenet, which "
                       "--config=imagenet_mobile sets) and it trains only on them")
    if imagenet and (data.split != "final" or data.cutout_size):
        raise NaoError("the ImageNet-like sets train on all training images and report the "
                       "validation images (--split=final), without cutout (--cutout_size=0)")
    size = image_size_for(data.dataset, data.image_size)
    if imagenet and network.use_aux_head and size < 193:
        raise NaoError(f"the ImageNet aux head needs 7x7 after the second reduction, images of "
                       f"193 pixels or more (here {size}); pass --use_aux_head=false")


def global_batches(optim: OptimizationConfig,
                   strategy: tf.distribute.Strategy) -> tuple[int, int, float]:
    """(training batch, evaluation batch, lr_max) over all replicas (`--batch_per_replica`)."""
    replicas = strategy.num_replicas_in_sync
    scale = replicas if optim.batch_per_replica else 1
    if optim.batch_size * scale % replicas:
        raise NaoError(f"--batch_size={optim.batch_size} does not split evenly over "
                       f"{replicas} replicas")
    return optim.batch_size * scale, optim.eval_batch_size * scale, optim.sgd.lr_max * scale


def check(c: FinalConfig, strategy: tf.distribute.Strategy) -> tuple[dict[str, Any], tuple]:
    """The settings, the architecture and the data; returns the settings record and (arch,
    data)."""
    check_config(c)
    from cnn import data as data_lib
    from cnn import imagenet
    from cnn.cells import archs
    from cnn.search_space import ANY_SPACE, space_for

    arch, d = load_arch(ANY_SPACE, c.network.arch, archs())[0], c.data
    if c.network.network == "imagenet":
        data = imagenet.load(d.dataset, d.data_dir, d.data_source,
                             imagenet.image_size_for(d.dataset, d.image_size))
    else:
        data = data_lib.load(d.dataset, d.data_dir or None, d.data_source, d.split, d.num_valid,
                             (d.synthetic_train_images, d.synthetic_test_images), seed=c.seed)
    global_batches(c.optim, strategy)
    settings = {**cli.config_values(c), "arch": space_for(arch).to_string(arch),
                "data_fingerprint": fingerprint(d.data_dir)}
    return settings, (arch, data)


def build(c: FinalConfig, arch_and_data: tuple, strategy: tf.distribute.Strategy):
    """The network's `CnnTrainee`; prints the architecture, its size and the schedule."""
    import keras

    from cnn.costs import CostNetwork
    from cnn.model import NASNetwork, count_params
    from cnn.search_space import space_for
    from cnn.trainee import CnnTrainee, LoopConfig

    net, optim = c.network, c.optim
    arch, data = arch_and_data
    space = space_for(arch)
    if c.seed:
        keras.utils.set_random_seed(c.seed)
    keras.config.set_image_data_format(net.data_format)
    batch_size, eval_batch_size, lr_max = global_batches(optim, strategy)
    steps = data.steps_per_epoch(batch_size)
    cfg = dataclasses.replace(optim.sgd, lr_max=lr_max, epochs=optim.epochs,
                              steps_per_epoch=steps, precision=net.precision, seed=c.seed)
    sync_bn = net.sync_bn and strategy.num_replicas_in_sync > 1

    def build_model() -> NASNetwork:
        return NASNetwork(arch, net.num_cells, net.filters, data.num_classes,
                          use_aux_head=net.use_aux_head,
                          drop_path_keep_prob=net.drop_path_keep_prob,
                          dropout_rate=1.0 - net.keep_prob,
                          stem_multiplier=net.stem_multiplier, image_size=data.image_size,
                          sync_bn=sync_bn, network=net.network)

    t = time.perf_counter()
    trainer = Trainer(strategy, build_model, cfg, batch_size, net.jit_compile)
    trainee = CnnTrainee(trainer, data, LoopConfig(
        batch_size=batch_size, eval_batch_size=eval_batch_size, cutout_size=c.data.cutout_size,
        eval_every_epochs=c.eval_every_epochs, log_every_steps=c.log_every_steps,
        seed=c.seed or None, standardization=c.data.standardization))
    params = count_params(trainer.model)
    params_aux = count_params(trainer.model, include_aux_head=True)
    mult_adds = CostNetwork(net.network, net.num_cells, net.filters, data.num_classes,
                            data.image_size, net.stem_multiplier).costs(arch)["mult_adds"]
    trainee.summary = {"arch": space.to_string(arch), "space": space.name, "params": params,
                       "params_with_aux_head": params_aux, "mult_adds": mult_adds,
                       "dataset": c.data.dataset, "num_train_images": len(data.train),
                       "batch_size": batch_size}
    print(f"architecture ({space.name} space):\n{space.describe(arch)}")
    print(f"parameters: {params:,} ({params / 1e6:.2f}M; {params_aux:,} with the aux head) | "
          + f"{mult_adds / 1e6:.1f}M multiply-adds at {data.image_size}x{data.image_size} | "
          + f"N={net.num_cells} F={net.filters} | {len(data.train)} training images, "
          f"{steps} steps/epoch x {optim.epochs} epochs, batch {batch_size} over "
          f"{strategy.num_replicas_in_sync} replica(s) | built in {time.perf_counter() - t:.0f}s",
          flush=True)
    if data.test is None and net.network != "imagenet":
        print(f"note: {c.data.data_dir or c.data.dataset} has no test set (test_batch); test "
              "accuracy is skipped")
    return trainee


def finish(c: FinalConfig, trainee, state: dict[str, Any], chief: bool,
           output_dir: str) -> dict[str, Any]:
    """The results; the chief exports the network for inference."""
    from cnn.export import export_for_inference

    export_dir = os.path.join(output_dir, "export")
    results = {**trainee.summary, **trainee.results(state), "export_dir": export_dir,
               "wall_seconds_this_run": state["wall_seconds_this_run"]}
    if chief:
        export_for_inference(trainee.trainer.model, export_dir, trainee.data.mean,
                             trainee.data.std,
                             "dataset" if c.network.network == "imagenet"
                             else c.data.standardization, trainee.data.image_size)
    test_acc = results["test_accuracy"]
    print(f"done: {results['steps']} steps; test accuracy "
          f"{'n/a' if test_acc is None else f'{test_acc:.4f}'}; "
          + (f"exported to {export_dir}" if chief else "the chief wrote the results"),
          flush=True)
    return results


def define_flags(fv: Any) -> None:
    """Defines this command's flags in `fv`."""
    from cnn.task import TASK

    final_training.define_flags(TASK, fv)


def train(fv: Any) -> dict[str, Any]:
    """Runs the command for parsed flags `fv` (the preset applied here); returns the results."""
    from cnn.task import TASK

    final_training.apply_config(TASK, fv)
    return final_training.run(TASK, fv)


if __name__ == "__main__":
    from cnn.task import TASK

    final_training.main(TASK)
