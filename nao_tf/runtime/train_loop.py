"""One architecture's training, epoch by epoch, for any task: a task supplies a `Trainee`,
`train_epochs` checkpoints every epoch, resumes after the last finished one and rolls a diverged
epoch back. The final trainings (`nao_tf.commands.final_training`) and every candidate of NAO
without weight sharing run it.

The run directory it keeps: train_state.json (finished epochs, the history of per-epoch records,
rollbacks, the trainee's own keys), checkpoints/ (after every epoch: what the trainee lists in
`trackables`; number 0 holds the initial weights) and tensorboard/. Under a multi-worker strategy
every worker trains and saves (saves are collective) and reads the chief's record; only the chief
writes the record.
"""

import copy
import functools
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import tensorflow as tf

from nao_tf.algorithm.evaluators import Record, WeightSharingEvaluator
from nao_tf.common.io import atomic_write_json, read_json
from nao_tf.common.resume import require_record, restore
from nao_tf.common.summaries import summary_writer
from nao_tf.runtime.distribute import barrier, checkpoint_manager, is_chief

STATE_FILE = "train_state.json"


# train_state.json: what a resume reads back (a file holding anything else is named, not a
# KeyError).
STATE_FIELDS = {"epoch": int, "checkpoint": str, "history": list, "rollbacks": int,
                "train_seconds": (int, float)}


class Diverged(Exception):
    """An epoch's loss diverged (`runtime.divergence`). `train_epochs` rolls back and retries; once
    its rollbacks are spent it raises this again with `state`, the run's state after the last
    good epoch."""

    state: dict[str, Any] = {}


class Trainee:
    """One architecture's training, as a task supplies it (a subclass).

    `trackables`: what a checkpoint holds (model, optimizer, weight averages), restored on a
    resume and on a rollback; `initial_state`: the trainee's own keys of a new run's state."""

    trackables: Mapping[str, Any]
    initial_state: Mapping[str, Any] = {}

    def train_epoch(self, epoch: int, attempt: int, state: dict[str, Any],
                    writer: tf.summary.SummaryWriter) -> dict[str, Any]:
        """Trains epoch `epoch` (from 1; `attempt` counts its rollbacks), evaluates when due,
        writes its TensorBoard scalars with `writer`, and returns the epoch's record for the
        history ({} when nothing was measured). It may update its own keys of `state` (a copy,
        dropped when the epoch diverges); it raises `Diverged`."""
        raise NotImplementedError

    def position(self) -> str:
        """Where a resumed run stands, for the resume line ('' for nothing to add)."""
        return ""

    def epoch_summary(self, record: Mapping[str, Any]) -> str:
        """The epoch's record for its progress line (default: every number in it)."""
        return ", ".join(f"{key} {value:.4g}" for key, value in record.items()
                         if isinstance(value, (int, float)))


