"""NAS-Bench-201's networks (Dong & Yang, ICLR 2020) in Keras, as the benchmark's own code defines
them (D-X-Y/AutoDL-Projects f46486e, `xautodl/models/`; lines cited below).

Macro network (`cell_infers/tiny_network.py:16-38`, `forward` 53-63): a 3x3 stem conv with C
channels (no bias) and BN; three stages of N cells at C, 2C and 4C channels, joined by residual
stride-2 blocks (`cell_operations.py:216-259`: ReLU-conv3x3/2-BN, ReLU-conv3x3-BN, plus a shortcut
of 2x2 average pooling then a 1x1 conv without bias or BN); BN-ReLU; global average pooling; a
dense classifier with bias.

Cell: nodes 0..3, node 0 the cell's input, node i the sum of op(node j) over its edges j -> i,
the output node 3 (`cell_infers/cells.py:61-69`). Ops (`cell_operations.py:9-92`), C channels in
and out, stride 1: `none` (zeros), `skip_connect` (identity), `nor_conv_1x1` and `nor_conv_3x3`
(`ReLUConvBN`, 115-145: ReLU, conv without bias when the BN is affine, BN), `avg_pool_3x3`
(stride 1, padding 1, the padding not counted: TensorFlow's SAME average pooling).

Two forms, one class:
  * fixed (`arch` given): the benchmark's `InferCell` (`cell_infers/cells.py:13-41`), weights only
    for each edge's op, every BN affine with moving statistics (PyTorch's momentum 0.1, eps 1e-5);
    its trainable parameters are the benchmark's parameter count;
  * shared (`arch=None`, the weight-sharing supernet): every op of every edge
    (`cell_searchs/search_cells.py:13-47`, `NAS201SearchCell`, whose cell BNs are not affine, so
    their convs have a bias), the architecture given to `call` as an int32 [6] tensor of op ids
    (`nao_tf.spaces.nasbench201` order), each edge a `tf.switch_case` that runs only its op; every
    BN normalises with the batch's statistics, in training and in scoring (the benchmark's
    `track_running_stats=False` setting of its weight-sharing searches).
"""

import functools

import keras
import tensorflow as tf

from nao_tf.spaces.nasbench201 import EDGES, OPS

EPSILON, MOMENTUM = 1e-5, 0.9  # PyTorch's BatchNorm2d defaults (momentum 0.1 = Keras 0.9)


class BatchStatsNorm(keras.layers.Layer):
    """Batch norm on the batch's own statistics only (it keeps no moving averages)."""

    def __init__(self, channels: int, affine: bool, **kwargs):
        super().__init__(**kwargs)
        self.gamma = self.add_weight((channels,), initializer="ones", name="gamma") \
            if affine else None
        self.beta = self.add_weight((channels,), initializer="zeros", name="beta") \
            if affine else None

    def call(self, x, training=None):
        mean, variance = tf.nn.moments(x, [0, 1, 2])
        return tf.nn.batch_normalization(x, mean, variance, self.beta, self.gamma, EPSILON)


def _norm(channels: int, shared: bool, affine: bool = True) -> keras.layers.Layer:
    if shared:
        return BatchStatsNorm(channels, affine)
    norm = keras.layers.BatchNormalization(momentum=MOMENTUM, epsilon=EPSILON)
    norm.build((None, None, None, channels))
    return norm


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1,
          bias: bool = False) -> keras.layers.Conv2D:
    """A conv with PyTorch's padding (kernel // 2 on every side): SAME at stride 1; at stride 2
    the caller pads and the conv is VALID (SAME would pad only bottom and right)."""
    conv = keras.layers.Conv2D(c_out, kernel, stride, "same" if stride == 1 else "valid",
                               use_bias=bias, kernel_initializer="he_normal")
    conv.build((None, None, None, c_in))
    return conv


