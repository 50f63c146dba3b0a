"""Tabular benchmarks on a generated NAS-Bench-201 table: the space, the table, the baselines,
NAO and the command."""

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nao_tf.benchmarks.baselines import random_search, regularized_evolution
from nao_tf.algorithm.costs import Budget, BudgetedSpace
from nao_tf.benchmarks.nao_on_table import NaoSettings, nao_search, predictor_quality
from nao_tf.benchmarks.study import format_table, run_methods
from nao_tf.benchmarks.table import QueryCounter, Table
from nao_tf.common.errors import DataError, InvalidArchitectureError, StateError
from nao_tf.runtime.startup import STARTUP_LINES
from nao_tf.spaces.nasbench201 import NasBench201Space, OPS, canonical
from nao_tf.spaces.synthetic import SyntheticObjective, SyntheticSpace

SPACE = NasBench201Space()
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def fake_accuracy(arch) -> float:
    """Convolutions help, 'none' hurts, the last node's edges matter most."""
    weights = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 3.0])
    value = {0: -2.0, 1: 0.5, 2: 1.0, 3: 1.5, 4: 0.2}
    return 60.0 + sum(w * value[op] for w, op in zip(weights, arch))


@pytest.fixture(scope="module")
def table_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nb201") / "table.csv"
    rows = ["index,arch,cifar10_valid,cifar10_test"]
    for index, arch in enumerate(itertools.product(range(len(OPS)), repeat=6)):
        valid = fake_accuracy(arch)
        rows.append(f"{index},{SPACE.to_string(arch)},{valid:.3f},{valid + 0.1 * (index % 7):.3f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_string_format_round_trip():
    arch = SPACE.parse(EXAMPLE)
    assert arch == (3, 3, 4, 1, 3, 1)
    assert SPACE.to_string(arch) == EXAMPLE
    assert SPACE.from_tokens(SPACE.to_tokens(arch)) == arch


@pytest.mark.parametrize("arch, expected", [
    # Every edge on a path from node 0 to node 3: nothing changes.
    ((3, 0, 4, 0, 0, 1), (3, 0, 4, 0, 0, 1)),
    # 1 <- 0 is 'none': node 1 is unreachable, its outgoing edges 2 <- 1 and 3 <- 1 are dead.
    ((0, 3, 4, 1, 2, 1), (0, 3, 0, 1, 0, 1)),
    # 3 <- 2 is 'none': node 2 cannot reach the output, its incoming edges 2 <- 0 and 2 <- 1 are dead.
    ((3, 2, 4, 1, 3, 0), (3, 0, 0, 1, 3, 0)),
    # Nothing enters node 3: the zero cell.
    ((3, 3, 3, 0, 0, 0), (0, 0, 0, 0, 0, 0)),
    # Nothing leaves node 0: the zero cell.
    ((0, 0, 2, 0, 3, 3), (0, 0, 0, 0, 0, 0)),
])
def test_dead_edges_become_none(arch, expected):
    assert canonical(arch) == expected
    assert SPACE.canonical_key(arch) == SPACE.to_string(expected)
    assert SPACE.to_tokens(arch) == SPACE.to_tokens(expected)
    assert SPACE.from_tokens(SPACE.to_tokens(arch)) == expected


def test_canonical_cells_are_fixed_points_and_form_the_known_classes():
    cells = list(itertools.product(range(len(OPS)), repeat=6))
    classes = {canonical(a) for a in cells}
    assert all(canonical(c) == c for c in classes)
    assert len(classes) == 9445


@pytest.mark.parametrize("bad", ["|nor_conv_3x3~0|+|nor_conv_3x3~0|",
                                 EXAMPLE.replace("avg_pool_3x3~1", "avg_pool_3x3~0"),
                                 EXAMPLE.replace("skip_connect~2", "conv_9x9~2")])
def test_malformed_strings_are_rejected(bad):
    with pytest.raises(InvalidArchitectureError):
        SPACE.parse(bad)


def test_table_reads_all_cells(table_path):
    table = Table(table_path, SPACE)
    assert len(table.rows) == 15625 and table.columns == ["cifar10_valid", "cifar10_test"]
    with pytest.raises(DataError, match="no column 'cifar100_test'"):
        table.check_column("cifar100_test")


def test_bad_table_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(f"index,arch,cifar10_valid\n0,{EXAMPLE},80.0\n1,|none~0|,70.0\n")
    with pytest.raises(DataError, match=r"bad.csv:3:"):
        Table(path, SPACE)


@pytest.mark.parametrize("extra, message", [
    (lambda arch, valid, test: f"0,{arch},nan,{test}", r"bad.csv:15627: cifar10_valid is nan; "
                                                       "every metric must be a finite number"),
    (lambda arch, valid, test: f"0,{arch},{valid},x", r"bad.csv:15627: could not convert"),
    (lambda arch, valid, test: f"0,{arch},99.99,{test}", r"bad.csv:15627: \|none~0\|\+.* has "
                                                         "other values than on line 2"),
    (lambda arch, valid, test: f"0,{arch},{valid},{test}", None),  # the same row twice: fine
])
def test_a_table_is_checked_when_it_is_loaded(table_path, tmp_path, extra, message):
    """NaN or text where a metric belongs, and one cell on two lines with different values,
    stop at load time naming the line (a NaN used to surface at the first query)."""
    lines = table_path.read_text().splitlines()
    _, arch, valid, test = lines[1].split(",")
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([*lines, extra(arch, valid, test)]) + "\n")
    if message is None:
        assert len(Table(path, SPACE).rows) == 15625
    else:
        with pytest.raises(DataError, match=message):
            Table(path, SPACE)


