"""The NAO-WS weight-sharing supernet: one network holding the weights of every candidate op of
every (cell, node, branch, input), run for the architecture given as an int32 tensor.

Paper symbols: N = `num_cells_per_stage`, F = `filters`, B = 5 nodes per cell. The macro structure
is the fixed network's (`cnn.model`): a 3x3 stem with 3F channels, 3N + 2 cells (N normal,
reduction, N normal, reduction, N normal; width doubled at each reduction), auxiliary head on the
first normal cell after the second reduction, ReLU - global pool - dropout - dense head.

Architecture tensor: int32 [40], the 40-integer text format (normal cell, then reduction cell;
`in1 op1 in2 op2` per node, ops 0-4 of the NAO-WS space). It enters the compiled step as a tensor,
so one trace serves every architecture.

Inside a cell (as the original supernet, `NAO-WS/cnn/model_search.py`, and the PyTorch V1 port):
  * the cell inputs are calibrated as in the fixed network (h[i-2]: ReLU + factorized reduce when
    spatially larger, else ReLU-1x1-BN when its width differs; h[i-1]: ReLU-1x1-BN when its width
    differs, then always one more ReLU-1x1-BN, the fixed network's `layer_base`; with
    `base_conv=False` that last one is left out, as both original supernets do);
  * each branch selects its input node, then its op; the separable convolutions (and their batch
    norms) and the stride-2 identity's factorized reduction keep one weight row per possible input
    node, gathered by the input index: weights belong to (cell, node, branch, op, input);
  * the output concatenates the unused nodes (cell inputs included), applies ReLU, a 1x1 conv whose
    weight rows belong to the node indices, and BN, so every cell is F wide. The unused set depends
    on the architecture: used nodes are multiplied by 0 before the conv, which is the original's
    gather of the unused rows with fixed shapes;
  * reduction cells (`reduction="stride2"`) are real stride-2 cells (as the PyTorch V1 supernet
    and the fixed network): ops reading a cell input have stride 2, ops reading a node stride 1,
    unused cell inputs are factorized-reduced before the concatenation. `reduction="tf"` is the
    TF supernet's way: r = FR(h[i-1]) (a factorized reduction, no ReLU), then a stride-1 cell with
    the reduction cell's architecture on (h[i-1], r), whose h[i-1] is calibrated by ReLU + FR;
    h[i-2] is dropped, and the next cell reads (r, this cell's output);
  * every batch norm uses the batch's statistics, in training and when scoring (as the original
    supernet); the moving averages kept by the stem's, the calibrations' and the aux head's batch
    norms are never read.

Op selection (`op_selection`): "switch" runs only the chosen op (`tf.switch_case`); "select"
computes every candidate and gathers the chosen one (the TF original's way). Both give the same
function; docs/benchmarks.md has their speeds.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from cnn import ops
from cnn.model import AuxHead
from cnn.search_space import (
    ARCH_LENGTH,
    INTS_PER_CELL,
    NAO_WS_OPS,
    NUM_CELL_INPUTS,
    NUM_NODES,
    CellArch,
)
from nao_tf.runtime.build import build_by_calling

NUM_OPS = len(NAO_WS_OPS)  # sep3, sep5, avg3, max3, identity
SEP_SIZES = (3, 5)
OP_SELECTIONS = ("switch", "select")
REDUCTIONS = ("stride2", "tf")
NUM_STATES = NUM_CELL_INPUTS + NUM_NODES  # 7


def arch_tensor(arch: CellArch) -> np.ndarray:
    """The architecture as the supernet's int32 [40] input."""
    values = np.asarray(arch.ints(), dtype=np.int32)
    ops_ = values[1::2]
    if ops_.min() < 0 or ops_.max() >= NUM_OPS:
        raise ValueError(f"the supernet holds the NAO-WS ops 0..{NUM_OPS - 1}, "
                         f"got {sorted(set(ops_))}")
    return values


def _row_base(node: int, branch: int) -> int:
    """First weight row of (node, branch): rows are ordered by node, branch, input (node i has
    i + 2 possible inputs), 40 rows per cell."""
    return sum(2 * (k + NUM_CELL_INPUTS) for k in range(node)) + branch * (node + NUM_CELL_INPUTS)


