"""Test-session setup: two logical CPU devices, so MirroredStrategy code runs with 2 replicas.

This must happen before TensorFlow initialises its devices, hence at conftest import time.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


@pytest.fixture
def restore_graph_optimizer():
    """For tests that build a CNN supernet, which switches grappler off for the process
    (`cnn.training.disable_graph_optimizer`): the other tests keep it."""
    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    yield
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})


@pytest.fixture(scope="session")
def two_replicas() -> tf.distribute.MirroredStrategy:
    """One MirroredStrategy over the two logical CPUs for the whole session: separate instances in
    one process reuse collective-op instance keys and their all-reduces then clash."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
