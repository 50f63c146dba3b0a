"""The NAO recurrent cell (DARTS-style highway cell) and the tied-weight language model.

Paper symbols -> code (d = hidden size = embedding size, B = batch, T = time steps):
    s_0 = h_{t-1} + c_0 ⊙ (tanh(g_0) − h_{t-1}),  [c_0, g_0] = [x_t ⊙ m_x, h_{t-1} ⊙ m_h] W_0
                                                   `first_state`, W_0 = `NaoCell.w0` (2d × 2d)
    s_i = s_p + c_i ⊙ (f_i(g_i) − s_p),           [c_i, g_i] = (s_p ⊙ m_h) W_i,   p = p_i
                                                   `highway_mix`, W_i = `NaoCell.ws[i-1]` (d × 2d)
    c = sigmoid(·) is the highway gate, g the candidate; the mix uses the unmasked s_p.
    h_t = mean(s_1..s_11)                          `NaoCell.step` (training: `rnn.cell_loop`)
    m_x, m_h: variational dropout masks [B, d], one per call (BPTT segment), shared by every time
    step and (m_h) by every node input.
No biases in the cell; every matrix ~ U(−0.04, 0.04). The decoder is tied to the embedding E
(V × d) with its own zero-initialised bias: logits = h E^T + b.
"""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from rnn.cell_loop import ACTIVATION_FNS, CellSchedule, run_cell
from rnn.search_space import RnnCell

INIT_RANGE = 0.04


# Which mask of a step a draw is: its seed is the step's seed folded with this number.
EMBEDDING_MASK, INPUT_MASK, OUTPUT_MASK, CELL_INPUT_MASK, CELL_HIDDEN_MASK = range(5)


def dropout_mask(shape, rate: float, seed: tf.Tensor | None, mask: int,
                 dtype: tf.DType = tf.float32) -> tf.Tensor:
    """Inverted-dropout mask floor(U + keep) / keep of `shape`, in `dtype` (the compute dtype of
    what it masks); U is a function of the step's `seed` (int [2]; None: a fixed one) and which
    `mask` it is, so a resumed run draws the masks an uninterrupted one would."""
    seed = tf.zeros([2], tf.int64) if seed is None else seed
    keep = 1.0 - rate
    u = tf.random.stateless_uniform(shape, tf.random.experimental.stateless_fold_in(seed, mask))
    return tf.cast(tf.floor(u + keep) / keep, dtype)


