"""NAO without weight sharing on a Ray cluster: each candidate trains as one Ray task.

`RayEvaluator` is `standalone.StandaloneEvaluator` with the worker threads replaced by Ray
tasks (`ray.remote`, one GPU each on a cluster with GPUs, else `cpus` CPUs), placed by Ray on any
node of the cluster. The driver stays the only writer of the search: a task returns its score to
the driver, which applies the divergence policy, saves `score.json` and records the score. A
task whose node dies is re-run by Ray on another node (`max_retries`); its result arrives once, so
a candidate never counts twice. A restarted driver retrains nothing recorded (the search state and
`score.json`); a candidate lost mid-training resumes from its checkpoints when `--output_dir` is
on storage every node reaches, and from scratch otherwise.

A Ray worker rebuilds the task's trainer itself, once per worker process: `CandidateJob.rebuild`
(a module-level function, which Ray ships by reference) returns `(parse, train)` from picklable
arguments (the task's `module:attribute` and its flag values). Every node must be able to import
the project and read the data at the same paths (see docs/distributed.md). Each attempt appends a
line (node, process, time) to the candidate's `attempts.jsonl`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Callable, Sequence

from nao_tf.algorithm.evaluators import Record
from nao_tf.common.errors import NaoError
from nao_tf.common.io import atomic_write_text
from nao_tf.runtime.standalone import Arch, ArchDirs, StandaloneEvaluator, TrainFn, train_candidate

ROOT = Path(__file__).resolve().parents[1]  # what a worker must import the project from
INSTALL_HINT = "pip install -r requirements-cluster.txt"


def require_ray() -> None:
    """Stops with the install command when Ray is not installed."""
    if importlib.util.find_spec("ray") is None:
        raise NaoError(f"--executor=ray needs Ray, which is not installed: {INSTALL_HINT}")


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Stops with one line when nothing answers at `address` (a Ray head's 'host:port', or
    'ray://host:port') within `timeout` seconds, before anything is written: Ray itself retries
    for a minute, printing warnings about its own addresses, then ends the process. '', 'local'
    and 'auto' (the cluster `ray start` recorded on this machine) are left to Ray."""
    if address in ("", "local", "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as err:
        reason = "not host:port" if isinstance(err, ValueError) else \
            (err.strerror or type(err).__name__).lower()
        raise NaoError(f"--ray_address={address}: no Ray cluster answers there ({reason} after "
                       f"at most {timeout:g}s); give the head's host:port (`ray start --head` "
                       "prints it), or '' to start Ray on this machine") from None


@dataclasses.dataclass(frozen=True)
class CandidateJob:
    """How a worker gets the trainer: `rebuild(*args)` -> (parse: text -> arch, train)."""

    rebuild: Callable[..., tuple[Callable[[str], Arch], TrainFn]]
    args: tuple
    dirs_root: str  # the candidates' directories (`ArchDirs.root`)
    cpus: int = 1

    @property
    def key(self) -> str:
        return f"{self.rebuild.__module__}.{self.rebuild.__qualname__}" + \
            json.dumps(self.args, sort_keys=True, default=str)


_REBUILT: dict[str, tuple[Callable[[str], Arch], TrainFn]] = {}


def _threads(cpus: int) -> None:
    """TensorFlow's thread pools sized to the task's CPUs (before its first op)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(min(cpus, 2))
    except RuntimeError:  # TensorFlow already ran in this worker: its pools are set
        pass


def run_candidate(job: CandidateJob, arch_text: str) -> tuple[float | None, str | None, str,
                                                             float]:
    """Runs in a Ray worker: (score, why it diverged or None, where, seconds)."""
    import ray

    if job.key not in _REBUILT:
        _threads(job.cpus)
        _REBUILT[job.key] = job.rebuild(*job.args)
    parse, train = _REBUILT[job.key]
    arch = parse(arch_text)
    node = ray.get_runtime_context().get_node_id()
    device = "/gpu:0" if ray.get_gpu_ids() else "/cpu:0"
    directory = ArchDirs(job.dirs_root, lambda _: arch_text).path(arch)
    with open(directory / "attempts.jsonl", "a") as f:
        f.write(json.dumps({"node": node, "pid": os.getpid(), "started": time.time()}) + "\n")
    started = time.monotonic()
    score, diverged = train_candidate(train, arch, device)
    return score, diverged, f"node {node[:8]} {device}", time.monotonic() - started


def _in_session(process: Path, session_dir: str) -> bool:
    """Whether /proc entry `process` belongs to Ray session `session_dir`: its command line names
    it, or it holds a file there open (Ray's agents rename themselves, ray::DashboardAgent)."""
    if session_dir in (process / "cmdline").read_bytes().decode(errors="replace"):
        return True
    return any(os.readlink(fd).startswith(session_dir) for fd in (process / "fd").iterdir())


def _stop_session(session_dir: str) -> int:
    """SIGKILLs every process of this machine in Ray session `session_dir` (what a driver killed
    before `ray.shutdown` left: Ray's agents outlive it); returns how many. Linux (/proc) only."""
    stopped = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if _in_session(entry, session_dir):
                os.kill(int(entry.name), signal.SIGKILL)
                stopped += 1
        except OSError:  # gone meanwhile, or not ours
            continue
    return stopped


def connect(address: str, session_record: Path | None = None) -> None:
    """Joins the Ray cluster at `address` ('' starts one on this machine), once per process.
    Starting one, it first stops what the last driver of this run left of its own local Ray
    (the session named in `session_record`), then names the new session there."""
    require_ray()
    import ray

    if ray.is_initialized():
        return
    if not address and session_record is not None and session_record.exists():
        stopped = _stop_session(session_record.read_text().strip())
        if stopped:
            print(f"stopped {stopped} process(es) of the local Ray a killed run left", flush=True)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    # '' starts Ray here: "local", not None, which would join the last cluster `ray start` made.
    ray.init(address=address or "local", include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    if not address and session_record is not None:
        session = ray._private.worker.global_worker.node.get_session_dir_path()
        atomic_write_text(session_record, session)


class RayEvaluator(StandaloneEvaluator):
    """Trains each architecture as a Ray task (see the module docstring). `max_retries`: how
    often Ray re-runs a task whose worker or node died."""

    def __init__(self, job: CandidateJob, address: str, higher_is_better: bool,
                 dirs: ArchDirs | None = None, failed_score: float | None = None,
                 to_string: Callable[[Arch], str] = str, log: Callable[[str], None] = print,
                 max_retries: int = 3):
        super().__init__(train=None, higher_is_better=higher_is_better, devices=["ray"],
                         dirs=dirs, failed_score=failed_score, to_string=to_string, log=log)
        self.job, self.address, self.max_retries = job, address, max_retries

    def _slots(self, gpus: int) -> int:
        """Tasks the cluster runs at once now (at least 1: Ray queues the rest)."""
        import ray

        resources = ray.cluster_resources()
        if gpus:
            return max(1, int(resources.get("GPU", 0)))
        return max(1, int(resources.get("CPU", 0) // self.job.cpus))

    def _train_all(self, todo: Sequence[Arch], record: Record) -> None:
        import ray

        connect(self.address, self.dirs.root / "ray_session.txt" if self.dirs else None)
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        remote = ray.remote(run_candidate).options(num_cpus=self.job.cpus, num_gpus=gpus,
                                                   max_retries=self.max_retries)
        waiting, running = list(todo), {}
        self.log(f"  training {len(todo)} architectures on the Ray cluster "
                 f"({self._slots(gpus)} at a time, each {'1 GPU, ' if gpus else ''}"
                 f"{self.job.cpus} CPU)")
        started, done = time.monotonic(), 0
        error: BaseException | None = None
        try:
            while running or (waiting and error is None):
                while waiting and error is None and len(running) < self._slots(gpus):
                    arch = waiting.pop(0)
                    running[remote.remote(self.job, self.to_string(arch))] = arch
                ready, _ = ray.wait(list(running), num_returns=1, timeout=5.0)
                for ref in ready:
                    arch = running.pop(ref)
                    try:
                        score, diverged, where, seconds = ray.get(ref)
                        score, failed = self.settle(arch, score, diverged, where)
                    except Exception as err:  # noqa: BLE001 - raised once the running finish
                        if error is None:
                            error = err
                            self.log(f"  {self.to_string(arch)} failed: {err}"
                                     + (f"; waiting for the {len(running)} training(s) still "
                                        "running, their scores are kept" if running else ""))
                        continue
                    record(arch, score, failed=failed)
                    done += 1
                    eta = (time.monotonic() - started) / done * (len(todo) - done)
                    self.log(f"  [{done}/{len(todo)}] {score:.6g}  {self.to_string(arch)}  "
                             f"({where}, {seconds:.0f}s; ETA {eta / 60:.1f} min)")
        finally:
            for ref in running:
                ray.cancel(ref)
        if error is not None:
            raise error