def test_a_partial_table_is_refused_up_front(table_path, tmp_path):
    lines = table_path.read_text().splitlines()
    path = tmp_path / "partial.csv"
    path.write_text("\n".join(lines[:1000]) + "\n")
    with pytest.raises(DataError, match="999 distinct cells, but the space 'nasbench201' has "
                                        "15625; a benchmark needs the whole table"):
        Table(path, SPACE)


@pytest.mark.parametrize("method", [random_search, regularized_evolution])
def test_baselines_use_exactly_the_budget(table_path, method):
    table = Table(table_path, SPACE)
    query = QueryCounter(table, "cifar10_valid", budget=37)
    method(SPACE, query, np.random.default_rng(0))
    assert len(query.queried) == 37


def test_evolution_beats_random_on_a_smooth_table(table_path):
    table = Table(table_path, SPACE)
    best = {}
    for method in (random_search, regularized_evolution):
        values = []
        for seed in range(5):
            query = QueryCounter(table, "cifar10_valid", budget=60)
            method(SPACE, query, np.random.default_rng(seed))
            values.append(max(query.queried.values()))
        best[method.__name__] = np.mean(values)
    assert best["regularized_evolution"] > best["random_search"]


def test_nasbench201_mutation_changes_one_edge_of_the_cell_as_given():
    rng = np.random.default_rng(0)
    dead = SPACE.parse("|none~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_1x1~0|none~1|none~2|")
    changed_edges = set()
    for _ in range(200):
        child = SPACE.mutate(dead, rng)
        diff = [k for k in range(6) if child[k] != dead[k]]
        assert len(diff) == 1
        changed_edges.add(diff[0])
    assert changed_edges == set(range(6))  # dead edges (into node 1, 2) mutate too


def test_evolution_is_generic_over_spaces(tmp_path):
    """A second tabular benchmark needs only its space: evolution on a whole synthetic table."""
    space = SyntheticSpace(num_nodes=2, choices=2)
    objective = SyntheticObjective(space, seed=0)
    allowed = [np.flatnonzero(row) for row in space.valid_token_mask()]
    archs = [space.from_tokens(t) for t in itertools.product(*allowed)]
    path = tmp_path / "synthetic.csv"
    path.write_text("arch,score\n" + "".join(f"{space.to_string(a)},{objective(a)}\n"
                                             for a in archs))
    table = Table(path, space)
    assert len(table.rows) == len(archs) == 256
    scores = []
    for method in (random_search, regularized_evolution):
        query = QueryCounter(table, "score", budget=40)
        method(space, query, np.random.default_rng(1))
        assert len(query.queried) == 40
        scores.append(max(query.queried.values()))
    assert scores[1] >= scores[0]


@pytest.mark.slow
def test_run_methods_picks_by_search_metric_and_reports_index(table_path):
    table = Table(table_path, SPACE)
    settings = NaoSettings(seed_archs=10, new_archs=5, top_k=5, controller_epochs=5)
    results = run_methods(SPACE, table, "cifar10_valid", "cifar10_test", budget=20, seeds=2,
                          methods=["nao", "random", "evolution"], settings=settings, log=lambda _: None)
    for method, summary in results["methods"].items():
        assert len(summary["runs"]) == 2
        for run in summary["runs"]:
            arch = SPACE.parse(run["arch"])
            assert run["queries"] == 20
            assert table.index[arch] == run["index"]
            assert run["report_score"] == table.metric(arch, "cifar10_test")
        assert 1.0 <= summary["mean_rank"] <= 3.0
    assert "mean rank" in format_table(results)
    for method in ("nao", "random"):  # each compared with evolution seed by seed
        paired = results["paired_vs_evolution"][method]
        differences = [a["report_score"] - b["report_score"] for a, b in zip(
            results["methods"][method]["runs"], results["methods"]["evolution"]["runs"])]
        assert paired["mean_difference"] == pytest.approx(np.mean(differences))
        assert paired["wins"] + paired["losses"] + paired["ties"] == 2
    assert "nao - evolution" in format_table(results)


