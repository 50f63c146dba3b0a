"""When training has diverged, one rule for every trainer.

A loss diverged when it is not finite, or when it exceeds `BLOW_UP_FACTOR` times the loss of a
uniform prediction, ln(classes) (ln V for a language model): gradient clipping can keep a blown-up
loss finite (on CIFAR, a learning rate of 1e6 holds the loss near 1e12), and no training that
learns anything comes near 100 ln(classes) (230 on CIFAR-10, 920 on PTB).
"""

import math

BLOW_UP_FACTOR = 100.0


def divergence(loss: float, classes: int) -> str | None:
    """Why `loss` (a mean cross-entropy over `classes` outcomes) means divergence, or None."""
    if not math.isfinite(loss):
        return f"loss is {loss}"
    bound = BLOW_UP_FACTOR * math.log(classes)
    if loss > bound:
        return (f"loss is {loss:.4g}, over {BLOW_UP_FACTOR:g} x ln({classes}) = {bound:.4g}: "
                "training has blown up")
    return None
