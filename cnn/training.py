"""Training and evaluation steps for a CIFAR or ImageNet network, fixed or weight-sharing, under a
`tf.distribute` strategy.

Loss of one example (as the original final trainers):
    CE(logits) + aux_weight * CE(aux_logits)              (aux_weight 0.4; label smoothing optional)
plus  l2_reg * sum(w^2)  over every trainable variable, BN scale/offset included (NAO-WS applies its
`l2_reg` to the plain sum of squares; the non-WS trainer's 5e-4 * sum(w^2)/2 is l2_reg = 2.5e-4).
The gradient, summed over replicas, is clipped to global norm `grad_bound` (the NAO-WS trainer
computes the clipped gradient but applies the unclipped one; here the clipping is real) and applied
by SGD with momentum 0.9 (Nesterov optional) under an SGDR, single-cosine or step-decay learning
rate. Evaluation reports top-1 and top-5 accuracy.
"""

import dataclasses
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from nao_tf.commands import cli
from nao_tf.runtime import precision
from nao_tf.runtime.distribute import build_optimizer
from nao_tf.runtime.schedules import Cosine, SGDR, StepDecay


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """How a CNN (the supernet or a final network) is optimised: SGD with momentum under a
    learning-rate schedule, the loss's regularisers, gradient clipping. Its options are flags of
    the NAO-WS search and of the final training (each offers its view of them: `cli.section`);
    the other fields are set by the command: `epochs * steps_per_epoch` is also the drop-path
    horizon, `seed` draws dropout and drop-path as a function of (seed, step, replica)."""

    lr_schedule: str = cli.option("sgdr", "sgdr: epoch-granular cosine with warm restarts (T_0, "
                                  "T_mul); cosine: one per-step cosine over all epochs; step: "
                                  "times --gamma every --decay_period epochs.",
                                  ["sgdr", "cosine", "step"])
    lr_max: float = cli.option(0.05, "Maximum learning rate.")
    lr_min: float = cli.option(0.0001, "Minimum learning rate.", minimum=0.0)
    t0: int = cli.option(10, "SGDR: epochs of the first cycle (T_0).", minimum=1)
    t_mul: int = cli.option(2, "SGDR: cycle length multiplier (T_mul).", minimum=1)
    gamma: float = cli.option(0.97, "Step schedule: learning-rate factor per decay.")
    decay_period: int = cli.option(1, "Step schedule: epochs between two decays.", minimum=1)
    momentum: float = cli.option(0.9, "SGD momentum.")
    nesterov: bool = cli.option(True, "Nesterov momentum (NAO-WS) or plain momentum (NAO).")
    l2_reg: float = cli.option(2e-4, "Adds l2_reg * sum(w^2) over all trainable variables to the "
                               "loss.", minimum=0.0)
    grad_bound: float = cli.option(5.0, "Clip the global gradient norm to this (0: no clipping).",
                                   minimum=0.0)
    aux_weight: float = cli.option(0.4, "Loss weight of the auxiliary head.", minimum=0.0)
    label_smoothing: float = cli.option(0.0, "Label smoothing of the cross-entropy.",
                                        minimum=0.0)
    epochs: int = 1
    steps_per_epoch: int = 1
    precision: str = "fp32"  # fp32 | bf16 | fp16 (nao_tf.runtime.precision)
    seed: int = 0

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def make_schedule(cfg: OptimConfig) -> keras.optimizers.schedules.LearningRateSchedule:
    if cfg.lr_schedule == "sgdr":
        return SGDR(cfg.lr_max, cfg.lr_min, cfg.t0, cfg.t_mul, cfg.steps_per_epoch)
    if cfg.lr_schedule == "cosine":
        return Cosine(cfg.lr_max, cfg.lr_min, cfg.total_steps)
    if cfg.lr_schedule == "step":
        return StepDecay(cfg.lr_max, cfg.gamma, cfg.decay_period, cfg.steps_per_epoch)
    raise ValueError(f"unknown lr schedule {cfg.lr_schedule!r}")


def disable_graph_optimizer() -> None:
    """Switches TensorFlow's graph optimiser (grappler) off for the rest of the process; call it
    before building a supernet.

    Instantiating the 100+ functions of the "switch" supernet under grappler took most of a
    minute even for a tiny network, and the optimised step was no faster; the controller's speed
    does not change either (docs/benchmarks.md). Switching it back on later makes every step
    re-instantiate its functions, so it stays off.
    """
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


