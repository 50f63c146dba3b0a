"""One divergence rule for every trainer."""

import math

from nao_tf.runtime.divergence import divergence


def test_non_finite_and_blown_up_losses_diverge():
    assert divergence(float("nan"), 10) == "loss is nan"
    assert divergence(math.inf, 10) == "loss is inf"
    assert "blown up" in divergence(1e12, 10)
    assert "blown up" in divergence(231.0, 10)  # 100 x ln(10) = 230.3


def test_losses_of_a_learning_network_do_not():
    for loss in (0.01, 2.3, 9.0, 200.0):
        assert divergence(loss, 10) is None
    assert divergence(900.0, 10000) is None  # 100 x ln(10000) = 921
