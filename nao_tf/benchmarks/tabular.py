"""Tabular NAS benchmarks: a table of measured architectures as the evaluator, and the methods
compared on it: NAO, random search and regularized evolution (Real et al., 2019), plus the
predictor study of the paper's section 4.1. Generic over spaces: a space with `parse` for the
table's `arch` column and `mutate` for evolution (both `SearchSpace` methods) is all a new
benchmark needs; `--space` takes a built-in name or `package.module:factory`
(`nao_tf.search_space.load_space`).

Usage (a table like `shared/data/nasbench201/nb201_lowfi.csv`):
    python -m nao_tf.benchmarks.tabular --space=nasbench201 --table=nb201.csv \
        --search_metric=cifar10_valid --report_metric=cifar10_test --budget=100 --seeds=20 \
        --methods=nao,random,evolution --output=results.json
    python -m nao_tf.benchmarks.tabular --mode=predictor --table=nb201.csv \
        --train_archs=100 --test_archs=1000
"""

import csv
import dataclasses
import json
import os
import tempfile
import time
from typing import Callable, Hashable, Sequence

import numpy as np
from absl import flags

from nao_tf import cli, io
from nao_tf.controller import Controller, ControllerConfig
from nao_tf.controller_train import ControllerTrainer, normalize_scores
from nao_tf.errors import DataError, InvalidArchitectureError, NaoError
from nao_tf.generate import ControllerInference
from nao_tf.run_dir import check_identity
from nao_tf.metrics import (hamming_distance, kendall_tau, paired_t_test, pairwise_accuracy,
                            top_fraction_pairwise_accuracy)
from nao_tf.search import ControllerOptions, Evaluator, NAOSearch, Record, SearchConfig
from nao_tf.search_space import SearchSpace, load_space

Arch = Hashable


class Table:
    """The benchmark table: one row per cell, numeric metric columns by name."""

    def __init__(self, path: str | os.PathLike, space: SearchSpace):
        try:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                columns = reader.fieldnames or []
        except FileNotFoundError:
            raise DataError(f"{path}: table not found; pass --table=PATH to the benchmark's CSV") from None
        if "arch" not in columns:
            raise DataError(f"{path}: no 'arch' column (columns: {columns})")
        self.path, self.columns = str(path), [c for c in columns if c not in ("arch", "index")]
        self.rows: dict[Arch, dict[str, float]] = {}
        self.index: dict[Arch, int] = {}
        for lineno, row in enumerate(rows, start=2):
            try:
                arch = space.parse(row["arch"])
                self.rows[arch] = {c: float(row[c]) for c in self.columns}
            except (InvalidArchitectureError, ValueError, TypeError) as err:
                raise DataError(f"{path}:{lineno}: {err}") from None
            self.index[arch] = int(row.get("index") or lineno - 2)
        # Every token sequence the space allows is a cell the searches may query.
        expected = int(np.prod(space.valid_token_mask().sum(axis=1), dtype=np.float64))
        if len(self.rows) < expected:
            raise DataError(f"{path}: {len(self.rows)} distinct cells, but the space "
                            f"{space.name!r} has {expected}; a benchmark needs the whole table "
                            "(a partial export would stop at the first cell it lacks)")

    def metric(self, arch: Arch, column: str) -> float:
        return self.rows[arch][column]

    def check_column(self, column: str) -> None:
        if column not in self.columns:
            raise DataError(f"{self.path}: no column {column!r}; choose one of {self.columns}")

    def best(self, column: str) -> float:
        return max(r[column] for r in self.rows.values())


class TabularEvaluator(Evaluator):
    """Scores an architecture by looking up `column` (an accuracy: higher is better)."""

    higher_is_better = True

    def __init__(self, table: Table, column: str):
        table.check_column(column)
        self.table, self.column = table, column

    def evaluate(self, archs: Sequence[Arch], iteration: int, record: Record) -> None:
        for arch in archs:
            record(arch, self.table.metric(arch, self.column))


class QueryCounter:
    """Counts distinct architectures queried, refusing any beyond the budget."""

    def __init__(self, table: Table, column: str, budget: int):
        self.table, self.column, self.budget = table, column, budget
        self.queried: dict[Arch, float] = {}

    def __call__(self, arch: Arch) -> float:
        if arch not in self.queried:
            if len(self.queried) >= self.budget:
                raise RuntimeError("query budget exceeded")
            self.queried[arch] = self.table.metric(arch, self.column)
        return self.queried[arch]

    @property
    def exhausted(self) -> bool:
        return len(self.queried) >= self.budget


