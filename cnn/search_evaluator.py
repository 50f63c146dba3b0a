"""The NAO-WS evaluator: trains the supernet between evaluations and scores the pool with it.

`prepare(pool, iteration)` trains the supernet up to epoch (iteration + 1) * eval_every_epochs
(at most `epochs`), one architecture drawn from `pool` per step (cnn.search_sampling); its
checkpoint (`output_dir/supernet/`: weights, optimizer with step counter and momentum) is written
at the end of every epoch and every `save_every_seconds` within one, so a killed run continues from
the last save and `prepare` is a no-op once the supernet is trained that far. `evaluate` scores an
architecture by its accuracy on the same fixed validation images every time (the first
`eval_images` of the validation split), batch norm on batch statistics, so scores are
deterministic for given weights and a resumed run gives the scores an uninterrupted one would.
Across machines (a multi-worker strategy) every worker trains and scores; the chief alone writes,
and decides when a save falls due.
"""

import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import tensorflow as tf

from cnn.data import CifarData, eval_dataset, train_dataset
from cnn.search_sampling import draw, sampling_probabilities
from cnn.search_space import CellArch
from cnn.supernet import arch_tensor
from cnn.training import Trainer
from nao_tf.algorithm.evaluators import Record, WeightSharingEvaluator
from nao_tf.common.errors import NaoError
from nao_tf.common.resume import restore
from nao_tf.common.summaries import summary_writer, write_scalars
from nao_tf.runtime import precision
from nao_tf.runtime.distribute import checkpoint_manager, from_chief, is_chief
from nao_tf.runtime.divergence import divergence


@dataclass
class SupernetSchedule:
    """How long and how the supernet trains (defaults: the NAO-WS search script)."""

    epochs: int = 150
    eval_every_epochs: int = 30
    eval_epochs: tuple[int, ...] = ()  # instead of every eval_every_epochs (evaluators.py)
    steps_per_epoch: int = 282  # ceil(45000 / 160)
    batch_size: int = 160  # global
    sample_policy: str = "uniform"
    eval_images: int = 500
    eval_batch_size: int = 500
    seed: int = 0
    save_every_seconds: float = 600.0
    log_every_steps: int = 50


