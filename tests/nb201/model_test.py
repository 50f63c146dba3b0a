"""The NAS-Bench-201 network against the benchmark's parameter counts, and the supernet's
architecture as a tensor."""

import numpy as np
import pytest
import tensorflow as tf

from cnn.training import OptimConfig, Trainer, disable_graph_optimizer
from nao_tf.runtime import build
from nao_tf.spaces.nasbench201 import NasBench201Space, network_costs
from nb201.model import Cell, Nb201Network, count_params

SPACE = NasBench201Space()


def benchmark_count(arch: str, C: int = 16, N: int = 5, classes: int = 10) -> int:
    """The parameters of the benchmark's `TinyNetwork` (D-X-Y/AutoDL-Projects f46486e,
    xautodl/models/), counted by hand from its code as PyTorch's `parameters()` does (BN: weight
    and bias; running statistics are buffers):
      stem            Conv2d(3, C, 3, bias=False) + BatchNorm2d(C)   tiny_network.py:16-18
      nor_conv_kxk    ReLU, Conv2d(C, C, k, bias=not affine=False), BatchNorm2d(C)
                                                      cell_operations.py:29-48, 115-142
      none, skip_connect, avg_pool_3x3 (C_in == C_out, stride 1): no parameters   9-16, 89-91
      ResNetBasicblock(c, 2c, 2)  two ReLUConvBN 3x3 + AvgPool2d, Conv2d(c, 2c, 1, bias=False)
                                                      cell_operations.py:216-232
      lastact BatchNorm2d(4C); classifier Linear(4C, classes)    tiny_network.py:36-38
    """
    def conv_bn(c_in, c_out, k):
        return c_in * c_out * k * k + 2 * c_out

    ops = [op.split("~")[0] for node in arch.split("+") for op in node.strip("|").split("|")]
    cell = lambda c: sum(conv_bn(c, c, 1) if op == "nor_conv_1x1" else  # noqa: E731
                         conv_bn(c, c, 3) if op == "nor_conv_3x3" else 0 for op in ops)
    block = lambda c: conv_bn(c, 2 * c, 3) + conv_bn(2 * c, 2 * c, 3) + c * 2 * c  # noqa: E731
    return (conv_bn(3, C, 3) + N * (cell(C) + cell(2 * C) + cell(4 * C)) + block(C)
            + block(2 * C) + 2 * 4 * C + 4 * C * classes + classes)


@pytest.mark.parametrize("arch, published", [
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", 73_306),  # the smallest
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
     "nor_conv_3x3~2|", 1_531_546),  # the largest
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
     "nor_conv_3x3~2|", None),  # the best CIFAR-10 cell of the 200-epoch table
    ("|nor_conv_1x1~0|+|avg_pool_3x3~0|skip_connect~1|+|nor_conv_3x3~0|none~1|"
     "nor_conv_1x1~2|", None),
])
def test_parameters_are_the_benchmarks(arch, published):
    model = Nb201Network(16, 5, 10, SPACE.parse(arch))
    assert count_params(model) == benchmark_count(arch)
    if published:  # the benchmark's range, 0.0733 to 1.5315 MB (NAS-Bench-201's API)
        assert count_params(model) == published
    assert model(tf.zeros([2, 32, 32, 3])).shape == (2, 10)


@pytest.mark.parametrize("classes, size, archs", [
    (10, 32, [(4, 3, 2, 1, 1, 0), (3,) * 6, (0,) * 6]),  # CIFAR-10
    (120, 16, [(2, 3, 4, 3, 3, 2)])])  # ImageNet16-120
def test_the_cost_model_counts_what_the_built_network_holds_and_computes(classes, size, archs):
    """`network_costs` (the search's budget, no network built) against the built network:
    its trainable parameters, and the multiply-adds of its traced inference graph."""
    for arch in archs:
        model = Nb201Network(16, 5, classes, arch)
        costs = network_costs(arch, num_classes=classes, image_size=size)
        assert costs["params"] == count_params(model)
        assert costs["mult_adds"] == build.count_mult_adds(
            lambda x: model(x, training=False), tf.TensorSpec([1, size, size, 3]))
    assert SPACE.costs((3,) * 6) == {"params": 1_531_546, "mult_adds": 220_119_680}


def test_supernet_takes_the_cell_as_a_tensor(restore_graph_optimizer):
    """One trace trains every cell; a cell's scores need no other cell's ops (the untaken
    branches' weights get no gradient)."""
    disable_graph_optimizer()  # as the supernet's commands (`nb201.task.supernet`)
    optim = OptimConfig(lr_schedule="cosine", lr_max=0.05, l2_reg=0.0, aux_weight=0.0,
                        epochs=1, steps_per_epoch=4)
    trainer = Trainer(tf.distribute.get_strategy(), lambda: Nb201Network(4, 1, 10), optim, 8)
    rng = np.random.default_rng(0)
    images = tf.random.normal([8, 32, 32, 3])
    labels = tf.constant(rng.integers(0, 10, 8), tf.int32)
    skip_only = SPACE.parse("|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|"
                            "skip_connect~2|")
    convs = [v for block in trainer.model.blocks if isinstance(block, Cell)
             for v in block.trainable_variables]
    before = [v.numpy().copy() for v in convs]
    assert len(convs) == 3 * 6 * 2 * 2  # 3 cells, 6 edges, 2 convs, kernel and bias
    trainer.train_step(images, labels, tf.constant(skip_only, tf.int32))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, convs))
    for _ in range(3):
        trainer.train_step(images, labels, tf.constant(SPACE.sample(rng), tf.int32))
    assert trainer.train_tracing_count == 1
    assert not all(np.array_equal(a, v.numpy()) for a, v in zip(before, convs))