class ReluConvBn(keras.layers.Layer):
    """ReLU - conv - BN (`ReLUConvBN`); the conv has a bias only when the BN is not affine."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, shared: bool = False,
                 affine: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.pad = kernel // 2 if stride > 1 else 0
        self.conv = _conv(c_in, c_out, kernel, stride, bias=not affine)
        self.norm = _norm(c_out, shared, affine)
        self.built = True

    def call(self, x, training=None):
        x = tf.nn.relu(x)
        if self.pad:
            x = tf.pad(x, [[0, 0], [self.pad, self.pad], [self.pad, self.pad], [0, 0]])
        return self.norm(self.conv(x), training=training)


class ResidualBlock(keras.layers.Layer):
    """The stride-2 `ResNetBasicblock` between two stages."""

    def __init__(self, c_in: int, c_out: int, shared: bool, **kwargs):
        super().__init__(**kwargs)
        self.conv_a = ReluConvBn(c_in, c_out, 3, 2, shared)
        self.conv_b = ReluConvBn(c_out, c_out, 3, 1, shared)
        self.shortcut = _conv(c_in, c_out, 1)
        self.built = True

    def call(self, x, training=None):
        residual = self.shortcut(tf.nn.avg_pool2d(x, 2, 2, "VALID"))
        return residual + self.conv_b(self.conv_a(x, training=training), training=training)


class Cell(keras.layers.Layer):
    """A NAS-Bench-201 cell of `channels` channels: fixed to `arch` (op ids, one per edge), or
    shared (`arch=None`), every op of every edge kept and the architecture given to `call`."""

    def __init__(self, channels: int, arch: tuple[int, ...] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.arch, shared = arch, arch is None
        self.convs = {f"{edge}_{k}": ReluConvBn(channels, channels, k, shared=shared,
                                                affine=not shared)
                      for edge in range(len(EDGES)) for k in (1, 3)
                      if shared or OPS[arch[edge]] == f"nor_conv_{k}x{k}"}
        self.built = True

    def _op(self, edge: int, op: int, x: tf.Tensor, training) -> tf.Tensor:
        name = OPS[op]
        if name == "none":
            return tf.zeros_like(x)
        if name == "skip_connect":
            return x
        if name == "avg_pool_3x3":
            return tf.nn.avg_pool2d(x, 3, 1, "SAME")
        return self.convs[f"{edge}_{name[-1]}"](x, training=training)

    def call(self, x, arch=None, training=None):
        nodes = [x]
        for node in range(1, 4):
            terms = []
            for edge, (to, source) in enumerate(EDGES):
                if to != node:
                    continue
                if self.arch is None:
                    terms.append(tf.switch_case(arch[edge], [
                        functools.partial(self._op, edge, op, nodes[source], training)
                        for op in range(len(OPS))]))
                elif OPS[self.arch[edge]] != "none":
                    terms.append(self._op(edge, self.arch[edge], nodes[source], training))
            nodes.append(tf.add_n(terms) if terms else tf.zeros_like(x))
        return nodes[-1]


class Nb201Network(keras.Model):
    """The benchmark's network of N = `cells_per_stage` cells a stage and C = `channels`: fixed to
    `arch`, or the weight-sharing supernet (`arch=None`; the architecture is then `call`'s)."""

    def __init__(self, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10,
                 arch: tuple[int, ...] | None = None, **kwargs):
        super().__init__(**kwargs)
        shared = arch is None
        self.stem = _conv(3, channels, 3)
        self.stem_norm = _norm(channels, shared)
        self.blocks: list = []
        for stage in range(3):
            width = channels * 2 ** stage
            if stage:
                self.blocks.append(ResidualBlock(width // 2, width, shared))
            self.blocks += [Cell(width, arch) for _ in range(cells_per_stage)]
        self.last_norm = _norm(4 * channels, shared)
        self.classifier = keras.layers.Dense(num_classes)
        self.classifier.build((None, 4 * channels))
        self.built = True

    def build_now(self) -> None:
        """Every weight exists from the constructor on (the supernet's branches must not create
        weights inside a traced `tf.switch_case`)."""

    def call(self, images, arch=None, training=False, drop_path_progress=None, seed=None):
        x = self.stem_norm(self.stem(images), training=training)
        for block in self.blocks:
            x = block(x, arch, training=training) if isinstance(block, Cell) \
                else block(x, training=training)
        x = tf.nn.relu(self.last_norm(x, training=training))
        return self.classifier(tf.reduce_mean(x, [1, 2]))


def count_params(model: keras.Model) -> int:
    """Trainable parameters (PyTorch's `parameters()`, the benchmark's count)."""
    return int(sum(v.numpy().size for v in model.trainable_variables))