class SupernetEvaluator(WeightSharingEvaluator):
    """Scores CNN cells with the weight-sharing supernet (accuracy, higher is better)."""

    higher_is_better = True

    def __init__(self, trainer: Trainer, data: CifarData, schedule: SupernetSchedule,
                 output_dir: str, num_cells_per_stage: int, filters: int,
                 log: Callable[[str], None] = print):
        if data.valid is None:
            raise NaoError("the supernet is scored on a validation split; load the data with "
                           "split='search'")
        self.trainer, self.data, self.schedule = trainer, data, schedule
        self.epochs, self.eval_every_epochs = schedule.epochs, schedule.eval_every_epochs
        self.eval_epochs = schedule.eval_epochs
        self.num_cells_per_stage, self.filters = num_cells_per_stage, filters
        self.log = log
        self.checkpoint = tf.train.Checkpoint(model=trainer.model,
                                              optimizer=precision.checkpointed(trainer.optimizer))
        self.manager, latest = checkpoint_manager(
            self.checkpoint, os.path.join(output_dir, "supernet"), trainer.strategy, max_to_keep=2)
        if latest:
            restore(self.checkpoint, latest, exact=False)
            log(f"supernet: resumed from {latest} (step {trainer.step}, "
                f"epoch {trainer.step / schedule.steps_per_epoch:.2f})")
        self.writer = summary_writer(os.path.join(output_dir, "tensorboard", "supernet"),
                                     is_chief(trainer.strategy))
        self._train_iterator = None
        n_eval = min(schedule.eval_images, len(data.valid))
        valid = type(data.valid)(data.valid.images[:n_eval], data.valid.labels[:n_eval])
        self.num_eval_images = n_eval
        self._valid_batches = list(trainer.strategy.experimental_distribute_dataset(
            eval_dataset(valid, schedule.eval_batch_size, data.mean, data.std)))
        self.steps_trained_this_run = 0

    # Training.

    def _iterator(self):
        if self._train_iterator is None:
            ds = train_dataset(self.data.train, self.schedule.batch_size, self.data.mean,
                               self.data.std, seed=self.schedule.seed or None,
                               start_step=self.trainer.step)
            self._train_iterator = iter(self.trainer.strategy.experimental_distribute_dataset(ds))
        return self._train_iterator

    def _save(self) -> None:
        self.manager.save(checkpoint_number=self.trainer.step)
        self._last_save = time.monotonic()

    def prepare(self, pool: Sequence[CellArch], iteration: int) -> None:
        """Trains the supernet up to this iteration's evaluation epoch (no-op if already there)."""
        s, trainer = self.schedule, self.trainer
        target = self.evaluation_epoch(iteration) * s.steps_per_epoch
        if trainer.step >= target:
            return
        probabilities = sampling_probabilities(pool, s.sample_policy, self.num_cells_per_stage,
                                               self.filters, self.data.num_classes)
        archs = [tf.constant(arch_tensor(a)) for a in pool]
        iterator = self._iterator()
        self.log(f"supernet: training steps {trainer.step} -> {target} (epochs "
                 f"{trainer.step // s.steps_per_epoch} -> {target // s.steps_per_epoch}), "
                 f"{s.sample_policy} sampling from a pool of {len(pool)}")
        self._last_save = time.monotonic()
        window = {"loss": 0.0, "accuracy": 0.0, "n": 0, "start": time.monotonic()}
        timed_steps, timed_seconds = 0, 0.0
        while trainer.step < target:
            step = trainer.step
            t = time.monotonic()
            stats = trainer.train_step(*next(iterator), archs[draw(probabilities, s.seed, step)])
            first = not self.steps_trained_this_run  # the first step of a process traces the step
            if not first:
                timed_steps, timed_seconds = timed_steps + 1, timed_seconds + time.monotonic() - t
            self.steps_trained_this_run += 1
            diverged = divergence(stats["loss"], self.data.num_classes)
            if diverged:
                where = (f"it goes on from the last good checkpoint, "
                         f"{self.manager.latest_checkpoint}" if self.manager.latest_checkpoint
                         else "no checkpoint was saved yet, so it starts again from step 0")
                raise NaoError(f"supernet {diverged} at step {step + 1}; rerun the same command "
                               "with a lower --lr_max or --grad_bound (a resume may change them): "
                               f"{where}")
            window["loss"] += stats["loss"]
            window["accuracy"] += stats["accuracy"]
            window["n"] += 1
            step += 1
            if first or step % s.log_every_steps == 0 or step == target:
                self._log_window(window, stats, step, target, timed_steps, timed_seconds,
                                 first_seconds=time.monotonic() - t if first else None)
                window = {"loss": 0.0, "accuracy": 0.0, "n": 0, "start": time.monotonic()}
            if step % s.steps_per_epoch == 0 or step == target or from_chief(
                    trainer.strategy, time.monotonic() - self._last_save >= s.save_every_seconds):
                self._save()
        self.writer.flush()

    def _log_window(self, window: dict, stats: dict, step: int, target: int, timed_steps: int,
                    timed_seconds: float, first_seconds: float | None = None) -> None:
        """A progress line; after a process's first step (`first_seconds` set) it says how long
        that step took, tracing included, in place of the rate."""
        s = self.schedule
        n = max(window["n"], 1)
        loss, accuracy = window["loss"] / n, window["accuracy"] / n
        if first_seconds is not None:
            speed = f"first step {first_seconds:.1f}s (tracing included)"
        else:
            rate = s.batch_size * timed_steps / timed_seconds if timed_seconds else 0.0
            eta = (target - step) * timed_seconds / timed_steps if timed_steps else 0.0
            speed = f"{rate:.1f} images/s  ETA {eta:.0f}s"
        lr = self.trainer.learning_rate()
        self.log(f"supernet epoch {(step - 1) // s.steps_per_epoch + 1} step {step}/{target}  "
                 f"loss {loss:.4f}  acc {accuracy:.4f}  lr {lr:.5f}  {speed}")
        values = {"supernet/loss": loss, "supernet/accuracy": accuracy, "supernet/lr": lr,
                  "supernet/grad_norm": stats["grad_norm"]}
        elapsed = time.monotonic() - window["start"]
        if elapsed > 0:
            values["supernet/images_per_sec"] = s.batch_size * window["n"] / elapsed
        write_scalars(self.writer, step, values)

    # Scoring.

    def score(self, arch: CellArch) -> float:
        """Accuracy of `arch` on the fixed validation images."""
        a = tf.constant(arch_tensor(arch))
        correct = tf.add_n([self.trainer.correct_count(images, labels, a)
                            for images, labels in self._valid_batches])
        return float(correct) / self.num_eval_images

    def evaluate(self, archs: Sequence[CellArch], iteration: int, record: Record) -> None:
        started = last_log = time.monotonic()
        for k, arch in enumerate(archs, 1):
            record(arch, self.score(arch))
            now = time.monotonic()
            if now - last_log >= 30 or k == len(archs):
                rate = k / max(now - started, 1e-9)
                self.log(f"supernet: scored {k}/{len(archs)} architectures on "
                         f"{self.num_eval_images} validation images ({rate:.2f} archs/s)")
                last_log = now