ROWS_PER_CELL = _row_base(NUM_NODES, 0)  # 40
BRANCH_ROW_BASE = np.array([_row_base(i, b) for i in range(NUM_NODES) for b in range(2)], np.int32)


class _Layout:
    """Channel axis and strides of the image layout."""

    def __init__(self):
        self.channels_first = keras.config.image_data_format() == "channels_first"
        self.format = "NCHW" if self.channels_first else "NHWC"
        self.axis = 1 if self.channels_first else 3

    def strides(self, s: int) -> list[int]:
        return [1, 1, s, s] if self.channels_first else [1, s, s, 1]


def _he(fan_in: int) -> keras.initializers.Initializer:
    """He-normal (truncated) initialiser for stacked kernels, with the fan-in of one kernel (the
    original computes it from its 2-D weight matrices, i.e. 2 to 6 "inputs", a much larger
    spread; see docs/differences.md)."""
    return keras.initializers.TruncatedNormal(stddev=math.sqrt(2.0 / fan_in) / 0.87962566103423978)


def _compiled(fn):
    """`fn` as a graph function (a call in the step's graph, not inlined: inlining 100+ call sites
    made the first step, graph optimisation, several times slower and the step no faster), traced
    without autograph (it has no tensor-dependent Python control flow; converting took 15% of the
    supernet train step's trace), and traced once per rank and dtype of its tensor arguments,
    whatever their shapes: one trace (and one gradient) serves the cells of every resolution and
    width, a third of the functions a trace per shape made. Outputs have no static shape."""
    function = tf.function(fn, autograph=False, experimental_attributes={"_noinline": True})

    def call(*args):
        specs = tf.nest.map_structure(
            lambda t: tf.TensorSpec([None] * t.shape.rank, t.dtype), args)
        return function.get_concrete_function(*specs)(*args)

    return call


