"""The epoch loop of final training: checkpoints every epoch, automatic resume, TensorBoard,
periodic evaluation, progress lines with images/s and ETA, and `results.json`.

Layout of `output_dir`: `checkpoints/` (one per epoch; the model, the optimizer with its step
counter and momentum, and the epoch), `tensorboard/`, `results.json` (rewritten atomically after
every evaluation and at the end). Re-running resumes from the latest checkpoint, so the step count,
learning rate and momentum continue where the last completed epoch left them. Under a
multi-worker strategy only the chief writes there (`nao_tf.distribute`). The data (CIFAR in memory,
or an ImageNet-like set read from files) supplies the pipelines and the steps of an epoch.
"""

import os
import time
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from cnn.data import CifarData
from cnn.imagenet import ImageNetData
from cnn.training import Trainer
from nao_tf import precision
from nao_tf.distribute import checkpoint_manager, is_chief, summary_writer
from nao_tf.divergence import divergence
from nao_tf.errors import NaoError
from nao_tf.io import atomic_write_json, read_json
from nao_tf.run_dir import restore, write_scalars

RESULTS_FILE = "results.json"


@dataclass
class LoopConfig:
    output_dir: str
    batch_size: int  # global
    eval_batch_size: int
    cutout_size: int = 0
    eval_every_epochs: int = 1
    log_every_steps: int = 50
    keep_checkpoints: int = 5
    seed: int | None = None
    standardization: str = "dataset"  # cnn.data.STANDARDIZATIONS


