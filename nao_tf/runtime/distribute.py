"""Choosing a `tf.distribute` strategy, the chief's part on many machines, and building
optimizers the way MirroredStrategy needs.

Custom training loops under MirroredStrategy fail when Keras creates optimizer slots lazily inside
the traced step (keras-team/keras#19246): every variable must exist before the first traced call.

Many machines: with a `TF_CONFIG` that names two or more workers, `get_strategy()` is a
`MultiWorkerMirroredStrategy` over every device of every worker (create it before any other
TensorFlow op of the process). Every worker runs the same command; checkpoint saves are
collective, so every worker saves, but only the chief (`is_chief`) writes into `--output_dir`:
the others save into a scratch directory (`writable_dir`) that is deleted when the process ends,
and everyone restores from the chief's checkpoints. A decision every worker must take alike (a
validation loss that switches the schedule, the next pool of a search) is the chief's, sent to
all with `from_chief`; `barrier` waits for every worker.
"""

import atexit
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
from tensorflow.python.eager import context

from nao_tf.common.errors import NaoError
from nao_tf.common.resume import latest_checkpoint, unrecorded_checkpoints, write_record
from nao_tf.runtime import wait_for_workers


_FIX = "set it as docs/distributed.md shows, or unset it"


def chief_task(cluster: Mapping[str, Any]) -> tuple[str, int]:
    """(job, index) of the chief of a TF_CONFIG `cluster`: task 'chief', else worker 0. It writes
    the run's files and holds the coordination service."""
    return ("chief", 0) if "chief" in cluster else ("worker", 0)


def _tf_config() -> dict:
    """`TF_CONFIG` as a dict ({} without one), its cluster and task checked: one line naming the
    problem otherwise."""
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError:
        config = None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise NaoError(f"TF_CONFIG is not a JSON object with a 'cluster' entry: {text[:200]!r}; "
                       + _FIX)
    for job, addresses in config["cluster"].items():
        if not isinstance(addresses, list) or not all(
                isinstance(a, str) and re.fullmatch(r".+:\d+", a) for a in addresses):
            raise NaoError(f"TF_CONFIG's cluster entry {job!r} must be a list of 'host:port' "
                           f"strings, not {addresses!r}; " + _FIX)
    task = config.get("task")
    jobs = config["cluster"]
    if not isinstance(task, dict) or task.get("type") not in jobs or not isinstance(
            task.get("index"), int) or not 0 <= task["index"] < len(jobs[task["type"]]):
        raise NaoError(f"TF_CONFIG's task {task!r} must name this machine's job of the cluster "
                       f"({', '.join(f'{j}: {len(a)}' for j, a in jobs.items())}) and its index, "
                       'e.g. {"type": "worker", "index": 0}; ' + _FIX)
    return config


def cluster_workers() -> int:
    """How many workers `TF_CONFIG` names (0 without one)."""
    cluster = _tf_config().get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


_worker_timeout_s = 300  # how long a worker waits for the others at start-up


def set_worker_timeout(seconds: int) -> None:
    """`--worker_timeout` of the command line (`commands.cli`), for the multi-worker strategy
    this process creates."""
    global _worker_timeout_s
    _worker_timeout_s = seconds


def _create_multi_worker(timeout_s: int) -> tf.distribute.MultiWorkerMirroredStrategy:
    """The multi-worker strategy, with TensorFlow's coordination service told to wait at most
    `timeout_s` for every worker to register (its start-up barrier) instead of for ever; while it
    waits, a line every 10 s names the workers whose server is not up yet (`wait_for_workers`)."""
    config = _tf_config()
    me, jobs = config["task"], config["cluster"]
    others = [(f"{job} {i}", address) for job, addresses in jobs.items()
              for i, address in enumerate(addresses) if (job, i) != (me["type"], me["index"])]
    leader, _ = chief_task(jobs)
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=f"/job:{leader}/replica:0/task:0",
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(jobs[job]))
                          for job in ("chief", "worker") if job in jobs],
        cluster_register_timeout_in_ms=timeout_s * 1000)
    context.context().coordination_service.cluster_register_with_barrier = True
    reporter = subprocess.Popen([sys.executable, wait_for_workers.__file__, json.dumps(others),
                                 str(timeout_s)])
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except tf.errors.DeadlineExceededError:
        raise NaoError(f"not every worker of TF_CONFIG started within --worker_timeout="
                       f"{timeout_s}s (not started: "
                       f"{', '.join(wait_for_workers.not_started(others)) or 'unknown'}); start "
                       "the same command on every worker, or raise --worker_timeout") from None
    finally:
        reporter.kill()
        reporter.wait()


