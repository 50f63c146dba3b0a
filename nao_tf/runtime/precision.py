"""Mixed precision for every trainer: the `--precision` flag's Keras policies and float16 loss
scaling.

    fp32  float32 throughout.
    bf16  "mixed_bfloat16": float32 variables, bfloat16 compute; bfloat16 has float32's range,
          so no loss scaling.
    fp16  "mixed_float16": float32 variables, float16 compute; the loss is scaled by
          `keras.optimizers.LossScaleOptimizer`'s dynamic scale (doubled after 2,000 finite
          steps, halved and the step skipped on a non-finite gradient).

Losses and softmaxes are computed in float32 under every policy. The variables are float32 under
every policy and the loss scale is not checkpointed, so a checkpoint restores under any other
policy. The controller is always float32: a policy applies only to models built inside
`policy(...)`.
"""

import contextlib
from typing import Iterator, Sequence

import keras
import tensorflow as tf

PRECISIONS = ("fp32", "bf16", "fp16")
_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
PRECISION_HELP = ("Compute precision of the network: fp32, bf16 (mixed bfloat16) or fp16 "
                  "(mixed float16 with dynamic loss scaling); variables stay float32.")


@contextlib.contextmanager
def policy(precision: str) -> Iterator[None]:
    """Keras layers created inside the block compute in `precision`'s dtype."""
    if precision not in _POLICIES:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def with_loss_scaling(optimizer: keras.optimizers.Optimizer,
                      model: keras.Model) -> keras.optimizers.Optimizer:
    """`optimizer` wrapped in a `LossScaleOptimizer` when `model` computes in float16."""
    if model.dtype_policy.compute_dtype == "float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def checkpointed(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """What a checkpoint holds of `optimizer`: the inner optimizer of a loss-scaling one, so a
    checkpoint has the same variables under every precision."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.inner_optimizer
    return optimizer


def unscaled(optimizer: keras.optimizers.Optimizer,
             grads: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """The true gradients of a scaled loss's `grads`, to clip or decay (see `rescaled`)."""
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return list(grads)
    scale = tf.cast(optimizer.dynamic_scale, tf.float32)
    return [g / scale for g in grads]


def rescaled(optimizer: keras.optimizers.Optimizer,
             grads: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """True gradients back at the scale `optimizer.apply_gradients` expects (a loss-scaling
    optimizer unscales them again, and skips the step if they are not finite)."""
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return list(grads)
    scale = tf.cast(optimizer.dynamic_scale, tf.float32)
    return [g * scale for g in grads]
