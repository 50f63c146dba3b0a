"""NAO-WS against RSPS on NAS-Bench-201: a real supernet on real CIFAR-10, every pick looked up.

For each seed, at the same supernet epochs (the `cpu` preset of `scripts/train_search.sh nb201`):
  * NAO-WS: the supernet trained on cells drawn from the NAO pool, the controller's rounds in
    between (the search command's loop, in process); the pick is its best cell by supernet score;
  * RSPS (the benchmark paper's random sampling with parameter sharing): the supernet trained on
    cells drawn uniformly over the space, then the best of `--random_cells` random cells by
    supernet score (`exps/NAS-Bench-201-algos/RANDOM-NAS.py`, select_num 100).
Per seed and method it writes the pick's `arch` string, its supernet score, its `--column` in the
table, the seconds, and the supernet's rank correlation with the table over `--corr_cells` random
cells (Kendall tau; pairwise accuracy among the table's top 10% of them). Then the paired test
of NAO-WS's picks against RSPS's. Only this script reads the table; the searches never do.

    python bench/nb201_study.py --seeds=8 --first_seed=1 \
        --data_dir=../shared/data/cifar10-sample --table=../shared/data/nasbench201/nb201_lowfi.csv

A killed study resumes: every finished (method, seed) is kept in --output (with the settings it
ran under; other settings refuse to mix with it).
"""

import dataclasses
import json
import os
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nao_tf.algorithm.controller import ControllerConfig  # noqa: E402
from nao_tf.algorithm.metrics import (kendall_tau, paired_t_test,  # noqa: E402
                                      top_fraction_pairwise_accuracy)
from nao_tf.algorithm.search import NAOSearch, SearchConfig  # noqa: E402
from nao_tf.benchmarks.table import Table  # noqa: E402
from nao_tf.common.io import atomic_write_json  # noqa: E402
from nao_tf.spaces.nasbench201 import OPS, canonical  # noqa: E402
from nb201.task import CPU, SPACE, TASK, Nb201Config, load_data, supernet as build_supernet  # noqa: E402

flags.DEFINE_integer("seeds", 8, "Seeds per method.")
flags.DEFINE_integer("first_seed", 1, "The first seed.")
flags.DEFINE_string("data_dir", "../shared/data/cifar10-sample", "CIFAR-10 (python pickle).")
flags.DEFINE_string("table", "../shared/data/nasbench201/nb201_lowfi.csv", "The benchmark table.")
flags.DEFINE_string("column", "cifar10_test", "The table's column a pick is judged by.")
flags.DEFINE_integer("random_cells", 100, "RSPS: random cells scored with its supernet.")
flags.DEFINE_integer("corr_cells", 200, "Random cells of the rank correlation.")
flags.DEFINE_string("output", "bench/results/nb201_study.json", "Results (and progress).")
flags.DEFINE_string("work_dir", "/tmp/nb201_study", "The searches' run directories.")
FLAGS = flags.FLAGS

LOOP = ("seed_archs", "top_k", "new_archs", "random_archs", "max_lambda", "lambda_step",
        "controller_epochs")


def config(seed: int, sampling: str) -> Nb201Config:
    fields = {f.name for f in dataclasses.fields(Nb201Config)}
    base = {**TASK.configs["ws"].defaults, **{k: v for k, v in CPU.items() if k in fields}}
    return Nb201Config(**base, dataset="cifar10", data_dir=FLAGS.data_dir, sampling=sampling,
                       seed=seed)


def correlation(supernet, table: Table, seed: int) -> dict:
    rng = np.random.default_rng(10_000 + seed)
    cells = [SPACE.sample(rng) for _ in range(FLAGS.corr_cells)]
    scores = np.array([supernet.score(a) for a in cells])
    truth = np.array([table.metric(a, FLAGS.column) for a in cells])
    return {"kendall_tau": kendall_tau(truth, scores),
            "top10_pairwise_accuracy": top_fraction_pairwise_accuracy(truth, scores, 0.1)}


