"""Training and scoring steps of the weight-sharing supernet under a `tf.distribute` strategy.

One step trains the supernet for one sampled architecture a (int32 [40] tensor, the same on every
replica, so a step is one architecture on the global batch as in the original):
    loss = CE(logits) + aux_weight * CE(aux_logits) + l2_reg * sum(w^2)
(the NAO-WS search: aux weight 0.4, l2_reg 1e-4 on the plain sum of squares of every variable),
the gradient summed over replicas is clipped to global norm `grad_bound` and applied by SGD with
Nesterov momentum 0.9 under SGDR (lr 0.05 -> 0.0005, T_0 = 10, T_mul = 2). Variables of ops the
architecture does not use get a zero loss gradient (still decayed and moved by momentum, as in the
original). Scoring counts the correct predictions of one architecture on a batch, batch norm in
batch-statistics mode (the supernet has no other mode), without dropout or aux head.

Both steps are traced once: the architecture is a tensor argument, never a Python value. The
trainer switches grappler off (`disable_graph_optimizer`) before building anything.
"""

from typing import Callable

import keras
import tensorflow as tf

from cnn.supernet import Supernet
from cnn.training import OptimConfig, make_schedule
from nao_tf.distribute import build_optimizer


def disable_graph_optimizer() -> None:
    """Switches TensorFlow's graph optimiser (grappler) off for the rest of the process.

    Instantiating the 100+ functions of the "switch" supernet under grappler took most of a
    minute even for a tiny network, and the optimised step was no faster; the controller's speed
    does not change either (docs/benchmarks.md). Switching it back on later makes every step
    re-instantiate its functions, so it stays off.
    """
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


class SupernetTrainer:
    """Owns the supernet, its optimizer and the compiled train / score steps; everything is built
    eagerly under `strategy.scope()` before the first traced step (see nao_tf.distribute)."""

    def __init__(self, strategy: tf.distribute.Strategy, build_model: Callable[[], Supernet],
                 cfg: OptimConfig, global_batch_size: int):
        self.strategy = strategy
        self.cfg = cfg
        self.global_batch_size = global_batch_size
        disable_graph_optimizer()
        with strategy.scope():
            self.model = build_model()
            self.model.build_now()
            self.schedule = make_schedule(cfg)
            optimizer = keras.optimizers.SGD(self.schedule, momentum=cfg.momentum,
                                             nesterov=cfg.nesterov)
            self.optimizer = build_optimizer(optimizer, self.model.trainable_variables)
        self._train_step = tf.function(self._distributed_train_step)
        self._score_step = tf.function(self._distributed_score_step)

    @staticmethod
    def _cross_entropy(labels, logits):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits)

    def _replica_step(self, images, labels, arch):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            out = self.model(images, arch, training=True)
            logits, aux_logits = out if isinstance(out, tuple) else (out, None)
            ce = self._cross_entropy(labels, logits)
            per_example = ce
            if aux_logits is not None:
                per_example = per_example + self.cfg.aux_weight * self._cross_entropy(labels,
                                                                                      aux_logits)
            loss = tf.nn.compute_average_loss(per_example,
                                              global_batch_size=self.global_batch_size)
            if self.cfg.l2_reg > 0:
                l2 = tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables])
                loss += tf.nn.scale_regularization_loss(self.cfg.l2_reg * l2)
        grads = tape.gradient(loss, variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for g, v in zip(grads, variables)]
        ctx = tf.distribute.get_replica_context()
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        grad_norm = tf.linalg.global_norm(grads)
        if self.cfg.grad_bound > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.cfg.grad_bound, use_norm=grad_norm)
        # The optimizer's own all-reduce sums the R identical copies back.
        replicas = float(self.strategy.num_replicas_in_sync)
        self.optimizer.apply_gradients(zip([g / replicas for g in grads], variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                                 tf.cast(labels, tf.int32)), tf.float32))
        return tf.reduce_sum(ce), correct, grad_norm

    def _distributed_train_step(self, images, labels, arch):
        ce_sum, correct, grad_norm = self.strategy.run(self._replica_step,
                                                       args=(images, labels, arch))
        reduce = self.strategy.reduce
        return (reduce(tf.distribute.ReduceOp.SUM, ce_sum, axis=None),
                reduce(tf.distribute.ReduceOp.SUM, correct, axis=None),
                reduce(tf.distribute.ReduceOp.MEAN, grad_norm, axis=None))

    def train_step(self, images, labels, arch: tf.Tensor) -> dict[str, float]:
        """One SGD step of architecture `arch` (int32 [40] tensor) on a global batch; returns host
        floats: mean cross-entropy, accuracy, gradient norm before clipping."""
        ce_sum, correct, grad_norm = self._train_step(images, labels, arch)
        n = float(self.global_batch_size)
        return {"loss": float(ce_sum) / n, "accuracy": float(correct) / n,
                "grad_norm": float(grad_norm)}

    def _distributed_score_step(self, images, labels, arch):
        def replica(images, labels, arch):
            logits = self.model(images, arch, training=False)
            pred = tf.argmax(logits, -1, output_type=tf.int32)
            return tf.reduce_sum(tf.cast(tf.equal(pred, tf.cast(labels, tf.int32)), tf.float32))
        correct = self.strategy.run(replica, args=(images, labels, arch))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None)

    def correct_count(self, images, labels, arch: tf.Tensor) -> tf.Tensor:
        """Correct predictions of `arch` on one (distributed) batch, as a device scalar."""
        return self._score_step(images, labels, arch)

    @property
    def train_tracing_count(self) -> int:
        return self._train_step.experimental_get_tracing_count()

    @property
    def score_tracing_count(self) -> int:
        return self._score_step.experimental_get_tracing_count()

    def learning_rate(self) -> float:
        return float(self.schedule(self.optimizer.iterations))

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())
