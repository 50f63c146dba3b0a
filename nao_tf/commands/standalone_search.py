"""The command "NAO without weight sharing", for any task: a `Task` supplies its space, how each
candidate trains, its config and presets; this module supplies the rest.

    flags  = the task's config (per-architecture schedule, data, seed, --on_diverge, imports)
           + StandaloneConfig (devices, imports, rounds) + the search loop's
             (`search_command.SearchLoopConfig`: run directory, pool, generation, controller)
    run    = validate flags and data -> check the run directory -> (--overwrite deletes) ->
             record the settings -> train the pool, controller rounds, write best_arch.json

Writes into --output_dir: train_settings.json (the per-architecture settings; a rerun resumes only
with the same identity settings), state.json and history.jsonl (the search, resumable),
pool.<i>.txt/.perf, best_arch.json/.png/.dot, controller/, tensorboard/, and archs/<hash>/ per
architecture (its training's own files, then score.json). Killed at any moment, the same command
resumes: an architecture whose score was recorded is never trained again.
"""

import dataclasses
import importlib
import os
from typing import Any, Callable, Mapping

from absl import flags

from nao_tf.algorithm.search import NAOSearch, SearchConfig, SearchResult, check_resumable
from nao_tf.commands import cli, search_command
from nao_tf.commands.run_dir import RunDir
from nao_tf.commands.task import Task, identity
from nao_tf.common.errors import NaoError
from nao_tf.runtime import ray_executor
from nao_tf.runtime.standalone import Arch, ArchDirs, StandaloneEvaluator, TrainFn, parse_devices

COMMAND = "nao"
SETTINGS_FILE = "train_settings.json"


@dataclasses.dataclass(frozen=True)
class StandaloneConfig:
    """The command's own flags; the search loop's are `search_command.SearchLoopConfig`, with the
    original's defaults for NAO without weight sharing (`DEFAULTS`)."""

    executor: str = cli.option("threads", "How candidates train: 'threads', one per --devices "
                               "entry on this machine; 'ray', one Ray task per candidate anywhere "
                               "in the cluster of --ray_address.", ["threads", "ray"])
    devices: str = cli.option("", "--executor=threads: comma-separated devices, one architecture "
                              "training on each at a time (default: every visible GPU, else the "
                              "CPU).")
    ray_address: str = cli.option("", "--executor=ray: the cluster to join ('auto', or host:port "
                                  "of `ray start --head`); '' starts Ray on this machine.")
    cpus_per_candidate: int = cli.option(1, "--executor=ray: CPUs each candidate holds (on a "
                                         "cluster with GPUs it also holds one GPU).", minimum=1)
    import_archs: str = cli.option("", "File of already-trained architectures, one per line.")
    import_scores: str = cli.option("", "Their scores, one per line, in the same order.")
    iterations: int = cli.option(2, "Controller rounds; the pool is trained iterations + 1 "
                                 "times.", minimum=0)


DEFAULTS = dict(new_archs=300, random_archs=0, max_lambda=30.0, lambda_step=10.0,
                controller_batch_size=50)


def flag_groups(task: Task) -> list[cli.FlagGroup]:
    """`--config` (the task's presets), `--space` (when the task offers several), the task's
    config, `StandaloneConfig` and the loop's."""
    return search_command.flag_groups(task, COMMAND, StandaloneConfig, DEFAULTS)


def define_flags(task: Task, fv: flags.FlagValues = flags.FLAGS) -> None:
    cli.define_flags(flag_groups(task), fv)


def check_flags(fv: flags.FlagValues) -> None:
    """The search's flags; stops with one line on one that cannot work."""
    search_command.check_loop_flags(fv)
    if bool(fv.import_archs) != bool(fv.import_scores):
        raise NaoError("--import_archs and --import_scores go together: one file of "
                       "architectures, one of their scores")
    if fv.executor == "ray":
        ray_executor.require_ray()
        ray_executor.check_reachable(fv.ray_address)
        if fv.devices:
            raise NaoError("--devices chooses the devices of --executor=threads; with "
                           "--executor=ray the Ray cluster places each candidate")


