"""Which architecture of the pool trains the supernet at each step.

Policies (`--sample_policy`):
  uniform  every pool architecture with probability 1 / |pool| (the original NAO-WS search);
  params   probability proportional to the architecture's stand-alone parameter count at the
           search's N and F (NAO_pytorch V2's "balanced" sampling, which gives large models, whose
           weights need more steps, more steps). Probabilities are normalised:
           p_i = P_i / sum_j P_j.
           (The TF original feeds raw counts to `tf.multinomial` as logits, which picks the largest
           model almost always; see docs/differences.md.)

The draw of step s is a function of (seed, s) only, so a resumed run draws the same architectures
as an uninterrupted one without storing a random state.
"""

from typing import Sequence

import numpy as np

from cnn.costs import CostNetwork
from cnn.search_space import CellArch

SAMPLE_POLICIES = ("uniform", "params")


def sampling_probabilities(pool: Sequence[CellArch], policy: str, num_cells_per_stage: int,
                           filters: int, num_classes: int = 10) -> np.ndarray:
    """Probabilities (summing to 1) of drawing each pool architecture at a training step."""
    if policy not in SAMPLE_POLICIES:
        raise ValueError(f"unknown sample policy {policy!r}; choose one of {SAMPLE_POLICIES}")
    if policy == "uniform":
        return np.full(len(pool), 1.0 / len(pool))
    network = CostNetwork("nao_ws", num_cells_per_stage, filters, num_classes)
    counts = np.array([network.costs(a)["params"] for a in pool], dtype=np.float64)
    return counts / counts.sum()


def draw(probabilities: np.ndarray, seed: int, step: int) -> int:
    """The pool index trained at global step `step` (deterministic in (seed, step))."""
    rng = np.random.default_rng([seed, step])
    return int(rng.choice(len(probabilities), p=probabilities))
