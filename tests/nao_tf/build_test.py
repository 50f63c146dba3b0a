"""`build_by_calling`: the variables of one eager call, without Keras' symbolic trace first."""

import keras
import numpy as np
import tensorflow as tf

from nao_tf.runtime.build import build_by_calling


class Block(keras.layers.Layer):
    """A container without `build()`: Keras would run its `call` symbolically to build it."""

    calls = 0

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.Dense(3)
        self.outer = keras.layers.Dense(2)

    def call(self, x):
        Block.calls += 1
        return self.outer(tf.nn.relu(self.inner(x)))


class Net(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first, self.second = Block(), Block()

    @tf.function
    def scale(self, x):
        return 2.0 * x

    def call(self, x):
        return self.second(self.scale(self.first(x)))


def _built(by_calling: bool) -> tuple[Net, int]:
    keras.utils.set_random_seed(0)
    Block.calls = 0
    net = Net()
    x = tf.ones([1, 4])
    build_by_calling(net, x) if by_calling else net(x)
    return net, Block.calls


def test_one_call_builds_the_same_variables_as_keras():
    (plain, plain_calls), (ours, our_calls) = _built(False), _built(True)
    assert [v.shape for v in ours.weights] == [v.shape for v in plain.weights]
    assert len(ours.weights) == 8
    for a, b in zip(ours.weights, plain.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # same initial values, same order
    assert our_calls == 2 < plain_calls  # each block once: no symbolic run first
    assert ours.scale.experimental_get_tracing_count() == 0  # no trace made for the build
    assert not tf.config.functions_run_eagerly()
