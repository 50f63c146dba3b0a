"""The cell ops of the NAO CNN spaces, as small Keras layers.

Every conv-type op is "ReLU -> conv -> BN" with bias-free convs, SAME padding and he_normal init
(fan-out variance scaling inside `kernel_initializer("fan_out")`, the TF NAO release's); batch norm
uses momentum 0.9 and epsilon 1e-5 (the original's decay and epsilon). Ops read the image layout
from `keras.config.image_data_format()` and their initialiser from `kernel_init()` when they are
constructed.

Sub-layers are held in named attributes, never in lists or dicts: `tf.train.Checkpoint` does not
see layers inside Keras-tracked containers.

Constructor argument `filters` is the cell width (the paper's F, doubled at each reduction);
`strides` is 2 for ops that read a cell input of a reduction cell, else 1. `sync_bn` makes batch
statistics span all replicas of a `tf.distribute` strategy, so that splitting a batch across
replicas does not change the result.
"""

import contextlib
from typing import Iterator

import keras
import tensorflow as tf

from cnn.search_space import OPS

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
KERNEL_INITS = ("he_normal", "fan_out")
_kernel_init = ["he_normal"]


@contextlib.contextmanager
def kernel_initializer(name: str) -> Iterator[None]:
    """Layers constructed inside use `name`'s kernel initialiser: "he_normal" (NAO-WS) or
    "fan_out" (the TF NAO release's `variance_scaling_initializer(mode='fan_out')`)."""
    if name not in KERNEL_INITS:
        raise ValueError(f"kernel initialiser must be one of {KERNEL_INITS}, got {name!r}")
    _kernel_init.append(name)
    try:
        yield
    finally:
        _kernel_init.pop()


def kernel_init() -> keras.initializers.Initializer | str:
    """The kernel initialiser of a layer constructed now (see `kernel_initializer`)."""
    if _kernel_init[-1] == "fan_out":
        return keras.initializers.VarianceScaling(1.0, "fan_out", "truncated_normal")
    return "he_normal"


def channel_axis() -> int:
    return 1 if keras.config.image_data_format() == "channels_first" else -1


class BatchNorm(keras.layers.Layer):
    """Batch normalisation over batch and space (momentum 0.9, epsilon 1e-5), in float32.

    Runs TensorFlow's fused batch-norm kernels (one pass forward, one backward) where Keras'
    `BatchNormalization` composes a dozen separate ops; on CPU that makes the training step of
    these networks about twice as fast. As TF1's fused batch norm (which the original used), the
    moving variance averages the unbiased batch variance.
    """

    def __init__(self, momentum: float = BN_MOMENTUM, epsilon: float = BN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.epsilon = epsilon
        self.data_format = "NCHW" if channel_axis() == 1 else "NHWC"

    def build(self, input_shape):
        shape = (input_shape[1 if self.data_format == "NCHW" else -1],)
        self.gamma = self.add_weight(shape=shape, name="gamma", initializer="ones", autocast=False)
        self.beta = self.add_weight(shape=shape, name="beta", initializer="zeros", autocast=False)
        self.moving_mean = self.add_weight(shape=shape, name="moving_mean", initializer="zeros",
                                           trainable=False, autocast=False)
        self.moving_variance = self.add_weight(shape=shape, name="moving_variance",
                                               initializer="ones", trainable=False, autocast=False)

    def call(self, x, training=False):
        x32 = tf.cast(x, tf.float32)
        gamma, beta = tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta)
        if training:
            y, mean, var = tf.compat.v1.nn.fused_batch_norm(
                x32, gamma, beta, epsilon=self.epsilon, data_format=self.data_format,
                is_training=True)
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + tf.stop_gradient(mean) * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m
                                        + tf.stop_gradient(var) * (1.0 - m))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x32, gamma, beta, mean=tf.convert_to_tensor(self.moving_mean),
                variance=tf.convert_to_tensor(self.moving_variance), epsilon=self.epsilon,
                data_format=self.data_format, is_training=False)
        return tf.cast(y, x.dtype)


