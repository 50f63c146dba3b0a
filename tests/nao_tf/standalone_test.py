"""The standalone evaluator: one worker per device, every score recorded once from the calling
thread, errors and divergence surfaced, saved scores never recomputed, imported score files."""

import json
import math
import threading
import time

import numpy as np
import pytest

from nao_tf.algorithm.controller import ControllerConfig
from nao_tf.algorithm.search import NAOSearch, SearchConfig
from nao_tf.common.errors import DataError, NaoError
from nao_tf.runtime.standalone import ArchDirs, StandaloneEvaluator, TrainingDiverged, read_imported
from nao_tf.spaces.synthetic import SyntheticObjective, SyntheticSpace

SPACE = SyntheticSpace(num_nodes=3, choices=4)
OBJECTIVE = SyntheticObjective(SPACE, seed=3)
DEVICES = ["/cpu:0", "/cpu:1"]


class RecordingTrain:
    """A train function that notes which device trained what (and sleeps a little, so both
    workers get work)."""

    def __init__(self, fail_on: int | None = None, seconds: float = 0.02):
        self.lock = threading.Lock()
        self.runs: list[tuple[str, str]] = []
        self.fail_on, self.seconds = fail_on, seconds

    def __call__(self, arch, device: str) -> float:
        with self.lock:
            self.runs.append((SPACE.to_string(arch), device))
            n = len(self.runs)
        time.sleep(self.seconds)
        if self.fail_on is not None and n == self.fail_on:
            raise RuntimeError(f"out of memory on {device}")
        return OBJECTIVE(arch)


def _archs(n: int, seed: int = 0) -> list:
    return SPACE.sample_unique(n, np.random.default_rng(seed))


def _collect(evaluator: StandaloneEvaluator, archs) -> list[tuple[str, float]]:
    recorded, threads = [], set()

    def record(arch, score, failed=False):
        threads.add(threading.current_thread())
        recorded.append((SPACE.to_string(arch), score))

    evaluator.evaluate(archs, 0, record)
    assert threads <= {threading.current_thread()}, "record was called from a worker thread"
    return recorded


def test_archs_spread_over_the_devices_and_each_score_recorded_once():
    archs = _archs(12)
    train = RecordingTrain()
    evaluator = StandaloneEvaluator(train, True, DEVICES, to_string=SPACE.to_string,
                                    log=lambda _: None)
    recorded = _collect(evaluator, archs)
    assert sorted(recorded) == sorted((SPACE.to_string(a), OBJECTIVE(a)) for a in archs)
    assert sorted(a for a, _ in train.runs) == sorted(SPACE.to_string(a) for a in archs)
    per_device = {d: sum(1 for _, dev in train.runs if dev == d) for d in DEVICES}
    assert all(n >= 2 for n in per_device.values()), per_device


def test_a_worker_error_surfaces_after_the_running_trainings_are_recorded():
    archs = _archs(8)
    train = RecordingTrain(fail_on=3, seconds=0.05)
    evaluator = StandaloneEvaluator(train, True, DEVICES, to_string=SPACE.to_string,
                                    log=lambda _: None)
    recorded = []
    with pytest.raises(RuntimeError, match="out of memory"):
        evaluator.evaluate(archs, 0, lambda a, s, failed=False: recorded.append(SPACE.to_string(a)))
    failed = train.runs[2][0]
    assert failed not in recorded
    assert sorted(recorded) == sorted(a for a, _ in train.runs if a != failed)
    assert len(train.runs) < len(archs)  # no new architecture was handed out after the error


def test_divergence_uses_the_score_before_it_else_the_failed_score_else_stops():
    first, second = _archs(2)

    def train(arch, device):
        score = 0.7 if arch == first else None
        raise TrainingDiverged("loss became nan at step 9", score)

    evaluator = StandaloneEvaluator(train, True, ["/cpu:0"], failed_score=0.1,
                                    to_string=SPACE.to_string, log=lambda _: None)
    assert dict(_collect(evaluator, [first, second])) == {SPACE.to_string(first): 0.7,
                                                          SPACE.to_string(second): 0.1}
    evaluator = StandaloneEvaluator(lambda a, d: math.nan, True, ["/cpu:0"],
                                    to_string=SPACE.to_string, log=lambda _: None)
    with pytest.raises(NaoError, match="diverged"):
        _collect(evaluator, [first])


