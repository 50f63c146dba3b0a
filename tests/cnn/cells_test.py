import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn.cells import CELLS
from cnn.model import NASNetwork, count_params
from cnn.search_sampling import fixed_network_params


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CELLS))
def test_published_cell_builds_and_trains_one_step(name):
    arch = CELLS[name].arch
    model = NASNetwork(arch, 1, 8, 10, use_aux_head=True, drop_path_keep_prob=0.8)
    model.build_now()
    assert count_params(model) == fixed_network_params(arch, 1, 8)
    before = [v.numpy() for v in model.trainable_variables]
    images = tf.random.normal([4, 32, 32, 3])
    labels = tf.constant([0, 1, 2, 3])
    optimizer = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        logits, aux = model(images, training=True, drop_path_progress=tf.constant(0.5),
                            seed=tf.constant([1, 2], tf.int64))
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True)) + 0.4 * tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, aux, from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    assert np.isfinite(loss.numpy())
    changed = [not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables)]
    assert all(changed)


@pytest.mark.slow
def test_cells_command_lists_every_cell_with_its_parameters():
    out = subprocess.run([sys.executable, "-m", "cnn.cells"], capture_output=True, text=True,
                         check=True).stdout
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["name", "space", "N", "F", "params"]
    listed = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(listed) == set(CELLS)
    for name, fields in listed.items():
        cell = CELLS[name]
        params = fixed_network_params(cell.arch, cell.num_cells, cell.filters)
        assert fields[2:5] == [str(cell.num_cells), str(cell.filters), f"{params / 1e6:.2f}M"]
    # NAONet in its CIFAR configuration (N = 6, F = 128): near the ~145M the original code builds.
    assert 140e6 < fixed_network_params(CELLS["naonet"].arch, 6, 128) < 150e6