def lost_worker(error: BaseException) -> str | None:
    """The one line for a TensorFlow error that says another worker of this process's
    multi-worker job was lost (it stopped sending heartbeats, its connection dropped), else
    None."""
    lost = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
            tf.errors.DeadlineExceededError)
    if not _MULTI_WORKER or not isinstance(error, lost):
        return None
    me = _tf_config()["task"]
    tasks = sorted({f"{job} {index}" for job, index in re.findall(
        r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)", str(error))} - {f"{me['type']} {me['index']}"})
    why = "stopped sending heartbeats" if "heartbeat" in str(error) else "connection dropped"
    return (f"lost {', '.join(tasks) if tasks else 'another worker'} of TF_CONFIG ({why}); "
            "restart all workers with the same command to resume")


_MULTI_WORKER: list[tf.distribute.Strategy] = []  # one per process


def in_multi_worker_job() -> bool:
    """Whether this process has joined a multi-worker job (TF_CONFIG)."""
    return bool(_MULTI_WORKER)


def finish_together(timeout_s: int = 60, leader_timeout_s: int = 600) -> None:
    """The normal end of a process of a multi-worker job (`commands.cli` calls it when the
    command has returned). Every worker leaves a "done" key in TensorFlow's coordination service;
    the leader (the chief, which holds the service) waits up to `timeout_s` for every other
    worker's, and every other worker up to `leader_timeout_s` for the leader's (which may still
    be exporting the network), so no worker is left sending heartbeats to a service that is gone
    and none leaves while the leader still works (its service would report it as crashed:
    `StartAbort UNAVAILABLE ... stopped sending heartbeats`). Then this process's
    stderr is closed for its teardown, in which TensorFlow's coordination and collective threads
    may still log that the other workers went away though nothing failed."""
    if not _MULTI_WORKER:
        return
    config = _tf_config()
    me = (config["task"]["type"], int(config["task"]["index"]))
    leader = chief_task(config["cluster"])
    if me == leader:
        waits = [((job, index), timeout_s) for job, addresses in config["cluster"].items()
                 for index in range(len(addresses)) if (job, index) != me]
    else:
        waits = [(leader, leader_timeout_s)]
    coordination = context.context()
    try:
        coordination.set_config_key_value(f"nao_tf/done/{me[0]}/{me[1]}", "1")
        for (job, index), seconds in waits:
            coordination.get_config_key_value(f"nao_tf/done/{job}/{index}",
                                              timeout_in_ms=seconds * 1000)
    except tf.errors.OpError:  # a worker that did not end normally: its own output says why
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)


def get_strategy(devices: Sequence[str] | None = None,
                 multi_worker: bool = False) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when `TF_CONFIG` names two or more workers (for a caller that
    handles it, `multi_worker`, or once one has created it; others stop with an error); else MirroredStrategy over `devices`
    (default: all visible GPUs) when there are 2 or more, else a one-device strategy on the single
    GPU or the CPU."""
    workers = cluster_workers()
    if devices is None and _MULTI_WORKER:
        return _MULTI_WORKER[0]
    if devices is None and workers > 1:
        if not multi_worker:
            raise NaoError(f"TF_CONFIG names {workers} workers, but this command trains on one "
                           "machine (docs/distributed.md lists the multi-worker commands); unset "
                           "TF_CONFIG")
        if not _MULTI_WORKER:
            _MULTI_WORKER.append(_create_multi_worker(_worker_timeout_s))
        return _MULTI_WORKER[0]
    if devices is None:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        if not devices:
            return tf.distribute.OneDeviceStrategy("/cpu:0")
    if len(devices) == 1:
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.MirroredStrategy(list(devices))


def multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy | None:
    """The process's multi-worker strategy when `TF_CONFIG` names two or more workers (created
    now: call before any other TensorFlow op); None on one machine. Once it exists,
    `get_strategy()` returns it to every caller."""
    return get_strategy(multi_worker=True) if cluster_workers() > 1 else None


def strategy_for_batch(batch_size: int, multi_worker: bool = False) -> tf.distribute.Strategy:
    """`get_strategy(multi_worker=...)` when `batch_size` splits evenly over its replicas;
    otherwise one device, with a warning that names the batch, the replicas and the fix (across
    machines, an error: one device there is not one job)."""
    strategy = get_strategy(multi_worker=multi_worker)
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas == 0:
        return strategy
    if is_multi_worker(strategy):
        raise NaoError(f"--batch_size={batch_size} does not split over the {replicas} replicas "
                       f"of the {cluster_workers()} workers; use a multiple of {replicas}")
    logging.warning("batch %d does not split over %d replicas: training on one device (use a "
                    "multiple of %d to train on all of them)", batch_size, replicas, replicas)
    return get_strategy([strategy.extended.worker_devices[0]])


def build_optimizer(optimizer: keras.optimizers.Optimizer,
                    variables: Sequence[tf.Variable]) -> keras.optimizers.Optimizer:
    """Creates the optimizer's slot variables now (call inside `strategy.scope()`, eagerly)."""
    optimizer.build(list(variables))
    return optimizer


