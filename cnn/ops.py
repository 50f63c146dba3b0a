"""The cell ops of the NAO CNN spaces, as small Keras layers.

Every conv-type op is "ReLU -> conv -> BN" with bias-free convs, SAME padding and he_normal init;
batch norm uses momentum 0.9 and epsilon 1e-5 (the original's decay and epsilon). Ops read the image
layout from `keras.config.image_data_format()` when they are constructed.

Sub-layers are held in named attributes, never in lists or dicts: `tf.train.Checkpoint` does not
see layers inside Keras-tracked containers.

Constructor argument `filters` is the cell width (the paper's F, doubled at each reduction);
`strides` is 2 for ops that read a cell input of a reduction cell, else 1. `sync_bn` makes batch
statistics span all replicas of a `tf.distribute` strategy, so that splitting a batch across
replicas does not change the result.
"""

import keras
import tensorflow as tf

from cnn.search_space import OPS

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
KERNEL_INIT = "he_normal"


def channel_axis() -> int:
    return 1 if keras.config.image_data_format() == "channels_first" else -1


def _channel_sum(t: tf.Tensor, channels_first: bool) -> tf.Tensor:
    """Per-channel sum over batch and space; a [1, M] x [M, C] product is several times faster on
    CPU than a strided reduction."""
    if channels_first:
        return tf.reduce_sum(t, [0, 2, 3])
    flat = tf.reshape(t, [-1, tf.shape(t)[-1]])
    return tf.reshape(tf.matmul(tf.ones([1, tf.shape(flat)[0]], t.dtype), flat), [-1])


def _batch_norm_train(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: float,
                      channels_first: bool):
    """(y, batch mean, batch variance) of float32 `x`, with a closed-form gradient: two passes
    forward, three backward, instead of the dozen elementwise ops of the autodiff graph."""
    shape = [1, -1, 1, 1] if channels_first else [1, 1, 1, -1]

    @tf.custom_gradient
    def core(x, gamma, beta):
        n = tf.cast(tf.size(x) // tf.size(gamma), tf.float32)
        mean = _channel_sum(x, channels_first) / n
        var = tf.maximum(_channel_sum(tf.square(x), channels_first) / n - tf.square(mean), 0.0)
        inv = tf.math.rsqrt(var + epsilon)
        scale = gamma * inv
        y = x * tf.reshape(scale, shape) + tf.reshape(beta - mean * scale, shape)

        def grad(dy, unused_dmean, unused_dvar):
            sum_dy = _channel_sum(dy, channels_first)
            d_gamma = inv * (_channel_sum(dy * x, channels_first) - mean * sum_dy)
            k_x = -scale * inv * d_gamma / n
            k_0 = -scale * sum_dy / n - k_x * mean
            dx = dy * tf.reshape(scale, shape) + (x * tf.reshape(k_x, shape)
                                                  + tf.reshape(k_0, shape))
            return dx, d_gamma, sum_dy

        return (y, mean, var), grad

    return core(x, gamma, beta)


class BatchNorm(keras.layers.Layer):
    """Batch normalisation over batch and space (momentum 0.9, epsilon 1e-5), computed in float32.

    Same maths as `keras.layers.BatchNormalization` (biased batch variance in training; moving
    averages for inference), with a hand-written gradient that makes the training step about 2x
    faster on CPU, where batch norm dominates these networks.
    """

    def __init__(self, momentum: float = BN_MOMENTUM, epsilon: float = BN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.epsilon = epsilon
        self.channels_first = channel_axis() == 1

    def build(self, input_shape):
        shape = (input_shape[1 if self.channels_first else -1],)
        self.gamma = self.add_weight(shape=shape, name="gamma", initializer="ones", autocast=False)
        self.beta = self.add_weight(shape=shape, name="beta", initializer="zeros", autocast=False)
        self.moving_mean = self.add_weight(shape=shape, name="moving_mean", initializer="zeros",
                                           trainable=False, autocast=False)
        self.moving_variance = self.add_weight(shape=shape, name="moving_variance",
                                               initializer="ones", trainable=False, autocast=False)

    def call(self, x, training=False):
        dtype = x.dtype
        x32 = tf.cast(x, tf.float32)
        gamma, beta = tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta)
        if training:
            y, mean, var = _batch_norm_train(x32, gamma, beta, self.epsilon, self.channels_first)
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + tf.stop_gradient(mean) * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m
                                        + tf.stop_gradient(var) * (1.0 - m))
        else:
            shape = [1, -1, 1, 1] if self.channels_first else [1, 1, 1, -1]
            scale = gamma * tf.math.rsqrt(tf.convert_to_tensor(self.moving_variance) + self.epsilon)
            shift = beta - tf.convert_to_tensor(self.moving_mean) * scale
            y = x32 * tf.reshape(scale, shape) + tf.reshape(shift, shape)
        return tf.cast(y, dtype)


def batch_norm(sync_bn: bool) -> keras.layers.Layer:
    """The BN of every op: the fast `BatchNorm`, or Keras' synchronized BN across replicas."""
    if sync_bn:
        return keras.layers.BatchNormalization(axis=channel_axis(), momentum=BN_MOMENTUM,
                                               epsilon=BN_EPSILON, synchronized=True)
    return BatchNorm()


