"""The command "NAO with weight sharing" (NAO-WS), for any task: a `Task` supplies its space, its
supernet, its config and presets; this module supplies the rest.

    flags  = the task's config (supernet, data, controller architecture, seed)
           + WeightSharingConfig (seed pool, symmetry) + the search loop's
             (`search_command.SearchLoopConfig`: run directory, pool, generation, controller)
    run    = validate flags and data -> check the run directory -> (--overwrite deletes) ->
             record the settings -> build the supernet -> rounds of (train the supernet,
             score the pool, train the controller, generate), best_arch.json

The supernet (`evaluators.WeightSharingEvaluator`) owns the number of rounds: the pool is
scored every `eval_every_epochs` supernet epochs and at the end. Writes into --output_dir: the
settings record, state.json and history.jsonl (the search, resumable), pool.<i>.txt/.perf,
best_arch.json/.png/.dot, controller/, tensorboard/, and the supernet's files. Killed at
any moment, the same command resumes: finished supernet epochs, scores and controller rounds are
not redone. With a TF_CONFIG naming several workers the same command on each trains and scores
the supernet across all of them; the chief runs the search and writes every file.
"""

import dataclasses
import os

import tensorflow as tf
from absl import flags

from nao_tf.algorithm.search import NAOSearch, SearchConfig, SearchResult, check_resumable
from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.commands import cli, search_command
from nao_tf.commands.run_dir import RunDir, prepare_run_dir
from nao_tf.commands.task import Task, identity
from nao_tf.common.errors import InvalidArchitectureError, NaoError
from nao_tf.common.io import read_lines
from nao_tf.runtime.chief_driven import ChiefDrivenEvaluator, follow_chief
from nao_tf.runtime.distribute import is_chief, multi_worker_strategy

COMMAND = "ws"


@dataclasses.dataclass(frozen=True)
class WeightSharingConfig:
    """The command's own flags; the search loop's are `search_command.SearchLoopConfig`."""

    arch_pool: str = cli.option("", "File of seed architectures (one per line, the original's "
                                "arch_pool) instead of random ones.")
    symmetry: bool = cli.option(True, "Augment the controller's data with the space's "
                                "equivalent rewrites (a CNN node's two branches swapped).")


COMMON_FLAG_NAMES = search_command.LOOP_NAMES | {
    f.name for f in cli.Flags(WeightSharingConfig).fields()}


def flag_groups(task: Task) -> list[cli.FlagGroup]:
    """`--config` (the task's presets), the task's config, `WeightSharingConfig` and the
    loop's."""
    return search_command.flag_groups(task, COMMAND, WeightSharingConfig)


def define_flags(task: Task, fv: flags.FlagValues = flags.FLAGS) -> None:
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


def search_config(task: Task, fv: flags.FlagValues, iterations: int) -> SearchConfig:
    """The outer loop of parsed flags `fv` (`iterations`: the supernet's rounds)."""
    loop = search_command.loop_config(fv)
    return SearchConfig(**{
        "seed_archs": loop.seed_archs, "iterations": iterations, "top_k": loop.top_k,
        "new_archs": loop.new_archs, "random_archs": loop.random_archs,
        "max_lambda": loop.max_lambda, "lambda_step": loop.lambda_step,
        "controller_epochs": loop.controller_epochs, "train_on": "pool", "symmetry": fv.symmetry,
        "seed": fv.seed, **task.search_options, **loop.options.split()[1]})


def run(task: Task, fv: flags.FlagValues) -> SearchResult | None:
    """Runs (or resumes) the search for parsed flags `fv`; returns the `SearchResult` (None on a
    worker other than the chief of a multi-worker job, which only follows the chief's supernet
    calls: `nao_tf.runtime.chief_driven`)."""
    group = task.require(COMMAND)
    task.apply_preset(COMMAND, fv)
    check_flags(fv)
    workers = multi_worker_strategy()  # first: it must precede every other TensorFlow op
    chief = workers is None or is_chief(workers)
    config = cli.parse(group, fv)
    settings, data = task.check(COMMAND, config)
    keys = identity(group, settings)
    settings.update(search_command.loop_settings(fv, COMMON_FLAG_NAMES))
    space = search_command.budgeted_space(task, COMMAND, config,
                                          search_command.chosen_space(task, COMMAND, fv), fv)
    seed_pool = read_seed_pool(fv.arch_pool, space) if fv.arch_pool else None
    controller = search_command.controller_config(task, COMMAND, config, space, fv)
    if not fv.overwrite:  # the rounds come from the supernet, made once the directory is ready
        check_resumable(fv.output_dir, space, search_config(task, fv, 0), controller,
                        unknown=("search.iterations",))
    prepare_run_dir(RunDir(fv.output_dir, keys, task.settings_file), settings, fv.overwrite,
                    workers or tf.distribute.get_strategy())

    evaluator = task.supernet(config, data, fv.output_dir)
    if not chief:
        follow_chief(evaluator, space, workers)
        cli.say("the chief's search is done")
        return None
    if workers:
        evaluator = ChiefDrivenEvaluator(evaluator, space, workers)
    search = NAOSearch(space, evaluator, search_config(task, fv, evaluator.iterations),
                       controller, fv.output_dir, seed_pool=seed_pool, log=cli.say,
                       graphs=task.graphs)
    result = search.run()
    if workers:
        evaluator.done()
    best_path = os.path.join(fv.output_dir, "best_arch.json")
    final = task.final_command_after(fv.config)
    cli.say(f"best architecture ({task.score_name} {result.best_score:.6g} on the supernet):\n"
            f"{space.describe(result.best_arch)}\ntop {len(result.top)}:\n"
            + "\n".join(f"  {score:.6g}  {space.to_string(a)}" for a, score in result.top)
            + f"\nwritten to {best_path}"
            + (f"; train the best with: {final} --arch={best_path}"
               if final else ""))
    return result


def main(task: Task) -> None:
    """The command line of `task`'s search: defines the flags and runs."""
    cli.run(lambda _: run(task, flags.FLAGS), define=lambda: define_flags(task))
