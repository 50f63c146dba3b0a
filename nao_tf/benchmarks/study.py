"""The comparison of search methods on a table: every method for a range of seeds, the pick of
each by the search metric, mean ranks, the paired test against evolution, and a progress file so
a killed study resumes; NAO's seeds optionally in several processes."""

import ctypes
import dataclasses
import os
import signal
import sys
import tempfile
import time
from typing import Callable, Sequence

import numpy as np

from nao_tf.algorithm.costs import Budget, BudgetedSpace
from nao_tf.algorithm.evaluators import Arch
from nao_tf.algorithm.metrics import paired_t_test
from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.benchmarks.baselines import random_search, regularized_evolution
from nao_tf.benchmarks.nao_on_table import NaoSettings, nao_search
from nao_tf.benchmarks.table import QueryCounter, Table
from nao_tf.common import io
from nao_tf.common.errors import DataError
from nao_tf.common.resume import check_identity
from nao_tf.runtime import startup


def run_methods(space: SearchSpace, table: Table, search_metric: str, report_metric: str,
                budget: int, seeds: int, methods: Sequence[str], settings: NaoSettings,
                log: Callable[[str], None] = print, first_seed: int = 0, workers: int = 1,
                progress: str | None = None) -> dict:
    """Runs every method for seeds first_seed, ..., first_seed + seeds - 1; each picks its best
    query by `search_metric`. With evolution among the methods, every other method is compared
    with it seed by seed (`paired_t_test`). `workers` > 1 runs NAO's seeds in that many
    processes (one core each); the results do not depend on it. `progress`: a file that keeps
    every finished (method, seed) run, so a killed study resumes without redoing one."""
    table.check_column(search_metric)
    table.check_column(report_metric)
    limits = space.budget.limits if isinstance(space, BudgetedSpace) else {}
    results: dict = {"space": space.name, "budget": budget, "search_metric": search_metric, "report_metric": report_metric,
                     "cost_limits": limits, "table_best": table.best(report_metric, space.allowed),
                     "first_seed": first_seed, "settings": dataclasses.asdict(settings),
                     "methods": {}}
    identity = {k: results[k] for k in ("space", "budget", "search_metric", "settings",
                                        "cost_limits")}
    identity["table"] = os.path.abspath(table.path)
    done = _read_progress(progress, identity) if progress else {}
    seed_range = range(first_seed, first_seed + seeds)
    for method in methods:
        todo = [seed for seed in seed_range if f"{method} {seed}" not in done]
        for seed in seed_range:
            if seed not in todo:
                log(f"{method:>9} seed {seed:2d}: {done[f'{method} {seed}']['report_score']:.3f} "
                    f"(finished by an earlier run, {progress})")
        if method == "nao" and workers > 1:
            queried_runs = _nao_in_processes(space, table, search_metric, budget, todo,
                                             settings, workers)
        else:
            queried_runs = (_queries(method, space, table, search_metric, budget, seed, settings)
                            for seed in todo)
        for seed, (queried, seconds) in zip(todo, queried_runs):
            picked = max(queried, key=lambda a: table.metric(a, search_metric))
            run = dict(seed=seed, queries=len(set(queried)), arch=space.to_string(picked),
                       index=table.index[picked], search_score=table.metric(picked, search_metric),
                       report_score=table.metric(picked, report_metric), seconds=round(seconds, 2),
                       **(space.costs(picked) if limits else {}))
            done[f"{method} {seed}"] = run
            if progress:
                io.atomic_write_json(progress, dict(identity=identity, runs=done))
            log(f"{method:>9} seed {seed:2d}: {run['report_score']:.3f} "
                f"({run['queries']} queries, {run['seconds']:.1f}s)")
        runs = [done[f"{method} {seed}"] for seed in seed_range]
        reported = np.array([r["report_score"] for r in runs])
        results["methods"][method] = dict(
            mean=float(reported.mean()), std=float(reported.std()),
            standard_error=float(reported.std(ddof=1) / np.sqrt(len(reported))) if seeds > 1 else 0.0,
            runs=runs)
    _add_mean_ranks(results, seeds)
    if "evolution" in methods and seeds > 1:
        evolution = [r["report_score"] for r in results["methods"]["evolution"]["runs"]]
        results["paired_vs_evolution"] = {
            m: paired_t_test([r["report_score"] for r in results["methods"][m]["runs"]], evolution)
            for m in methods if m != "evolution"}
    return results


