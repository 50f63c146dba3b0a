"""Test-session setup: two logical CPU devices, so MirroredStrategy code runs with 2 replicas.

This must happen before TensorFlow initialises its devices, hence at conftest import time.
"""

import os

import pytest
from nao_tf.runtime import startup

# XLA's CPU back end without LLVM's optimisation passes and with its older loop emitters for
# fusions: the XLA tests check what the compiled steps compute, not their speed. The CNN
# supernet's XLA test: 99 s -> 70 s for the first, its first XLA step 58 -> 42 CPU s for the
# second (2 cores, 2026-12-07).
os.environ.setdefault("XLA_FLAGS",
                      "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false")

startup.import_tensorflow()
import tensorflow as tf  # noqa: E402

with startup.held_back():  # TensorFlow's C++ start-up lines, in every test process
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first: under pytest -n, the short ones then fill the gaps at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def two_replicas() -> tf.distribute.MirroredStrategy:
    """One MirroredStrategy over the two logical CPUs for the whole session: separate instances in
    one process reuse collective-op instance keys and their all-reduces then clash."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
