"""The NAO-WS weight-sharing supernet for recurrent cells and its pool scoring (its training
step is `rnn.training.LMStep`, as the final model's).

Paper symbols -> code (d = embedding = hidden size, n = 11 nodes, V = vocabulary):
    E (V × d), decoder bias b            `Supernet.embedding`, `Supernet.decoder_bias` (tied softmax)
    W_0 (2d × 2d), shared by every cell  `Supernet.w0`
    W_{i,p,a} (d × 2d), one block per node i, predecessor p < i and activation a (264 blocks for
    n = 11, as the original's `_Ws[i]`), stored per node as `Supernet.w{i}` of shape
    [4·i, d, 2d], block index p·4 + a; a cell selects its 11 blocks with one gather
    (`node_weights`).
    h_t = mean(s_0..s_11): the original supernet's output averages s_0 too (the final cell,
    `rnn.model.NaoCell`, averages s_1..s_11; see docs/differences.md).
A cell enters the compiled functions as an int32 tensor [n, 2] of (p_i, a_i) rows (`arch_array`),
so one trace serves every cell. Training uses `rnn.search_cell_loop` (hand-written backward);
scoring runs K cells side by side on the same validation windows.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from rnn.model import (CELL_HIDDEN_MASK, CELL_INPUT_MASK, TiedLanguageModel, _uniform,
                       dropout_mask, input_projection)
from rnn.search_cell_loop import NUM_ACTIVATIONS, run_search_cell, step_forward
from rnn.search_space import NUM_NODES, RnnCell


def arch_array(cells: Sequence[RnnCell]) -> np.ndarray:
    """Cells as int32 [K, n, 2]: row i-1 of cell k is (p_i, a_i)."""
    return np.asarray([cell.nodes for cell in cells], dtype=np.int32).reshape(len(cells),
                                                                              NUM_NODES, 2)


class Supernet(TiedLanguageModel):
    """Embedding -> locked dropout -> any NAO cell on shared weights -> locked dropout -> tied
    decoder. Dropout as `rnn.model.RNNModel` (rates: the original search's defaults)."""

    def __init__(self, vocab_size: int, units: int, dropout: float = 0.75,
                 dropouth: float = 0.25, dropoutx: float = 0.75, dropouti: float = 0.2,
                 dropoute: float = 0.0, num_nodes: int = NUM_NODES, **kwargs):
        super().__init__(vocab_size, units, dropout, dropouti, dropoute, **kwargs)
        self.num_nodes, self.dropouth, self.dropoutx = num_nodes, dropouth, dropoutx
        d = units
        self.w0 = self.add_weight(name="w0", shape=(2 * d, 2 * d), initializer=_uniform())
        # One attribute per node (attributes, not a list, are what tf.train.Checkpoint tracks).
        for i in range(1, num_nodes + 1):
            setattr(self, f"w{i}", self.add_weight(
                name=f"w{i}", shape=(NUM_ACTIVATIONS * i, d, 2 * d), initializer=_uniform()))

    @property
    def node_blocks(self) -> list[tf.Variable]:
        """[W_1, ..., W_n], W_i of shape [4·i, d, 2d]."""
        return [getattr(self, f"w{i}") for i in range(1, self.num_nodes + 1)]

    def node_weights(self, archs: tf.Tensor) -> tf.Tensor:
        """archs int32 [K, n, 2] -> the selected blocks W_{i, p_i, a_i}, [K, n, d, 2d]."""
        index = archs[:, :, 0] * NUM_ACTIVATIONS + archs[:, :, 1]
        return tf.stack([tf.gather(w, index[:, i]) for i, w in enumerate(self.node_blocks)],
                        axis=1)

    def call(self, ids: tf.Tensor, hidden: tf.Tensor, arch: tf.Tensor, training: bool = False,
             seed=None):
        """ids [T, B], hidden [B, d], arch int32 [n, 2] -> (logits [T, B, V], raw cell outputs
        [T, B, d] for TAR, last hidden [B, d])."""
        batch = tf.shape(ids)[1]
        x = self.embed(ids, training, seed)
        mask_x = None
        mask_h = tf.ones([batch, self.units], x.dtype)
        if training and self.dropoutx > 0:
            mask_x = dropout_mask([batch, self.units], self.dropoutx, seed, CELL_INPUT_MASK,
                                  x.dtype)
        if training and self.dropouth > 0:
            mask_h = dropout_mask([batch, self.units], self.dropouth, seed, CELL_HIDDEN_MASK,
                                  x.dtype)
        archs = arch[None]
        x_proj = input_projection(x, self.w0, mask_x)
        w0_h = tf.convert_to_tensor(self.w0)[self.units:]
        raw, hidden = run_search_cell(x_proj, hidden[None], mask_h, w0_h,
                                      self.node_weights(archs), archs[:, :, 0], archs[:, :, 1])
        raw, hidden = raw[:, 0], hidden[0]
        return self.decode(raw, training, seed), raw, hidden

    def score(self, x: tf.Tensor, y: tf.Tensor, archs: tf.Tensor) -> tf.Tensor:
        """Summed NLL of the targets y [T, N] given inputs x [T, N] for each of K cells
        (archs int32 [K, n, 2]); evaluation mode, every column starts from a zero state."""
        k_cells, columns = tf.shape(archs)[0], tf.shape(x)[1]
        x_proj = input_projection(self.embed(x, False), self.w0, None)
        w0_h = tf.convert_to_tensor(self.w0)[self.units:]
        w_nodes = self.node_weights(archs)
        preds = archs[:, :, 0]
        onehots = tf.one_hot(archs[:, :, 1], NUM_ACTIVATIONS, dtype=x_proj.dtype)
        mask_h = tf.ones([columns, self.units], x_proj.dtype)
        steps = tf.shape(x)[0]

        def body(t, h, total):
            h, _, _, _ = step_forward(x_proj[t], h, mask_h, w0_h, w_nodes, preds, onehots)
            labels = tf.broadcast_to(y[t][None], [k_cells, columns])
            nll = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=labels, logits=tf.cast(self.logits(h), tf.float32))
            return t + 1, h, total + tf.reduce_sum(nll, axis=1)

        h0 = tf.zeros([k_cells, columns, self.units], x_proj.dtype)
        _, _, total = tf.while_loop(lambda t, *_: t < steps, body,
                                    (tf.constant(0), h0, tf.zeros([k_cells])),
                                    maximum_iterations=steps)
        return total