def format_eta(seconds: float) -> str:
    """`h:mm:ss` of a progress line's estimated time to the end ('?' when unknown)."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train_epochs(trainee: Trainee, out_dir: str | os.PathLike, strategy: tf.distribute.Strategy,
                 epochs: int, keep_checkpoints: int = 2, max_rollbacks: int = 0,
                 log: Callable[[str], None] = functools.partial(print, flush=True)
                 ) -> dict[str, Any]:
    """Trains `trainee` in `out_dir` until `epochs` epochs are done, resuming after the last
    finished one; returns the final state (`STATE_FIELDS`, the trainee's keys, and the
    resumed-from epoch and this process's seconds). A diverged epoch rolls back to the last
    checkpoint and runs again, at most `max_rollbacks` times in a row; then `Diverged` (with the
    state) is raised."""
    out = Path(out_dir)
    chief = is_chief(strategy)
    checkpoint = tf.train.Checkpoint(**trainee.trackables)
    manager, _ = checkpoint_manager(checkpoint, out / "checkpoints", strategy, keep_checkpoints)
    state_path = out / STATE_FILE
    require_record(state_path, out / "checkpoints")
    state = read_json(state_path, STATE_FIELDS) if state_path.exists() else None
    barrier(strategy)  # every worker has read the chief's record before the chief writes one
    writer = summary_writer(out / "tensorboard", chief)

    def save(new_state: dict[str, Any]) -> dict[str, Any]:
        new_state["checkpoint"] = Path(manager.save(checkpoint_number=new_state["epoch"])).name
        if chief:
            atomic_write_json(state_path, new_state)
        return new_state

    def restore_last() -> None:
        restore(checkpoint, out / "checkpoints" / state["checkpoint"], exact=False)

    if state:
        restore_last()
        position = trainee.position()
        log(f"resumed from {out / 'checkpoints' / state['checkpoint']}: epoch {state['epoch']}"
            + (f", {position}" if position else ""))
    else:  # checkpoint 0: the initial weights, where a diverged first epoch rolls back to
        state = save({"epoch": 0, "history": [], "rollbacks": 0, "train_seconds": 0.0,
                      **copy.deepcopy(trainee.initial_state)})
    resumed_from, started, failures = state["epoch"], time.perf_counter(), 0
    while state["epoch"] < epochs:
        epoch, epoch_start = state["epoch"] + 1, time.perf_counter()
        new_state = copy.deepcopy(state)
        try:
            record = trainee.train_epoch(epoch, failures, new_state, writer)
        except Diverged as err:
            failures += 1
            state["rollbacks"] += 1
            if failures > max_rollbacks:
                spent = Diverged(str(err) + (
                    f"; rolled back to the epoch-{state['epoch']} checkpoint {max_rollbacks} "
                    "times in a row and it diverged again" if max_rollbacks else ""))
                spent.state = state
                raise spent from None
            log(f"{err}; rolling back to the checkpoint after epoch {state['epoch']} "
                f"(rollback {failures} of {max_rollbacks})")
            restore_last()
            continue
        failures = 0
        new_state["epoch"] = epoch
        new_state["train_seconds"] += time.perf_counter() - epoch_start
        if record:
            new_state["history"].append({"epoch": epoch, **record})
        state = save(new_state)
        writer.flush()
        per_epoch = (time.perf_counter() - started) / (epoch - resumed_from)
        summary = f": {trainee.epoch_summary(record)}" if record else ""
        log(f"epoch {epoch}/{epochs}{summary} | {time.perf_counter() - epoch_start:.1f}s, ETA "
            f"{format_eta(per_epoch * (epochs - epoch))}")
    return {**state, "resumed_from_epoch": resumed_from,
            "wall_seconds_this_run": time.perf_counter() - started}


class TraineeSupernet(WeightSharingEvaluator):
    """A weight-sharing supernet trained as one `Trainee` that draws each step's architecture from
    its `pool` (set to the search's pool before each training): `prepare` runs `train_epochs` in
    `directory` up to the iteration's scoring epoch (resuming by epoch), `evaluate` records
    `score(arch)` of each architecture."""

    def __init__(self, trainee: Trainee, directory: str | os.PathLike,
                 strategy: tf.distribute.Strategy, epochs: int, eval_every_epochs: int,
                 score: Callable[[Any], float], higher_is_better: bool = True):
        self.trainee, self.directory, self.strategy, self.score = (trainee, directory, strategy,
                                                                   score)
        self.epochs, self.eval_every_epochs = epochs, eval_every_epochs
        self.higher_is_better = higher_is_better

    def prepare(self, pool: Sequence[Any], iteration: int) -> None:
        self.trainee.pool = list(pool)
        train_epochs(self.trainee, self.directory, self.strategy, self.evaluation_epoch(iteration))

    def evaluate(self, archs: Sequence[Any], iteration: int, record: Record) -> None:
        for arch in archs:
            record(arch, self.score(arch))