class ReLUConvBN(keras.layers.Layer):
    """ReLU -> k x k conv (stride `strides`) -> BN; also the 1x1 calibration of cell inputs."""

    def __init__(self, filters: int, kernel_size: int | tuple[int, int] = 1, strides: int = 1,
                 sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                                        use_bias=False, kernel_initializer=KERNEL_INIT)
        self.bn = batch_norm(sync_bn)

    def call(self, x, training=False):
        return self.bn(self.conv(tf.nn.relu(x)), training=training)


class SepConv(keras.layers.Layer):
    """Two stacked (ReLU, k x k depthwise-separable conv with depth multiplier 1, BN); the stride
    is applied by the first only (ops 0, 1: sep_conv 3x3 / 5x5)."""

    def __init__(self, filters: int, kernel_size: int, strides: int = 1, sync_bn: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.conv1, self.conv2 = (keras.layers.SeparableConv2D(
            filters, kernel_size, strides=s, padding="same", use_bias=False,
            depthwise_initializer=KERNEL_INIT, pointwise_initializer=KERNEL_INIT)
            for s in (strides, 1))
        self.bn1, self.bn2 = batch_norm(sync_bn), batch_norm(sync_bn)

    def call(self, x, training=False):
        x = self.bn1(self.conv1(tf.nn.relu(x)), training=training)
        return self.bn2(self.conv2(tf.nn.relu(x)), training=training)


class FactorizedConv(keras.layers.Layer):
    """conv 1xk + kx1: ReLU-conv(1 x k, stride s in both dims)-BN, then ReLU-conv(k x 1)-BN (the TF
    original's placement of the stride)."""

    def __init__(self, filters: int, kernel_size: int, strides: int = 1, sync_bn: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.first = ReLUConvBN(filters, (1, kernel_size), strides, sync_bn)
        self.second = ReLUConvBN(filters, (kernel_size, 1), 1, sync_bn)

    def call(self, x, training=False):
        return self.second(self.first(x, training=training), training=training)


class FactorizedReduce(keras.layers.Layer):
    """Halves the spatial size without losing pixels: two 1x1 convs (F/2 filters each) on the even
    and on the one-pixel-shifted odd positions, concatenated, then BN. No ReLU of its own."""

    def __init__(self, filters: int, sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        if filters % 2:
            raise ValueError(f"factorized reduction needs an even number of filters, got {filters}")
        self.conv1 = keras.layers.Conv2D(filters // 2, 1, use_bias=False,
                                         kernel_initializer=KERNEL_INIT)
        self.conv2 = keras.layers.Conv2D(filters // 2, 1, use_bias=False,
                                         kernel_initializer=KERNEL_INIT)
        self.bn = batch_norm(sync_bn)
        self.channels_first = channel_axis() == 1

    def call(self, x, training=False):
        if self.channels_first:
            path1 = x[:, :, ::2, ::2]
            shifted = tf.pad(x, [[0, 0], [0, 0], [0, 1], [0, 1]])[:, :, 1:, 1:]
            path2 = shifted[:, :, ::2, ::2]
        else:
            path1 = x[:, ::2, ::2, :]
            shifted = tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]])[:, 1:, 1:, :]
            path2 = shifted[:, ::2, ::2, :]
        out = tf.concat([self.conv1(path1), self.conv2(path2)], axis=channel_axis())
        return self.bn(out, training=training)


class Pool(keras.layers.Layer):
    """k x k average (padding excluded from the mean) or max pooling, SAME, with the op's stride."""

    def __init__(self, kind: str, pool_size: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        layer = keras.layers.AveragePooling2D if kind == "avg_pool" else keras.layers.MaxPooling2D
        self.pool = layer(pool_size, strides=strides, padding="same")

    def call(self, x, training=False):
        return self.pool(x)


class Identity(keras.layers.Layer):
    """Pass-through; at stride 2 a factorized reduction (op 4 of NAO-WS, op 5 of NAONet)."""

    def __init__(self, filters: int, strides: int = 1, sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.reduce = FactorizedReduce(filters, sync_bn) if strides > 1 else None

    def call(self, x, training=False):
        return x if self.reduce is None else self.reduce(x, training=training)


def make_op(op_id: int, filters: int, strides: int, sync_bn: bool = False,
            name: str | None = None) -> keras.layers.Layer:
    """The layer for registry op `op_id` (see `cnn.search_space.OPS`) on an input that already has
    `filters` channels (cell inputs are calibrated first, so no op changes the width)."""
    spec = OPS[op_id]
    if spec.kind == "sep_conv":
        return SepConv(filters, spec.size, strides, sync_bn, name=name)
    if spec.kind == "conv":
        return ReLUConvBN(filters, spec.size, strides, sync_bn, name=name)
    if spec.kind == "factorized_conv":
        return FactorizedConv(filters, spec.size, strides, sync_bn, name=name)
    if spec.kind in ("avg_pool", "max_pool"):
        return Pool(spec.kind, spec.size, strides, name=name)
    return Identity(filters, strides, sync_bn, name=name)


def drop_path(x: tf.Tensor, keep_prob: tf.Tensor) -> tf.Tensor:
    """Zeroes whole examples with probability 1 - keep_prob, scaling survivors by 1 / keep_prob."""
    keep_prob = tf.cast(keep_prob, x.dtype)
    shape = tf.stack([tf.shape(x)[0], 1, 1, 1])
    mask = tf.floor(keep_prob + tf.random.uniform(shape, dtype=x.dtype))
    return x * (mask / keep_prob)
