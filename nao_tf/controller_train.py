"""Training the controller: score normalisation, the compiled train step, `fit`, checkpoints.

Loss (paper eq. 5, with trade-off lambda = `trade_off`):
    L = trade_off * mean (f(E(x)) - s)^2 + (1 - trade_off) * CE(D(E(x)), x) + wd * sum ||w||^2 / 2
Targets s are min-max normalised to [0, 1] with 1 = best, whatever the direction of the raw
score (accuracy: higher is better; error, loss, perplexity: lower is better), so generation always
steps *up* the predictor's gradient.
"""

import math
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from nao_tf.controller import Controller, decoder_inputs_for
from nao_tf.distribute import build_optimizer

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


class ControllerTrainer:
    """Owns the controller's optimizer and compiled train step; `fit` warm-starts across calls.

    The train step has a fixed input signature [batch_size, source_length]: an epoch of n
    examples runs ceil(n / batch_size) steps, the last batch completed with examples from the
    start of the epoch's permutation, so the step is traced exactly once for the trainer's life.
    """

    def __init__(self, model: Controller, augment: Augment | None = None):
        self.model = model
        c = model.config
        self.augment = augment
        self.optimizer = keras.optimizers.Adam(c.learning_rate, global_clipnorm=c.max_gradient_norm)
        build_optimizer(self.optimizer, model.trainable_variables)
        spec = [tf.TensorSpec([c.batch_size, c.source_length], tf.int32),
                tf.TensorSpec([c.batch_size], tf.float32)]
        self.train_step = tf.function(self._train_step, input_signature=spec)
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=self.optimizer)

    def _train_step(self, tokens: tf.Tensor, targets: tf.Tensor) -> dict[str, tf.Tensor]:
        c = self.model.config
        variables = self.model.trainable_variables
        seed = tf.stack([tf.constant(c.seed, tf.int32), tf.cast(self.optimizer.iterations, tf.int32)])
        with tf.GradientTape() as tape:
            prediction, logits = self.model.train_forward(tokens, decoder_inputs_for(tokens), True, seed)
            mse = tf.reduce_mean(tf.square(prediction - targets))
            cross_entropy = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tokens, logits=logits))
            l2 = tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables]) / 2.0
            loss = c.trade_off * mse + (1.0 - c.trade_off) * cross_entropy + c.weight_decay * l2
        gradients = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return {"loss": loss, "mse": mse, "cross_entropy": cross_entropy}

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
            sums: dict[str, float] = {}
            for s in range(steps):
                out = self.train_step(x[s * batch:(s + 1) * batch], y[s * batch:(s + 1) * batch])
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
            metrics = {k: v / steps for k, v in sums.items()}
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
        self.checkpoint.read(path).assert_consumed()