def shared_seed(strategy: tf.distribute.Strategy, seed: int | None) -> int:
    """`seed`, or (None) a random one that every worker of `strategy` shares: the draw of the
    worker holding replica 0, summed over the replicas with every other replica's zero."""
    if seed is not None:
        return seed
    mine = tf.constant(np.random.randint(1, 1 << 31), tf.int64)
    if not is_multi_worker(strategy):
        return int(mine)

    def first_replicas() -> tf.Tensor:
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tf.where(tf.equal(replica, 0), mine, tf.zeros_like(mine))

    return int(strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(first_replicas),
                               axis=None))


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always, except on the workers of a
    multi-worker strategy other than the chief (`chief_task`)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not is_multi_worker(strategy) or resolver is None:
        return True
    return (resolver.task_type, resolver.task_id) == chief_task(resolver.cluster_spec().as_dict())


_SCRATCH: dict[str, str] = {}


def writable_dir(path: str, strategy: tf.distribute.Strategy) -> str:
    """`path` on the chief; on another worker a scratch directory standing in for it (its
    collective checkpoint saves go there), removed when the process exits. Its name is a function
    of `path` and the worker's task, so a worker that was killed leaves it to its next start,
    which removes it."""
    if is_chief(strategy):
        return path
    if path not in _SCRATCH:
        task = strategy.cluster_resolver
        key = hashlib.sha256(f"{os.path.abspath(path)}|{task.task_type}|{task.task_id}".encode())
        scratch = os.path.join(tempfile.gettempdir(), f"nao-worker-{key.hexdigest()[:16]}")
        shutil.rmtree(scratch, ignore_errors=True)  # what a killed run of this worker left
        os.makedirs(scratch)
        _SCRATCH[path] = scratch
        atexit.register(shutil.rmtree, scratch, True)
    return _SCRATCH[path]


def from_chief(strategy: tf.distribute.Strategy, value) -> np.ndarray:
    """`value` as the chief holds it, on every worker (float64; every worker passes the same
    shape). Without a multi-worker strategy, `value` itself. Collective: every worker calls it."""
    if not is_multi_worker(strategy):
        return np.asarray(value, np.float64)
    value = tf.constant(value, tf.float64)

    def chiefs_part():  # global replica 0 is the chief's first device
        ctx = tf.distribute.get_replica_context()
        first = tf.cast(tf.equal(ctx.replica_id_in_sync_group, 0), tf.float64)
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value * first)

    return strategy.experimental_local_results(strategy.run(chiefs_part))[0].numpy()


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns once every worker has called it (at once without a multi-worker strategy)."""
    from_chief(strategy, 0.0)


def checkpoint_manager(checkpoint: tf.train.Checkpoint, directory: str | os.PathLike,
                       strategy: tf.distribute.Strategy, max_to_keep: int
                       ) -> tuple[tf.train.CheckpointManager, str | None]:
    """A manager that saves `checkpoint` into `directory` (on another worker: into its scratch
    stand-in), and the checkpoint to resume from: the newest of the chief's, None for a new run.
    The chief first writes the record of checkpoints a killed run saved without one, so that its
    manager resumes from them and deletes them in turn."""
    directory = str(directory)
    unrecorded = unrecorded_checkpoints(directory) if is_chief(strategy) else []
    if unrecorded:
        write_record(directory, unrecorded)
    manager = tf.train.CheckpointManager(checkpoint, writable_dir(directory, strategy),
                                         max_to_keep=max_to_keep)
    chiefs = manager if is_chief(strategy) else tf.train.CheckpointManager(
        checkpoint, directory, max_to_keep=max_to_keep)
    return manager, latest_checkpoint(chiefs)


def agree_with_chief(settings: dict, strategy: tf.distribute.Strategy) -> None:
    """Across machines, before anything is written: the chief sends its settings record to every
    worker; when any worker's differs, every worker stops, the chief too, and each worker whose
    settings differ names every difference. Collective: every worker calls it."""
    if not is_multi_worker(strategy):
        return
    mine = json.dumps(settings, sort_keys=True).encode()
    size = int(from_chief(strategy, len(mine)))
    sent = from_chief(strategy, np.frombuffer(mine[:size].ljust(size), np.uint8))
    chiefs = json.loads(sent.astype(np.uint8).tobytes())
    differ = [f"{key}={settings.get(key)!r} (the chief: {chiefs.get(key)!r})"
              for key in sorted(set(settings) | set(chiefs)) if settings.get(key) != chiefs.get(key)]
    anyone = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(
        lambda: tf.constant(float(bool(differ)), tf.float64)), axis=None)
    if differ:
        raise NaoError(f"this worker's settings differ from the chief's: {'; '.join(differ)}; "
                       "start every worker with the same command")
    if float(anyone):
        raise NaoError("a worker was started with other settings than the chief's (its error "
                       "names each difference); start every worker with the same command")