def random_search(space: SearchSpace, query: QueryCounter, rng: np.random.Generator) -> None:
    for arch in space.sample_unique(query.budget, rng):
        query(arch)


def regularized_evolution(space: SearchSpace, query: QueryCounter, rng: np.random.Generator,
                          population_size: int = 10, tournament_size: int = 3) -> None:
    """Aging evolution: tournament-select a parent, mutate it (`space.mutate`: one token changed,
    for NAS-Bench-201 one edge's op), add the child, drop the oldest.
    A child seen before costs no query (its score is known) but still joins the population."""
    population = [(a, query(a)) for a in space.sample_unique(min(population_size, query.budget), rng)]
    for _ in range(100 * query.budget):
        if query.exhausted:
            return
        contenders = rng.choice(len(population), size=tournament_size, replace=False)
        parent = max((population[i] for i in contenders), key=lambda p: p[1])[0]
        child = space.mutate(parent, rng)
        population.append((child, query(child)))
        population.pop(0)


_OPTION_HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(ControllerOptions)}


@dataclasses.dataclass(frozen=True)
class NaoSettings:
    """NAO settings for a small tabular budget: the original's loop with its counts scaled to
    ~100 queries (10 random seeds, then rounds of 5 new architectures from the top 5), lambda
    growing in small steps, and 10x oversampling: 50 decoded cells and 50 neighbours (one edge
    changed) of the top 5, of which the predictor keeps the best 5 (predictor-guided local
    search; without the neighbours NAO only ties regularized evolution, docs/benchmarks.md).
    Targets are rank-normalised: with min-max, the many near-chance cells of the space squeeze
    every good cell close to 1 and the predictor learns little about ordering them."""

    seed_archs: int = cli.option(10, "NAO: random cells of the first pool.")
    top_k: int = cli.option(5, "NAO: seeds of each generation round (the best k measured).")
    new_archs: int = cli.option(5, "NAO: new cells per round.")
    random_archs: int = cli.option(0, "NAO: fresh random cells per round.")
    max_lambda: float = cli.option(25.0, "NAO: largest step size lambda.")
    lambda_step: float = cli.option(0.25, "NAO: lambda grows by this.")
    oversample: float = cli.option(10.0, _OPTION_HELP["oversample"])
    controller_epochs: int = cli.option(60, "NAO: controller epochs per round (warm start).")
    normalization: str = cli.option("rank", "NAO: controller targets, 'rank' or 'minmax'.")
    emb_size: int = cli.option(32, "Controller token embedding size.")
    hidden_size: int = cli.option(64, "Controller LSTM size.")
    mlp_layers: int = cli.option(2, "Predictor hidden layers.")
    mlp_hidden: int = cli.option(64, "Predictor width.")
    batch_size: int = cli.option(20, "Controller batch.")
    learning_rate: float = cli.option(3e-3, "Controller Adam learning rate.")
    trade_off: float = cli.option(0.95, "Predictor share of the controller loss (the rest: "
                                  "reconstruction).")
    predictor_heads: int = cli.option(1, _OPTION_HELP["predictor_heads"])
    ranking_weight: float = cli.option(0.0, _OPTION_HELP["ranking_weight"])
    acquisition: str = cli.option("mean", _OPTION_HELP["acquisition"])
    ucb_beta: float = cli.option(1.0, _OPTION_HELP["ucb_beta"])
    mutations: int = cli.option(50, _OPTION_HELP["mutations"])

    def controller_config(self, space: SearchSpace, seed: int) -> ControllerConfig:
        return ControllerConfig.for_space(
            space, emb_size=self.emb_size, hidden_size=self.hidden_size, mlp_layers=self.mlp_layers,
            mlp_hidden=self.mlp_hidden, attention="dot", batch_size=self.batch_size,
            learning_rate=self.learning_rate, trade_off=self.trade_off,
            predictor_heads=self.predictor_heads, ranking_weight=self.ranking_weight, seed=seed)


