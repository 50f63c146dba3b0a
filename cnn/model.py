"""The fixed-architecture CIFAR network of NAO-WS (`NAO-WS/cnn/model.py`, fixed-arc mode).

Macro structure (N = cells per stage, F = first-stage width):
  stem: 3x3 conv to `stem_multiplier * F` channels + BN;
  3N + 2 cells: N normal, reduction, N normal, reduction, N normal (reductions at cell indices N and
  2N + 1); the width doubles at each reduction (F, 2F, 4F); each cell reads (h[i-2], h[i-1]), the
  first cell reads the stem output twice;
  head: ReLU -> global average pool -> dropout -> dense (no bias);
  auxiliary head (training only, loss weight 0.4 in the trainer) on the first normal cell after the
  second reduction.
Inside a cell: h[i-2] is factorized-reduced (after a ReLU) when it is spatially larger, else mapped
by ReLU-1x1-BN when its width differs; h[i-1] is mapped by ReLU-1x1-BN when its width differs, and
then always by one more ReLU-1x1-BN. Ops reading a cell input of a reduction cell have stride 2.
The output concatenates all unused nodes, unused cell inputs included (factorized-reduced in
reduction cells), so it is `len(loose_ends) * width` channels wide.

`network="imagenet"` is NAO_pytorch's ImageNet network (`NAO_V1/model.py` NASNetworkImageNet, the
mobile setting of NAONet-A): the same cells, but h[i-1] only calibrated when its width differs
(no unconditional ReLU-1x1-BN) and the stride of a 1xk + kx1 conv split over its two convs
(`ops.FactorizedConv`), and stem0 = 3x3 conv stride 2 to F/2 + BN + ReLU + 3x3 conv
stride 2 to F + BN (h[i-2] of the first cell, 56x56 at 224x224), stem1 = ReLU + 3x3 conv stride 2 + BN (h[i-1],
28x28), so the three stages run at 28, 14 and 7 pixels; the auxiliary head sits on the second
reduction cell itself (ReLU -> 5x5 avg pool stride 2 VALID -> 1x1 conv 128 + BN + ReLU -> 2x2 conv
768 VALID + BN + ReLU -> dense with a bias), and the classifier reads the pooled last cell without
a ReLU, through a dense layer with a bias.

`network="nao"` is the TF NAO release's `NAO/cnn/model.py` instead, for NAONet as it was trained
there: fan-out variance-scaling kernels, h[i-1] mapped by one ReLU-1x1-BN whatever its width, the
first cell reading the raw stem as h[i-2] (identity and pooling on it end with ReLU-1x1-BN, and an
unused raw stem is mapped by 1x1-BN before the concatenation), a stride-2 identity as
ReLU-1x1(stride 2)-BN, the aux head's 768 conv VALID, and both heads' dense layers with a bias and
Glorot-uniform kernels.

Drop-path (the original's linear schedule): an op of cell `l` (0 <= l < 3N + 2) keeps its output
with probability  1 - (l + 1) / (3N + 2) * progress * (1 - drop_path_keep_prob),  where `progress`
= min(1, (step + 1) / total_steps) is passed to `call`; identity ops are never dropped.
"""

import keras
import tensorflow as tf

from cnn import ops
from cnn.search_space import NUM_CELL_INPUTS, OPS, Cell, CellArch
from nao_tf.runtime import build


