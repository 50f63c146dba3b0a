"""Controller quality metrics as the original defines them."""

import numpy as np


def pairwise_accuracy(targets: np.ndarray, predictions: np.ndarray) -> float:
    """Fraction of pairs i < j ordered alike by targets and predictions.

    As the original: a pair agrees when (t_i >= t_j) == (p_i >= p_j), so ties count as agreement
    when both sides tie or order the same way.
    """
    t, p = np.asarray(targets, np.float64), np.asarray(predictions, np.float64)
    if len(t) != len(p) or len(t) < 2:
        raise ValueError(f"need two equally long sequences of 2+ values, got {len(t)} and {len(p)}")
    upper = np.triu_indices(len(t), k=1)
    agree = (t[:, None] >= t[None, :]) == (p[:, None] >= p[None, :])
    return float(agree[upper].mean())


def kendall_tau(targets: np.ndarray, predictions: np.ndarray) -> float:
    """Kendall's tau-b rank correlation (ties handled), in [-1, 1]."""
    t, p = np.asarray(targets, np.float64), np.asarray(predictions, np.float64)
    upper = np.triu_indices(len(t), k=1)
    dt = np.sign(t[:, None] - t[None, :])[upper]
    dp = np.sign(p[:, None] - p[None, :])[upper]
    denominator = np.sqrt(np.count_nonzero(dt) * np.count_nonzero(dp))
    return float((dt * dp).sum() / denominator) if denominator else 0.0


def hamming_distance(sequences: np.ndarray, reconstructions: np.ndarray) -> float:
    """Mean number of differing tokens per sequence (not normalised by length, as the original)."""
    a, b = np.asarray(sequences), np.asarray(reconstructions)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float((a != b).sum(axis=1).mean())