def _read_progress(path: str, identity: dict) -> dict[str, dict]:
    """The finished runs of `path` ({"<method> <seed>": run}); refuses another study's file."""
    if not os.path.exists(path):
        return {}
    saved = io.read_json(path)
    if not isinstance(saved, dict) or "identity" not in saved or "runs" not in saved:
        raise DataError(f"{path} is not a study's progress file; move it away")
    check_identity(saved["identity"], identity, identity, f"{path} holds a study")
    return saved["runs"]


def _queries(method: str, space: SearchSpace, table: Table, column: str, budget: int,
             seed: int, settings: NaoSettings) -> tuple[list[Arch], float]:
    """(the architectures `method` queried with `seed`, in order; the seconds it took)."""
    started = time.monotonic()
    if method == "nao":
        with tempfile.TemporaryDirectory() as work_dir:
            queried = nao_search(space, table, column, budget, seed, settings, work_dir)
    else:
        query = QueryCounter(table, column, budget)
        search = random_search if method == "random" else regularized_evolution
        search(space, query, np.random.default_rng(seed))
        queried = list(query.queried)
    return queried, time.monotonic() - started


_worker: tuple[SearchSpace, Table] | None = None


def _start_worker(space: SearchSpace, table_path: str, parent: int) -> None:
    """Process-pool initializer: on Linux the kernel kills the worker when its parent dies
    (PR_SET_PDEATHSIG), so a killed study leaves no process computing; one intra-op thread (the
    controller's batch slices still run side by side on the inter-op threads), TensorFlow's
    start-up lines held back, and the table, read once per process."""
    global _worker
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the watch was set
            os._exit(1)
    startup.import_tensorflow()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    with startup.held_back():  # the device search's lines ("failed call to cuInit")
        tf.config.list_physical_devices()
    _worker = space, Table(table_path, space)


def _nao_in_worker(column: str, budget: int, seed: int,
                   settings: NaoSettings) -> tuple[list[str], float]:
    space, table = _worker
    queried, seconds = _queries("nao", space, table, column, budget, seed, settings)
    return [space.to_string(a) for a in queried], seconds


def _nao_in_processes(space: SearchSpace, table: Table, column: str, budget: int,
                      seeds: Sequence[int], settings: NaoSettings, workers: int):
    """NAO's (queried, seconds) per seed, in seed order, computed by `workers` processes."""
    import concurrent.futures
    import multiprocessing

    with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
            initargs=(space, table.path, os.getpid())) as pool:
        futures = [pool.submit(_nao_in_worker, column, budget, seed, settings) for seed in seeds]
        for future in futures:
            queried, seconds = future.result()
            yield [space.parse(a) for a in queried], seconds


def _add_mean_ranks(results: dict, seeds: int) -> None:
    """Per seed, ranks the methods by reported score (1 = best, ties share the mean rank)."""
    methods = list(results["methods"])
    ranks = np.zeros([seeds, len(methods)])
    for s in range(seeds):
        scores = np.array([results["methods"][m]["runs"][s]["report_score"] for m in methods])
        for k, value in enumerate(scores):
            ranks[s, k] = 1 + (scores > value).sum() + ((scores == value).sum() - 1) / 2
    for k, m in enumerate(methods):
        results["methods"][m]["mean_rank"] = float(ranks[:, k].mean())


def _within(results: dict) -> str:
    limits = results.get("cost_limits")
    return f" (of the cells with {Budget.from_limits(limits).describe()})" if limits else ""


def format_table(results: dict) -> str:
    lines = [f"{'method':>10}  {results['report_metric']} (mean +- std, s.e.)  mean rank",
             *(f"{m:>10}  {r['mean']:8.3f} +- {r['std']:.3f}, {r['standard_error']:.3f}     "
               f"{r['mean_rank']:.2f}" for m, r in results["methods"].items()),
             f"{'table best':>10}  {results['table_best']:8.3f}" + _within(results)]
    for method, test in results.get("paired_vs_evolution", {}).items():
        lines.append(f"{method} - evolution: {test['mean_difference']:+.3f} (s.e. "
                     f"{test['standard_error']:.3f}, paired t-test p = {test['p_value']:.3g}; "
                     f"{test['wins']} wins, {test['losses']} losses, {test['ties']} ties)")
    return "\n".join(lines)