class MomentumSGD(keras.optimizers.SGD):
    """Keras' SGD with momentum (Nesterov or not), each variable's update one fused kernel
    (`ResourceApplyKerasMomentum`, the same arithmetic: m = m * momentum - g * lr, then
    w += m, or w += m * momentum - g * lr), where Keras composes it of about ten ops a variable
    (1,539 ops fewer in the train step of the smoke supernet's 171 weights).

    It takes gradients already summed over the replicas (`Trainer` sums them to clip the global
    gradient) and applies them as they are, where Keras' optimizers all-reduce them again."""

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)

    def update_step(self, gradient, variable, learning_rate):
        if self.momentum == 0:
            return super().update_step(gradient, variable, learning_rate)
        momentum = self.momentums[self._get_variable_index(variable)]
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=momentum.value.handle,
            lr=tf.cast(learning_rate, variable.dtype), grad=tf.cast(gradient, variable.dtype),
            momentum=tf.constant(self.momentum, variable.dtype), use_nesterov=self.nesterov)


class Trainer:
    """Owns the model, optimizer and compiled steps; everything is built eagerly in `__init__`,
    under `strategy.scope()`, before any traced step (see nao_tf.runtime.distribute).

    One class for both networks: the final network (`NASNetwork`, called with the drop-path
    progress) and the weight-sharing supernet (`cnn.supernet.Supernet`), whose steps take the
    architecture `arch`, an int32 [40] tensor the same on every replica, so a supernet step is one
    architecture on the global batch as in the original, and each step is traced once. Variables
    of ops the architecture does not use get a zero loss gradient (still decayed and moved by
    momentum, as in the original)."""

    def __init__(self, strategy: tf.distribute.Strategy,
                 build_model: Callable[[], keras.Model], cfg: OptimConfig,
                 global_batch_size: int, jit_compile: bool = False):
        self.strategy = strategy
        self.cfg = cfg
        self.global_batch_size = global_batch_size
        with strategy.scope():
            with precision.policy(cfg.precision):
                self.model = build_model()
            self.model.build_now()
            self.schedule = make_schedule(cfg)
            optimizer = MomentumSGD(self.schedule, momentum=cfg.momentum, nesterov=cfg.nesterov)
            self.optimizer = build_optimizer(precision.with_loss_scaling(optimizer, self.model),
                                             self.model.trainable_variables)
        # No tensor-dependent Python control flow in the steps: autograph's conversion of every
        # function they call would only add to each trace.
        self._train_step = tf.function(self._distributed_train_step, autograph=False)
        self._replica_train = (tf.function(self._replica_forward_backward, jit_compile=True,
                                           autograph=False)
                               if jit_compile else self._replica_forward_backward)
        self._eval_step = tf.function(self._distributed_eval_step, autograph=False)

    def _logits(self, images, arch, training: bool, progress=None, seed=None):
        if arch is None:
            if training:
                return self.model(images, training=True, drop_path_progress=progress, seed=seed)
            return self.model(images, training=False)
        return self.model(images, arch, training=training, drop_path_progress=progress,
                          seed=seed)

    # Loss and gradients of one replica.

    def _cross_entropy(self, labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        onehot = tf.one_hot(labels, tf.shape(logits)[-1])
        if self.cfg.label_smoothing > 0:
            k = tf.cast(tf.shape(logits)[-1], tf.float32)
            onehot = onehot * (1.0 - self.cfg.label_smoothing) + self.cfg.label_smoothing / k
        return tf.nn.softmax_cross_entropy_with_logits(onehot, logits)

    def _replica_forward_backward(self, images, labels, arch, progress, seed):
        """(summed gradients over this replica's share, CE sum, correct count)."""
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            out = self._logits(images, arch, True, progress, seed)
            logits, aux_logits = out if isinstance(out, tuple) else (out, None)
            ce = self._cross_entropy(labels, logits)
            per_example = ce
            if aux_logits is not None:
                per_example = per_example + self.cfg.aux_weight * self._cross_entropy(labels,
                                                                                      aux_logits)
            loss = tf.nn.compute_average_loss(per_example,
                                              global_batch_size=self.global_batch_size)
            # sum(w^2) as 2 l2_loss(w): one op a weight, and one in the gradient.
            if self.cfg.l2_reg > 0:
                l2 = 2.0 * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in variables])
                loss += tf.nn.scale_regularization_loss(self.cfg.l2_reg * l2)
            loss = self.optimizer.scale_loss(loss)
        grads = tape.gradient(loss, variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for g, v in zip(grads, variables)]
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                                 tf.cast(labels, tf.int32)), tf.float32))
        return grads, tf.reduce_sum(ce), correct

    def _replica_step(self, images, labels, arch=None):
        ctx = tf.distribute.get_replica_context()
        step = tf.cast(self.optimizer.iterations, tf.int64)
        progress = tf.minimum(1.0, (tf.cast(step, tf.float32) + 1.0) / float(self.cfg.total_steps))
        # The step's random draws: a function of the seed, the step and the replica, so a resumed
        # run draws what an uninterrupted one would.
        seed = tf.random.experimental.stateless_fold_in(
            tf.stack([tf.constant(self.cfg.seed, tf.int64), step]), ctx.replica_id_in_sync_group)
        grads, ce_sum, correct = self._replica_train(images, labels, arch, progress, seed)
        # Clip the global gradient (summed over replicas); the optimizer applies it as it is.
        if self.strategy.num_replicas_in_sync > 1:
            grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        grads = precision.unscaled(self.optimizer, grads)
        grad_norm = tf.linalg.global_norm(grads)
        if self.cfg.grad_bound > 0:
            # tf.clip_by_global_norm's arithmetic, one multiply a weight (it adds an identity):
            # bound / norm above the bound, NaN for a norm that is not finite.
            bound = tf.constant(self.cfg.grad_bound, tf.float32)
            clip = bound * tf.minimum(1.0 / grad_norm, 1.0 / bound) + (grad_norm - grad_norm)
            grads = [g * clip for g in grads]
        self.optimizer.apply_gradients(zip(precision.rescaled(self.optimizer, grads),
                                           self.model.trainable_variables))
        return ce_sum, correct, grad_norm

    def _distributed_train_step(self, images, labels, *arch):
        ce_sum, correct, grad_norm = self.strategy.run(self._replica_step,
                                                       args=(images, labels, *arch))
        reduce = self.strategy.reduce
        return (reduce(tf.distribute.ReduceOp.SUM, ce_sum, axis=None),
                reduce(tf.distribute.ReduceOp.SUM, correct, axis=None),
                reduce(tf.distribute.ReduceOp.MEAN, grad_norm, axis=None))

    def train_step(self, images, labels, arch: tf.Tensor | None = None) -> dict[str, float]:
        """One optimisation step on a global batch (a distributed-dataset element), of the
        supernet's architecture `arch` when given; returns host floats: mean cross-entropy,
        accuracy, gradient norm before clipping."""
        ce_sum, correct, grad_norm = self._train_step(images, labels,
                                                      *(() if arch is None else (arch,)))
        n = float(self.global_batch_size)
        return {"loss": float(ce_sum) / n, "accuracy": float(correct) / n,
                "grad_norm": float(grad_norm)}

    # Evaluation.

    def _distributed_eval_step(self, images, labels, *arch):
        def replica(images, labels, arch=None):
            logits = self._logits(images, arch, training=False)
            ce = tf.reduce_sum(self._cross_entropy(labels, logits))
            labels = tf.cast(labels, tf.int32)
            pred = tf.argmax(logits, -1, output_type=tf.int32)
            correct = tf.reduce_sum(tf.cast(tf.equal(pred, labels), tf.float32))
            k = min(5, logits.shape[-1])
            top_k = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, k), tf.float32))
            count = tf.cast(tf.shape(labels)[0], tf.float32)
            return ce, correct, count, top_k
        out = self.strategy.run(replica, args=(images, labels, *arch))
        return tuple(self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in out)

    def evaluate(self, dataset: tf.data.Dataset) -> dict[str, float]:
        """Accuracy, top-5 accuracy and mean cross-entropy over every image of `dataset` exactly
        once."""
        totals = np.zeros(4)  # cross-entropy, correct, images, correct in the top 5
        for images, labels in self.strategy.experimental_distribute_dataset(dataset):
            totals += [float(v) for v in self._eval_step(images, labels)]
        ce, correct, count, top5 = totals
        count = max(count, 1.0)
        return {"loss": ce / count, "accuracy": correct / count, "top5": top5 / count,
                "images": int(totals[2])}

    def correct_count(self, images, labels, arch: tf.Tensor) -> tf.Tensor:
        """The supernet's correct predictions of `arch` on one (distributed) batch, as a device
        scalar (batch norm in batch-statistics mode, the supernet's only one)."""
        return self._eval_step(images, labels, arch)[1]

    @property
    def train_tracing_count(self) -> int:
        return self._train_step.experimental_get_tracing_count()

    @property
    def score_tracing_count(self) -> int:
        return self._eval_step.experimental_get_tracing_count()

    def learning_rate(self) -> float:
        return float(self.schedule(self.optimizer.iterations))

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())