def nao_search(space: SearchSpace, table: Table, column: str, budget: int, seed: int,
               settings: NaoSettings, work_dir: str) -> list[Arch]:
    """Runs NAO with a query budget; returns the architectures it evaluated, in order."""
    search_config = SearchConfig(
        seed_archs=settings.seed_archs, iterations=10 ** 6, top_k=settings.top_k,
        new_archs=settings.new_archs, random_archs=settings.random_archs,
        max_lambda=settings.max_lambda, lambda_step=settings.lambda_step, oversample=settings.oversample,
        controller_epochs=settings.controller_epochs, train_on="history", symmetry=False,
        normalization=settings.normalization, acquisition=settings.acquisition,
        ucb_beta=settings.ucb_beta, mutations=settings.mutations, query_budget=budget, seed=seed)
    search = NAOSearch(space, TabularEvaluator(table, column), search_config,
                       settings.controller_config(space, seed),
                       work_dir, log=lambda _: None)
    return [space.parse(r["arch"]) for r in search.run().history]


def predictor_quality(space: SearchSpace, table: Table, column: str, n_train: int, n_test: int,
                      epochs: int, seed: int, settings: NaoSettings,
                      controllers: int = 1) -> dict[str, float]:
    """Trains the controller on n_train random archs; ranks n_test others (paper section 4.1).

    The last `FINAL_EPOCHS_FRACTION` of the epochs run at a tenth of the learning rate, so that
    training ends settled rather than with Adam's full steps still flipping a few tokens.
    `controllers` > 1 trains that many separate controllers (seeds seed * controllers + k, their
    own encoders) and ranks by their mean prediction: the ensemble with separate encoders, to set
    beside `predictor_heads` (heads on one shared encoder). `top10_pairwise_accuracy` is the
    pairwise accuracy among the best tenth of the test cells. `linear_pairwise_accuracy` is a
    reference point for the same cells: ridge regression on the one-hot (edge, op) features, the
    simplest model that sees exactly what the tokens say."""
    rng = np.random.default_rng(seed)
    archs = space.sample_unique(n_train + n_test, rng)
    tokens = space.encode(archs)
    scores = np.array([table.metric(a, column) for a in archs])
    targets = normalize_scores(scores[:n_train], True, settings.normalization)
    predictions, distances = [], []
    for k in range(controllers):
        member_seed = seed if controllers == 1 else seed * controllers + k
        model = Controller(settings.controller_config(space, member_seed), space.valid_token_mask())
        trainer = ControllerTrainer(model)
        trainer.fit(tokens[:n_train], targets, epochs, rng,
                    on_epoch_end=_final_rate_drop(trainer, settings.learning_rate, epochs))
        inference = ControllerInference(model)
        predictions.append(inference.predict(tokens[n_train:]))
        distances.append(hamming_distance(tokens[:n_train], inference.reconstruct(tokens[:n_train])))
    predicted = np.mean(predictions, axis=0)
    return dict(pairwise_accuracy=pairwise_accuracy(scores[n_train:], predicted),
                top10_pairwise_accuracy=top_fraction_pairwise_accuracy(scores[n_train:], predicted),
                kendall_tau=kendall_tau(scores[n_train:], predicted),
                hamming_distance=float(np.mean(distances)),
                linear_pairwise_accuracy=pairwise_accuracy(
                    scores[n_train:], _ridge_predictions(tokens, scores, n_train, space.vocab_size)))


FINAL_EPOCHS_FRACTION = 0.2


def _final_rate_drop(trainer: ControllerTrainer, learning_rate: float,
                     epochs: int) -> Callable[[int, dict[str, float]], None]:
    """An epoch-end callback that sets a tenth of `learning_rate` for the last
    `FINAL_EPOCHS_FRACTION` of `epochs`."""
    first_slow_epoch = round(epochs * (1.0 - FINAL_EPOCHS_FRACTION))

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        del metrics
        if epoch + 1 == first_slow_epoch:
            trainer.optimizer.learning_rate.assign(learning_rate / 10.0)

    return on_epoch_end


