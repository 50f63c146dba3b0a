"""The command "NAO with weight sharing" (NAO-WS), for any task: a task supplies its space, its
supernet evaluator, its flags and presets (`WeightSharingTask`); this module supplies the rest.

    flags  = the task's flags (supernet, data, controller architecture, seed)
           + WeightSharingConfig (seed pool, symmetry) + the search loop's
             (`search_command.SearchLoopConfig`: run directory, pool, generation, controller)
    run    = validate flags and data -> check the run directory -> (--overwrite deletes) ->
             record the settings -> build the supernet evaluator -> rounds of (train the supernet,
             score the pool, train the controller, generate), best_arch.json

The evaluator (`evaluators.WeightSharingEvaluator`) owns the number of rounds: the pool is
scored every `eval_every_epochs` supernet epochs and at the end. Writes into --output_dir: the
settings record, state.json and history.jsonl (the search, resumable), pool.<i>.txt/.perf,
best_arch.json/.png/.dot, controller/, tensorboard/, and the evaluator's supernet files. Killed at
any moment, the same command resumes: finished supernet epochs, scores and controller rounds are
not redone. With a TF_CONFIG naming several workers the same command on each trains and scores
the supernet across all of them; the chief runs the search and writes every file.
"""

import dataclasses
import os
from typing import Any, Callable, Mapping, Sequence

import tensorflow as tf
from absl import flags

from nao_tf.algorithm.controller import ControllerConfig
from nao_tf.algorithm.evaluators import WeightSharingEvaluator
from nao_tf.algorithm.search import NAOSearch, SearchConfig, SearchResult, check_resumable
from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.commands import cli, search_command
from nao_tf.commands.run_dir import RunDir, prepare_run_dir
from nao_tf.common.errors import InvalidArchitectureError, NaoError
from nao_tf.common.io import read_lines
from nao_tf.runtime.chief_driven import ChiefDrivenEvaluator, follow_chief
from nao_tf.runtime.distribute import is_chief, multi_worker_strategy

@dataclasses.dataclass(frozen=True)
class WeightSharingConfig:
    """The command's own flags; the search loop's are `search_command.SearchLoopConfig`."""

    arch_pool: str = cli.option("", "File of seed architectures (one per line, the original's "
                                "arch_pool) instead of random ones.")
    symmetry: bool = cli.option(True, "Augment the controller's data with the space's "
                                "equivalent rewrites (a CNN node's two branches swapped).")


COMMON_FLAG_NAMES = search_command.LOOP_NAMES | {
    f.name for f in cli.Flags(WeightSharingConfig).fields()}


@dataclasses.dataclass(frozen=True)
class WeightSharingTask:
    """A task's part of the search (see the module docstring).

    `check(fv)` validates the task's flags and data without writing anything and returns the
    settings record and the loaded data; `identity` names the record's keys a rerun must keep.
    `evaluator(fv, data)` builds the supernet evaluator once the run directory is recorded.
    `controller(fv)`: the `ControllerConfig` fields of the task's original controller;
    `search`: `SearchConfig` fields the task fixes (e.g. the target normalisation)."""

    name: str
    space: SearchSpace
    flags: Sequence[cli.FlagGroup]
    presets: Mapping[str, Mapping[str, Any]]
    identity: Sequence[str]
    check: Callable[[flags.FlagValues], tuple[dict[str, Any], Any]]
    evaluator: Callable[[flags.FlagValues, Any], WeightSharingEvaluator]
    controller: Callable[[flags.FlagValues], dict[str, Any]]
    score_name: str
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    search: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    settings_file: str = "search_settings.json"
    graphs: Callable | None = None
    final_command: str = ""

    def __post_init__(self):
        for preset in self.presets.values():
            cli.check_preset(preset, *flag_groups(self))


def flag_groups(task: WeightSharingTask) -> list[cli.FlagGroup]:
    """`--config` (the task's presets), the task's flags, `WeightSharingConfig` and the loop's."""
    return search_command.flag_groups(task.presets, task.flags, WeightSharingConfig,
                                      task.defaults)


def define_flags(task: WeightSharingTask, fv: flags.FlagValues = flags.FLAGS) -> None:
    cli.define_flags(flag_groups(task), fv)


