"""The outer loop: resume after a crash anywhere, no double evaluation, budgets, corrupt state."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nao_tf.algorithm.controller import ControllerConfig
from nao_tf.algorithm.evaluators import Evaluator
from nao_tf.algorithm.search import NAOSearch, SearchConfig
from nao_tf.common.errors import StateError
from nao_tf.spaces.synthetic import SyntheticObjective, SyntheticSpace

SPACE = SyntheticSpace(num_nodes=3, choices=4)
OBJECTIVE = SyntheticObjective(SPACE, seed=3)
REPO = Path(__file__).resolve().parents[2]


class CountingEvaluator(Evaluator):
    def __init__(self, calls: list):
        self.calls = calls

    def evaluate(self, archs, iteration, record):
        for arch in archs:
            self.calls.append(SPACE.to_string(arch))
            record(arch, OBJECTIVE(arch))


class Crash(Exception):
    pass


def make_search(output_dir, calls, budget=None, **overrides) -> NAOSearch:
    config = SearchConfig(**{**dict(seed_archs=12, iterations=2, top_k=4, new_archs=4, random_archs=2,
                                    max_lambda=10.0, controller_epochs=3, train_on="history",
                                    query_budget=budget, seed=5), **overrides})
    controller = ControllerConfig.for_space(SPACE, emb_size=8, hidden_size=16, mlp_layers=1,
                                            mlp_hidden=16, attention="dot", batch_size=8, seed=5)
    return NAOSearch(SPACE, CountingEvaluator(calls), config, controller, output_dir,
                     log=lambda _: None, save_every_seconds=0.0)


# Its tests share an xdist group: one test process builds it, not each.
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    calls = []
    result = make_search(tmp_path_factory.mktemp("full"), calls).run()
    return result, calls


def _crash_states(output_dir, copies) -> list[tuple[str, int]]:
    """Runs the search, copying `output_dir` to copies/<i> just before its i-th state save: what
    a SIGKILL there would leave. Returns the (phase, iteration) of every save, in order."""
    points = []
    search = make_search(output_dir, [])
    original_save = search._save

    def copying_save(state):
        shutil.copytree(output_dir, copies / str(len(points)))
        points.append((state["phase"], state["iteration"]))
        original_save(state)

    search._save = copying_save
    search.run()
    return points


@pytest.mark.slow
@pytest.mark.xdist_group("uninterrupted")
def test_resume_after_a_crash_in_every_phase_gives_the_identical_history(uninterrupted, tmp_path):
    expected, _ = uninterrupted
    points = _crash_states(tmp_path / "probe", tmp_path / "crashed")
    # Crash before the first save of each (phase, iteration), and in the middle of evaluation
    # (scores are saved as they arrive).
    first_of_each = sorted({points.index(p) for p in points})
    crash_before = first_of_each + [first_of_each[0] + 5]
    assert len(crash_before) >= 9
    for index in crash_before:
        state_file = tmp_path / "crashed" / str(index) / "state.json"
        recorded = {h["arch"] for h in json.loads(state_file.read_text())["history"]} \
            if index else set()
        assert state_file.exists() == (index > 0)
        resumed_calls = []
        result = make_search(tmp_path / "crashed" / str(index), resumed_calls).run()
        assert result.history == expected.history, f"crash before save {index} ({points[index]})"
        assert SPACE.to_string(result.best_arch) == SPACE.to_string(expected.best_arch)
        assert not recorded & set(resumed_calls), "a recorded score was measured again"


@pytest.mark.xdist_group("uninterrupted")
def test_no_architecture_is_evaluated_twice(uninterrupted):
    result, calls = uninterrupted
    keys = [SPACE.canonical_key(SPACE.parse(s)) for s in calls]
    assert len(keys) == len(set(keys)) == result.evaluated
    assert len(result.history) == result.evaluated


def test_query_budget_is_respected_exactly(tmp_path):
    calls = []
    result = make_search(tmp_path, calls, budget=23, iterations=100).run()
    assert len(calls) == len(set(calls)) == result.evaluated == 23


@pytest.mark.xdist_group("uninterrupted")
def test_outputs(uninterrupted, tmp_path):
    calls = []
    make_search(tmp_path, calls).run()
    best = json.loads((tmp_path / "best_arch.json").read_text())
    assert best["score"] == max(OBJECTIVE(SPACE.parse(s)) for s in calls)
    assert len(best["top"]) == 5
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [h["arch"] for h in history] == calls
    pool = (tmp_path / "pool.2.txt").read_text().splitlines()
    perf = [float(x) for x in (tmp_path / "pool.2.perf").read_text().splitlines()]
    assert len(pool) == len(perf) == 12 and perf == sorted(perf, reverse=True)
    assert list((tmp_path / "tensorboard").iterdir())
    assert sorted(p.name for p in (tmp_path / "controller").iterdir()) == [
        "ckpt-1.data-00000-of-00001", "ckpt-1.index"]


@pytest.mark.parametrize("text, message", [
    ('{"iteration": 1, "pool": [', "state.json: not valid JSON"),
    ('[1, 2]', "state.json: holds a JSON list"),
    ('{"identity": {}, "iteration": 1, "phase": "train", "pool": [], "history": "x", "rng": {}}',
     "state.json: field 'history' is missing or not of type list"),
])
def test_a_damaged_state_stops_and_is_not_overwritten(tmp_path, text, message):
    (tmp_path / "state.json").write_text(text)
    with pytest.raises(StateError, match=message):
        make_search(tmp_path, []).run()
    assert (tmp_path / "state.json").read_text() == text


def test_a_lost_state_with_a_history_stops(tmp_path):
    make_search(tmp_path, [], iterations=0).run()
    (tmp_path / "state.json").unlink()
    history = (tmp_path / "history.jsonl").read_text()
    with pytest.raises(StateError, match="state.json is missing, but history.jsonl"):
        make_search(tmp_path, [], iterations=0).run()
    assert (tmp_path / "history.jsonl").read_text() == history


def test_a_search_whose_scores_are_all_alike_says_so(tmp_path):
    class Flat(Evaluator):
        def evaluate(self, archs, iteration, record):
            for arch in archs:
                record(arch, 0.1)

    search = make_search(tmp_path / "flat", [], iterations=0)
    search.evaluator = Flat()
    search.run()
    best = json.loads((tmp_path / "flat" / "best_arch.json").read_text())
    assert best["warning"] == ("all 12 scores are 0.1: nothing was learned that tells the "
                               "architectures apart, so the best architecture is arbitrary")
    make_search(tmp_path / "normal", [], iterations=0).run()
    assert "warning" not in json.loads((tmp_path / "normal" / "best_arch.json").read_text())


def test_state_of_a_different_search_is_refused(tmp_path):
    make_search(tmp_path, [], iterations=0).run()
    before = (tmp_path / "state.json").read_text()
    with pytest.raises(StateError, match=r"other settings \(search.top_k: 4 -> 3\)"):
        make_search(tmp_path, [], iterations=0, top_k=3).run()
    assert (tmp_path / "state.json").read_text() == before


@pytest.mark.slow
def test_sigkill_then_rerun_ends_like_an_uninterrupted_run(tmp_path):
    def demo(output_dir):
        return [sys.executable, "-m", "nao_tf.commands.demo", f"--output_dir={output_dir}", "--iterations=2",
                "--seed_archs=40", "--new_archs=20", "--controller_epochs=5"]

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(demo(tmp_path / "full"), env=env, check=True, capture_output=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen(demo(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    reached = False
    while time.monotonic() < deadline and process.poll() is None:
        state = killed / "state.json"
        if state.exists() and '"phase": "generate"' in state.read_text():
            reached = True
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert reached and process.returncode == -signal.SIGKILL, \
        "the search must be killed by SIGKILL before it ends"
    assert json.loads((killed / "state.json").read_text())["phase"] != "done"
    subprocess.run(demo(killed), env=env, check=True, capture_output=True)
    assert (killed / "history.jsonl").read_text() == (tmp_path / "full" / "history.jsonl").read_text()
    assert json.loads((killed / "best_arch.json").read_text()) == json.loads(
        (tmp_path / "full" / "best_arch.json").read_text())


def test_seed_pool_is_deduplicated_and_used(tmp_path):
    rng = np.random.default_rng(0)
    archs = SPACE.sample_unique(6, rng)
    calls = []
    make_search(tmp_path, calls, iterations=0).__class__(
        SPACE, CountingEvaluator(calls), SearchConfig(iterations=0), ControllerConfig.for_space(
            SPACE, emb_size=8, hidden_size=16, mlp_layers=1, mlp_hidden=16, batch_size=8),
        tmp_path, seed_pool=archs + archs[:2], log=lambda _: None).run()
    assert calls == [SPACE.to_string(a) for a in archs]


class SupernetLikeEvaluator(Evaluator):
    """Records what `prepare` saw; re-scores the whole pool each iteration, like weight sharing."""

    rescore_pool = True

    def __init__(self, prepared: list, fail_after: int | None = None):
        self.prepared, self.fail_after, self.scored = prepared, fail_after, 0

    def prepare(self, pool, iteration):
        self.prepared.append((iteration, sorted(SPACE.to_string(a) for a in pool)))

    def evaluate(self, archs, iteration, record):
        for arch in archs:
            if self.fail_after is not None and self.scored == self.fail_after:
                raise Crash
            self.scored += 1
            record(arch, OBJECTIVE(arch) + iteration)


def test_prepare_sees_the_whole_pool_even_when_a_resumed_evaluation_scores_only_part(tmp_path):
    def search(evaluator):
        config = SearchConfig(seed_archs=8, iterations=1, top_k=3, new_archs=3, random_archs=1,
                              max_lambda=10.0, controller_epochs=2, seed=1)
        controller = ControllerConfig.for_space(SPACE, emb_size=8, hidden_size=16, mlp_layers=1,
                                                mlp_hidden=16, attention="dot", batch_size=8, seed=1)
        return NAOSearch(SPACE, evaluator, config, controller, tmp_path, log=lambda _: None,
                         save_every_seconds=0.0)

    prepared = []
    with pytest.raises(Crash):
        search(SupernetLikeEvaluator(prepared, fail_after=5)).run()
    resumed = SupernetLikeEvaluator(prepared)
    search(resumed).run()
    state = json.loads((tmp_path / "state.json").read_text())
    assert [it for it, _ in prepared] == [0, 0, 1]
    assert prepared[0] == prepared[1] and len(prepared[0][1]) == 8
    assert prepared[2][1] == sorted(state["pool"])
    assert resumed.scored == 3 + 8  # the rest of iteration 0, then the whole new pool


def test_imported_scores_lead_the_first_pool_and_are_not_evaluated_again(tmp_path):
    imported = SPACE.sample_unique(5, np.random.default_rng(4))
    calls = []
    make = make_search(tmp_path / "probe", [])
    search = NAOSearch(SPACE, CountingEvaluator(calls), make.config, make.controller.config, tmp_path,
                       log=lambda _: None, imported=[(a, 0.5 + i) for i, a in enumerate(imported)])
    search.run()
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [h["arch"] for h in history[:5]] == [SPACE.to_string(a) for a in imported]
    assert all(h["imported"] and h["iteration"] == 0 for h in history[:5])
    imported_keys = {SPACE.canonical_key(a) for a in imported}
    assert not imported_keys & {SPACE.canonical_key(SPACE.parse(s)) for s in calls}
    assert len(history) == 5 + len(calls) and len(calls) >= 12 - 5


def test_best_architecture_is_drawn_after_every_evaluation(tmp_path):
    from nao_tf.algorithm.draw import CellGraph

    def graphs(arch):
        nodes = [f"n{i}" for i in range(len(arch))]
        edges = [("x", nodes[0], f"op{arch[0]}")] + [
            (nodes[i - 1], nodes[i], f"op{arch[i]}") for i in range(1, len(arch))]
        return [CellGraph("cell", ["x"], edges, "out", [nodes[-1]], "mean")]

    make = make_search(tmp_path / "probe", [])
    search = NAOSearch(SPACE, CountingEvaluator([]), make.config, make.controller.config, tmp_path,
                       log=lambda _: None, graphs=graphs)
    search.run()
    assert (tmp_path / "best_arch.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = json.loads((tmp_path / "best_arch.json").read_text())["arch"]
    dot = (tmp_path / "best_arch.dot").read_text()
    assert all(f'label="op{t}"' in dot for t in SPACE.parse(best))


def test_a_beam_search_decodes_the_new_architectures(tmp_path, monkeypatch):
    """`beam_width` (`--beam_width` of every search command): the search decodes with
    `beam_decode` of that width (recorded when the decoding function is traced)."""
    from nao_tf.algorithm import generate
    from nao_tf.commands.search_command import ControllerOptions

    assert ControllerOptions(beam_width=3).split()[1]["beam_width"] == 3
    widths, real = [], generate.beam_decode
    monkeypatch.setattr(generate, "beam_decode",
                        lambda model, outputs, width: widths.append(width) or real(model, outputs,
                                                                                    width))
    calls = []
    result = make_search(tmp_path, calls, beam_width=3).run()
    assert widths and set(widths) == {3}
    assert result.evaluated == len(set(calls)) > 12  # new architectures beyond the first pool


@pytest.mark.parametrize("text, message", [("30,60,x", "comma-separated whole epochs"),
                                           ("60,30,150", "increasing"),
                                           ("30,60", "end at --epochs=150"),
                                           ("0,150", "positive")])
def test_a_bad_list_of_scoring_epochs_is_one_line(text, message):
    from nao_tf.common.errors import NaoError
    from nao_tf.algorithm.evaluators import parse_eval_epochs

    assert parse_eval_epochs("30, 60,90,120,150", 150) == (30, 60, 90, 120, 150)
    assert parse_eval_epochs("", 150) == ()
    with pytest.raises(NaoError, match=message):
        parse_eval_epochs(text, 150)
