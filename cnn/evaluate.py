"""Evaluate a network trained by `cnn.train_final` on the CIFAR test (or validation) set, or the
ImageNet validation images.

    python -m cnn.evaluate --output_dir=runs/nao_ws_c10 [--data_dir=...] [--eval_split=test]

Rebuilds the network from the run's flags.json, restores its latest checkpoint and writes
`eval_results.json` (accuracy, loss, image count) into --output_dir. The data flags default to the
run's own; give --data_dir to evaluate on data stored elsewhere.
"""

import dataclasses
import os
from typing import Any, Sequence

from absl import flags

from nao_tf.commands import cli
from nao_tf.common.errors import DataError, StateError
from nao_tf.common.io import atomic_write_json, read_json
from nao_tf.common.resume import restore


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    output_dir: str = cli.option("", "Run directory written by cnn.train_final.", required=True)
    data_dir: str = cli.option("", "Data directory (default: the run's --data_dir).")
    eval_split: str = cli.option("test", "Which split to evaluate.", ["test", "valid"])
    eval_batch_size: int = cli.option(500, "Evaluation batch.")


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Defines this command's flags in `fv` (the global FLAGS when run as a script)."""
    cli.define_flags([EvaluateConfig], fv)


def load_trained_model(run_dir: str, settings: dict[str, Any] | None = None,
                       num_classes: int | None = None, image_size: int = 32):
    """The network of `run_dir` (built from its flags.json) with its latest checkpoint's weights
    (`num_classes`: the data's; default CIFAR's)."""
    import keras
    import tensorflow as tf

    from cnn.model import NASNetwork
    from cnn.search_space import ANY_SPACE

    settings = settings or read_json(os.path.join(run_dir, "flags.json"))
    checkpoint_dir = os.path.join(run_dir, "checkpoints")
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest is None:
        raise StateError(f"{checkpoint_dir}: no checkpoint; train first with cnn.train_final")
    keras.config.set_image_data_format(settings["data_format"])
    num_classes = num_classes or (100 if settings["dataset"] == "cifar100" else 10)
    model = NASNetwork(ANY_SPACE.parse(settings["arch"]), settings["num_cells"],
                       settings["filters"], num_classes, use_aux_head=settings["use_aux_head"],
                       stem_multiplier=settings["stem_multiplier"], image_size=image_size,
                       network=settings.get("network", "nao_ws"))
    model.build_now()
    restore(tf.train.Checkpoint(model=model), latest, exact=False)
    return model


def evaluate(fv: flags.FlagValues) -> dict[str, Any]:
    """Evaluates the run in `fv.output_dir`; returns the metrics (also in eval_results.json)."""
    settings = read_json(os.path.join(fv.output_dir, "flags.json"))

    from cnn import data as data_lib
    from cnn import imagenet
    from cnn.training import OptimConfig, Trainer
    from nao_tf.runtime.distribute import get_strategy

    data_dir = fv.data_dir or settings["data_dir"]
    if settings.get("network") == "imagenet":
        if fv.eval_split == "valid":
            raise DataError("an ImageNet run has one evaluation split, the validation images: "
                            "use --eval_split=test")
        data = imagenet.load(settings["dataset"], data_dir, settings["data_source"],
                             imagenet.image_size_for(settings["dataset"], settings["image_size"]))
    else:
        data = data_lib.load(settings["dataset"], data_dir or None, settings["data_source"],
                             "search" if fv.eval_split == "valid" else settings["split"],
                             settings["num_valid"], (settings["synthetic_train_images"],
                                                     settings["synthetic_test_images"]),
                             seed=settings["seed"])
        if (data.valid if fv.eval_split == "valid" else data.test) is None:
            raise DataError(f"{data_dir}: no {fv.eval_split} images (for test: the test_batch / "
                            "test file)")
    strategy = get_strategy()
    trainer = Trainer(strategy, lambda: load_trained_model(
        fv.output_dir, settings, data.num_classes, data.image_size),
        OptimConfig(epochs=1, steps_per_epoch=1), fv.eval_batch_size)
    metrics = trainer.evaluate(data.eval_datasets(
        fv.eval_batch_size, standardization=settings.get("standardization", "dataset"))[
        fv.eval_split])
    metrics["split"] = fv.eval_split
    atomic_write_json(os.path.join(fv.output_dir, "eval_results.json"), metrics)
    print(f"{fv.eval_split} accuracy {metrics['accuracy']:.4f}, top-5 {metrics['top5']:.4f} on "
          f"{metrics['images']} images")
    return metrics


def main(argv: Sequence[str]) -> None:
    evaluate(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
