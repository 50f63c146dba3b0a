"""NAO without weight sharing: every candidate architecture is trained on its own.

In the paper's NAO (no weight sharing) each architecture x of the pool is trained from scratch
with a short schedule, and its validation score s_x (CNN: best validation accuracy; RNN:
validation perplexity) is what the controller's predictor f learns. This module is the
task-agnostic part of that:

  * `StandaloneEvaluator` trains every architecture it is given with a task-supplied function
    `train(arch, device) -> score`, one worker thread per device (one architecture per GPU, several
    architectures in parallel, never one architecture across GPUs), and hands each score to the
    search loop (`record`) as soon as it is known, from the calling thread only
    (`ray_executor.RayEvaluator`: the same, one Ray task per architecture on a cluster);
  * `ArchDirs` gives each architecture a run directory and keeps its score on disk, so a run killed
    between "score known" and "search state saved" never trains that architecture again;
  * `read_imported` reads the original's evaluated-architecture files (one architecture per line,
    one score per line) for `NAOSearch(imported=...)`.

A training that diverges (NaN/inf loss) raises `TrainingDiverged`; the evaluator then records the
best score reached before the divergence when there is one, else the task's `failed_score` (the
score of a network that learned nothing: chance accuracy, or the perplexity of a uniform
predictor), or, when the task gives none, stops with an error naming the architecture.
"""

import hashlib
import math
import os
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Hashable, Sequence

import tensorflow as tf

from nao_tf.algorithm.evaluators import Evaluator, Record
from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.common import io
from nao_tf.common.errors import DataError, InvalidArchitectureError, NaoError

Arch = Hashable
TrainFn = Callable[[Arch, str], float]

# Keras draws initial weights from one process-wide seed. A task that seeds it for each
# architecture builds the network under this lock, so that workers on other devices cannot
# interleave their draws, and every architecture starts from the weights its seed gives.
build_lock = threading.Lock()


class TrainingDiverged(Exception):
    """Raised by a train function whose loss became NaN or infinite. `score` is the best score
    reached before the divergence (e.g. the best validation accuracy of the finished epochs), or
    None when there is none."""

    def __init__(self, message: str, score: float | None = None):
        super().__init__(message)
        self.score = score


def default_devices() -> list[str]:
    """The visible GPUs (one worker each), else the CPU."""
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    return gpus or ["/cpu:0"]


def parse_devices(text: str) -> list[str]:
    """`--devices`: '' for the default, else a comma-separated list such as '/gpu:0,/gpu:1'."""
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if not devices:
        return default_devices()
    for device in devices:
        try:
            spec = tf.DeviceSpec.from_string(device)
        except ValueError:
            spec = None
        visible = (tf.config.list_logical_devices(spec.device_type)
                   if spec and spec.device_type else [])
        if spec is None or spec.device_index is None or spec.device_index >= len(visible):
            raise NaoError(f"--devices: {device!r} is not a visible device; visible: "
                           + ", ".join(d.name for d in tf.config.list_logical_devices()))
    return devices


class ArchDirs:
    """`root/<hash of the architecture string>/` per architecture: the training's checkpoints and
    logs, `arch.txt`, and `score.json` once the score is known. `scratch` names the
    sub-directories deleted when the score is saved (checkpoints: a pool of hundreds of trained
    networks would otherwise fill the disk)."""

    def __init__(self, root: str | os.PathLike, to_string: Callable[[Arch], str],
                 scratch: Sequence[str] = ()):
        self.root = Path(root)
        self.to_string = to_string
        self.scratch = tuple(scratch)

    def path(self, arch: Arch) -> Path:
        text = self.to_string(arch)
        directory = self.root / hashlib.sha1(text.encode()).hexdigest()[:12]
        if not (directory / "arch.txt").exists():
            io.atomic_write_text(directory / "arch.txt", text + "\n")
        return directory

    def score(self, arch: Arch) -> tuple[float, bool] | None:
        """(saved score of `arch`, whether it is the failure score), or None when it has not been
        trained to the end."""
        path = self.path(arch) / "score.json"
        if not path.exists():
            return None
        record = io.read_json(path)
        if not isinstance(record, dict) or record.get("arch") != self.to_string(arch) or \
                not isinstance(record.get("score"), (int, float)):
            raise DataError(f"{path} does not hold the score of {self.to_string(arch)!r}; "
                            "delete that directory to train it again")
        return float(record["score"]), bool(record.get("failed"))

    def save(self, arch: Arch, score: float, **info) -> None:
        directory = self.path(arch)
        io.atomic_write_json(directory / "score.json",
                             dict(arch=self.to_string(arch), score=score, **info))
        for name in self.scratch:
            shutil.rmtree(directory / name, ignore_errors=True)


