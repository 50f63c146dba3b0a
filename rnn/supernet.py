"""The NAO-WS weight-sharing supernet for recurrent cells, its training step and pool scoring.

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

import keras
import numpy as np
import tensorflow as tf

from rnn.model import _uniform, dropout_mask, input_projection, tar_penalty
from rnn.search_cell_loop import NUM_ACTIVATIONS, run_search_cell, step_forward
from rnn.search_space import NUM_NODES, RnnCell
from rnn.training import clip_and_decay


def arch_array(cells: Sequence[RnnCell]) -> np.ndarray:
    """Cells as int32 [K, n, 2]: row i-1 of cell k is (p_i, a_i)."""
    return np.asarray([cell.nodes for cell in cells], dtype=np.int32).reshape(len(cells),
                                                                              NUM_NODES, 2)


class Supernet(keras.Model):
    """Embedding -> locked dropout -> any NAO cell on shared weights -> locked dropout -> tied
    decoder. Dropout as `rnn.model.RNNModel` (rates: the original search's defaults)."""

    def __init__(self, vocab_size: int, units: int, dropout: float = 0.75,
                 dropouth: float = 0.25, dropoutx: float = 0.75, dropouti: float = 0.2,
                 dropoute: float = 0.0, num_nodes: int = NUM_NODES, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.units, self.num_nodes = vocab_size, units, num_nodes
        self.dropout, self.dropouth, self.dropoutx = dropout, dropouth, dropoutx
        self.dropouti, self.dropoute = dropouti, dropoute
        d = units
        self.embedding = self.add_weight(name="embedding", shape=(vocab_size, d),
                                         initializer=_uniform())
        self.decoder_bias = self.add_weight(name="decoder_bias", shape=(vocab_size,),
                                            initializer="zeros")
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

    def initial_hidden(self, batch_size: int) -> tf.Tensor:
        return tf.zeros([batch_size, self.units])

    def _embed(self, ids: tf.Tensor, training: bool) -> tf.Tensor:
        table = tf.convert_to_tensor(self.embedding)
        if training and self.dropoute > 0:
            table = table * dropout_mask([self.vocab_size, 1], self.dropoute)
        x = tf.gather(table, ids)
        if training and self.dropouti > 0:
            x = x * dropout_mask([1, tf.shape(ids)[1], self.units], self.dropouti)
        return x

    def _logits(self, h: tf.Tensor) -> tf.Tensor:
        return tf.tensordot(h, tf.convert_to_tensor(self.embedding), [[-1], [1]]) + \
            self.decoder_bias

    def call(self, ids: tf.Tensor, hidden: tf.Tensor, arch: tf.Tensor, training: bool = False):
        """ids [T, B], hidden [B, d], arch int32 [n, 2] -> (logits [T, B, V], raw cell outputs
        [T, B, d] for TAR, last hidden [B, d])."""
        batch = tf.shape(ids)[1]
        x = self._embed(ids, training)
        mask_x = None
        mask_h = tf.ones([batch, self.units])
        if training and self.dropoutx > 0:
            mask_x = dropout_mask([batch, self.units], self.dropoutx)
        if training and self.dropouth > 0:
            mask_h = dropout_mask([batch, self.units], self.dropouth)
        archs = arch[None]
        x_proj = input_projection(x, self.w0, mask_x)
        w0_h = tf.convert_to_tensor(self.w0)[self.units:]
        raw, hidden = run_search_cell(x_proj, hidden[None], mask_h, w0_h,
                                      self.node_weights(archs), archs[:, :, 0], archs[:, :, 1])
        raw, hidden = raw[:, 0], hidden[0]
        out = raw
        if training and self.dropout > 0:
            out = out * dropout_mask([1, batch, self.units], self.dropout)
        return self._logits(out), raw, hidden

    def score(self, x: tf.Tensor, y: tf.Tensor, archs: tf.Tensor) -> tf.Tensor:
        """Summed NLL of the targets y [T, N] given inputs x [T, N] for each of K cells
        (archs int32 [K, n, 2]); evaluation mode, every column starts from a zero state."""
        k_cells, columns = tf.shape(archs)[0], tf.shape(x)[1]
        x_proj = input_projection(self._embed(x, False), self.w0, None)
        w0_h = tf.convert_to_tensor(self.w0)[self.units:]
        w_nodes = self.node_weights(archs)
        preds = archs[:, :, 0]
        onehots = tf.one_hot(archs[:, :, 1], NUM_ACTIVATIONS, dtype=tf.float32)
        mask_h = tf.ones([columns, self.units])
        steps = tf.shape(x)[0]

        def body(t, h, total):
            h, _, _, _ = step_forward(x_proj[t], h, mask_h, w0_h, w_nodes, preds, onehots)
            labels = tf.broadcast_to(y[t][None], [k_cells, columns])
            nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                 logits=self._logits(h))
            return t + 1, h, total + tf.reduce_sum(nll, axis=1)

        h0 = tf.zeros([k_cells, columns, self.units])
        _, _, total = tf.while_loop(lambda t, *_: t < steps, body,
                                    (tf.constant(0), h0, tf.zeros([k_cells])),
                                    maximum_iterations=steps)
        return total


def count_params(model: Supernet) -> int:
    return int(sum(v.numpy().size for v in model.trainable_variables))


class SupernetStep:
    """The compiled supernet training step and the compiled scoring call.

    `train_step(x [T, B], y [T, B], hidden [B, d], lr, arch [n, 2])`: one SGD step of the
    original's loss (NLL + TAR), global-norm clip, coupled weight decay; T is free and the cell
    is a tensor, so it traces once. Under MirroredStrategy each replica trains on its slice of
    the B columns. `score(x, y, archs [K, n, 2])`: summed NLL per cell (one trace for every K).
    """

    def __init__(self, model: Supernet, strategy: tf.distribute.Strategy, batch_size: int,
                 clip: float, wdecay: float, beta: float):
        replicas = strategy.num_replicas_in_sync
        if batch_size % replicas:
            raise ValueError(f"batch size {batch_size} is not divisible by {replicas} replicas")
        self.model, self.strategy = model, strategy
        self.clip, self.wdecay, self.beta = clip, wdecay, beta
        self._cols = batch_size // replicas
        self._vars = [v.value for v in model.trainable_variables]
        ids = tf.TensorSpec([None, batch_size], tf.int32)
        arch = tf.TensorSpec([model.num_nodes, 2], tf.int32)
        self.train_step = tf.function(self._train_step, input_signature=[
            ids, ids, tf.TensorSpec([batch_size, model.units], tf.float32),
            tf.TensorSpec([], tf.float32), arch])
        self.score = tf.function(self.model.score, input_signature=[
            tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([None, model.num_nodes, 2], tf.int32)])

    def _replica_step(self, x, y, hidden, arch):
        ctx = tf.distribute.get_replica_context()
        cols = slice(None), slice(ctx.replica_id_in_sync_group * self._cols,
                                  (ctx.replica_id_in_sync_group + 1) * self._cols)
        with tf.GradientTape() as tape:
            logits, raw, new_hidden = self.model(x[cols], hidden[cols[1]], arch, training=True)
            nll = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y[cols], logits=logits))
            total = nll + tar_penalty(raw, self.beta) if self.beta > 0 else nll
        grads = tape.gradient(total, self._vars)
        grads = ctx.all_reduce(tf.distribute.ReduceOp.MEAN,
                               [tf.convert_to_tensor(g) for g in grads])
        return nll, clip_and_decay(grads, self._vars, self.clip, self.wdecay), new_hidden

    def _train_step(self, x, y, hidden, lr, arch):
        nll, grads, new_hidden = self.strategy.run(self._replica_step, args=(x, y, hidden, arch))
        for v, g in zip(self._vars, grads):
            self.strategy.extended.update(v, lambda var, grad: var.assign_sub(lr * grad),
                                          args=(g,))
        hidden = tf.concat(self.strategy.experimental_local_results(new_hidden), axis=0)
        loss = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, nll, axis=None)
        return loss, tf.stop_gradient(hidden)
