import numpy as np
import pytest

from nao_tf.runtime.schedules import Cosine, SGDR


def _reference_sgdr(epoch, lr_max, lr_min, t0, t_mul):
    """The original's epoch-wise SGDR: T_cur epochs into a cycle of T_i epochs."""
    t_cur, t_i = epoch, t0
    while t_cur >= t_i:
        t_cur -= t_i
        t_i *= t_mul
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + np.cos(np.pi * t_cur / t_i))


@pytest.mark.parametrize("t_mul", [1, 2])
def test_sgdr_matches_epoch_reference(t_mul):
    sched = SGDR(0.05, 0.0005, t0=10, t_mul=t_mul, steps_per_epoch=7)
    for epoch in [0, 1, 9, 10, 11, 29, 30, 31, 69, 70, 149]:
        for step in (epoch * 7, epoch * 7 + 6):
            got = float(sched(step))
            assert got == pytest.approx(_reference_sgdr(epoch, 0.05, 0.0005, 10, t_mul), rel=1e-5)


def test_sgdr_restarts_at_cycle_ends():
    sched = SGDR(0.05, 0.0005, t0=10, t_mul=2, steps_per_epoch=1)
    assert float(sched(0)) == pytest.approx(0.05)
    assert float(sched(10)) == pytest.approx(0.05)
    assert float(sched(30)) == pytest.approx(0.05)
    assert float(sched(29)) < 0.001


def test_cosine_endpoints():
    sched = Cosine(0.1, 0.0, total_steps=100)
    assert float(sched(0)) == pytest.approx(0.1)
    assert float(sched(50)) == pytest.approx(0.05, rel=1e-5)
    assert float(sched(100)) == pytest.approx(0.0, abs=1e-7)