def highway_mix(s_prev: tf.Tensor, cg: tf.Tensor,
                activation: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """s = s_prev + sigmoid(c) ⊙ (f(g) − s_prev), where cg = [c, g] (pre-activations, [B, 2d])."""
    c, g = tf.split(cg, 2, axis=-1)
    return s_prev + tf.sigmoid(c) * (activation(g) - s_prev)


def input_projection(inputs: tf.Tensor, w0: tf.Tensor, mask_x: tf.Tensor | None) -> tf.Tensor:
    """(x_t ⊙ m_x) W_0[:d] for all t at once: [T, B, d] -> [T, B, 2d] (m_x is fixed per call)."""
    x = inputs if mask_x is None else inputs * mask_x
    return tf.tensordot(x, w0[:inputs.shape[-1]], [[2], [0]])


def first_state(x_proj: tf.Tensor, h: tf.Tensor, w0_h: tf.Tensor,
                mask_h: tf.Tensor | None) -> tf.Tensor:
    """s_0 from the projected input x_proj = (x_t ⊙ m_x) W_0[:d] and h_{t-1}:
    [c_0, g_0] = x_proj + (h_{t-1} ⊙ m_h) W_0[d:]  (w0_h = W_0[d:])."""
    h_in = h if mask_h is None else h * mask_h
    return highway_mix(h, x_proj + tf.matmul(h_in, w0_h), tf.tanh)


def tar_penalty(raw_outputs: tf.Tensor, beta: float) -> tf.Tensor:
    """Temporal activation regularisation beta · mean((h_{t+1} − h_t)²) on pre-dropout outputs."""
    raw_outputs = tf.cast(raw_outputs, tf.float32)
    diff = raw_outputs[1:] - raw_outputs[:-1]
    count = tf.maximum(tf.cast(tf.size(diff), tf.float32), 1.0)
    return beta * tf.reduce_sum(tf.square(diff)) / count


def _uniform() -> keras.initializers.Initializer:
    return keras.initializers.RandomUniform(-INIT_RANGE, INIT_RANGE)


class NaoCell(keras.layers.Layer):
    """A fixed NAO cell run over a [T, B, d] sequence.

    Nodes that read the same predecessor are computed with one matrix product (their W_i
    concatenated once per call), and x_t W_0[:d] for the whole segment at once. Training runs
    `rnn.cell_loop.run_cell` (time loop with a hand-written backward pass); evaluation runs the
    plain `tf.while_loop` of `step`, which stores nothing for a backward pass.
    """

    def __init__(self, arch: RnnCell, units: int, dropoutx: float = 0.0, dropouth: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.arch, self.units = arch, units
        self.dropoutx, self.dropouth = dropoutx, dropouth
        self.schedule = CellSchedule.of(arch)
        self._activations = [ACTIVATION_FNS[a] for a in arch.activations]

    def build(self, input_shape=None) -> None:
        d = self.units
        self.w0 = self.add_weight(name="w0", shape=(2 * d, 2 * d), initializer=_uniform())
        # One attribute per W_i: attributes (not a list) are what tf.train.Checkpoint tracks.
        for i in range(1, len(self.arch.nodes) + 1):
            setattr(self, f"w{i}", self.add_weight(name=f"w{i}", shape=(d, 2 * d),
                                                   initializer=_uniform()))

    @property
    def ws(self) -> list[tf.Variable]:
        """[W_1, ..., W_11]."""
        return [getattr(self, f"w{i}") for i in range(1, len(self.arch.nodes) + 1)]

    def grouped_weights(self) -> list[tf.Tensor]:
        """[W_i for the children of p] concatenated along columns, one tensor per predecessor p."""
        return [tf.concat([self.ws[i - 1] for i in nodes], axis=1) if len(nodes) > 1
                else tf.convert_to_tensor(self.ws[nodes[0] - 1])
                for _, nodes in self.schedule.groups]

    def step(self, x_proj: tf.Tensor, h: tf.Tensor, mask_h, w0_h: tf.Tensor,
             weights: list[tf.Tensor]) -> tf.Tensor:
        """One time step: h_t = mean(s_1..s_11); x_proj from `input_projection`, w0_h = W_0[d:],
        `weights` from `grouped_weights` (all computed once per call, outside the time loop)."""
        states = {0: first_state(x_proj, h, w0_h, mask_h)}
        for (pred, nodes), w in zip(self.schedule.groups, weights):
            s_prev = states[pred]
            s_in = s_prev if mask_h is None else s_prev * mask_h
            cgs = tf.split(tf.matmul(s_in, w), len(nodes), axis=-1)
            for node, cg in zip(nodes, cgs):
                states[node] = highway_mix(s_prev, cg, self._activations[node - 1])
        return tf.add_n([states[i] for i in range(1, len(states))]) / float(len(states) - 1)

    def forward_loop(self, x_proj: tf.Tensor, hidden: tf.Tensor, mask_h, w0_h: tf.Tensor,
                     weights: list[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """`step` over time in a `tf.while_loop` (differentiable by automatic differentiation)."""
        steps = tf.shape(x_proj)[0]
        outputs = tf.TensorArray(x_proj.dtype, size=steps, element_shape=hidden.shape)

        def body(t, h, out):
            h = self.step(x_proj[t], h, mask_h, w0_h, weights)
            return t + 1, h, out.write(t, h)

        _, hidden, outputs = tf.while_loop(lambda t, *_: t < steps, body,
                                           (tf.constant(0), hidden, outputs),
                                           maximum_iterations=steps)
        return outputs.stack(), hidden

    def call(self, inputs: tf.Tensor, hidden: tf.Tensor, training: bool = False, seed=None):
        """inputs [T, B, d], hidden [B, d] -> (outputs [T, B, d], last hidden [B, d])."""
        batch = tf.shape(inputs)[1]
        mask_x = mask_h = None
        if training and self.dropoutx > 0:
            mask_x = dropout_mask([batch, self.units], self.dropoutx, seed, CELL_INPUT_MASK,
                                  inputs.dtype)
        if training and self.dropouth > 0:
            mask_h = dropout_mask([batch, self.units], self.dropouth, seed, CELL_HIDDEN_MASK,
                                  inputs.dtype)
        weights = self.grouped_weights()
        x_proj = input_projection(inputs, self.w0, mask_x)
        w0_h = tf.convert_to_tensor(self.w0)[self.units:]
        if not training:
            return self.forward_loop(x_proj, hidden, mask_h, w0_h, weights)
        mask_h = tf.ones_like(hidden) if mask_h is None else mask_h
        return run_cell(x_proj, hidden, mask_h, w0_h, weights, self.schedule)


class TiedLanguageModel(keras.Model):
    """What the final model and the supernet share: the embedding E (V x d) with embedding (word)
    dropout and locked input dropout, the locked output dropout, and the tied decoder
    logits = h E^T + b. Subclasses add the recurrent cell."""

    def __init__(self, vocab_size: int, units: int, dropout: float, dropouti: float,
                 dropoute: float, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.units = vocab_size, units
        self.dropout, self.dropouti, self.dropoute = dropout, dropouti, dropoute
        self.embedding = self.add_weight(name="embedding", shape=(vocab_size, units),
                                         initializer=_uniform())
        self.decoder_bias = self.add_weight(name="decoder_bias", shape=(vocab_size,),
                                            initializer="zeros")

    def initial_hidden(self, batch_size: int) -> tf.Tensor:
        return tf.zeros([batch_size, self.units])

    def embed(self, ids: tf.Tensor, training: bool, seed: tf.Tensor | None = None) -> tf.Tensor:
        """Embedding lookup with embedding (word) dropout and locked input dropout."""
        table = tf.convert_to_tensor(self.embedding)
        if training and self.dropoute > 0:
            table = table * dropout_mask([self.vocab_size, 1], self.dropoute, seed,
                                         EMBEDDING_MASK, table.dtype)
        x = tf.gather(table, ids)
        if training and self.dropouti > 0:
            x = x * dropout_mask([1, tf.shape(ids)[1], self.units], self.dropouti, seed,
                                 INPUT_MASK, x.dtype)
        return x

    def decode(self, raw: tf.Tensor, training: bool, seed: tf.Tensor | None = None) -> tf.Tensor:
        """Cell outputs [..., B, d] -> logits [..., B, V], through the locked output dropout."""
        if training and self.dropout > 0:
            raw = raw * dropout_mask([1, tf.shape(raw)[-2], self.units], self.dropout, seed,
                                     OUTPUT_MASK, raw.dtype)
        return self.logits(raw)

    def logits(self, h: tf.Tensor) -> tf.Tensor:
        return tf.tensordot(h, tf.convert_to_tensor(self.embedding), [[-1], [1]]) + \
            self.decoder_bias


class RNNModel(TiedLanguageModel):
    """Embedding -> locked dropout -> NAO cell -> locked dropout -> tied decoder.

    `call(ids [T, B], hidden [B, d], training)` returns (logits [T, B, V], raw cell outputs
    [T, B, d] for TAR, last hidden [B, d]).
    """

    def __init__(self, arch: RnnCell, vocab_size: int, units: int, dropout: float = 0.75,
                 dropouth: float = 0.25, dropoutx: float = 0.75, dropouti: float = 0.2,
                 dropoute: float = 0.0, **kwargs):
        super().__init__(vocab_size, units, dropout, dropouti, dropoute, **kwargs)
        self.cell = NaoCell(arch, units, dropoutx=dropoutx, dropouth=dropouth, name="cell")
        self.cell.build()

    def call(self, ids: tf.Tensor, hidden: tf.Tensor, training: bool = False, seed=None):
        """`seed` (int [2]): the step's seed, from which its dropout masks are drawn."""
        raw, hidden = self.cell(self.embed(ids, training, seed), hidden, training=training,
                                seed=seed)
        return self.decode(raw, training, seed), raw, hidden


def network_costs(arch: RnnCell, vocab_size: int, units: int) -> dict[str, int]:
    """Trainable parameters of `RNNModel(arch, vocab_size, units)` and its multiply-adds per token
    (W_0, every W_i and the tied decoder), from the shapes alone. Every cell of the space costs
    the same: each node has its W_i whatever its input and activation."""
    d = units
    cell = (2 * d) * (2 * d) + len(arch.nodes) * d * (2 * d)
    return {"params": cell + vocab_size * d + vocab_size, "mult_adds": cell + d * vocab_size}


def count_params(model: keras.Model) -> int:
    return int(sum(v.numpy().size for v in model.trainable_variables))
