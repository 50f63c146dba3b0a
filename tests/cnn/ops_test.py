"""The ops of the TF NAO release's `model.py` beyond NAONet's 11: shapes, parameter counts by hand,
and what each computes."""

import numpy as np
import pytest
import tensorflow as tf

from cnn import ops
from cnn.costs import op_costs
from cnn.search_space import OPS
from nao_tf.runtime import build

NEW_OPS = {spec.name: i for i, spec in enumerate(OPS) if i >= 16}
WIDTH = 6


def params(layer) -> int:
    return int(sum(v.shape.num_elements() for v in layer.trainable_variables))


@pytest.mark.parametrize("name", sorted(NEW_OPS))
@pytest.mark.parametrize("strides", [1, 2])
def test_shape_and_parameters_by_hand(name, strides):
    op_id = NEW_OPS[name]
    layer = ops.make_op(op_id, WIDTH, strides)
    out = layer(tf.random.normal([2, 8, 8, WIDTH]), training=True)
    assert out.shape == (2, 8 // strides, 8 // strides, WIDTH)
    bn = 2 * WIDTH
    strided_1x1 = WIDTH * WIDTH + bn if strides == 2 else 0  # the dilated ops' stride-2 1x1
    by_hand = {
        "sep_conv_7x7": 2 * (49 * WIDTH + WIDTH * WIDTH + bn),
        "max_pool_7x7": 0, "min_pool_2x2": 0,
        "dil_sep_conv_3x3": 2 * (9 * WIDTH + WIDTH * WIDTH + bn) + strided_1x1,
        "dil_sep_conv_5x5": 2 * (25 * WIDTH + WIDTH * WIDTH + bn) + strided_1x1,
        "dil_sep_conv_7x7": 2 * (49 * WIDTH + WIDTH * WIDTH + bn) + strided_1x1,
        "dil_conv_3x3": 9 * WIDTH * WIDTH + bn + strided_1x1,
        "dil_conv_5x5": 25 * WIDTH * WIDTH + bn + strided_1x1,
    }[name]
    costs = op_costs(op_id, WIDTH, 8, strides)
    assert params(layer) == by_hand == costs["params"]
    assert costs["mult_adds"] == build.count_mult_adds(  # dilated: counted at full resolution
        lambda x: layer(x, training=False), tf.TensorSpec([1, 8, 8, WIDTH]))


def test_min_pool_is_the_minimum_over_the_window():
    x = np.arange(9, dtype=np.float32)[::-1].reshape(1, 3, 3, 1)  # 8 7 6 / 5 4 3 / 2 1 0
    out = ops.make_op(NEW_OPS["min_pool_2x2"], 1, 1)(tf.constant(x))[0, :, :, 0].numpy()
    # SAME, 2x2, stride 1: the window at (i, j) covers rows i..i+1, columns j..j+1, clipped.
    np.testing.assert_array_equal(out, [[4, 3, 3], [1, 0, 0], [1, 0, 0]])


def test_dilated_convs_read_every_second_pixel():
    impulse = np.zeros([1, 9, 9, 1], np.float32)
    impulse[0, 4, 4, 0] = 1.0
    conv = ops.make_op(NEW_OPS["dil_conv_3x3"], 1, 1).conv
    conv.build((1, 9, 9, 1))
    conv.kernel.assign(tf.ones_like(conv.kernel))
    footprint = np.argwhere(conv(tf.constant(impulse))[0, :, :, 0].numpy() != 0)
    assert sorted(map(tuple, footprint)) == [(r, c) for r in (2, 4, 6) for c in (2, 4, 6)]
    sep = ops.make_op(NEW_OPS["dil_sep_conv_5x5"], 4, 1)
    assert sep.conv1.dilation_rate == sep.conv2.dilation_rate == (2, 2)
    assert sep.conv1.kernel_size == (5, 5)


def test_dilated_op_at_stride_two_is_the_op_then_a_strided_1x1():
    layer = ops.make_op(NEW_OPS["dil_conv_3x3"], WIDTH, 2)
    assert isinstance(layer, ops.DilatedAtStride)
    assert layer.op.conv.strides == (1, 1) and layer.reduce.conv.strides == (2, 2)
    assert layer.reduce.conv.kernel_size == (1, 1)