class OpFunctions:
    """The candidate ops of one branch, shared by every branch and cell.

    "switch": each op is a `tf.switch_case` over the candidates, inside a compiled function that
    takes the weights as arguments (rows gathered by the caller); so each function is traced once
    for every shape, not once per branch (a network has 100+ branches, and tracing a switch and
    its gradient for each takes minutes). Only the chosen candidate runs.
    "select": no control flow. Every candidate is computed and the chosen output gathered (the
    TF original's way); the 3x3 and 5x5 separable convs share one 5x5 pass whose kernels are the
    chosen op's (a 3x3 kernel is a 5x5 kernel with a zero border: same output, SAME padding and
    strides included). Input nodes are gathered from the stacked states.
    """

    def __init__(self, op_selection: str = "switch"):
        if op_selection not in OP_SELECTIONS:
            raise ValueError(f"op_selection must be one of {OP_SELECTIONS}, got {op_selection!r}")
        self.op_selection = op_selection
        self.layout = _Layout()
        # Functions of their own, by stride: the recomputing gradient cannot live directly in a
        # switch branch.
        self.max_pool = {s: _compiled(lambda x, s=s: ops.max_pool(
            x, 3, self.layout.strides(s), self.layout.format)) for s in (1, 2)}
        if op_selection == "switch":
            self.select = _compiled(self._switch_select)
            self.normal_op = _compiled(self._normal_op)
            self.reduce_input_op = _compiled(self._reduce_input_op)
            self.reduce_op = _compiled(self._reduce_op)
        else:
            self.select = self._gather_select
            self.normal_op, self.reduce_input_op = self._normal_op, self._reduce_input_op
            self.reduce_op = self._reduce_op

    def batch_norm(self, x, gamma, beta):
        """Batch norm with the batch's statistics (the supernet never uses moving averages); scale
        and offset stay float32 under a mixed-precision policy, as the fused kernel needs."""
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            x, tf.cast(gamma, tf.float32), tf.cast(beta, tf.float32), epsilon=ops.BN_EPSILON,
            data_format=self.layout.format, is_training=True)
        return y

    @staticmethod
    def _switch_select(index, states: tuple):
        """states[index]: only the chosen tensor flows forward and receives a gradient."""
        return tf.switch_case(index, [lambda s=s: s for s in states])

    @staticmethod
    def _gather_select(index, states: tuple):
        return states[0] if len(states) == 1 else tf.gather(tf.stack(states), index)

    def _sep_conv(self, x, weights: tuple, strides: int):
        """Two stacked (ReLU, separable conv, BN); `weights` = (depthwise, pointwise, gamma,
        beta) of each; stride on the first."""
        for stage, s in ((0, strides), (1, 1)):
            depthwise, pointwise, gamma, beta = weights[4 * stage:4 * stage + 4]
            x = tf.nn.separable_conv2d(tf.nn.relu(x), depthwise, pointwise,
                                       self.layout.strides(s), "SAME",
                                       data_format=self.layout.format)
            x = self.batch_norm(x, gamma, beta)
        return x

    def _pool(self, x, kind: str, strides: int):
        if kind == "max":
            return self.max_pool[strides](x)
        return tf.nn.avg_pool2d(x, 3, self.layout.strides(strides), "SAME",
                                data_format=self.layout.format)

    def _factorized_reduce(self, x, weights: tuple):
        """The stride-2 identity: 1x1 convs on even and on shifted pixels, concatenated, BN."""
        conv1, conv2, gamma, beta = weights
        shifted = ops.shifted_by_one(x, self.layout.channels_first)
        s2 = self.layout.strides(2)
        out = tf.concat([
            tf.nn.conv2d(x, conv1, s2, "SAME", data_format=self.layout.format),
            tf.nn.conv2d(shifted, conv2, s2, "SAME", data_format=self.layout.format)],
            axis=self.layout.axis)
        return self.batch_norm(out, gamma, beta)

    def _merged_sep_weights(self, sep: tuple, op) -> tuple:
        """The 5x5 separable-conv weights of op 0 (3x3 kernels zero-bordered) or op 1."""
        use3 = tf.equal(op, 0)
        out = []
        for k, (w3, w5) in enumerate(zip(sep[:8], sep[8:])):
            if k % 4 == 0:  # depthwise kernel [k, k, C, 1]
                w3 = tf.pad(w3, [[1, 1], [1, 1], [0, 0], [0, 0]])
            out.append(tf.where(use3, w3, w5))
        return tuple(out)

    def _candidates(self, x, sep: tuple, strides: int, reduce: tuple | None, op) -> list:
        """The NAO-WS ops on `x` as thunks: sep3, sep5, avg3, max3, identity ("switch"), or one
        separable conv with the weights of op 0 or 1, avg3, max3, identity ("select")."""
        identity = (lambda: self._factorized_reduce(x, reduce)) if strides > 1 else (lambda: x)
        pools = [lambda: self._pool(x, "avg", strides), lambda: self._pool(x, "max", strides)]
        if self.op_selection == "switch":
            return [lambda: self._sep_conv(x, sep[:8], strides),
                    lambda: self._sep_conv(x, sep[8:], strides), *pools, identity]
        return [lambda: self._sep_conv(x, self._merged_sep_weights(sep, op), strides), *pools,
                identity]

    def _choose(self, op, thunks: list, on_node=None):
        """The output of op `op` (on a node rather than a cell input when `on_node` is set: the
        second half of `thunks`)."""
        per_input = len(thunks) if on_node is None else len(thunks) // 2
        index = op if self.op_selection == "switch" else tf.maximum(op - 1, 0)
        if on_node is not None:
            index += per_input * tf.cast(on_node, tf.int32)
        if self.op_selection == "switch":
            return tf.switch_case(index, thunks)
        return tf.gather(tf.stack([f() for f in thunks]), index)

    def _normal_op(self, x, op, sep: tuple):
        return self._choose(op, self._candidates(x, sep, 1, None, op))

    def _reduce_input_op(self, x_in, op, sep: tuple, reduce: tuple):
        return self._choose(op, self._candidates(x_in, sep, 2, reduce, op))

    def _reduce_op(self, x_in, x_node, op, on_node, sep: tuple, reduce: tuple):
        """Op `op` at stride 2 on a cell input, or at stride 1 on a node when `on_node`."""
        return self._choose(op, self._candidates(x_in, sep, 2, reduce, op)
                            + self._candidates(x_node, sep, 1, None, op), on_node)


