"""Choosing a `tf.distribute` strategy and building optimizers the way MirroredStrategy needs.

Custom training loops under MirroredStrategy fail when Keras creates optimizer slots lazily inside
the traced step (keras-team/keras#19246): every variable must exist before the first traced call.
"""

from typing import Sequence

import keras
import tensorflow as tf
from absl import logging


def get_strategy(devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """MirroredStrategy over `devices` (default: all visible GPUs) when there are 2 or more,
    else a one-device strategy on the single GPU or the CPU."""
    if devices is None:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        if not devices:
            return tf.distribute.OneDeviceStrategy("/cpu:0")
    if len(devices) == 1:
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.MirroredStrategy(list(devices))


def strategy_for_batch(batch_size: int) -> tf.distribute.Strategy:
    """`get_strategy()` when `batch_size` splits evenly over its replicas; otherwise one device,
    with a warning that names the batch, the replicas and the fix."""
    strategy = get_strategy()
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas == 0:
        return strategy
    logging.warning("batch %d does not split over %d replicas: training on one device (use a "
                    "multiple of %d to train on all of them)", batch_size, replicas, replicas)
    return get_strategy([strategy.extended.worker_devices[0]])


def build_optimizer(optimizer: keras.optimizers.Optimizer,
                    variables: Sequence[tf.Variable]) -> keras.optimizers.Optimizer:
    """Creates the optimizer's slot variables now (call inside `strategy.scope()`, eagerly)."""
    optimizer.build(list(variables))
    return optimizer