def test_a_saved_score_is_recorded_without_training_again(tmp_path):
    archs = _archs(4)
    dirs = ArchDirs(tmp_path / "archs", SPACE.to_string, scratch=("checkpoints",))
    (dirs.path(archs[0]) / "checkpoints").mkdir()
    train = RecordingTrain()
    evaluator = StandaloneEvaluator(train, True, DEVICES, dirs=dirs, to_string=SPACE.to_string,
                                    log=lambda _: None)
    first = _collect(evaluator, archs)
    assert not (dirs.path(archs[0]) / "checkpoints").exists()  # scratch removed once scored
    again = _collect(evaluator, archs)
    assert sorted(again) == sorted(first) and len(train.runs) == len(archs)


class Killed(BaseException):
    """Stands in for SIGKILL: raised by the train function in the middle of a pool."""


def _search(output_dir, train, devices) -> NAOSearch:
    config = SearchConfig(seed_archs=10, iterations=1, top_k=4, new_archs=4, random_archs=0,
                          max_lambda=30.0, lambda_step=10.0, controller_epochs=3,
                          train_on="history", symmetry=False, seed=2)
    controller = ControllerConfig.for_space(SPACE, emb_size=8, hidden_size=16, mlp_layers=1,
                                            mlp_hidden=16, batch_size=8, seed=2)
    evaluator = StandaloneEvaluator(train, True, devices, to_string=SPACE.to_string,
                                    log=lambda _: None)
    return NAOSearch(SPACE, evaluator, config, controller, output_dir, log=lambda _: None,
                     save_every_seconds=0.0)


@pytest.mark.slow
def test_a_search_whose_every_architecture_failed_says_so(tmp_path):
    def diverge(arch, device):
        raise TrainingDiverged("loss is nan at step 1")

    search = _search(tmp_path, diverge, ["/cpu:0"])
    search.evaluator.failed_score = 0.1
    logs = []
    search.log = logs.append
    result = search.run()
    best = json.loads((tmp_path / "best_arch.json").read_text())
    assert best["warning"].startswith(f"all {result.evaluated} architectures failed to train")
    assert any(line.startswith("warning: all") for line in logs)
    assert all(r["failed"] for r in result.history)


@pytest.mark.slow
def test_a_killed_search_resumes_without_training_a_recorded_architecture_again(tmp_path):
    first = RecordingTrain(seconds=0.0)
    calls = []

    def dying(arch, device):
        calls.append(arch)
        if len(calls) == 6:
            raise Killed()
        return first(arch, device)

    with pytest.raises(Killed):
        _search(tmp_path, dying, ["/cpu:0"]).run()
    trained_before = {a for a, _ in first.runs}
    assert len(trained_before) == 5
    second = RecordingTrain(seconds=0.0)
    result = _search(tmp_path, second, DEVICES).run()
    trained_after = [a for a, _ in second.runs]
    assert not trained_before & set(trained_after)
    assert len(trained_after) == len(set(trained_after))
    scored = [r["arch"] for r in result.history]
    assert len(scored) == len(set(scored)) == len(trained_before) + len(trained_after)
    assert (tmp_path / "best_arch.json").exists()


def test_read_imported_checks_lengths_lines_and_values(tmp_path):
    archs = _archs(3)
    arch_file, score_file = tmp_path / "archs", tmp_path / "scores"
    arch_file.write_text("".join(SPACE.to_string(a) + "\n" for a in archs + [archs[0]]))
    score_file.write_text("0.1\n0.2\n0.3\n0.4\n")
    pairs = read_imported(SPACE, arch_file, score_file, convert=lambda e: 1 - e)
    assert [(SPACE.to_string(a), round(s, 6)) for a, s in pairs] == \
        [(SPACE.to_string(a), s) for a, s in zip(archs, (0.9, 0.8, 0.7))]  # duplicate dropped

    score_file.write_text("0.1\n0.2\n0.3\n")
    with pytest.raises(DataError, match="4 architectures but .* 3 scores"):
        read_imported(SPACE, arch_file, score_file)
    score_file.write_text("0.1\n0.2\nnan\n0.4\n")
    with pytest.raises(DataError, match=rf"{score_file}:3: score is nan"):
        read_imported(SPACE, arch_file, score_file)
    score_file.write_text("0.1\n0.2\n0.3\n7\n")
    with pytest.raises(DataError, match=rf"{score_file}:4: too large"):
        read_imported(SPACE, arch_file, score_file, check=lambda s: "too large" if s > 1 else None)
    arch_file.write_text(SPACE.to_string(archs[0]) + "\nnot an arch\n")
    with pytest.raises(DataError, match=rf"{arch_file}:2: "):
        read_imported(SPACE, arch_file, score_file)