def run(task: Task, fv: flags.FlagValues) -> SearchResult:
    """Runs (or resumes) the search for parsed flags `fv`; returns the `SearchResult`."""
    group = task.require(COMMAND)
    task.apply_preset(COMMAND, fv)
    check_flags(fv)
    config = cli.parse(group, fv)
    settings, data = task.check(COMMAND, config)
    space = search_command.budgeted_space(task, COMMAND, config,
                                          search_command.chosen_space(task, COMMAND, fv), fv)
    imported = (task.read_imports(config, space, fv.import_archs, fv.import_scores)
                if fv.import_archs else [])
    if fv.executor == "ray" and not task.ref:
        raise NaoError(f"task {task.name} cannot run on Ray: it names no `ref` (the "
                       "'module:attribute' of the task, which each Ray worker imports)")
    devices = parse_devices(fv.devices) if fv.executor == "threads" else []
    loop = search_command.loop_config(fv)
    search_config = SearchConfig(
        seed_archs=loop.seed_archs, iterations=fv.iterations, top_k=loop.top_k,
        new_archs=loop.new_archs, random_archs=loop.random_archs, max_lambda=loop.max_lambda,
        lambda_step=loop.lambda_step, controller_epochs=loop.controller_epochs,
        train_on="history", symmetry=False, seed=fv.seed, **loop.options.split()[1])
    controller = search_command.controller_config(task, COMMAND, config, space, fv)
    if not fv.overwrite:
        check_resumable(fv.output_dir, space, search_config, controller)
    RunDir(fv.output_dir, identity(group, settings), SETTINGS_FILE).prepare(settings,
                                                                             fv.overwrite)

    dirs = ArchDirs(os.path.join(fv.output_dir, "archs"), space.to_string, scratch=task.scratch)
    candidates = task.candidates(config, settings, data, dirs, fv.output_dir)
    where = f"devices: {', '.join(devices)}" if devices else \
        f"Ray cluster: {fv.ray_address or 'started on this machine'}"
    cli.say(f"NAO (no weight sharing), {task.name}: {candidates.summary}; {where}")
    common = dict(higher_is_better=task.higher_is_better, dirs=dirs,
                  failed_score=candidates.failed_score, to_string=space.to_string, log=cli.say)
    if devices:
        evaluator = StandaloneEvaluator(candidates.train, devices=devices, **common)
    else:
        values = {name: fv[name].value for name in fv}
        job = ray_executor.CandidateJob(rebuild, (task.ref, values), str(dirs.root),
                                        fv.cpus_per_candidate)
        evaluator = ray_executor.RayEvaluator(job, fv.ray_address, **common)
    search = NAOSearch(space, evaluator, search_config, controller, fv.output_dir, log=cli.say,
                       save_every_seconds=0.0, imported=imported or None, graphs=task.graphs)
    result = search.run()
    final = task.final_command_after(fv.config)
    cli.say(f"best architecture ({task.score_name} {result.best_score:.6g}, {result.evaluated} "
            f"trained or imported):\n{space.describe(result.best_arch)}\n"
            f"written to {os.path.join(fv.output_dir, 'best_arch.json')}"
            + (f"; train it with {final} --arch=<that file>"
               if final else ""))
    return result


def rebuild(task_ref: str, values: Mapping[str, Any]) -> tuple[Callable[[str], Arch], TrainFn]:
    """In another process (a Ray worker): the task `task_ref` ('module:attribute') set up with
    the driver's flag `values`; returns (parse an architecture's text, train)."""
    module, _, attribute = task_ref.partition(":")
    task = getattr(importlib.import_module(module), attribute)
    fv = flags.FlagValues()
    define_flags(task, fv)
    fv.mark_as_parsed()
    for name in fv:
        if name in values:
            fv[name].value = values[name]
    config = cli.parse(task.configs[COMMAND], fv)
    settings, data = task.check(COMMAND, config)
    space = search_command.chosen_space(task, COMMAND, fv)
    dirs = ArchDirs(os.path.join(fv.output_dir, "archs"), space.to_string, scratch=task.scratch)
    return space.parse, task.candidates(config, settings, data, dirs, fv.output_dir).train


def main(task: Task) -> None:
    """The command line of `task`'s search: defines the flags and runs."""
    cli.run(lambda _: run(task, flags.FLAGS), define=lambda: define_flags(task))