def run_nao_ws(seed: int, data, table: Table) -> dict:
    c, out = config(seed, "pool"), os.path.join(FLAGS.work_dir, f"nao_ws_{seed}")
    supernet = build_supernet(c, data, out)
    search = NAOSearch(SPACE, supernet, SearchConfig(
        **{k: CPU[k] for k in LOOP}, iterations=supernet.iterations, train_on="pool",
        normalization="rank", seed=seed),
        ControllerConfig.for_space(SPACE, **TASK.controller("ws", c),
                                   batch_size=CPU["controller_batch_size"], seed=seed), out)
    result = search.run()
    return {"arch": SPACE.to_string(result.best_arch), "supernet_score": result.best_score,
            **correlation(supernet, table, seed)}


def run_rsps(seed: int, data, table: Table) -> dict:
    c = config(seed, "uniform")
    supernet = build_supernet(c, data, os.path.join(FLAGS.work_dir, f"rsps_{seed}"))
    supernet.prepare([], supernet.iterations)  # every epoch
    rng = np.random.default_rng(seed)
    scored = [(supernet.score(a), a) for a in (SPACE.sample(rng) for _ in range(FLAGS.random_cells))]
    score, best = max(scored, key=lambda s: s[0])
    return {"arch": SPACE.to_string(best), "supernet_score": score,
            **correlation(supernet, table, seed)}


def has_conv(arch: str) -> bool:
    """Whether a convolution is on a path from the cell's input to its output (a live edge)."""
    return any(OPS[op].startswith("nor_conv") for op in canonical(SPACE.parse(arch)))


def main(_):
    table = Table(FLAGS.table, SPACE)
    settings = {"preset": CPU, "column": FLAGS.column, "random_cells": FLAGS.random_cells,
                "corr_cells": FLAGS.corr_cells, "data_dir": os.path.abspath(FLAGS.data_dir)}
    results = {"settings": settings, "runs": {}}
    if os.path.exists(FLAGS.output):
        old = json.load(open(FLAGS.output))
        if old["settings"] != settings:
            sys.exit(f"error: {FLAGS.output} holds a study with other settings; pass another "
                     "--output")
        results = old
    data = load_data(config(FLAGS.first_seed, "pool"), "search")
    for seed in range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds):
        for method, run in (("nao_ws", run_nao_ws), ("rsps", run_rsps)):
            key = f"{method}/{seed}"
            if key in results["runs"]:
                continue
            start = time.perf_counter()
            run_result = run(seed, data, table)
            run_result.update(seconds=time.perf_counter() - start,
                              table_accuracy=table.metric(SPACE.parse(run_result["arch"]),
                                                          FLAGS.column))
            results["runs"][key] = run_result
            atomic_write_json(FLAGS.output, results)
            print(f"{key}: {run_result['arch']} {FLAGS.column} {run_result['table_accuracy']:.2f}"
                  f" (supernet {run_result['supernet_score']:.3f}, tau "
                  f"{run_result['kendall_tau']:.3f}, {run_result['seconds']:.0f}s)", flush=True)
    everything = np.array([row[FLAGS.column] for row in table.rows.values()])
    for run_result in results["runs"].values():  # the pick's place among all 15,625 cells
        run_result["table_percentile"] = float(
            100 * np.mean(everything < run_result["table_accuracy"]))
    seeds = [s for s in range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds)
             if f"nao_ws/{s}" in results["runs"] and f"rsps/{s}" in results["runs"]]
    summary = {}
    for method in ("nao_ws", "rsps"):
        runs = [results["runs"][f"{method}/{s}"] for s in seeds]
        summary[method] = {key: float(np.mean([r[key] for r in runs])) for key in (
            "table_accuracy", "table_percentile", "supernet_score", "kendall_tau",
            "top10_pairwise_accuracy", "seconds")}
        summary[method]["picks_without_conv"] = sum(not has_conv(r["arch"]) for r in runs)
    if len(seeds) >= 2:
        summary["nao_ws_vs_rsps"] = paired_t_test(
            [results["runs"][f"nao_ws/{s}"]["table_accuracy"] for s in seeds],
            [results["runs"][f"rsps/{s}"]["table_accuracy"] for s in seeds])
    results["summary"] = {"seeds": seeds, "table_best": float(everything.max()),
                          "table_mean": float(everything.mean()), **summary}
    atomic_write_json(FLAGS.output, results)
    print(json.dumps(results["summary"], indent=1))


if __name__ == "__main__":
    app.run(main)