def _ridge_predictions(tokens: np.ndarray, scores: np.ndarray, n_train: int, vocab_size: int,
                       l2: float = 1.0) -> np.ndarray:
    """Ridge regression on one-hot tokens, fitted on the first n_train rows; predicts the rest."""
    features = np.zeros([len(tokens), vocab_size])
    np.put_along_axis(features, tokens, 1.0, axis=1)
    x, y = features[:n_train], scores[:n_train] - scores[:n_train].mean()
    weights = np.linalg.solve(x.T @ x + l2 * np.eye(vocab_size), x.T @ y)
    return features[n_train:] @ weights


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
    results: dict = {"space": space.name, "budget": budget, "search_metric": search_metric, "report_metric": report_metric,
                     "table_best": table.best(report_metric), "first_seed": first_seed,
                     "settings": dataclasses.asdict(settings), "methods": {}}
    identity = {k: results[k] for k in ("space", "budget", "search_metric", "settings")}
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
                       report_score=table.metric(picked, report_metric), seconds=round(seconds, 2))
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


def _start_worker(space: SearchSpace, table_path: str) -> None:
    """Process-pool initializer: one intra-op thread (the controller's batch slices still run
    side by side on the inter-op threads) and the table, read once per process."""
    global _worker
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
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
            initargs=(space, table.path)) as pool:
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


def format_table(results: dict) -> str:
    lines = [f"{'method':>10}  {results['report_metric']} (mean +- std, s.e.)  mean rank",
             *(f"{m:>10}  {r['mean']:8.3f} +- {r['std']:.3f}, {r['standard_error']:.3f}     "
               f"{r['mean_rank']:.2f}" for m, r in results["methods"].items()),
             f"{'table best':>10}  {results['table_best']:8.3f}"]
    for method, test in results.get("paired_vs_evolution", {}).items():
        lines.append(f"{method} - evolution: {test['mean_difference']:+.3f} (s.e. "
                     f"{test['standard_error']:.3f}, paired t-test p = {test['p_value']:.3g}; "
                     f"{test['wins']} wins, {test['losses']} losses, {test['ties']} ties)")
    return "\n".join(lines)


FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined only when run as a command, so the module imports cleanly):
    its own, and one per `NaoSettings` field."""
    cli.define_flags([
        ("space", "nasbench201", "The benchmark's search space: a built-in name (nasbench201, "
         "synthetic) or package.module:factory."),
        ("mode", "search", "Compare search methods, or measure the predictor.",
         ["search", "predictor"]),
        ("table", "", "CSV with an 'arch' column (the space's strings) and metric columns."),
        ("search_metric", "cifar10_valid", "Column the methods search on."),
        ("report_metric", "cifar10_test", "Column reported for the picked architecture."),
        ("budget", 100, "Distinct architectures each method may query."),
        ("seeds", 20, "Independent runs per method (predictor mode: draws of the train and test "
         "cells)."),
        ("first_seed", 0, "Seeds are first_seed, ..., first_seed + seeds - 1 (a study repeated on "
         "seeds never used before: e.g. tune on 0-49, report 100-149)."),
        ("methods", ["nao", "random", "evolution"], "Any of nao, random, evolution."),
        ("workers", 1, "Search mode: run NAO's seeds in this many processes (one core each; on 2 "
         "cores, 2 finish a study in about 0.6x the time)."),
        ("output", "", "Write the results as JSON here. Search mode keeps every finished (method, "
         "seed) in OUTPUT.progress.json until the end, so the same command resumes a killed "
         "study without redoing one."),
        ("train_archs", 100, "Predictor mode: architectures to train on."),
        ("test_archs", 1000, "Predictor mode: unseen architectures to rank."),
        ("epochs", 300, "Predictor mode: controller epochs."),
        ("controllers", 1, "Predictor mode: an ensemble of this many separate controllers (own "
         "encoders), ranking by their mean prediction."),
        *cli.config_flag_specs(NaoSettings)])


def main(argv: Sequence[str]) -> None:
    del argv
    if not FLAGS.table:
        raise DataError("--table is required: the path of the benchmark's CSV")
    for name in ("workers", "seeds", "controllers", "budget"):
        if FLAGS[name].value < 1:
            raise NaoError(f"--{name}={FLAGS[name].value} must be at least 1")
    unknown = set(FLAGS.methods) - {"nao", "random", "evolution"}
    if unknown:
        raise DataError(f"--methods: unknown {sorted(unknown)}; choose from nao, random, evolution")
    try:
        settings = cli.config_from_flags(NaoSettings)
        space = load_space(FLAGS.space)
        settings.controller_config(space, 0)
        SearchConfig(acquisition=settings.acquisition)
    except ValueError as err:
        raise NaoError(f"NAO settings: {err}") from None
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
    define_flags()
    cli.run(main, controller_only=True)
