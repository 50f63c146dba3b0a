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

from cnn.search_space import NUM_CELL_INPUTS, OPS, CellArch

SAMPLE_POLICIES = ("uniform", "params")


def _op_params(op_id: int, width: int, strides: int) -> int:
    """Trainable parameters of registry op `op_id` on a `width`-channel input (cnn.ops.make_op)."""
    spec = OPS[op_id]
    bn = 2 * width
    strided_1x1 = width * width + bn if spec.dilation > 1 and strides > 1 else 0
    if spec.kind == "sep_conv":
        return 2 * (spec.size * spec.size * width + width * width + bn) + strided_1x1
    if spec.kind == "conv":
        return spec.size * spec.size * width * width + bn + strided_1x1
    if spec.kind == "factorized_conv":
        return 2 * (spec.size * width * width + bn)
    if spec.kind == "identity" and strides > 1:
        return width * width + bn  # factorized reduce: two 1x1 convs to width / 2, BN
    return 0


def fixed_network_params(arch: CellArch, num_cells_per_stage: int, filters: int,
                         num_classes: int = 10, stem_multiplier: int = 3) -> int:
    """Trainable parameters of `cnn.model.NASNetwork(arch, N, F)` without the aux head, counted
    from the structure (no network is built)."""
    n = num_cells_per_stage
    stem = stem_multiplier * filters
    total = 3 * 3 * 3 * stem + 2 * stem
    channels, larger = [stem, stem], False
    width = filters
    for idx in range(3 * n + 2):
        reduction = idx in (n, 2 * n + 1)
        width = width * 2 if reduction else width
        cell = arch.reduction if reduction else arch.normal
        c0, c1 = channels
        if larger or c0 != width:  # factorized reduce or ReLU-1x1-BN: both c0 * width + BN
            total += c0 * width + 2 * width
        if c1 != width:
            total += c1 * width + 2 * width
        total += width * width + 2 * width  # base1
        for node in cell.nodes:
            for inp, op in ((node.in1, node.op1), (node.in2, node.op2)):
                total += _op_params(op, width, 2 if reduction and inp < NUM_CELL_INPUTS else 1)
        loose = cell.loose_ends()
        if reduction:
            total += sum(width * width + 2 * width for i in loose if i < NUM_CELL_INPUTS)
        channels, larger = [c1, len(loose) * width], reduction
    return total + channels[1] * num_classes


def sampling_probabilities(pool: Sequence[CellArch], policy: str, num_cells_per_stage: int,
                           filters: int, num_classes: int = 10) -> np.ndarray:
    """Probabilities (summing to 1) of drawing each pool architecture at a training step."""
    if policy not in SAMPLE_POLICIES:
        raise ValueError(f"unknown sample policy {policy!r}; choose one of {SAMPLE_POLICIES}")
    if policy == "uniform":
        return np.full(len(pool), 1.0 / len(pool))
    counts = np.array([fixed_network_params(a, num_cells_per_stage, filters, num_classes)
                       for a in pool], dtype=np.float64)
    return counts / counts.sum()


def draw(probabilities: np.ndarray, seed: int, step: int) -> int:
    """The pool index trained at global step `step` (deterministic in (seed, step))."""
    rng = np.random.default_rng([seed, step])
    return int(rng.choice(len(probabilities), p=probabilities))
