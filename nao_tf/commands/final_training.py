"""The command "train one architecture", for any task: a task supplies its flags, presets, data and
a `Trainee` (one architecture's training, one epoch at a time; `FinalTask`); this module supplies
the rest, around `nao_tf.runtime.train_loop.train_epochs`.

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
from typing import Any, Callable, Mapping, Sequence

import tensorflow as tf

from nao_tf.commands import cli
from nao_tf.commands.run_dir import RunDir, prepare_run_dir
from nao_tf.common.errors import NaoError
from nao_tf.common.io import atomic_write_json
from nao_tf.runtime.distribute import get_strategy, is_chief
from nao_tf.runtime.train_loop import STATE_FILE, Diverged, Trainee, train_epochs

RESULTS_FILE = "results.json"
# What --overwrite deletes: the skeleton's files; a task adds its own (`FinalTask.owned`).
OWNED_PATHS = ("checkpoints", "tensorboard", STATE_FILE, RESULTS_FILE, "flags.json")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The command's own flags."""

    output_dir: str = cli.option("", "Run directory (required; re-running the same command "
                                 "resumes).")
    overwrite: bool = cli.option(False, "Delete this run's previous files in --output_dir first "
                                 "and start again (only once every other check has passed).")


@dataclasses.dataclass(frozen=True)
class FinalTask:
    """A task's part of the command (see the module docstring).

    `flags`: the task's flags (`RunConfig` and `--config` are added); `presets`: the flag
    defaults of each `--config`, checked here against the flags; `adjust_preset(name, fv)`: what
    changes in preset `name` with other flags (e.g. the dataset).
    `check(fv, strategy)` validates the flags and reads the data without writing anything and
    returns the settings record and the data; `identity` names the record's keys a rerun must
    keep. `build(fv, data, strategy)` returns the `Trainee` once the run directory is recorded;
    `finish(fv, trainee, state, chief)` returns the results (after any last evaluation or export).
    `advice(fv)`: how to go on after a divergence (e.g. 'rerun with a lower --lr_max')."""

    name: str
    flags: Sequence[cli.FlagGroup]
    presets: Mapping[str, Mapping[str, Any]]
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
    adjust_preset: Callable[[str, Any], Mapping[str, Any]] = lambda name, fv: {}

    def __post_init__(self):
        for preset in self.presets.values():
            cli.check_preset(preset, *flag_groups(self))


def flag_groups(task: FinalTask) -> list[cli.FlagGroup]:
    """`--config` (the task's presets), the task's flags and `RunConfig`."""
    return [cli.Flags(cli.PresetChoice, choices={"config": ["", *task.presets]}), *task.flags,
            RunConfig]


def define_flags(task: FinalTask, fv: Any) -> None:
    cli.define_flags(flag_groups(task), fv)


def apply_config(task: FinalTask, fv: Any) -> None:
    """Layers `--config`'s preset under the flags given explicitly."""
    if fv.config:
        cli.apply_preset(fv, {**task.presets[fv.config], **task.adjust_preset(fv.config, fv)})


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
