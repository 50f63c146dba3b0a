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
import shutil
import tempfile
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from nao_tf.common.errors import NaoError
from nao_tf.common.resume import latest_checkpoint


def cluster_workers() -> int:
    """How many workers `TF_CONFIG` names (0 without one)."""
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        return 0
    try:
        cluster = json.loads(text).get("cluster", {})
    except (json.JSONDecodeError, AttributeError):
        raise NaoError("TF_CONFIG is not a JSON object with a 'cluster' entry: "
                       f"{text[:200]!r}; set it as docs/distributed.md shows, or unset it") from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


_MULTI_WORKER: list[tf.distribute.Strategy] = []  # one per process


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
            _MULTI_WORKER.append(tf.distribute.MultiWorkerMirroredStrategy())
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


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always, except on the workers of a
    multi-worker strategy other than the chief (task 'chief', else worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not is_multi_worker(strategy) or resolver is None:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


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
    stand-in), and the checkpoint to resume from: the newest of the chief's, None for a new run."""
    directory = str(directory)
    manager = tf.train.CheckpointManager(checkpoint, writable_dir(directory, strategy),
                                         max_to_keep=max_to_keep)
    chiefs = manager if is_chief(strategy) else tf.train.CheckpointManager(
        checkpoint, directory, max_to_keep=max_to_keep)
    return manager, latest_checkpoint(chiefs)
