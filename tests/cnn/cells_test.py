import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn.cells import CELLS
from cnn.search_space import OPS, Cell, Node
from cnn.model import NASNetwork, count_params
from cnn.costs import CostNetwork


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CELLS))
def test_published_cell_builds_and_trains_one_step(name):
    arch = CELLS[name].arch
    model = NASNetwork(arch, 1, 8, 10, use_aux_head=True, drop_path_keep_prob=0.8)
    model.build_now()
    assert count_params(model) == CostNetwork("nao_ws", 1, 8).costs(arch)["params"]
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
        params = CostNetwork("nao_ws", cell.num_cells, cell.filters).costs(cell.arch)["params"]
        assert fields[2:5] == [str(cell.num_cells), str(cell.filters), f"{params / 1e6:.2f}M"]
    # NAONet in its CIFAR configuration (N = 6, F = 128): near the ~145M the original code builds.
    assert 140e6 < CostNetwork("nao_ws", 6, 128).costs(CELLS["naonet"].arch)["params"] < 150e6


# The authors' text, copied from their code (file and line in cnn/cells.py): TF-slim's
# (operations, hiddenstate_indices, used_hiddenstates) per cell, ENAS's fixed_arc.
TF_SLIM = {
    "amoebanet_a": [(
        ['avg_pool_3x3', 'max_pool_3x3', 'separable_3x3_2', 'none',
         'none', 'avg_pool_3x3', 'separable_3x3_2', 'separable_5x5_2',
         'avg_pool_3x3', 'separable_3x3_2'],
        [0, 0, 1, 1, 0, 1, 0, 2, 5, 0], [1, 0, 1, 0, 0, 1, 0]), (
        ['separable_3x3_2', 'avg_pool_3x3', 'max_pool_3x3',
         'separable_7x7_2', 'max_pool_3x3', 'max_pool_3x3',
         'separable_3x3_2', '1x7_7x1', 'avg_pool_3x3',
         'separable_7x7_2'],
        [1, 0, 0, 2, 1, 0, 4, 0, 1, 0], [1, 1, 0, 0, 0, 0, 0])],
    "amoebanet_b": [(
        ['1x1', 'max_pool_3x3', 'none', 'separable_3x3_2', '1x1',
         'separable_3x3_2', '1x1', 'none', 'avg_pool_3x3', '1x1'],
        [1, 1, 1, 0, 1, 0, 2, 2, 1, 5], [0, 1, 1, 0, 0, 1, 0]), (
        ['max_pool_2x2', 'max_pool_3x3', 'none', '3x3',
         'dil_2_separable_5x5_2', 'max_pool_3x3', 'none',
         'separable_3x3_2', 'avg_pool_3x3', '1x1'],
        [0, 0, 2, 1, 2, 2, 3, 1, 4, 3], [1, 1, 1, 1, 1, 0, 0])],
    "pnasnet": [(
        ['separable_5x5_2', 'max_pool_3x3', 'separable_7x7_2', 'max_pool_3x3',
         'separable_5x5_2', 'separable_3x3_2', 'separable_3x3_2', 'max_pool_3x3',
         'separable_3x3_2', 'none'],
        [1, 1, 0, 0, 0, 0, 4, 0, 1, 0], [1, 1, 0, 0, 0, 0, 0])] * 2,
}
SLIM_OPS = {"separable_3x3_2": "sep_conv_3x3", "separable_5x5_2": "sep_conv_5x5",
            "separable_7x7_2": "sep_conv_7x7", "dil_2_separable_5x5_2": "dil_sep_conv_5x5",
            "none": "identity", "1x1": "conv_1x1", "3x3": "conv_3x3",
            "1x7_7x1": "conv_1x7_7x1"}
ENAS_FIXED_ARC = ("0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1"
                  " 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1")


def _from_tf_slim(operations, indices, used) -> tuple:
    """(nodes as (input, op name) pairs, outputs) of a TF-slim cell in this project's numbering:
    its hidden state 0 (h[i-1]) is node 1, its 1 (h[i-2]) node 0, blocks from 2 alike."""
    node = {0: 1, 1: 0}
    branches = [(node.get(i, i), SLIM_OPS.get(op, op)) for i, op in zip(indices, operations)]
    return branches, tuple(sorted(node.get(i, i) for i, u in enumerate(used) if not u))


def _ours(cell: Cell) -> tuple:
    return ([(i, OPS[op].name) for n in cell.nodes for i, op in ((n.in1, n.op1), (n.in2, n.op2))],
            cell.loose_ends())


@pytest.mark.parametrize("name", sorted(TF_SLIM))
def test_tf_slim_cells_are_their_authors(name):
    arch = CELLS[name].arch
    for cell, source in zip((arch.normal, arch.reduction), TF_SLIM[name]):
        assert _ours(cell) == _from_tf_slim(*source)


def test_enas_is_the_releases_final_cell():
    """ENAS numbers inputs as here (0 = h[i-2]) and its ops 0-4 are the NAO-WS ops (sep 3x3,
    sep 5x5, avg 3x3, max 3x3, identity); the output concatenates the unused nodes."""
    arch = CELLS["enas"].arch
    assert arch.ints() == [int(v) for v in ENAS_FIXED_ARC.split()]
    assert arch.normal.outputs is None and arch.reduction.outputs is None
    assert Node(0, 2, 0, 0) == arch.normal.nodes[0]


def test_the_nao_copies_swap_h_i_minus_1_and_h_i_minus_2():
    """`dag.py`'s AmoebaNet-A reads TF-slim's index 0 as h[i-2]: its first normal node pools
    node 0 twice, where the authors' pools h[i-1] (node 1) twice."""
    assert CELLS["amoebanet_a_nao"].arch.normal.nodes[0] == Node(0, 14, 0, 11)
    assert CELLS["amoebanet_a"].arch.normal.nodes[0] == Node(1, 14, 1, 11)
