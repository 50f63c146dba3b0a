"""The command "train one architecture", for any task: a task supplies its flags, presets, data and
a `Trainee` (one architecture's training, one epoch at a time; `FinalTask`); this module supplies
the rest. NAO without weight sharing trains each candidate with the same `train_epochs`.

    run  = --config preset -> the task's checks and data (nothing written yet) -> strategy ->
           check the run directory (--overwrite deletes) -> record the settings -> build the
           trainee -> epochs, each one checkpointed and recorded (a diverged epoch rolls back to
           the last checkpoint) -> the task's results -> results.json

The run directory: flags.json (the settings; a rerun resumes only with the same identity
settings), train_state.json (finished epochs, the history of per-epoch records, rollbacks, the
task's own keys), checkpoints/ (after every epoch: what the trainee lists in `trackables`),
tensorboard/, results.json, and the task's own files. Killed at any moment, the same command
resumes after the last finished epoch. Under a multi-worker strategy every worker trains and saves
(saves are collective) and reads the chief's record; only the chief writes into the run directory.
"""

import copy
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import tensorflow as tf

from nao_tf import cli
from nao_tf.distribute import (barrier, checkpoint_manager, get_strategy, is_chief,
                               prepare_run_dir, summary_writer)
from nao_tf.errors import NaoError
from nao_tf.io import atomic_write_json, read_json
from nao_tf.run_dir import RunDir, require_record, restore

STATE_FILE = "train_state.json"
RESULTS_FILE = "results.json"
# What --overwrite deletes: the skeleton's files; a task adds its own (`FinalTask.owned`).
OWNED_PATHS = ("checkpoints", "tensorboard", STATE_FILE, RESULTS_FILE, "flags.json")
# train_state.json: what a resume reads back (a file holding anything else is named, not a
# KeyError).
STATE_FIELDS = {"epoch": int, "checkpoint": str, "history": list, "rollbacks": int,
                "train_seconds": (int, float)}
RUN_FLAGS: tuple[cli.FlagSpec, ...] = (
    ("output_dir", "", "Run directory (required; re-running the same command resumes)."),
    ("overwrite", False, "Delete this run's previous files in --output_dir first and start "
     "again (only once every other check has passed)."),
)


class Diverged(Exception):
    """An epoch's loss diverged (`nao_tf.divergence`). `train_epochs` rolls back and retries; once
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


def format_eta(seconds: float) -> str:
    """`h:mm:ss` of a progress line's estimated time to the end ('?' when unknown)."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train_epochs(trainee: Trainee, out_dir: str | os.PathLike, strategy: tf.distribute.Strategy,
                 epochs: int, keep_checkpoints: int = 2, max_rollbacks: int = 0,
                 log: Callable[[str], None] = cli.say) -> dict[str, Any]:
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
    writer = summary_writer(out / "tensorboard", strategy)

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
    return {**state, "resumed_from_epoch": resumed_from,
            "wall_seconds_this_run": time.perf_counter() - started}


@dataclasses.dataclass(frozen=True)
class FinalTask:
    """A task's part of the command (see the module docstring).

    `flags`: the task's flags (`RUN_FLAGS` and `--config` are added); `preset(name, fv)`: the
    flag defaults of `--config=name` (one of `preset_names`), which may depend on other flags.
    `check(fv, strategy)` validates the flags and reads the data without writing anything and
    returns the settings record and the data; `identity` names the record's keys a rerun must
    keep. `build(fv, data, strategy)` returns the `Trainee` once the run directory is recorded;
    `finish(fv, trainee, state, chief)` returns the results (after any last evaluation or export).
    `advice(fv)`: how to go on after a divergence (e.g. 'rerun with a lower --lr_max')."""

    name: str
    flags: Sequence[cli.FlagSpec]
    preset_names: Sequence[str]
    preset: Callable[[str, Any], Mapping[str, Any]]
    identity: Sequence[str]
    check: Callable[[Any, tf.distribute.Strategy], tuple[dict[str, Any], Any]]
    build: Callable[[Any, Any, tf.distribute.Strategy], Trainee]
    finish: Callable[[Any, Trainee, dict[str, Any], bool], dict[str, Any]]
    advice: Callable[[Any], str]
    epochs: Callable[[Any], int] = lambda fv: fv.epochs
    max_rollbacks: Callable[[Any], int] = lambda fv: 0
    keep_checkpoints: Callable[[Any], int] = lambda fv: 2
    strategy: Callable[[Any], tf.distribute.Strategy] = \
        lambda fv: get_strategy(multi_worker=True)
    owned: Sequence[str] = ()


def define_flags(task: FinalTask, fv: Any) -> None:
    """`--config` (the task's presets), the task's flags and `RUN_FLAGS`."""
    cli.define_flags([("config", "", f"Preset: {', '.join(task.preset_names)} ('' = none).",
                       ["", *task.preset_names]), *task.flags, *RUN_FLAGS], fv)


def apply_config(task: FinalTask, fv: Any) -> None:
    """Layers `--config`'s preset under the flags given explicitly."""
    if fv.config:
        cli.apply_preset(fv, task.preset(fv.config, fv))


def run(task: FinalTask, fv: Any,
        strategy: tf.distribute.Strategy | None = None) -> dict[str, Any]:
    """Runs (or resumes) the training for settings `fv` (parsed flags, with the preset applied,
    or any object with the flags as attributes); returns the results (also in results.json)."""
    if not fv.output_dir:
        raise NaoError("--output_dir is required (where checkpoints and results go)")
    strategy = strategy or task.strategy(fv)  # first: a multi-worker one precedes every op
    chief = is_chief(strategy)
    settings, data = task.check(fv, strategy)
    prepare_run_dir(RunDir(fv.output_dir, task.identity, owned=(*OWNED_PATHS, *task.owned)),
                    settings, fv.overwrite, strategy)
    trainee = task.build(fv, data, strategy)
    try:
        state = train_epochs(trainee, fv.output_dir, strategy, task.epochs(fv),
                             keep_checkpoints=task.keep_checkpoints(fv),
                             max_rollbacks=task.max_rollbacks(fv))
    except Diverged as err:
        raise NaoError(f"{err}; {task.advice(fv)}: it resumes from the last good checkpoint "
                       f"in {os.path.join(fv.output_dir, 'checkpoints')}") from None
    results = {**task.finish(fv, trainee, state, chief), "finished": True,
               "epochs": state["epoch"], "rollbacks": state["rollbacks"],
               "train_seconds": state["train_seconds"],
               "resumed_from_epoch": state["resumed_from_epoch"], "history": state["history"]}
    if chief:
        atomic_write_json(os.path.join(fv.output_dir, RESULTS_FILE), results)
    return results


def main(task: FinalTask) -> None:
    """The command line of `task`'s final training: defines the flags and runs."""
    from absl import flags

    define_flags(task, flags.FLAGS)

    def command(_: Sequence[str]) -> None:
        apply_config(task, flags.FLAGS)
        run(task, flags.FLAGS)

    cli.run(command)