def test_first_seed_starts_the_seeds_elsewhere(table_path):
    table = Table(table_path, SPACE)
    settings = NaoSettings()
    later = run_methods(SPACE, table, "cifar10_valid", "cifar10_test", budget=15, seeds=2,
                        methods=["random"], settings=settings, log=lambda _: None, first_seed=5)
    full = run_methods(SPACE, table, "cifar10_valid", "cifar10_test", budget=15, seeds=7,
                       methods=["random"], settings=settings, log=lambda _: None)
    assert [r["seed"] for r in later["methods"]["random"]["runs"]] == [5, 6]
    assert later["methods"]["random"]["runs"] == [
        dict(r, seconds=later["methods"]["random"]["runs"][i]["seconds"])
        for i, r in enumerate(full["methods"]["random"]["runs"][5:])]


@pytest.mark.slow
def test_predictor_quality_on_a_learnable_table(table_path):
    table = Table(table_path, SPACE)
    metrics = predictor_quality(SPACE, table, "cifar10_valid", n_train=100, n_test=300, epochs=300,
                                seed=0, settings=NaoSettings())
    assert metrics["pairwise_accuracy"] > 0.8
    assert metrics["hamming_distance"] < 0.25
    assert 0.0 <= metrics["top10_pairwise_accuracy"] <= 1.0


@pytest.mark.slow
def test_command_writes_results_json(table_path, tmp_path):
    output = tmp_path / "results.json"
    subprocess.run([sys.executable, "-m", "nao_tf.benchmarks.tabular", f"--table={table_path}",
                    "--budget=15", "--seeds=2", "--first_seed=3", "--methods=random,evolution",
                    "--predictor_heads=3", "--acquisition=ucb", f"--output={output}"],
                   check=True, capture_output=True, cwd=REPO)
    results = json.loads(output.read_text())
    assert set(results["methods"]) == {"random", "evolution"}
    assert [r["seed"] for r in results["methods"]["random"]["runs"]] == [3, 4]
    assert results["settings"]["predictor_heads"] == 3 and results["settings"]["acquisition"] == "ucb"
    assert set(results["paired_vs_evolution"]) == {"random"}


def test_a_progress_file_serves_only_its_own_study(table_path, tmp_path):
    table, progress = Table(table_path, SPACE), str(tmp_path / "progress.json")
    first = run_methods(SPACE, table, "cifar10_valid", "cifar10_test", budget=15, seeds=2,
                        methods=["random"], settings=NaoSettings(), log=lambda _: None,
                        progress=progress)
    logs = []
    again = run_methods(SPACE, table, "cifar10_valid", "cifar10_test", budget=15, seeds=3,
                        methods=["random"], settings=NaoSettings(), log=logs.append,
                        progress=progress)
    assert again["methods"]["random"]["runs"][:2] == first["methods"]["random"]["runs"]
    assert sum("finished by an earlier run" in line for line in logs) == 2
    with pytest.raises(StateError, match="budget: 15 -> 20"):
        run_methods(SPACE, table, "cifar10_valid", "cifar10_test", budget=20, seeds=2,
                    methods=["random"], settings=NaoSettings(), log=lambda _: None,
                    progress=progress)
    with pytest.raises(StateError, match=r"cost_limits: {} -> {'params': 800000}"):
        run_methods(BudgetedSpace(SPACE, Budget(max_params=800_000)), table, "cifar10_valid",
                    "cifar10_test", budget=15, seeds=2, methods=["random"],
                    settings=NaoSettings(), log=lambda _: None, progress=progress)