def batch_norm(sync_bn: bool) -> keras.layers.Layer:
    """The BN of every op: the fast `BatchNorm`, or Keras' synchronized BN across replicas."""
    if sync_bn:
        return keras.layers.BatchNormalization(axis=channel_axis(), momentum=BN_MOMENTUM,
                                               epsilon=BN_EPSILON, synchronized=True)
    return BatchNorm()


class ReLUConvBN(keras.layers.Layer):
    """ReLU -> k x k conv (stride `strides`, dilation `dilation`) -> BN; also the 1x1 calibration
    of cell inputs. `relu=False`: conv -> BN."""

    def __init__(self, filters: int, kernel_size: int | tuple[int, int] = 1, strides: int = 1,
                 sync_bn: bool = False, dilation: int = 1, relu: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.relu = relu
        self.conv = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                                        dilation_rate=dilation, use_bias=False,
                                        kernel_initializer=kernel_init())
        self.bn = batch_norm(sync_bn)

    def call(self, x, training=False):
        return self.bn(self.conv(tf.nn.relu(x) if self.relu else x), training=training)


class SepConv(keras.layers.Layer):
    """Two stacked (ReLU, k x k depthwise-separable conv with depth multiplier 1, BN); the stride
    is applied by the first only (sep_conv 3x3 / 5x5 / 7x7; with `dilation` 2, dil_sep_conv)."""

    def __init__(self, filters: int, kernel_size: int, strides: int = 1, sync_bn: bool = False,
                 dilation: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.conv1, self.conv2 = (keras.layers.SeparableConv2D(
            filters, kernel_size, strides=s, padding="same", dilation_rate=dilation,
            use_bias=False, depthwise_initializer=kernel_init(),
            pointwise_initializer=kernel_init())
            for s in (strides, 1))
        self.bn1, self.bn2 = batch_norm(sync_bn), batch_norm(sync_bn)

    def call(self, x, training=False):
        x = self.bn1(self.conv1(tf.nn.relu(x)), training=training)
        return self.bn2(self.conv2(tf.nn.relu(x)), training=training)


class FactorizedConv(keras.layers.Layer):
    """conv 1xk + kx1: ReLU-conv(1 x k, stride s in both dims)-BN, then ReLU-conv(k x 1)-BN (the TF
    original's placement of the stride); `split_stride`: NAO_pytorch's, stride (1, s) in the first
    conv and (s, 1) in the second (the same weights, twice the first conv's multiply-adds)."""

    def __init__(self, filters: int, kernel_size: int, strides: int = 1, sync_bn: bool = False,
                 split_stride: bool = False, **kwargs):
        super().__init__(**kwargs)
        first, second = ((1, strides), (strides, 1)) if split_stride else (strides, 1)
        self.first = ReLUConvBN(filters, (1, kernel_size), first, sync_bn)
        self.second = ReLUConvBN(filters, (kernel_size, 1), second, sync_bn)

    def call(self, x, training=False):
        return self.second(self.first(x, training=training), training=training)


def shifted_by_one(x: tf.Tensor, channels_first: bool) -> tf.Tensor:
    """x without its first row and column, so a stride-2 1x1 conv of it reads the odd pixels (the
    shifted path of a factorized reduction). An odd height or width is zero-padded at the end
    first, as the original's pad-then-slice: both paths then have ceil(size / 2) pixels."""
    axis = 2 if channels_first else 1
    known = x.shape[axis:axis + 2].is_fully_defined()
    if known:
        odd = [size % 2 for size in x.shape[axis:axis + 2]]
    else:  # traced for any size: the padding follows the size at run time
        odd = tf.unstack(tf.shape(x)[axis:axis + 2] % 2)
    if not known or any(odd):
        padding = [[0, 0]] * 4
        padding[axis], padding[axis + 1] = [0, odd[0]], [0, odd[1]]
        x = tf.pad(x, padding)
    return tf.slice(x, [0, 0, 1, 1] if channels_first else [0, 1, 1, 0], [-1, -1, -1, -1])


class FactorizedReduce(keras.layers.Layer):
    """Halves the spatial size without losing pixels: two 1x1 convs (F/2 filters each) on the even
    and on the one-pixel-shifted odd positions, concatenated, then BN. No ReLU of its own."""

    def __init__(self, filters: int, sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        if filters % 2:
            raise ValueError(f"factorized reduction needs an even number of filters, got {filters}")
        # A 1x1 conv with stride 2 reads exactly the even pixels (the original's 1x1 average pool
        # with stride 2, then a 1x1 conv); on the input without its first row and column it reads
        # the odd ones (the original's shifted path). No strided slice, whose gradient is slow.
        self.conv1 = keras.layers.Conv2D(filters // 2, 1, strides=2, padding="same",
                                         use_bias=False, kernel_initializer=kernel_init())
        self.conv2 = keras.layers.Conv2D(filters // 2, 1, strides=2, padding="same",
                                         use_bias=False, kernel_initializer=kernel_init())
        self.bn = batch_norm(sync_bn)

    def call(self, x, training=False):
        shifted = shifted_by_one(x, channel_axis() == 1)
        out = tf.concat([self.conv1(x), self.conv2(shifted)], axis=channel_axis())
        return self.bn(out, training=training)


class Pool(keras.layers.Layer):
    """k x k average (padding excluded from the mean), max or min pooling, SAME, with the op's
    stride; min pooling is -max_pool(-x), as the TF original."""

    def __init__(self, kind: str, pool_size: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        layer = keras.layers.AveragePooling2D if kind == "avg_pool" else keras.layers.MaxPooling2D
        self.pool = layer(pool_size, strides=strides, padding="same")
        self.min_pool = kind == "min_pool"

    def call(self, x, training=False):
        return -self.pool(-x) if self.min_pool else self.pool(x)


class DilatedAtStride(keras.layers.Layer):
    """A dilated conv op at stride 2: the op at stride 1, then ReLU -> 1x1 conv (stride 2) -> BN,
    as the TF original's `dil_conv` (TensorFlow's convs take no stride with a dilation)."""

    def __init__(self, op: keras.layers.Layer, filters: int, strides: int, sync_bn: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.op = op
        self.reduce = ReLUConvBN(filters, 1, strides, sync_bn)

    def call(self, x, training=False):
        return self.reduce(self.op(x, training=training), training=training)


def max_pool(x: tf.Tensor, size: int, strides: list[int], data_format: str) -> tf.Tensor:
    """`tf.nn.max_pool2d` (SAME) whose gradient recomputes the pooling next to `MaxPoolGrad`.

    Where the forward and backward passes are separate graphs (the supernet's per-branch
    functions), TensorFlow cannot hand oneDNN's pooling workspace to the gradient and runs a
    generic `MaxPoolGrad` instead, 8x slower on the CPU (docs/benchmarks.md). Recomputing the
    forward pass beside the gradient (one cheap extra pooling) lets oneDNN pair them again.
    """
    ksize = [1, 1, size, size] if data_format == "NCHW" else [1, size, size, 1]

    @tf.custom_gradient
    def pool(inputs):
        def grad(d_outputs):
            outputs = tf.nn.max_pool2d(inputs, ksize, strides, "SAME", data_format=data_format)
            return tf.raw_ops.MaxPoolGrad(orig_input=inputs, orig_output=outputs, grad=d_outputs,
                                          ksize=ksize, strides=strides, padding="SAME",
                                          data_format=data_format)

        return tf.nn.max_pool2d(inputs, ksize, strides, "SAME", data_format=data_format), grad

    return pool(x)


class Identity(keras.layers.Layer):
    """Pass-through; at stride 2 a factorized reduction (op 4 of NAO-WS, op 5 of NAONet), or with
    `reduce_by_conv` (the TF NAO release) ReLU-1x1-BN, also used when the width changes."""

    def __init__(self, filters: int, strides: int = 1, sync_bn: bool = False,
                 reduce_by_conv: bool = False, **kwargs):
        super().__init__(**kwargs)
        if reduce_by_conv:
            self.reduce = ReLUConvBN(filters, 1, strides, sync_bn)
        else:
            self.reduce = FactorizedReduce(filters, sync_bn) if strides > 1 else None

    def call(self, x, training=False):
        return x if self.reduce is None else self.reduce(x, training=training)


class Calibrated(keras.layers.Layer):
    """An op that keeps the width, then ReLU-1x1-BN to `filters` (the TF NAO release's pooling on
    an input of another width)."""

    def __init__(self, op: keras.layers.Layer, filters: int, sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.op = op
        self.calibrate = ReLUConvBN(filters, 1, 1, sync_bn)

    def call(self, x, training=False):
        return self.calibrate(self.op(x, training=training), training=training)


def make_op(op_id: int, filters: int, strides: int, sync_bn: bool = False,
            name: str | None = None, input_channels: int | None = None,
            conv_identity: bool = False, split_stride: bool = False) -> keras.layers.Layer:
    """The layer for registry op `op_id` (see `cnn.search_space.OPS`) on an input that already has
    `filters` channels (cell inputs are calibrated first, so no op changes the width), or
    `input_channels` (the TF NAO release's first cell reads the raw stem: identity and pooling
    then end with ReLU-1x1-BN to `filters`). `conv_identity`: a stride-2 identity is ReLU-1x1-BN
    (the TF NAO release) instead of a factorized reduction. `split_stride`: see `FactorizedConv`."""
    spec = OPS[op_id]
    other_width = input_channels not in (None, filters)
    if spec.kind in ("sep_conv", "conv"):
        layer = SepConv if spec.kind == "sep_conv" else ReLUConvBN
        if spec.dilation > 1 and strides > 1:
            return DilatedAtStride(layer(filters, spec.size, 1, sync_bn, spec.dilation),
                                   filters, strides, sync_bn, name=name)
        return layer(filters, spec.size, strides, sync_bn, spec.dilation, name=name)
    if spec.kind == "factorized_conv":
        return FactorizedConv(filters, spec.size, strides, sync_bn, split_stride, name=name)
    if spec.kind in ("avg_pool", "max_pool", "min_pool"):
        if other_width:
            return Calibrated(Pool(spec.kind, spec.size, strides), filters, sync_bn, name=name)
        return Pool(spec.kind, spec.size, strides, name=name)
    return Identity(filters, strides, sync_bn, conv_identity and (strides > 1 or other_width),
                    name=name)


def sub_seed(seed: tf.Tensor, k: int) -> tf.Tensor:
    """The seed of the k-th random draw of a step whose seed is `seed` (int [2])."""
    return tf.random.experimental.stateless_fold_in(seed, k)


def step_seed(seed: tf.Tensor | None) -> tf.Tensor:
    """`seed`, or a fixed one: for calls that draw nothing that matters (building the model), and
    for the supernet's scoring dropout (`--score_dropout`: one mask for every cell)."""
    return tf.zeros([2], tf.int64) if seed is None else seed


def drop_path(x: tf.Tensor, keep_prob: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Zeroes whole examples with probability 1 - keep_prob, scaling survivors by 1 / keep_prob;
    the draw is a function of `seed` (int [2]), so a resumed run draws what an uninterrupted one
    would."""
    keep_prob = tf.cast(keep_prob, x.dtype)
    shape = tf.stack([tf.shape(x)[0], 1, 1, 1])
    mask = tf.floor(keep_prob + tf.random.stateless_uniform(shape, seed, dtype=x.dtype))
    return x * (mask / keep_prob)


def dropout(x: tf.Tensor, rate: float, seed: tf.Tensor) -> tf.Tensor:
    """Inverted dropout whose mask is a function of `seed` (int [2])."""
    return tf.nn.experimental.stateless_dropout(x, rate, seed)
