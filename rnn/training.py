"""Training-loop pieces of the original language-model trainer, as small reusable functions.

- `sample_seq_len`: random BPTT length per step (35 w.p. 0.95 else 17.5, Gaussian jitter σ=5,
  at least 5, at most bptt + max_seq_len_delta);
- `search_windows`: the supernet's BPTT windows (35, or 17 w.p. 0.05, no jitter);
- lr scaling: the step's learning rate is lr · seq_len / bptt (`LMStep` takes it as an argument);
- `clip_and_decay`: global-norm clipping of the gradients, then coupled L2 (g + wd · w), the order
  in which the original's `clip_grad_norm` and SGD `weight_decay` act;
- `WeightAverage`: NT-ASGD's running average of the weights from the switch onward;
- `should_switch_to_asgd`: the non-monotone trigger;
- `LMStep`: the compiled training step (one trace for every length, MirroredStrategy over batch
  columns, hidden state carried in and out) and the evaluation loop.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from nao_tf.runtime import precision
from nao_tf.runtime.distribute import build_optimizer
from rnn.data import get_batch
from rnn.model import tar_penalty


def sample_seq_len(rng: np.random.Generator, bptt: int, max_seq_len_delta: int) -> int:
    """The original's random BPTT length for one training step."""
    base = bptt if rng.random() < 0.95 else bptt / 2.0
    return min(max(5, int(rng.normal(base, 5))), bptt + max_seq_len_delta)


def train_windows(source: np.ndarray, rng: np.random.Generator, bptt: int,
                  max_seq_len_delta: int) -> Iterator[tuple[int, int]]:
    """(start row, length) of every training step of one epoch over a batchified stream.

    Every window has at least 2 rows, so the TAR difference is never empty.
    """
    i = 0
    while i < len(source) - 2:
        seq_len = min(sample_seq_len(rng, bptt, max_seq_len_delta), len(source) - 1 - i)
        yield i, seq_len
        i += seq_len


def search_windows(source: np.ndarray, rng: np.random.Generator,
                   bptt: int) -> list[tuple[int, int]]:
    """(start row, length) of every supernet training step of one epoch: the original search's
    length is bptt with probability 0.95, else int(bptt / 2), without Gaussian jitter."""
    windows, i = [], 0
    while i < len(source) - 2:
        seq_len = bptt if rng.random() < 0.95 else int(bptt / 2)
        seq_len = min(seq_len, len(source) - 1 - i)
        windows.append((i, seq_len))
        i += seq_len
    return windows


def clip_and_decay(grads: Sequence[tf.Tensor], variables: Sequence[tf.Variable], clip: float,
                   wdecay: float) -> list[tf.Tensor]:
    """Clips `grads` to global norm `clip` (0 = no clipping), then adds wdecay · w."""
    grads = [tf.convert_to_tensor(g) for g in grads]
    if clip > 0:
        grads, _ = tf.clip_by_global_norm(grads, clip)
    if wdecay > 0:
        grads = [g + wdecay * tf.convert_to_tensor(v) for g, v in zip(grads, variables)]
    return list(grads)


def should_switch_to_asgd(history: Sequence[float], val_loss: float, nonmono: int) -> bool:
    """NT-ASGD trigger: more than `nonmono` validation results logged and `val_loss` worse than
    the best of all but the last `nonmono` of them (`history` excludes `val_loss`)."""
    return len(history) > nonmono and val_loss > min(history[:len(history) - nonmono])


