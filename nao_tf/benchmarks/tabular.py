"""The tabular benchmark command: a table of measured architectures as the evaluator (`table`),
and the methods compared on it (`study`: NAO, random search and regularized evolution), plus the
predictor study of the paper's section 4.1 (`nao_on_table`). Generic over spaces: a space with
`parse` for the table's `arch` column and `mutate` for evolution (both `SearchSpace` methods) is
all a new benchmark needs; `--space` takes a built-in name or `package.module:factory`
(`nao_tf.algorithm.search_space.load_space`).

Usage (a table like `shared/data/nasbench201/nb201_lowfi.csv`):
    python -m nao_tf.benchmarks.tabular --space=nasbench201 --table=nb201.csv \
        --search_metric=cifar10_valid --report_metric=cifar10_test --budget=100 --seeds=20 \
        --methods=nao,random,evolution --output=results.json
    (add --max_params=800k or --max_mult_adds=100M to search among the cells within a budget)
    python -m nao_tf.benchmarks.tabular --mode=predictor --table=nb201.csv \
        --train_archs=100 --test_archs=1000
"""

import dataclasses
import json
import os
import time
from typing import Sequence

import numpy as np
from absl import flags

from nao_tf.algorithm.costs import Budget, BudgetedSpace, parse_count
from nao_tf.algorithm.search import SearchConfig
from nao_tf.algorithm.search_space import load_space
from nao_tf.benchmarks.nao_on_table import NaoSettings, predictor_quality
from nao_tf.benchmarks.study import format_table, run_methods
from nao_tf.benchmarks.table import Table
from nao_tf.commands import cli
from nao_tf.common import io
from nao_tf.common.errors import DataError, NaoError

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """The command's flags besides `NaoSettings`."""

    space: str = cli.option("nasbench201", "The benchmark's search space: a built-in name "
                            "(nasbench201, synthetic) or package.module:factory.")
    mode: str = cli.option("search", "Compare search methods, or measure the predictor.",
                           ["search", "predictor"])
    table: str = cli.option("", "CSV with an 'arch' column (the space's strings) and metric "
                            "columns.")
    search_metric: str = cli.option("cifar10_valid", "Column the methods search on.")
    report_metric: str = cli.option("cifar10_test", "Column reported for the picked "
                                    "architecture.")
    budget: int = cli.option(100, "Distinct architectures each method may query.", minimum=1)
    seeds: int = cli.option(20, "Independent runs per method (predictor mode: draws of the train "
                            "and test cells).", minimum=1)
    first_seed: int = cli.option(0, "Seeds are first_seed, ..., first_seed + seeds - 1 (a study "
                                 "repeated on seeds never used before: e.g. tune on 0-49, report "
                                 "100-149).")
    methods: list = cli.option(["nao", "random", "evolution"], "Any of nao, random, evolution.")
    workers: int = cli.option(1, "Search mode: run NAO's seeds in this many processes (one core "
                              "each; on 2 cores, 2 finish a study in about 0.6x the time).",
                              minimum=1)
    output: str = cli.option("", "Write the results as JSON here. Search mode keeps every "
                             "finished (method, seed) in OUTPUT.progress.json until the end, so "
                             "the same command resumes a killed study without redoing one.")
    max_params: str = cli.option("", "Search mode: every method only proposes cells with at "
                                 "most this many parameters (e.g. 800k, 1.2M; the space's cost "
                                 "model: for nasbench201 its CIFAR-10 network); '' = no limit.")
    max_mult_adds: str = cli.option("", "Search mode: the same for multiply-adds (e.g. 100M).")
    train_archs: int = cli.option(100, "Predictor mode: architectures to train on.")
    test_archs: int = cli.option(1000, "Predictor mode: unseen architectures to rank.")
    epochs: int = cli.option(300, "Predictor mode: controller epochs.")
    controllers: int = cli.option(1, "Predictor mode: an ensemble of this many separate "
                                  "controllers (own encoders), ranking by their mean prediction.",
                                  minimum=1)


def main(argv: Sequence[str]) -> None:
    del argv
    if not FLAGS.table:
        raise DataError("--table is required: the path of the benchmark's CSV")
    unknown = set(FLAGS.methods) - {"nao", "random", "evolution"}
    if unknown:
        raise DataError(f"--methods: unknown {sorted(unknown)}; choose from nao, random, evolution")
    try:
        settings = cli.parse(NaoSettings)
        space = load_space(FLAGS.space)
        settings.controller_config(space, 0)
        SearchConfig(acquisition=settings.acquisition)
    except ValueError as err:
        raise NaoError(f"NAO settings: {err}") from None
    budget = Budget(parse_count(FLAGS.max_params, "max_params"),
                    parse_count(FLAGS.max_mult_adds, "max_mult_adds"))
    if budget.limits:
        if FLAGS.mode != "search":
            raise DataError("--max_params and --max_mult_adds limit the searches; drop them in "
                            "predictor mode")
        space = BudgetedSpace(space, budget)
    table = Table(FLAGS.table, space)
    seeds = range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds)
    if FLAGS.mode == "predictor":
        table.check_column(FLAGS.search_metric)
        runs = []
        for seed in seeds:
            runs.append(predictor_quality(space, table, FLAGS.search_metric, FLAGS.train_archs,
                                          FLAGS.test_archs, FLAGS.epochs, seed=seed, settings=settings,
                                          controllers=FLAGS.controllers))
            print(f"seed {seed:2d}: " + ", ".join(f"{k} {v:.3f}" for k, v in runs[-1].items()), flush=True)
        metrics = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        print("mean: " + json.dumps(metrics))
        if FLAGS.output:
            io.atomic_write_json(FLAGS.output, dict(mean=metrics, runs=runs, first_seed=FLAGS.first_seed,
                                                    settings=dataclasses.asdict(settings)))
        return
    started = time.monotonic()
    progress = f"{FLAGS.output}.progress.json" if FLAGS.output else None
    results = run_methods(space, table, FLAGS.search_metric, FLAGS.report_metric, FLAGS.budget, FLAGS.seeds,
                          FLAGS.methods, settings, log=cli.say, first_seed=FLAGS.first_seed,
                          workers=FLAGS.workers, progress=progress)
    results["seconds"] = round(time.monotonic() - started, 1)
    print(format_table(results))
    print(f"total {results['seconds']:.0f}s (this run)")
    if FLAGS.output:
        io.atomic_write_json(FLAGS.output, results)
        os.remove(progress)


if __name__ == "__main__":
    cli.define_flags([StudyConfig, NaoSettings])
    cli.run(main, controller_only=True)
