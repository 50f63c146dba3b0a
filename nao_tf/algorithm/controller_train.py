"""Training the controller: score normalisation, the compiled train step, `fit`, checkpoints.

Loss (paper eq. 5, with trade-off lambda = `trade_off`):
    L = trade_off * L_f + (1 - trade_off) * CE(D(E(x)), x) + wd * sum ||w||^2 / 2
    L_f = (1 - w) * mean (f(E(x)) - s)^2 + w * mean_{s_i > s_j} log(1 + exp(-(z_i - z_j)))
with w = `ranking_weight` (0, the original's MSE, by default) and z the predictor's logit; with K
predictor heads each head has its own L_f and L_f is their mean.
Targets s are min-max normalised to [0, 1] with 1 = best, whatever the direction of the raw
score (accuracy: higher is better; error, loss, perplexity: lower is better), so generation always
steps *up* the predictor's gradient.
"""

import math
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from nao_tf.algorithm.controller import Controller, decoder_inputs_for
from nao_tf.common.resume import restore

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def normalize_scores(scores: np.ndarray, higher_is_better: bool, method: str = "minmax") -> np.ndarray:
    """Scores mapped to [0, 1], 1 = best. All-equal scores map to 0.5.

    "minmax" (the original): linear in the score. "rank": evenly spaced by rank (ties share the
    mean rank), so a few very bad architectures do not squash the good ones together near 1.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if method not in ("minmax", "rank"):
        raise ValueError(f"normalization must be 'minmax' or 'rank', got {method!r}")
    if method == "rank":
        order = np.argsort(scores, kind="stable")
        ranks = np.empty(len(scores))
        ranks[order] = np.arange(len(scores))
        for value in np.unique(scores):
            tied = scores == value
            ranks[tied] = ranks[tied].mean()
        scores = ranks
    low, high = scores.min(), scores.max()
    if high == low:
        return np.full(scores.shape, 0.5, np.float32)
    unit = (scores - low) / (high - low)
    return (unit if higher_is_better else 1.0 - unit).astype(np.float32)


def predictor_loss_sum(logits: tf.Tensor, targets: tf.Tensor, ranking_weight: float) -> tf.Tensor:
    """Sum over the examples of the predictor loss L_f (module docstring), averaged over heads.

    `logits` [B, K] (each head's z), `targets` [B] (normalised, 1 = best). The ranking term is
    the mean over the ordered pairs with s_i > s_j, times B, so that dividing the sum by B gives
    the mean of both terms; a slice without such a pair contributes no ranking term."""
    heads = tf.cast(tf.shape(logits)[1], tf.float32)
    total = tf.constant(0.0)
    if ranking_weight < 1.0:
        squared_error = tf.reduce_sum(tf.square(tf.sigmoid(logits) - targets[:, None])) / heads
        total += (1.0 - ranking_weight) * squared_error
    if ranking_weight > 0.0:
        better = tf.cast(targets[:, None] > targets[None, :], tf.float32)  # [i, j]: s_i > s_j
        margins = logits[:, None, :] - logits[None, :, :]  # [i, j, k]: z_i - z_j of head k
        pair_losses = tf.reduce_sum(tf.nn.softplus(-margins) * better[:, :, None]) / heads
        pairs = tf.reduce_sum(better)
        ranking = tf.math.divide_no_nan(pair_losses, pairs) * tf.cast(tf.shape(logits)[0], tf.float32)
        total += ranking_weight * ranking
    return total


class ControllerTrainer:
    """Owns the controller's optimizer and compiled training; `fit` warm-starts across calls.

    An epoch of n examples runs ceil(n / batch_size) steps of a fixed [batch_size, source_length]
    shape, the last batch completed with examples from the start of the epoch's permutation. The
    whole epoch is one call of `train_epoch`, a compiled loop over `train_step`'s body, traced
    exactly once for the trainer's life.
    """

    def __init__(self, model: Controller, augment: Augment | None = None):
        self.model = model
        c = model.config
        self.augment = augment
        # epsilon 1e-8: TF1's AdamOptimizer and PyTorch's Adam (Keras defaults to 1e-7). With
        # `decay_after_clip` the step clips the data gradient itself.
        self.optimizer = keras.optimizers.Adam(
            c.learning_rate, epsilon=1e-8,
            global_clipnorm=None if c.decay_after_clip else c.max_gradient_norm)
        self.optimizer.build(model.trainable_variables)  # slots before the traced step
        batch = [tf.TensorSpec([c.batch_size, c.source_length], tf.int32),
                 tf.TensorSpec([c.batch_size], tf.float32)]
        epoch = [tf.TensorSpec([None, c.batch_size, c.source_length], tf.int32),
                 tf.TensorSpec([None, c.batch_size], tf.float32)]
        shard = [tf.TensorSpec([None, c.source_length], tf.int32), tf.TensorSpec([None], tf.float32),
                 tf.TensorSpec([2], tf.int32)]
        # Traced without autograph (its conversion was two thirds of the epoch's trace): the one
        # tensor loop is a `tf.while_loop`.
        self.shard_gradients = tf.function(self._shard_gradients, input_signature=shard,
                                           autograph=False)
        self.train_step = tf.function(self._train_step, input_signature=batch, autograph=False)
        self.train_epoch = tf.function(self._train_epoch, input_signature=epoch, autograph=False)
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=self.optimizer)

    def _shard_gradients(self, tokens: tf.Tensor, targets: tf.Tensor,
                         seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
        """One slice of a batch: the sum of its examples' predictor losses (see the module
        docstring; the ranking term of a slice is its pairs' mean times the slice's size) and of
        CE(D(E(x)), x), and the gradients of its share of the batch's data loss (the terms divided
        by the whole batch's size). Compiled once and called per slice, so its trace and gradient
        are shared."""
        c = self.model.config
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits, decoder_logits = self.model.train_forward(
                tokens, decoder_inputs_for(tokens), True, seed)
            predictor_loss = predictor_loss_sum(logits, targets, c.ranking_weight)
            cross_entropy = tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tokens, logits=decoder_logits))
            share = (c.trade_off * predictor_loss / c.batch_size
                     + (1.0 - c.trade_off) * cross_entropy / (c.batch_size * c.source_length))
        gradients = tape.gradient(share, variables)
        return predictor_loss, cross_entropy, [tf.convert_to_tensor(g) for g in gradients]

    def _train_step(self, tokens: tf.Tensor, targets: tf.Tensor) -> dict[str, tf.Tensor]:
        """One Adam step on the batch: its slices' gradients (computed concurrently) summed, plus
        the weight decay's, then clipped to the global norm `max_gradient_norm`; with
        `decay_after_clip` (PyTorch's Adam `weight_decay`) the data gradient alone is clipped and
        the decay's added after."""
        c = self.model.config
        variables = self.model.trainable_variables
        seed = tf.stack([tf.constant(c.seed, tf.int32), tf.cast(self.optimizer.iterations, tf.int32)])
        sizes = [len(part) for part in np.array_split(np.arange(c.batch_size), c.batch_shards)]
        shards = [self.shard_gradients(x, y, tf.random.experimental.stateless_fold_in(seed, i))
                  for i, (x, y) in enumerate(zip(tf.split(tokens, sizes), tf.split(targets, sizes)))]
        predictor_loss = tf.add_n([predictor for predictor, _, _ in shards]) / c.batch_size
        cross_entropy = (tf.add_n([cross_entropy for _, cross_entropy, _ in shards])
                         / (c.batch_size * c.source_length))
        l2 = tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables]) / 2.0
        loss = c.trade_off * predictor_loss + (1.0 - c.trade_off) * cross_entropy + c.weight_decay * l2
        gradients = [tf.add_n(shard_gradients)
                     for shard_gradients in zip(*(g for _, _, g in shards))]
        if c.decay_after_clip:
            gradients, _ = tf.clip_by_global_norm(gradients, c.max_gradient_norm)
        gradients = [g + c.weight_decay * v for g, v in zip(gradients, variables)]
        self.optimizer.apply_gradients(zip(gradients, variables))
        return {"loss": loss, "predictor_loss": predictor_loss, "cross_entropy": cross_entropy}

    def _train_epoch(self, tokens: tf.Tensor, targets: tf.Tensor) -> dict[str, tf.Tensor]:
        """`_train_step` over batches tokens [steps, B, L], targets [steps, B]; mean loss terms."""
        steps = tf.shape(tokens)[0]

        def step(s, totals):
            out = self._train_step(tokens[s], targets[s])
            return s + 1, {k: totals[k] + out[k] for k in totals}

        zeros = {k: tf.constant(0.0) for k in ("loss", "predictor_loss", "cross_entropy")}
        _, totals = tf.while_loop(lambda s, _: s < steps, step, (tf.constant(0), zeros))
        return {k: v / tf.cast(steps, tf.float32) for k, v in totals.items()}

    def fit(self, tokens: np.ndarray, targets: np.ndarray, epochs: int, rng: np.random.Generator,
            on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, float]:
        """Trains for `epochs` passes over (tokens [N, L], normalised targets [N]).

        Returns the mean loss terms of the last epoch. `rng` drives shuffling and augmentation.
        """
        tokens = np.asarray(tokens, np.int32)
        targets = np.asarray(targets, np.float32)
        if len(tokens) != len(targets) or len(tokens) == 0:
            raise ValueError(f"need as many targets as architectures (got {len(tokens)} and "
                             f"{len(targets)}), and at least one")
        batch = self.model.config.batch_size
        steps = math.ceil(len(tokens) / batch)
        metrics: dict[str, float] = {}
        for epoch in range(epochs):
            order = np.resize(rng.permutation(len(tokens)), steps * batch)
            x, y = tokens[order], targets[order]
            if self.augment is not None:
                x = self.augment(x, rng)
            out = self.train_epoch(x.reshape(steps, batch, -1), y.reshape(steps, batch))
            metrics = {k: float(v) for k, v in out.items()}
            if not math.isfinite(metrics["loss"]):
                raise FloatingPointError(f"controller loss became {metrics['loss']} at epoch {epoch}")
            if on_epoch_end is not None:
                on_epoch_end(epoch, metrics)
        return metrics

    def save(self, prefix: str) -> str:
        """Writes weights and optimizer state under `prefix`; returns the checkpoint path."""
        return self.checkpoint.write(prefix)

    def restore(self, path: str) -> None:
        """Restores weights and optimizer state exactly as saved."""
        restore(self.checkpoint, path)
