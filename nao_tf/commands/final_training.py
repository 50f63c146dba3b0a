"""The command "train one architecture", for any task: a `Task` supplies its config, presets, data
and a `Trainee` (one architecture's training, one epoch at a time); this module supplies the rest,
around `nao_tf.runtime.train_loop.train_epochs`.

    run  = --config preset -> the task's checks and data (nothing written yet) -> strategy ->
           check the run directory (--overwrite deletes) -> record the settings -> build the
           trainee -> epochs, each one checkpointed and recorded (a diverged epoch rolls back to
           the last checkpoint) -> the task's results -> results.json

The run directory: flags.json (the settings; a rerun resumes only with the same identity
settings), what `train_epochs` keeps, results.json, and the task's own files. Killed at any
moment, the same command resumes after the last finished epoch. Only the chief writes.
"""

import dataclasses
import os
from typing import Any, Sequence

import tensorflow as tf
from absl import flags

from nao_tf.commands import cli
from nao_tf.commands.run_dir import RunDir, prepare_run_dir
from nao_tf.commands.task import Task, identity
from nao_tf.common.errors import NaoError
from nao_tf.common.io import atomic_write_json
from nao_tf.runtime.distribute import is_chief
from nao_tf.runtime.train_loop import STATE_FILE, Diverged, train_epochs

COMMAND = "final"
RESULTS_FILE = "results.json"
# What --overwrite deletes: the command's files; a task adds its own (`Task.owned`).
OWNED_PATHS = ("checkpoints", "tensorboard", STATE_FILE, RESULTS_FILE, "flags.json")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The command's own flags."""

    output_dir: str = cli.option("", "Run directory (re-running the same command resumes).",
                                 required=True)
    overwrite: bool = cli.option(False, "Delete this run's previous files in --output_dir first "
                                 "and start again (only once every other check has passed).")


def flag_groups(task: Task) -> list[cli.FlagGroup]:
    """`--config` (the task's presets), the task's config and `RunConfig`; the task's presets
    are checked against them (a `ValueError` before any flag is defined)."""
    presets = task.presets.get(COMMAND, {})
    groups = [cli.Flags(cli.PresetChoice, choices={"config": ["", *presets]}),
              task.require(COMMAND), RunConfig]
    for preset in presets.values():
        cli.check_preset(preset, *groups)
    return groups


def define_flags(task: Task, fv: flags.FlagValues) -> None:
    cli.define_flags(flag_groups(task), fv)


def apply_config(task: Task, fv: flags.FlagValues) -> None:
    """Layers `--config`'s preset under the flags given explicitly."""
    task.apply_preset(COMMAND, fv)


def run(task: Task, fv: Any, strategy: tf.distribute.Strategy | None = None) -> dict[str, Any]:
    """Runs (or resumes) the training for settings `fv` (parsed flags, with the preset applied,
    or the task's config with `output_dir` and `overwrite` fields); returns the results (also in
    results.json)."""
    group = task.require(COMMAND)
    config = cli.parse(group, fv)
    strategy = strategy or task.strategy(config)  # first: a multi-worker one precedes every op
    chief = is_chief(strategy)
    settings, data = task.check(COMMAND, config, strategy)
    keys = identity(group, settings)
    settings.update({"config": getattr(fv, "config", ""), "output_dir": fv.output_dir})
    prepare_run_dir(RunDir(fv.output_dir, keys, owned=(*OWNED_PATHS, *task.owned)),
                    settings, fv.overwrite, strategy)
    trainee = task.trainee(config, data, strategy)
    try:
        state = train_epochs(trainee, fv.output_dir, strategy, **task.epochs(config))
    except Diverged as err:
        raise NaoError(f"{err}; {task.advice}: it resumes from the last good checkpoint "
                       f"in {os.path.join(fv.output_dir, 'checkpoints')}") from None
    results = {**task.results(config, trainee, state, chief, fv.output_dir), "finished": True,
               "epochs": state["epoch"], "rollbacks": state["rollbacks"],
               "train_seconds": state["train_seconds"],
               "resumed_from_epoch": state["resumed_from_epoch"], "history": state["history"]}
    if chief:
        atomic_write_json(os.path.join(fv.output_dir, RESULTS_FILE), results)
    return results


def main(task: Task) -> None:
    """The command line of `task`'s final training: defines the flags and runs."""

    def command(_: Sequence[str]) -> None:
        apply_config(task, flags.FLAGS)
        run(task, flags.FLAGS)

    cli.run(command, define=lambda: define_flags(task, flags.FLAGS))