def check_flags(fv: flags.FlagValues) -> None:
    """The search's flags; stops with one line on one that cannot work."""
    search_command.check_loop_flags(fv)
    if fv.top_k > fv.seed_archs:
        raise NaoError(f"--top_k={fv.top_k} exceeds the pool size --seed_archs={fv.seed_archs}")


def read_seed_pool(path: str, space: SearchSpace) -> list:
    """The architectures of `--arch_pool`, one per line (the original's arch_pool file)."""
    archs = []
    for lineno, text in read_lines(path):
        try:
            archs.append(space.parse(text))
        except InvalidArchitectureError as err:
            raise NaoError(f"{path}:{lineno}: {err}") from None
    if not archs:
        raise NaoError(f"{path}: no architectures; one per line")
    return archs


def search_config(task: WeightSharingTask, fv: flags.FlagValues,
                  iterations: int) -> SearchConfig:
    """The outer loop of parsed flags `fv` (`iterations`: the evaluator's rounds)."""
    loop = search_command.loop_config(fv)
    return SearchConfig(**{
        "seed_archs": loop.seed_archs, "iterations": iterations, "top_k": loop.top_k,
        "new_archs": loop.new_archs, "random_archs": loop.random_archs,
        "max_lambda": loop.max_lambda, "lambda_step": loop.lambda_step,
        "controller_epochs": loop.controller_epochs, "train_on": "pool", "symmetry": fv.symmetry,
        "seed": fv.seed, **task.search, **loop.options.split()[1]})


def controller_config(task: WeightSharingTask, fv: flags.FlagValues) -> ControllerConfig:
    """The task's controller, with the batch, seed and options of parsed flags `fv`."""
    loop = search_command.loop_config(fv)
    return ControllerConfig.for_space(
        task.space, **{**task.controller(fv), "batch_size": loop.controller_batch_size,
                       "seed": fv.seed, **loop.options.split()[0]})


def run(task: WeightSharingTask, fv: flags.FlagValues) -> SearchResult | None:
    """Runs (or resumes) the search for parsed flags `fv`; returns the `SearchResult` (None on a
    worker other than the chief of a multi-worker job, which only follows the chief's supernet
    calls: `nao_tf.runtime.chief_driven`)."""
    search_command.apply_config(task.presets, fv)
    check_flags(fv)
    workers = multi_worker_strategy()  # first: it must precede every other TensorFlow op
    chief = workers is None or is_chief(workers)
    settings, data = task.check(fv)
    seed_pool = read_seed_pool(fv.arch_pool, task.space) if fv.arch_pool else None
    if not fv.overwrite:  # the rounds come from the evaluator, made once the directory is ready
        check_resumable(fv.output_dir, task.space, search_config(task, fv, 0),
                        controller_config(task, fv), unknown=("search.iterations",))
    prepare_run_dir(RunDir(fv.output_dir, task.identity, task.settings_file), settings,
                    fv.overwrite, workers or tf.distribute.get_strategy())

    evaluator = task.evaluator(fv, data)
    if not chief:
        follow_chief(evaluator, task.space, workers)
        cli.say("the chief's search is done")
        return None
    if workers:
        evaluator = ChiefDrivenEvaluator(evaluator, task.space, workers)
    search = NAOSearch(task.space, evaluator, search_config(task, fv, evaluator.iterations),
                       controller_config(task, fv), fv.output_dir, seed_pool=seed_pool,
                       log=cli.say, graphs=task.graphs)
    result = search.run()
    if workers:
        evaluator.done()
    best_path = os.path.join(fv.output_dir, "best_arch.json")
    cli.say(f"best architecture ({task.score_name} {result.best_score:.6g} on the supernet):\n"
            f"{task.space.describe(result.best_arch)}\ntop {len(result.top)}:\n"
            + "\n".join(f"  {score:.6g}  {task.space.to_string(a)}" for a, score in result.top)
            + f"\nwritten to {best_path}"
            + (f"; train the best with: {task.final_command} --arch={best_path}"
               if task.final_command else ""))
    return result


def main(task: WeightSharingTask) -> None:
    """The command line of `task`'s search: defines the flags and runs."""
    define_flags(task)
    cli.run(lambda _: run(task, flags.FLAGS))