class WeightAverage(tf.Module):
    """ASGD's running average ax of the weights, from the switch onward (t0 = 0, lambda = 0).

    After the k-th averaged step ax = mean of the weights after steps 1..k. Create under the
    strategy scope; `update` runs in cross-replica context.
    """

    def __init__(self, variables: Sequence[tf.Variable]):
        super().__init__(name="weight_average")
        self._targets = list(variables)
        self.averages = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.active = tf.Variable(False, trainable=False)

    def update_if_active(self) -> None:
        """One averaging step, when averaging is active (callable inside `tf.function`)."""
        tf.cond(self.active, self._update, lambda: None)

    def _update(self) -> None:
        self.count.assign_add(1)
        mu = 1.0 / tf.cast(self.count, tf.float32)
        for avg, v in zip(self.averages, self._targets):
            avg.assign_add((tf.convert_to_tensor(v) - avg) * mu)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Within the block the model holds the averaged weights (when averaging is active)."""
        if not bool(self.active.numpy()):
            yield
            return
        raw = [tf.identity(tf.convert_to_tensor(v)) for v in self._targets]
        for v, avg in zip(self._targets, self.averages):
            v.assign(avg)
        try:
            yield
        finally:
            for v, value in zip(self._targets, raw):
                v.assign(value)


class LMStep:
    """Compiled training step and evaluation of a language model under a `tf.distribute`
    strategy: the final `RNNModel`, or the weight-sharing `rnn.supernet.Supernet`, whose steps
    also take the cell.

    `train_step(x [T, B], y [T, B], hidden [B, d], lr, seed[, arch [n, 2]])`: one SGD step of the
    original's loss (NLL + TAR); T is free and the cell is a tensor, so it traces once. `seed`
    (two ints, unique per step) draws the step's dropout masks, each replica its own. Under
    MirroredStrategy (one machine or many) each replica trains on its own slice of the B columns
    and their hidden states (all B states are gathered back after the step), gradients are
    averaged across replicas, clipped, decayed and applied as plain SGD
    (Keras SGD without momentum; with loss scaling when the model computes in float16, see
    nao_tf.runtime.precision). The hidden state stays float32 between steps under every policy.
    Supernet only: `score(x, y, archs [K, n, 2])`, the summed NLL per cell (one trace for every
    K).
    """

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy, batch_size: int,
                 clip: float, wdecay: float, beta: float, average: WeightAverage | None = None,
                 jit_compile: bool = False):
        replicas = strategy.num_replicas_in_sync
        if batch_size % replicas:
            raise ValueError(f"batch size {batch_size} is not divisible by {replicas} replicas")
        self.model, self.strategy = model, strategy
        self.clip, self.wdecay, self.beta = clip, wdecay, beta
        self.average = average
        self._cols = batch_size // replicas
        self._vars = [v.value for v in model.trainable_variables]
        with strategy.scope():
            self.optimizer = build_optimizer(precision.with_loss_scaling(
                keras.optimizers.SGD(learning_rate=0.0), model), model.trainable_variables)
        ids = tf.TensorSpec([None, batch_size], tf.int32)
        hidden = tf.TensorSpec([batch_size, model.units], tf.float32)
        self.weight_sharing = hasattr(model, "score")
        arch = [tf.TensorSpec([model.num_nodes, 2], tf.int32)] if self.weight_sharing else []
        # Traced without autograph: the loops over time are explicit `tf.while_loop`s.
        self._compiled_train_step = tf.function(
            self._train_step, jit_compile=jit_compile, autograph=False,
            input_signature=[ids, ids, hidden, tf.TensorSpec([], tf.float32),
                             tf.TensorSpec([2], tf.int64), *arch])
        if self.weight_sharing:
            self.score = tf.function(model.score, autograph=False, input_signature=[
                tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.int32),
                tf.TensorSpec([None, model.num_nodes, 2], tf.int32)])
        self.eval_step = tf.function(
            self._eval_step, autograph=False,
            input_signature=[tf.TensorSpec([None, None], tf.int32),
                             tf.TensorSpec([None, None], tf.int32),
                             tf.TensorSpec([None, model.units], tf.float32)])

    def train_step(self, x, y, hidden, lr, seed: Sequence[int], *arch):
        return self._compiled_train_step(x, y, hidden, lr, tf.constant(seed, tf.int64), *arch)

    @property
    def train_tracing_count(self) -> int:
        return self._compiled_train_step.experimental_get_tracing_count()

    def loss_fn(self, x: tf.Tensor, y: tf.Tensor, hidden: tf.Tensor, training: bool,
                *arch: tf.Tensor, seed: tf.Tensor | None = None
                ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(mean NLL, NLL + TAR, next hidden) for one segment (of the supernet's cell `arch`)."""
        logits, raw, hidden = self.model(x, hidden, *arch, training=training, seed=seed)
        nll = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=tf.cast(logits, tf.float32)))
        total = nll
        if training and self.beta > 0:
            total += tar_penalty(raw, self.beta)
        return nll, total, tf.cast(hidden, tf.float32)

    def _replica_step(self, x, y, hidden, seed, *arch):
        ctx = tf.distribute.get_replica_context()
        cols = slice(None), slice(ctx.replica_id_in_sync_group * self._cols,
                                  (ctx.replica_id_in_sync_group + 1) * self._cols)
        seed = tf.random.experimental.stateless_fold_in(seed, ctx.replica_id_in_sync_group)
        with tf.GradientTape() as tape:
            nll, total, new_hidden = self.loss_fn(x[cols], y[cols], hidden[cols[1]], True, *arch,
                                                  seed=seed)
            total = self.optimizer.scale_loss(total)
        grads = tape.gradient(total, self._vars)
        if self.weight_sharing:  # the supernet's embedding gradient: dense, as its blocks'
            grads = [tf.convert_to_tensor(g) for g in grads]
        grads = precision.unscaled(self.optimizer,
                                   ctx.all_reduce(tf.distribute.ReduceOp.MEAN, grads))
        grads = precision.rescaled(self.optimizer,
                                   clip_and_decay(grads, self._vars, self.clip, self.wdecay))
        # The optimizer sums the replicas' gradients: each hands it 1/R of the mean.
        replicas = float(self.strategy.num_replicas_in_sync)
        self.optimizer.apply_gradients(
            zip([g / replicas for g in grads], self.model.trainable_variables))
        # Every replica (of every worker) carries all B columns' states into the next step.
        return nll, ctx.all_gather(new_hidden, axis=0)

    def _train_step(self, x, y, hidden, lr, seed, *arch):
        self.optimizer.learning_rate.assign(lr)
        nll, new_hidden = self.strategy.run(self._replica_step, args=(x, y, hidden, seed, *arch))
        if self.average is not None:
            self.average.update_if_active()
        hidden = self.strategy.experimental_local_results(new_hidden)[0]
        loss = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, nll, axis=None)
        return loss, tf.stop_gradient(hidden)

    def _eval_step(self, x, y, hidden):
        logits, _, hidden = self.model(x, hidden, training=False)
        nll = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=tf.cast(logits, tf.float32)))
        return nll, tf.cast(hidden, tf.float32)

    def evaluate(self, source: np.ndarray, bptt: int) -> float:
        """Mean NLL per predicted token over a batchified stream, hidden state carried along.

        (The original divides by all rows, one more than the predicted ones; see differences.md.)
        """
        hidden = tf.zeros([source.shape[1], self.model.units])
        total, count = 0.0, 0
        for i in range(0, len(source) - 1, bptt):
            x, y = get_batch(source, i, bptt)
            nll, hidden = self.eval_step(x, y, hidden)
            total += float(nll)
            count += y.size
        return total / count


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf
