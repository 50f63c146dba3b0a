"""Controller quality metrics as the original defines them."""

import math

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


def top_fraction_pairwise_accuracy(targets: np.ndarray, predictions: np.ndarray,
                                   fraction: float = 0.1) -> float:
    """`pairwise_accuracy` among the architectures whose target is in the best `fraction` (at
    least two of them): how well the predictor orders the good ones, which is what generation
    needs."""
    t, p = np.asarray(targets, np.float64), np.asarray(predictions, np.float64)
    count = max(2, int(round(fraction * len(t))))
    best = np.argsort(-t, kind="stable")[:count]
    return pairwise_accuracy(t[best], p[best])


def paired_t_test(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Student's paired t-test of mean(a - b) = 0 over paired samples (two-sided).

    Returns the mean difference, its standard error, t, the two-sided p-value, and the counts of
    pairs where a wins, loses and ties (for a sign test by eye)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = len(d)
    if n < 2:
        raise ValueError(f"need at least 2 pairs, got {n}")
    mean, se = float(d.mean()), float(d.std(ddof=1) / np.sqrt(n))
    if se == 0.0:
        t, p = (0.0, 1.0) if mean == 0.0 else (float(np.sign(mean) * np.inf), 0.0)
    else:
        t = mean / se
        p = _regularized_incomplete_beta((n - 1) / 2.0, 0.5, (n - 1) / (n - 1 + t * t))
    return dict(mean_difference=mean, standard_error=se, t=float(t), p_value=float(p),
                wins=int((d > 0).sum()), losses=int((d < 0).sum()), ties=int((d == 0).sum()))


def _regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) by its continued fraction (modified Lentz); the two-sided p-value of Student's t
    with nu degrees of freedom is I_{nu / (nu + t^2)}(nu / 2, 1 / 2)."""
    if x <= 0.0 or x >= 1.0:
        return float(x >= 1.0)
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below this point
        return 1.0 - _regularized_incomplete_beta(b, a, 1.0 - x)
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return math.exp(log_front) * fraction / a