@pytest.mark.slow
def test_a_killed_study_resumes_without_redoing_a_finished_seed(table_path, tmp_path):
    output = tmp_path / "results.json"
    command = [sys.executable, "-m", "nao_tf.benchmarks.tabular", f"--table={table_path}",
               "--budget=16", "--seeds=3", "--methods=nao,evolution", "--controller_epochs=10",
               "--seed_archs=6", "--mutations=5", f"--output={output}"]
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    for line in child.stdout:
        if line.strip().startswith("nao seed  0:"):
            child.kill()
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, "the study ended before it could be killed"
    finished = json.loads((tmp_path / "results.json.progress.json").read_text())["runs"]
    assert "nao 0" in finished and not output.exists()

    # Resumed by two worker processes, which print none of TensorFlow's start-up lines.
    rerun = subprocess.run([*command, "--workers=2"], cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "nao seed  0: " in rerun.stdout and "finished by an earlier run" in rerun.stdout
    assert not STARTUP_LINES.search(rerun.stderr), rerun.stderr[-2000:]
    results = json.loads(output.read_text())
    assert [r["seed"] for r in results["methods"]["nao"]["runs"]] == [0, 1, 2]
    assert results["methods"]["nao"]["runs"][0] == finished["nao 0"]
    assert not (tmp_path / "results.json.progress.json").exists()


def _children(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if entry.name.isdigit() and int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_exit_when_the_study_is_killed(table_path, tmp_path):
    child = subprocess.Popen([sys.executable, "-m", "nao_tf.benchmarks.tabular",
                              f"--table={table_path}", "--budget=16", "--seeds=6",
                              "--methods=nao", "--workers=2", "--controller_epochs=200",
                              f"--output={tmp_path / 'results.json'}"], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_children(child.pid)) < 3 and child.poll() is None:
        time.sleep(0.2)  # two workers and multiprocessing's resource tracker
    workers = _children(child.pid)
    time.sleep(3)  # the workers are in their first seed
    child.kill()
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL and len(workers) >= 3
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(map(_alive, workers)):
        time.sleep(0.2)
    assert not [pid for pid in workers if _alive(pid)]


@pytest.mark.slow
@pytest.mark.parametrize("flag, message", [
    ("--acquisition=best", "error: NAO settings: acquisition"),
    ("--budget=0", "error: flag --budget=0: 0 is not a positive integer"),
    ("--max_params=800MB", "error: --max_params=800MB: not a count"),
    ("--mode=predictor --max_params=800k", "error: --max_params and --max_mult_adds limit the "
     "searches"),
])
def test_command_reports_bad_settings_in_one_line(table_path, flag, message):
    run = subprocess.run([sys.executable, "-m", "nao_tf.benchmarks.tabular", f"--table={table_path}",
                          *flag.split()], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(message)


@pytest.mark.slow
def test_command_reports_a_missing_table_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "nao_tf.benchmarks.tabular",
                          f"--table={tmp_path / 'missing.csv'}"], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_nao_seeds_in_two_processes_give_the_same_picks(table_path):
    table = Table(table_path, SPACE)
    settings = NaoSettings(seed_archs=8, new_archs=4, top_k=4, controller_epochs=3, mutations=8)
    picks = [[r["arch"] for r in run_methods(SPACE, table, "cifar10_valid", "cifar10_test", budget=16,
                                             seeds=2, methods=["nao"], settings=settings,
                                             log=lambda _: None, workers=workers)
              ["methods"]["nao"]["runs"]] for workers in (1, 2)]
    assert picks[0] == picks[1]


@pytest.mark.slow
def test_predictor_quality_of_separate_controllers(table_path):
    table = Table(table_path, SPACE)
    metrics = predictor_quality(SPACE, table, "cifar10_valid", n_train=60, n_test=100, epochs=30,
                                seed=0, settings=NaoSettings(), controllers=2)
    assert metrics["pairwise_accuracy"] > 0.6 and 0.0 <= metrics["top10_pairwise_accuracy"] <= 1.0


def test_under_a_parameter_budget_no_method_queries_a_cell_over_it(table_path):
    """The table's best cell (all 3x3 convs, 1.53M parameters) is over the budget: every
    method's every query is within it, and the reference best is the best within it."""
    space = BudgetedSpace(SPACE, Budget(max_params=800_000))
    table = Table(table_path, space)
    assert table.best("cifar10_test", space.allowed) < table.best("cifar10_test")
    for method in (random_search, regularized_evolution):
        query = QueryCounter(table, "cifar10_valid", budget=40)
        method(space, query, np.random.default_rng(0))
        assert len(query.queried) == 40
        assert max(SPACE.costs(a)["params"] for a in query.queried) <= 800_000
    settings = NaoSettings(seed_archs=10, new_archs=5, top_k=5, controller_epochs=5)
    queried = nao_search(space, table, "cifar10_valid", 30, 0, settings, table_path.parent / "nao")
    assert len(queried) == 30 and max(SPACE.costs(a)["params"] for a in queried) <= 800_000
    results = run_methods(space, table, "cifar10_valid", "cifar10_test", budget=15, seeds=1,
                          methods=["random"], settings=settings, log=lambda _: None)
    run, = results["methods"]["random"]["runs"]
    assert results["cost_limits"] == {"params": 800_000}
    assert run["params"] == SPACE.costs(SPACE.parse(run["arch"]))["params"] <= 800_000
    assert "table best" in format_table(results) and "(of the cells with params <= 800k)" in \
        format_table(results)