def _format_eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def fit(trainer: Trainer, data: CifarData | ImageNetData, loop: LoopConfig,
        extra_results: dict[str, Any]) -> dict[str, Any]:
    """Trains until `trainer.cfg.epochs` epochs are done (resuming if a checkpoint exists) and
    returns the results dict also written to `results.json`."""
    cfg = trainer.cfg
    strategy = trainer.strategy
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=trainer.model,
                                     optimizer=precision.checkpointed(trainer.optimizer),
                                     epoch=epoch_var)
    # Every worker saves (the save is collective): the chief into --output_dir, others into
    # scratch. Every worker resumes from the chief's checkpoints.
    chief = is_chief(strategy)
    manager, latest = checkpoint_manager(checkpoint, os.path.join(loop.output_dir, "checkpoints"),
                                         strategy, loop.keep_checkpoints)
    results_path = os.path.join(loop.output_dir, RESULTS_FILE)
    history: list[dict[str, Any]] = []
    if latest:
        restore(checkpoint, latest, exact=False)
        if os.path.exists(results_path):
            history = read_json(results_path, {"history": list})["history"]
        print(f"resumed from {latest}: epoch {int(epoch_var.numpy())}, step "
              f"{trainer.step}, lr {trainer.learning_rate():.6g}", flush=True)
    start_epoch = int(epoch_var.numpy())
    expected_step = start_epoch * cfg.steps_per_epoch
    if trainer.step != expected_step:
        raise NaoError(f"{latest}: step {trainer.step} does not match epoch "
                       f"{start_epoch} x {cfg.steps_per_epoch} steps; the batch size or data "
                       "changed since this run started; use --overwrite or a new --output_dir")

    writer = summary_writer(os.path.join(loop.output_dir, "tensorboard"), strategy)
    train_ds = data.train_dataset(loop.batch_size, loop.seed, trainer.step,
                                  cutout_size=loop.cutout_size,
                                  standardization=loop.standardization)
    iterator = iter(strategy.experimental_distribute_dataset(train_ds))
    evals = data.eval_datasets(loop.eval_batch_size, standardization=loop.standardization)

    last: dict[str, float] = {}
    timed_steps, timed_seconds = 0, 0.0
    window_loss = window_acc = 0.0
    window_n = 0
    window_start = time.perf_counter()
    started = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        for _ in range(cfg.steps_per_epoch):
            t = time.perf_counter()
            try:
                images, labels = next(iterator)
            except tf.errors.InvalidArgumentError as err:  # an input that does not decode
                raise data.explain(err, trainer.step, loop.batch_size) from None
            stats = trainer.train_step(images, labels)
            dt = time.perf_counter() - t
            step = trainer.step
            diverged = divergence(stats["loss"], data.num_classes)
            if diverged:
                raise NaoError(f"training {diverged} at step {step}; rerun the same command "
                               "with a lower --lr_max (a resume may change it): it goes on from "
                               f"the last good checkpoint in {manager.directory}")
            if step > expected_step + 1:  # the first step of a process includes tracing
                timed_steps, timed_seconds = timed_steps + 1, timed_seconds + dt
            window_loss, window_acc = window_loss + stats["loss"], window_acc + stats["accuracy"]
            window_n += 1
            if step % loop.log_every_steps == 0 or step == cfg.total_steps:
                elapsed = time.perf_counter() - window_start
                rate = loop.batch_size * timed_steps / timed_seconds if timed_seconds else 0.0
                last = {"loss": window_loss / window_n, "accuracy": window_acc / window_n,
                        "lr": trainer.learning_rate(), "images_per_sec": rate}
                eta = (cfg.total_steps - step) * timed_seconds / timed_steps if timed_steps else 0
                print(f"epoch {epoch + 1} step {step}/{cfg.total_steps}  loss {last['loss']:.4f}  "
                      f"acc {last['accuracy']:.4f}  lr {last['lr']:.5f}  {rate:.1f} images/s  "
                      f"ETA {_format_eta(eta)}", flush=True)
                write_scalars(writer, step, {
                    "train/loss": last["loss"], "train/accuracy": last["accuracy"],
                    "train/lr": last["lr"], "train/grad_norm": stats["grad_norm"],
                    "train/images_per_sec": loop.batch_size * window_n / elapsed})
                window_loss = window_acc = 0.0
                window_n = 0
                window_start = time.perf_counter()
        epoch_var.assign(epoch + 1)
        manager.save(checkpoint_number=epoch + 1)
        if (epoch + 1) % loop.eval_every_epochs == 0 or epoch + 1 == cfg.epochs:
            record: dict[str, Any] = {"epoch": epoch + 1, "step": trainer.step, **{
                f"train_{k}": v for k, v in last.items()}}
            for name, ds in evals.items():
                metrics = trainer.evaluate(ds)
                record[f"{name}_accuracy"] = metrics["accuracy"]
                record[f"{name}_top5"] = metrics["top5"]
                record[f"{name}_loss"] = metrics["loss"]
                write_scalars(writer, trainer.step, {f"{name}/accuracy": metrics["accuracy"],
                                                     f"{name}/top5": metrics["top5"],
                                                     f"{name}/loss": metrics["loss"]})
                print(f"epoch {epoch + 1}: {name} accuracy {metrics['accuracy']:.4f} top-5 "
                      f"{metrics['top5']:.4f} ({metrics['images']} images)", flush=True)
            history.append(record)
            writer.flush()
            if chief:
                atomic_write_json(results_path, _results(history, extra_results, trainer, False,
                                                         timed_steps, timed_seconds,
                                                         loop.batch_size))
    results = _results(history, extra_results, trainer, True, timed_steps, timed_seconds,
                       loop.batch_size)
    results["resumed_from_epoch"] = start_epoch
    results["wall_seconds_this_run"] = time.perf_counter() - started
    if chief:
        atomic_write_json(results_path, results)
    writer.flush()
    return results


def _results(history: list[dict[str, Any]], extra: dict[str, Any], trainer: Trainer,
             finished: bool, timed_steps: int, timed_seconds: float,
             batch_size: int) -> dict[str, Any]:
    final = history[-1] if history else {}
    return {**extra, "finished": finished, "epochs_done": final.get("epoch", 0),
            "steps": trainer.step, "test_accuracy": final.get("test_accuracy"),
            "test_top5": final.get("test_top5"),
            "valid_accuracy": final.get("valid_accuracy"),
            "train_images_per_sec": batch_size * timed_steps / timed_seconds
            if timed_seconds else None, "history": history}