class SuperCell(keras.layers.Layer):
    """One normal or reduction cell of width `filters` holding every candidate of every branch."""

    def __init__(self, filters: int, reduction: bool, input_channels: tuple[int, int],
                 input0_larger: bool, functions: "OpFunctions", base_conv: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters, self.reduction, self.functions = filters, reduction, functions
        self.layout = functions.layout
        c0, c1 = input_channels
        if input0_larger:
            self.calibrate0 = ops.FactorizedReduce(filters, name="calibrate0")
        elif c0 != filters:
            self.calibrate0 = ops.ReLUConvBN(filters, 1, 1, name="calibrate0")
        else:
            self.calibrate0 = None
        self.relu_before_reduce = input0_larger
        self.calibrate1 = (ops.ReLUConvBN(filters, 1, 1, name="calibrate1")
                           if c1 != filters else None)
        self.base1 = ops.ReLUConvBN(filters, 1, 1, name="base1") if base_conv else None
        if reduction:
            self.reduce_output0 = ops.FactorizedReduce(filters, name="reduce_output0")
            self.reduce_output1 = ops.FactorizedReduce(filters, name="reduce_output1")

    def build(self, input_shape):
        c, rows = self.filters, ROWS_PER_CELL
        for k in SEP_SIZES:
            for stage in "ab":
                self._weight(f"sep{k}{stage}_depthwise", (rows, k, k, c, 1), k * k)
                self._weight(f"sep{k}{stage}_pointwise", (rows, 1, 1, c, c), c)
                self._weight(f"sep{k}{stage}_gamma", (rows, c), init="ones")
                self._weight(f"sep{k}{stage}_beta", (rows, c), init="zeros")
        if self.reduction:  # stride-2 identity = factorized reduce, per (node, branch, input)
            fr_rows = NUM_NODES * 2 * NUM_CELL_INPUTS
            for path in (1, 2):
                self._weight(f"reduce{path}", (fr_rows, 1, 1, c, c // 2), c)
            self._weight("reduce_gamma", (fr_rows, c), init="ones")
            self._weight("reduce_beta", (fr_rows, c), init="zeros")
        self._weight("combine", (NUM_STATES, 1, 1, c, c), NUM_STATES * c)
        self._weight("combine_gamma", (c,), init="ones")
        self._weight("combine_beta", (c,), init="zeros")

    def _weight(self, name: str, shape: tuple[int, ...], fan_in: int = 0,
                init: str | None = None) -> None:
        initializer = init or _he(fan_in)
        setattr(self, name, self.add_weight(shape=shape, name=name, initializer=initializer))

    # Weight rows of every branch, gathered once per cell (outside the shared op functions).

    SEP_PARTS = tuple(f"sep{k}{stage}_{part}" for k in SEP_SIZES for stage in "ab"
                      for part in ("depthwise", "pointwise", "gamma", "beta"))
    REDUCE_PARTS = ("reduce1", "reduce2", "reduce_gamma", "reduce_beta")

    def _rows(self, names: tuple, rows) -> list[tuple]:
        """Per branch (node-major), the tuple of rows `rows[branch]` of the variables `names`."""
        parts = [tf.unstack(tf.gather(getattr(self, name), rows), 2 * NUM_NODES) for name in names]
        return list(zip(*parts))

    def _branch(self, states: list, node: int, branch: int, inp, op, sep: tuple, red):
        f = self.functions
        if not self.reduction:
            return f.normal_op(f.select(inp, tuple(states)), op, sep)
        # Reduction cell: ops on a cell input have stride 2, ops on a node stride 1.
        x_in = f.select(tf.minimum(inp, 1), tuple(states[:NUM_CELL_INPUTS]))
        if node == 0:
            return f.reduce_input_op(x_in, op, sep, red)
        x_node = f.select(tf.maximum(inp - NUM_CELL_INPUTS, 0), tuple(states[NUM_CELL_INPUTS:]))
        return f.reduce_op(x_in, x_node, op, inp >= NUM_CELL_INPUTS, sep, red)

    def call(self, inputs, cell_arch, drop_path_keep=None, seed=None):
        """`cell_arch`: int32 [20] (`in1 op1 in2 op2` per node). `drop_path_keep`: this cell's
        drop-path keep probability, applied to every branch output (identities included, as the
        PyTorch V1 supernet), drawn from `seed` (int [2]); None: no drop-path."""
        h0, h1 = inputs
        if self.calibrate0 is not None:
            h0 = self.calibrate0(tf.nn.relu(h0) if self.relu_before_reduce else h0, training=True)
        if self.calibrate1 is not None:
            h1 = self.calibrate1(h1, training=True)
        states = [h0, h1 if self.base1 is None else self.base1(h1, training=True)]
        node_shape = states[1].shape.as_list()  # every node's: h[i-1]'s, halved by a reduction
        if self.reduction:
            for axis in (2, 3) if self.layout.channels_first else (1, 2):
                if node_shape[axis] is not None:
                    node_shape[axis] = (node_shape[axis] + 1) // 2
        inputs_used = cell_arch[0::2]  # the input of every branch, node-major
        sep = self._rows(self.SEP_PARTS, BRANCH_ROW_BASE + inputs_used)
        red = (self._rows(self.REDUCE_PARTS, 2 * tf.range(2 * NUM_NODES)
                          + tf.minimum(inputs_used, 1))
               if self.reduction else [None] * (2 * NUM_NODES))
        inputs_and_ops = tf.unstack(cell_arch, INTS_PER_CELL)  # one op, not a slice per integer
        for i in range(NUM_NODES):
            total = None
            for b in range(2):
                inp, op = inputs_and_ops[4 * i + 2 * b:4 * i + 2 * b + 2]
                out = self._branch(states, i, b, inp, op, sep[2 * i + b], red[2 * i + b])
                out.set_shape(node_shape)  # the op functions' outputs have no static shape
                if drop_path_keep is not None:
                    out = ops.drop_path(out, drop_path_keep, ops.sub_seed(seed, 2 * i + b))
                total = out if total is None else total + out
            states.append(total)
        used = tf.reduce_any(tf.equal(inputs_used[:, None], tf.range(NUM_STATES)[None, :]), axis=0)
        unused = 1.0 - tf.cast(used, tf.float32)  # [7]
        if self.reduction:
            states[0] = self.reduce_output0(states[0], training=True)
            states[1] = self.reduce_output1(states[1], training=True)
        out = tf.concat([tf.nn.relu(s) * tf.cast(unused[j], s.dtype) for j, s in enumerate(states)],
                        axis=self.layout.axis)
        c = self.filters
        kernel = tf.reshape(self.combine, [1, 1, NUM_STATES * c, c])
        out = tf.nn.conv2d(out, kernel, 1, "SAME", data_format=self.layout.format)
        return self.functions.batch_norm(out, self.combine_gamma, self.combine_beta)


class Supernet(keras.Model):
    """The weight-sharing network. `call(images, arch, training)` returns the logits, or (logits,
    aux_logits) when `training` and the aux head is on; `arch` is `arch_tensor(...)` (int32 [40]).
    `dropout_rate` = 1 - the original's `keep_prob` (0.9 in the NAO-WS search). `score_dropout`:
    the classifier dropout acts outside training too (with one fixed mask, the same for every
    cell), as in the TF original, whose search graph always runs in training mode. `reduction`:
    how a reduction cell halves the size; `base_conv`: the fixed network's unconditional 1x1 on
    h[i-1] (see the module docstring). `drop_path_keep_prob` p < 1: in training, every branch
    output of cell l (0-based, of 3N + 2) is dropped with probability
    (l + 1) / (3N + 2) * progress * (1 - p), progress = min(1, (step + 1) / total_steps) passed to
    `call`: the PyTorch V1 search's `apply_drop_path` on every op (`NAO_V1/model_search.py`
    `Node.forward`, `NAO_V1/operations.py`); 1 = none, as the TF original."""

    def __init__(self, num_cells_per_stage: int, filters: int, num_classes: int,
                 use_aux_head: bool = True, dropout_rate: float = 0.1, stem_multiplier: int = 3,
                 image_size: int = 32, op_selection: str = "switch", score_dropout: bool = False,
                 reduction: str = "stride2", base_conv: bool = True,
                 drop_path_keep_prob: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        n = num_cells_per_stage
        self.num_cells = 3 * n + 2
        reduction_indices = (n, 2 * n + 1)
        self.dropout_rate = float(dropout_rate)
        self.drop_path_keep_prob = float(drop_path_keep_prob)
        self.score_dropout = score_dropout
        self.image_size = image_size
        self.channels_first = keras.config.image_data_format() == "channels_first"
        self.functions = OpFunctions(op_selection)
        self.stem_conv = keras.layers.Conv2D(stem_multiplier * filters, 3, padding="same",
                                             use_bias=False, kernel_initializer=ops.kernel_init())
        self.stem_bn = ops.BatchNorm()
        channels = [stem_multiplier * filters] * 2
        sizes = [image_size, image_size]
        width = filters
        self.reductions = []
        self.aux_index = reduction_indices[-1] + 1 if use_aux_head else None
        self.aux_head = None
        self.tf_reduction = reduction == "tf"
        for idx in range(self.num_cells):
            is_reduction = idx in reduction_indices
            width = width * 2 if is_reduction else width
            self.reductions.append(is_reduction)
            size = sizes[1] // 2 if is_reduction else sizes[1]
            if is_reduction and self.tf_reduction:  # a stride-1 cell on (h[i-1], FR(h[i-1]))
                setattr(self, f"pre_reduce{idx}", ops.FactorizedReduce(width,
                                                                       name=f"pre_reduce{idx}"))
                cell = SuperCell(width, False, (channels[1], width), True, self.functions,
                                 base_conv, name=f"cell{idx}")
                channels, sizes = [width, width], [size, size]
            else:
                cell = SuperCell(width, is_reduction, (channels[0], channels[1]),
                                 sizes[0] > sizes[1], self.functions, base_conv,
                                 name=f"cell{idx}")
                channels, sizes = [channels[1], width], [sizes[1], size]
            setattr(self, f"cell{idx}", cell)
            if idx == self.aux_index:
                self.aux_head = AuxHead(num_classes, size, name="aux_head")
        self.classifier = keras.layers.Dense(num_classes, use_bias=False,
                                             kernel_initializer=ops.kernel_init(),
                                             name="classifier")

    def call(self, images, arch, training=False, drop_path_progress=None, seed=None):
        """`seed` (int [2]): the step's seed, from which the dropout and drop-path draws are
        derived; `drop_path_progress`: the training's progress (drop-path needs it)."""
        x = tf.transpose(images, [0, 3, 1, 2]) if self.channels_first else images
        x = self.stem_bn(self.stem_conv(x), training=True)
        normal, reduction = arch[:INTS_PER_CELL], arch[INTS_PER_CELL:ARCH_LENGTH]
        drop_path = (training and self.drop_path_keep_prob < 1.0
                     and drop_path_progress is not None)
        h0 = h1 = x
        aux_logits = None
        for idx in range(self.num_cells):
            cell = getattr(self, f"cell{idx}")
            cell_arch = reduction if self.reductions[idx] else normal
            keep = (1.0 - (idx + 1) / self.num_cells * drop_path_progress
                    * (1.0 - self.drop_path_keep_prob)) if drop_path else None
            cell_seed = ops.sub_seed(ops.step_seed(seed), idx) if drop_path else None
            if self.reductions[idx] and self.tf_reduction:
                reduced = getattr(self, f"pre_reduce{idx}")(h1, training=True)
                h0, h1 = reduced, cell([h1, reduced], cell_arch, drop_path_keep=keep,
                                       seed=cell_seed)
            else:
                h0, h1 = h1, cell([h0, h1], cell_arch, drop_path_keep=keep, seed=cell_seed)
            if training and idx == self.aux_index:
                aux_logits = tf.cast(self.aux_head(h1, training=True), tf.float32)
        x = tf.reduce_mean(tf.nn.relu(h1), axis=[2, 3] if self.channels_first else [1, 2])
        if (training or self.score_dropout) and self.dropout_rate > 0:
            x = ops.dropout(x, self.dropout_rate, ops.step_seed(seed))
        logits = tf.cast(self.classifier(x), tf.float32)
        return (logits, aux_logits) if aux_logits is not None else logits

    def build_now(self) -> None:
        """Creates every variable eagerly (aux head included), before any traced step."""
        if self.built:
            return
        arch = tf.constant(np.zeros(ARCH_LENGTH, np.int32))
        build_by_calling(self, tf.zeros([2, self.image_size, self.image_size, 3]), arch,
                         training=True)