class NASCell(keras.layers.Layer):
    """One normal or reduction cell of width `filters`.

    `input_channels` = (channels of h[i-2], channels of h[i-1]); `input0_larger` tells that h[i-2]
    has twice the spatial size of h[i-1] (the cell right after a reduction).
    """

    def __init__(self, cell: Cell, filters: int, reduction: bool, input_channels: tuple[int, int],
                 input0_larger: bool, depth_fraction: float, sync_bn: bool = False,
                 network: str = "nao_ws", raw_input0: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.cell = cell
        self.depth_fraction = depth_fraction  # (l + 1) / (3N + 2)
        c0, c1 = input_channels
        nao = network == "nao"
        if input0_larger:
            self.calibrate0 = ops.FactorizedReduce(filters, sync_bn, name="calibrate0")
        elif c0 != filters and not raw_input0:
            self.calibrate0 = ops.ReLUConvBN(filters, 1, 1, sync_bn, name="calibrate0")
        else:
            self.calibrate0 = None
        self.relu_before_reduce = input0_larger
        self.calibrate1 = (ops.ReLUConvBN(filters, 1, 1, sync_bn, name="calibrate1")
                           if c1 != filters and not nao else None)
        self.base1 = (ops.ReLUConvBN(filters, 1, 1, sync_bn, name="base1")
                      if network != "imagenet" else None)
        width0 = c0 if raw_input0 else filters
        # Sub-layers live in named attributes (tf.train.Checkpoint ignores Keras-tracked lists).
        for i, node in enumerate(cell.nodes):
            for b, (inp, op) in enumerate(((node.in1, node.op1), (node.in2, node.op2))):
                strides = 2 if reduction and inp < NUM_CELL_INPUTS else 1
                setattr(self, f"op{2 * i + b}", ops.make_op(
                    op, filters, strides, sync_bn, name=f"node{i + NUM_CELL_INPUTS}_{b}",
                    input_channels=width0 if inp == 0 else filters, conv_identity=nao,
                    split_stride=network == "imagenet"))
        self.loose_ends = cell.loose_ends()
        self.reduced_outputs = tuple(i for i in self.loose_ends
                                     if reduction and i < NUM_CELL_INPUTS)
        for i in self.reduced_outputs:
            setattr(self, f"reduce_output{i}",
                    ops.FactorizedReduce(filters, sync_bn, name=f"reduce_output{i}"))
        # The TF release's factorized reduction at stride 1 (1x1 conv, BN) for an unused raw stem.
        self.widen_output0 = None
        if width0 != filters and 0 in self.loose_ends:
            self.widen_output0 = ops.ReLUConvBN(filters, 1, 1, sync_bn, relu=False,
                                                name="widen_output0")
        self.output_channels = len(self.loose_ends) * filters

    def call(self, inputs, training=False, drop_path_progress=None, drop_path_keep_prob=1.0,
             seed=None):
        h0, h1 = inputs
        if self.calibrate0 is not None:
            h0 = self.calibrate0(tf.nn.relu(h0) if self.relu_before_reduce else h0,
                                 training=training)
        if self.calibrate1 is not None:
            h1 = self.calibrate1(h1, training=training)
        states = [h0, h1 if self.base1 is None else self.base1(h1, training=training)]
        apply_drop_path = training and drop_path_keep_prob < 1.0 and drop_path_progress is not None
        if apply_drop_path:
            keep = 1.0 - self.depth_fraction * drop_path_progress * (1.0 - drop_path_keep_prob)
        for i, node in enumerate(self.cell.nodes):
            total = None
            for b, (inp, op) in enumerate(((node.in1, node.op1), (node.in2, node.op2))):
                out = getattr(self, f"op{2 * i + b}")(states[inp], training=training)
                if apply_drop_path and OPS[op].drop_path:
                    out = ops.drop_path(out, keep, ops.sub_seed(seed, 2 * i + b))
                total = out if total is None else total + out
            states.append(total)
        if self.widen_output0 is not None:
            states[0] = self.widen_output0(states[0], training=training)
        outs = [getattr(self, f"reduce_output{i}")(states[i], training=training)
                if i in self.reduced_outputs else states[i] for i in self.loose_ends]
        return outs[0] if len(outs) == 1 else tf.concat(outs, axis=ops.channel_axis())


class AuxHead(keras.layers.Layer):
    """ReLU -> 5x5 avg pool stride 3 VALID -> 1x1 conv 128 + BN + ReLU -> (hw x hw) conv 768, SAME,
    + BN + ReLU -> global average pool -> dense to classes without bias (as NAO-WS); `nao_head`:
    the 768 conv VALID and the dense layer with a bias and Glorot kernel (the TF NAO release)."""

    def __init__(self, num_classes: int, input_size: int, sync_bn: bool = False,
                 nao_head: bool = False, **kwargs):
        super().__init__(**kwargs)
        pooled = (input_size - 5) // 3 + 1
        self.pool = keras.layers.AveragePooling2D(5, strides=3, padding="valid")
        self.proj = keras.layers.Conv2D(128, 1, use_bias=False,
                                        kernel_initializer=ops.kernel_init())
        self.proj_bn = ops.batch_norm(sync_bn)
        self.conv = keras.layers.Conv2D(768, pooled, padding="valid" if nao_head else "same",
                                        use_bias=False, kernel_initializer=ops.kernel_init())
        self.conv_bn = ops.batch_norm(sync_bn)
        self.gap = keras.layers.GlobalAveragePooling2D()
        self.fc = keras.layers.Dense(num_classes, **_head_dense(nao_head))

    def call(self, x, training=False):
        x = self.pool(tf.nn.relu(x))
        x = tf.nn.relu(self.proj_bn(self.proj(x), training=training))
        x = tf.nn.relu(self.conv_bn(self.conv(x), training=training))
        return self.fc(self.gap(x))


def _head_dense(nao_head: bool) -> dict:
    """Keyword arguments of a classifier's `Dense`: bias-free (NAO-WS) or, as the TF NAO
    release's `tf.layers.dense`, with a bias and a Glorot-uniform kernel."""
    if nao_head:
        return dict(use_bias=True, kernel_initializer="glorot_uniform")
    return dict(use_bias=False, kernel_initializer=ops.kernel_init())


class AuxHeadImageNet(keras.layers.Layer):
    """NAO_pytorch's ImageNet aux head, on the 7x7 output of the second reduction cell."""

    def __init__(self, num_classes: int, sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.pool = keras.layers.AveragePooling2D(5, strides=2, padding="valid")
        self.proj = keras.layers.Conv2D(128, 1, use_bias=False, kernel_initializer=ops.kernel_init())
        self.proj_bn = ops.batch_norm(sync_bn)
        self.conv = keras.layers.Conv2D(768, 2, padding="valid", use_bias=False,
                                        kernel_initializer=ops.kernel_init())
        self.conv_bn = ops.batch_norm(sync_bn)
        self.flatten = keras.layers.Flatten()
        self.fc = keras.layers.Dense(num_classes, kernel_initializer=ops.kernel_init())

    def call(self, x, training=False):
        x = self.pool(tf.nn.relu(x))
        x = tf.nn.relu(self.proj_bn(self.proj(x), training=training))
        x = tf.nn.relu(self.conv_bn(self.conv(x), training=training))
        return self.fc(self.flatten(x))


class ImageNetStem(keras.layers.Layer):
    """stem0 and stem1 of NAO_pytorch's ImageNet network; returns (h[i-2], h[i-1]) of the first
    cell at 1/4 and 1/8 of the image size, both `filters` wide."""

    def __init__(self, filters: int, sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        conv = lambda width: keras.layers.Conv2D(  # noqa: E731
            width, 3, strides=2, padding="same", use_bias=False,
            kernel_initializer=ops.kernel_init())
        self.conv0a, self.bn0a = conv(filters // 2), ops.batch_norm(sync_bn)
        self.conv0b, self.bn0b = conv(filters), ops.batch_norm(sync_bn)
        self.conv1, self.bn1 = conv(filters), ops.batch_norm(sync_bn)

    def call(self, x, training=False):
        x = tf.nn.relu(self.bn0a(self.conv0a(x), training=training))
        h0 = self.bn0b(self.conv0b(x), training=training)
        h1 = self.bn1(self.conv1(tf.nn.relu(h0)), training=training)
        return h0, h1


NETWORKS = ("nao_ws", "nao", "imagenet")


class NASNetwork(keras.Model):
    """The CIFAR network for one `CellArch`.

    Paper symbols: N = `num_cells_per_stage`, F = `filters`, B = 5 nodes per cell (from the arch).
    `dropout_rate` = 1 - the original's `keep_prob` before the classifier. `call` returns the
    logits, or (logits, aux_logits) when `training` and the aux head is on; logits are float32
    under mixed precision. `network`: "nao_ws" or "nao" (see the module docstring).
    """

    def __init__(self, arch: CellArch, num_cells_per_stage: int, filters: int, num_classes: int,
                 use_aux_head: bool = True, drop_path_keep_prob: float = 1.0,
                 dropout_rate: float = 0.0, stem_multiplier: int = 3, image_size: int = 32,
                 sync_bn: bool = False, network: str = "nao_ws", **kwargs):
        super().__init__(**kwargs)
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, got {network!r}")
        self.network = network
        with ops.kernel_initializer("fan_out" if network == "nao" else "he_normal"):
            self._build_layers(arch, num_cells_per_stage, filters, num_classes, use_aux_head,
                               stem_multiplier, image_size, sync_bn, network)
        self.drop_path_keep_prob = float(drop_path_keep_prob)
        self.dropout_rate = float(dropout_rate)

    def _build_layers(self, arch, num_cells_per_stage, filters, num_classes, use_aux_head,
                      stem_multiplier, image_size, sync_bn, network) -> None:
        self.arch = arch
        self.channels_first = keras.config.image_data_format() == "channels_first"
        n = num_cells_per_stage
        num_cells = 3 * n + 2
        reduction_indices = (n, 2 * n + 1)
        imagenet = network == "imagenet"
        if imagenet:
            self.imagenet_stem = ImageNetStem(filters, sync_bn, name="imagenet_stem")
            channels = [filters, filters]  # widths of (h[i-2], h[i-1])
            sizes = [-(-image_size // 4), -(-image_size // 8)]
        else:
            self.stem_conv = keras.layers.Conv2D(stem_multiplier * filters, 3, padding="same",
                                                 use_bias=False,
                                                 kernel_initializer=ops.kernel_init())
            self.stem_bn = ops.batch_norm(sync_bn)
            channels = [stem_multiplier * filters] * 2
            sizes = [image_size, image_size]
        width = filters
        self.num_cells = num_cells
        self.aux_index = None if not use_aux_head else (
            reduction_indices[-1] if imagenet else reduction_indices[-1] + 1)
        self.aux_head = None
        for idx in range(num_cells):
            reduction = idx in reduction_indices
            if reduction:
                width *= 2
            cell = NASCell(arch.reduction if reduction else arch.normal, width, reduction,
                           (channels[0], channels[1]), sizes[0] > sizes[1],
                           (idx + 1) / num_cells, sync_bn, network,
                           raw_input0=network == "nao" and idx == 0, name=f"cell{idx}")
            setattr(self, f"cell{idx}", cell)
            size = -(-sizes[1] // 2) if reduction else sizes[1]
            channels = [channels[1], cell.output_channels]
            sizes = [sizes[1], size]
            if idx == self.aux_index:
                self.aux_head = (AuxHeadImageNet(num_classes, sync_bn, name="aux_head") if imagenet
                                 else AuxHead(num_classes, size, sync_bn, network == "nao",
                                              name="aux_head"))
        self.gap = keras.layers.GlobalAveragePooling2D()
        self.classifier = keras.layers.Dense(num_classes, **_head_dense(network == "nao"),
                                             name="classifier") if not imagenet else \
            keras.layers.Dense(num_classes, kernel_initializer=ops.kernel_init(),
                               name="classifier")
        self.image_size = image_size

    @property
    def cells(self) -> list[NASCell]:
        return [getattr(self, f"cell{idx}") for idx in range(self.num_cells)]

    def call(self, images, training=False, drop_path_progress=None, seed=None):
        """`seed` (int [2]): the step's seed, from which every drop-path and dropout draw of the
        step is derived."""
        seed = ops.step_seed(seed)
        x = tf.transpose(images, [0, 3, 1, 2]) if self.channels_first else images
        if self.network == "imagenet":
            h0, h1 = self.imagenet_stem(x, training=training)
        else:
            h0 = h1 = self.stem_bn(self.stem_conv(x), training=training)
        aux_logits = None
        for idx, cell in enumerate(self.cells):
            h0, h1 = h1, cell([h0, h1], training=training, drop_path_progress=drop_path_progress,
                              drop_path_keep_prob=self.drop_path_keep_prob,
                              seed=ops.sub_seed(seed, idx))
            if training and idx == self.aux_index:
                aux_logits = tf.cast(self.aux_head(h1, training=training), tf.float32)
        x = self.gap(h1 if self.network == "imagenet" else tf.nn.relu(h1))
        if training and self.dropout_rate > 0:
            x = ops.dropout(x, self.dropout_rate, ops.sub_seed(seed, self.num_cells))
        logits = tf.cast(self.classifier(x), tf.float32)
        return (logits, aux_logits) if aux_logits is not None else logits

    def build_now(self) -> None:
        """Creates every variable eagerly (the aux head included) so that optimizers can be built
        and checkpoints restored before the first traced step. Idempotent; the batch-norm moving
        statistics keep their initial values (0 and 1)."""
        if self.built:
            return
        build.build_by_calling(self, tf.zeros([1, self.image_size, self.image_size, 3]),
                         training=True, drop_path_progress=tf.constant(0.0))
        for layer in self._flatten_layers():
            if isinstance(layer, (ops.BatchNorm, keras.layers.BatchNormalization)):
                layer.moving_mean.assign(tf.zeros_like(layer.moving_mean))
                layer.moving_variance.assign(tf.ones_like(layer.moving_variance))


def count_params(model: keras.Model, include_aux_head: bool = False) -> int:
    """Trainable parameters (the original counts the training graph's trainable variables)."""
    skip = set() if include_aux_head or model.aux_head is None else {
        id(v) for v in model.aux_head.trainable_variables}
    return int(sum(v.shape.num_elements() for v in model.trainable_variables
                   if id(v) not in skip))


def count_mult_adds(model: NASNetwork) -> int:
    """Multiply-adds of the inference of one image at `model.image_size`
    (`nao_tf.runtime.build.count_mult_adds`)."""
    spec = tf.TensorSpec([1, model.image_size, model.image_size, 3], tf.float32)
    return build.count_mult_adds(lambda x: model(x, training=False), spec)