class StandaloneEvaluator(Evaluator):
    """Trains each architecture with `train(arch, device)`; see the module docstring.

    `devices`: one worker thread per device, each pulling architectures from a shared queue and
    training them under `tf.device(device)` (default: `default_devices()`). `record` is called
    only from the thread that called `evaluate`. An exception in a worker stops the hand-out of new
    architectures; the trainings still running on other devices finish and their scores are
    recorded, then the exception is raised again in the calling thread.
    """

    rescore_pool = False

    def __init__(self, train: TrainFn, higher_is_better: bool,
                 devices: Sequence[str] | None = None, dirs: ArchDirs | None = None,
                 failed_score: float | None = None, to_string: Callable[[Arch], str] = str,
                 log: Callable[[str], None] = print):
        self.train = train
        self.higher_is_better = higher_is_better
        self.devices = list(devices) if devices else default_devices()
        self.dirs = dirs
        self.failed_score = failed_score
        self.to_string = to_string
        self.log = log

    def evaluate(self, archs: Sequence[Arch], iteration: int, record: Record) -> None:
        todo = []
        for arch in archs:
            saved = self.dirs.score(arch) if self.dirs else None
            if saved is None:
                todo.append(arch)
            else:
                self.log(f"  score {saved[0]:.6g} of {self.to_string(arch)} was saved by an "
                         "earlier run; not training it again")
                record(arch, saved[0], failed=saved[1])
        if todo:
            self._train_all(todo, record)

    def _train_all(self, todo: Sequence[Arch], record: Record) -> None:
        """Trains `todo`, one worker thread per device, recording each score as it arrives."""
        tasks: queue.Queue = queue.Queue()
        for arch in todo:
            tasks.put(arch)
        results: queue.Queue = queue.Queue()
        stop = threading.Event()
        workers = [threading.Thread(target=self._work, args=(device, tasks, results, stop),
                                    name=f"nao-standalone-{device}", daemon=True)
                   for device in self.devices[:len(todo)]]
        self.log(f"  training {len(todo)} architectures on {len(workers)} device(s): "
                 + ", ".join(self.devices[:len(todo)]))
        started = time.monotonic()
        error: BaseException | None = None
        running, done = len(workers), 0
        try:
            for worker in workers:
                worker.start()
            while running:
                try:
                    kind, payload = results.get(timeout=1.0)
                except queue.Empty:
                    continue
                if kind == "exit":
                    running -= 1
                elif kind == "failed":
                    arch, device, err = payload
                    if error is None:
                        error = err
                        stop.set()
                        busy = running - 1
                        self.log(f"  {device} failed on {self.to_string(arch)}: "
                                 f"{type(err).__name__}: {err}"
                                 + (f"; waiting for the {busy} training(s) still running on other "
                                    "devices, their scores are kept" if busy else ""))
                else:
                    arch, (score, failed), device, seconds = payload
                    record(arch, score, failed=failed)
                    done += 1
                    elapsed = time.monotonic() - started
                    eta = elapsed / done * (len(todo) - done)
                    self.log(f"  [{done}/{len(todo)}] {score:.6g}  {self.to_string(arch)}  "
                             f"({device}, {seconds:.0f}s; ETA {eta / 60:.1f} min)")
        finally:
            stop.set()
        if error is not None:
            raise error

    def _work(self, device: str, tasks: queue.Queue, results: queue.Queue,
              stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    arch = tasks.get_nowait()
                except queue.Empty:
                    return
                started = time.monotonic()
                try:
                    score = self._train_one(arch, device)
                except BaseException as err:  # noqa: BLE001 - handed to the calling thread
                    results.put(("failed", (arch, device, err)))
                    return
                results.put(("score", (arch, score, device, time.monotonic() - started)))
        finally:
            results.put(("exit", device))

    def _train_one(self, arch: Arch, device: str) -> tuple[float, bool]:
        self.log(f"  training {self.to_string(arch)} on {device}")
        return self.settle(arch, *train_candidate(self.train, arch, device), device)

    def settle(self, arch: Arch, score: float | None, diverged: str | None,
               where: str) -> tuple[float, bool]:
        """(score, failed) of a finished training (`train_candidate`'s result), saved in its
        directory: a diverged one gets the best score it reached, else `failed_score` (`failed`
        is then True), else stops the search with an error naming it."""
        text = self.to_string(arch)
        failed = False
        if diverged is not None:
            if score is not None and math.isfinite(score):
                self.log(f"  {text} diverged ({diverged}); its score is the best reached before: "
                         f"{score:.6g}")
            elif self.failed_score is not None:
                score, failed = self.failed_score, True
                self.log(f"  {text} diverged ({diverged}); scored as a network that learned "
                         f"nothing: {score:.6g}")
            else:
                raise NaoError(f"training {text} on {where} diverged ({diverged}); change the "
                               "per-architecture schedule (e.g. a lower learning rate)")
        if self.dirs is not None:
            self.dirs.save(arch, score, device=where, diverged=diverged, failed=failed)
        return score, failed


def train_candidate(train: TrainFn, arch: Arch, device: str) -> tuple[float | None, str | None]:
    """(score, None) of `train(arch, device)` run under `tf.device(device)`, or (best score
    before the divergence or None, why) when the training diverged or its score is not finite."""
    with tf.device(device):
        try:
            score = float(train(arch, device))
        except TrainingDiverged as err:
            return err.score, str(err)
    if not math.isfinite(score):
        return None, f"the score is {score}"
    return score, None


def read_imported(space: SearchSpace, archs_path: str | os.PathLike,
                  scores_path: str | os.PathLike,
                  convert: Callable[[float], float] | None = None,
                  check: Callable[[float], str | None] | None = None,
                  parse: Callable[[str], Arch] | None = None) -> list[tuple[Arch, float]]:
    """(arch, score) pairs from the original's files: `archs_path` holds one architecture per
    line, `scores_path` one score per line in the same order (e.g. `valid_error_rate`,
    `valid_ppl`). `check(score)` returns an error text for an impossible score (None if fine);
    `convert` maps a file score to the search's score (e.g. error rate -> accuracy); `parse` reads
    one architecture line (default `space.parse`). Later duplicates of an architecture (same
    canonical key) are dropped. Every problem raises `DataError` naming the file and line."""
    parse = parse or space.parse
    archs = []
    for lineno, text in io.read_lines(archs_path):
        try:
            archs.append((lineno, parse(text)))
        except InvalidArchitectureError as err:
            raise DataError(f"{archs_path}:{lineno}: {err}") from None
    scores = io.read_scores(scores_path)
    if len(scores) != len(archs):
        raise DataError(f"{archs_path} has {len(archs)} architectures but {scores_path} has "
                        f"{len(scores)} scores; both files need one line per architecture, in "
                        "the same order")
    score_lines = [n for n, _ in io.read_lines(scores_path)]
    pairs, seen = [], set()
    for (_, arch), score, score_line in zip(archs, scores, score_lines, strict=True):
        problem = check(score) if check else None
        if problem:
            raise DataError(f"{scores_path}:{score_line}: {problem}")
        key = space.canonical_key(arch)
        if key in seen:
            continue
        seen.add(key)
        pairs.append((arch, convert(score) if convert else score))
    return pairs
