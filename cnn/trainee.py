"""One CNN architecture's training, epoch by epoch (a `nao_tf.runtime.train_loop.Trainee`): the
final training (`cnn.train_final`) and every candidate of NAO without weight sharing
(`cnn.train_search_nao`) run it under `nao_tf.runtime.train_loop.train_epochs`, which checkpoints,
records and resumes.

An epoch is `steps_per_epoch` steps of the data's training stream (a function of the seed and
the step, so a resumed run continues the same stream), with a progress line (loss, accuracy,
learning rate, images/s, ETA) and TensorBoard scalars every `log_every_steps`, then, every
`eval_every_epochs` and at the end, top-1/top-5 accuracy and loss of each evaluation split. A loss
that diverges (`nao_tf.runtime.divergence`) raises `Diverged`.
"""

import time
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from cnn.data import CifarData
from cnn.imagenet import ImageNetData
from cnn.training import Trainer
from nao_tf.common.errors import NaoError
from nao_tf.common.summaries import write_scalars
from nao_tf.runtime import precision
from nao_tf.runtime.distribute import shared_seed
from nao_tf.runtime.divergence import divergence
from nao_tf.runtime.train_loop import Diverged, Trainee, format_eta


@dataclass
class LoopConfig:
    batch_size: int  # global
    eval_batch_size: int
    cutout_size: int = 0
    eval_every_epochs: int = 1
    log_every_steps: int = 50
    seed: int | None = None
    standardization: str = "dataset"  # one of cnn.data.STANDARDIZATIONS


class CnnTrainee(Trainee):
    """`trainer`'s network trained on `data` (see the module docstring)."""

    def __init__(self, trainer: Trainer, data: CifarData | ImageNetData, loop: LoopConfig):
        self.trainer, self.data, self.loop = trainer, data, loop
        self.trackables = {"model": trainer.model,
                           "optimizer": precision.checkpointed(trainer.optimizer)}
        self.evals = data.eval_datasets(loop.eval_batch_size, standardization=loop.standardization)
        self.timed_steps, self.timed_seconds = 0, 0.0  # this process's steps after its first
        self._stream: Any = None
        self._seed: int | None = None  # of the training stream, shared by every worker
        self._stream_step = self._first_step = -1  # the stream's next step; this process's first

    def position(self) -> str:
        return f"step {self.trainer.step}, lr {self.trainer.learning_rate():.6g}"

    def images_per_sec(self) -> float | None:
        return (self.loop.batch_size * self.timed_steps / self.timed_seconds
                if self.timed_seconds else None)

    def _next_batch(self) -> tuple[tf.Tensor, tf.Tensor]:
        trainer, loop = self.trainer, self.loop
        if self._stream_step != trainer.step:  # a new process, or a rollback
            if self._seed is None:  # every worker reads the same stream
                self._seed = shared_seed(trainer.strategy, loop.seed)
            step, options = trainer.step, dict(cutout_size=loop.cutout_size,
                                               standardization=loop.standardization)
            if isinstance(self.data, ImageNetData):  # each worker decodes only its share
                self._stream = iter(trainer.strategy.distribute_datasets_from_function(
                    lambda context: self.data.train_dataset(
                        loop.batch_size, self._seed, step, input_context=context, **options)))
            else:
                self._stream = iter(trainer.strategy.experimental_distribute_dataset(
                    self.data.train_dataset(loop.batch_size, self._seed, step, **options)))
            self._first_step = trainer.step + 1  # it includes tracing: not timed
        try:
            batch = next(self._stream)
        except tf.errors.InvalidArgumentError as err:  # an input that does not decode
            raise self.data.explain(err, trainer.step, loop.batch_size) from None
        self._stream_step = trainer.step + 1
        return batch

    def train_epoch(self, epoch: int, attempt: int, state: dict[str, Any],
                    writer: tf.summary.SummaryWriter) -> dict[str, Any]:
        trainer, loop, cfg = self.trainer, self.loop, self.trainer.cfg
        if trainer.step != (epoch - 1) * cfg.steps_per_epoch:
            raise NaoError(f"step {trainer.step} does not match epoch {epoch - 1} x "
                           f"{cfg.steps_per_epoch} steps; the global batch or the data changed "
                           "since this run started; use --overwrite or a new --output_dir")
        window: dict[str, float] = {"loss": 0.0, "accuracy": 0.0, "n": 0,
                                    "start": time.perf_counter()}
        last: dict[str, float] = {}
        for _ in range(cfg.steps_per_epoch):
            t = time.perf_counter()
            stats = trainer.train_step(*self._next_batch())
            step = trainer.step
            if step > self._first_step:
                self.timed_steps, self.timed_seconds = (self.timed_steps + 1,
                                                        self.timed_seconds + time.perf_counter() - t)
            diverged = divergence(stats["loss"], self.data.num_classes)
            if diverged:
                raise Diverged(f"training {diverged} at step {step}")
            window["loss"] += stats["loss"]
            window["accuracy"] += stats["accuracy"]
            window["n"] += 1
            if step % loop.log_every_steps == 0 or step == cfg.total_steps:
                last = self._report(epoch, stats, window, writer)
                window = {"loss": 0.0, "accuracy": 0.0, "n": 0, "start": time.perf_counter()}
        if epoch % loop.eval_every_epochs and epoch != cfg.epochs:
            return {}
        record: dict[str, Any] = {"step": trainer.step,
                                  **{f"train_{k}": v for k, v in last.items()}}
        for name, dataset in self.evals.items():
            metrics = trainer.evaluate(dataset)
            for key in ("accuracy", "top5", "loss"):
                record[f"{name}_{key}"] = metrics[key]
            write_scalars(writer, trainer.step, {f"{name}/{key}": metrics[key]
                                                 for key in ("accuracy", "top5", "loss")})
            print(f"epoch {epoch}: {name} accuracy {metrics['accuracy']:.4f} top-5 "
                  f"{metrics['top5']:.4f} ({metrics['images']} images)", flush=True)
        return record

    def _report(self, epoch: int, stats: dict[str, float], window: dict[str, float],
                writer: tf.summary.SummaryWriter) -> dict[str, float]:
        """A progress line and the training scalars of the steps since the last one."""
        trainer, cfg, step = self.trainer, self.trainer.cfg, self.trainer.step
        rate = self.images_per_sec() or 0.0
        last = {"loss": window["loss"] / window["n"], "accuracy": window["accuracy"] / window["n"],
                "lr": trainer.learning_rate(), "images_per_sec": rate}
        eta = ((cfg.total_steps - step) * self.timed_seconds / self.timed_steps
               if self.timed_steps else 0)
        print(f"epoch {epoch} step {step}/{cfg.total_steps}  loss {last['loss']:.4f}  "
              f"acc {last['accuracy']:.4f}  lr {last['lr']:.5f}  {rate:.1f} images/s  "
              f"ETA {format_eta(eta)}", flush=True)
        write_scalars(writer, step, {
            "train/loss": last["loss"], "train/accuracy": last["accuracy"],
            "train/lr": last["lr"], "train/grad_norm": stats["grad_norm"],
            "train/images_per_sec": self.loop.batch_size * window["n"] /
            (time.perf_counter() - window["start"])})
        return last

    def results(self, state: dict[str, Any]) -> dict[str, Any]:
        """The final evaluation's numbers from the run's history."""
        final = state["history"][-1] if state["history"] else {}
        return {"steps": self.trainer.step, "test_accuracy": final.get("test_accuracy"),
                "test_top5": final.get("test_top5"),
                "valid_accuracy": final.get("valid_accuracy"),
                "train_images_per_sec": self.images_per_sec()}
