import numpy as np
import pytest
import tensorflow as tf

from rnn.model import RNNModel
from rnn.search_space import NAMED_ARCHS, RnnSearchSpace
from rnn.training import (LMStep, WeightAverage, clip_and_decay, sample_seq_len,
                          should_switch_to_asgd, train_windows)

ARCH = RnnSearchSpace().parse(NAMED_ARCHS["NAO_WS"])


def test_random_bptt_lengths_follow_the_original():
    rng = np.random.default_rng(0)
    lengths = np.array([sample_seq_len(rng, 35, 20) for _ in range(4000)])
    assert lengths.min() >= 5 and lengths.max() <= 55
    assert (lengths < 25).mean() == pytest.approx(0.05, abs=0.02)  # the bptt/2 draws
    assert np.median(lengths) == pytest.approx(34, abs=1.5)
    source = np.zeros((300, 2))
    windows = list(train_windows(source, rng, 35, 20))
    assert all(length >= 2 for _, length in windows)
    assert windows[0][0] == 0 and all(a[0] + a[1] == b[0] for a, b in zip(windows, windows[1:]))
    assert windows[-1][0] + windows[-1][1] >= len(source) - 2


def test_clip_then_coupled_decay():
    v = [tf.Variable([1.0, 2.0])]
    g = clip_and_decay([tf.constant([3.0, 4.0])], v, clip=0.5, wdecay=0.1)
    np.testing.assert_allclose(g[0].numpy(), [0.3 + 0.1, 0.4 + 0.2], rtol=1e-6)


def test_nonmonotone_switch_rule():
    assert not should_switch_to_asgd([5, 4, 3], 5.5, nonmono=3)  # only 3 results logged
    assert should_switch_to_asgd([5, 4, 3, 3.5], 5.5, nonmono=3)  # worse than min([5])
    assert not should_switch_to_asgd([5, 4, 3, 3.5], 4.9, nonmono=3)


def test_weight_average_is_the_mean_since_the_switch():
    v = tf.Variable([0.0, 0.0])
    avg = WeightAverage([v])
    avg.update_if_active()
    assert int(avg.count.numpy()) == 0  # inactive: no averaging
    avg.active.assign(True)
    for value in ([1.0, 2.0], [3.0, 2.0], [5.0, 8.0]):
        v.assign(value)
        avg.update_if_active()
    np.testing.assert_allclose(avg.averages[0].numpy(), [3.0, 4.0])
    with avg.swapped_in():
        np.testing.assert_allclose(v.numpy(), [3.0, 4.0])
    np.testing.assert_allclose(v.numpy(), [5.0, 8.0])


def _model(strategy, units=16, vocab=30, dropout=True):
    rates = {} if dropout else dict(dropout=0.0, dropouth=0.0, dropoutx=0.0, dropouti=0.0)
    with strategy.scope():
        return RNNModel(ARCH, vocab, units, **rates)


def test_step_traces_once_for_every_bptt_length():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    model = _model(strategy)
    step = LMStep(model, strategy, batch_size=4, clip=0.25, wdecay=1e-4, beta=1e-3)
    rng = np.random.default_rng(0)
    hidden = model.initial_hidden(4)
    for length in (35, 12, 55, 5, 2):
        ids = rng.integers(0, 30, (length + 1, 4)).astype(np.int32)
        _, hidden = step.train_step(ids[:-1], ids[1:], hidden, 20.0 * length / 35, (0, length))
    assert step.train_tracing_count == 1
    assert np.isfinite(hidden.numpy()).all()


def test_step_is_sgd_with_scaled_lr_clip_and_decay():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    model = _model(strategy, dropout=False)
    step = LMStep(model, strategy, batch_size=3, clip=0.25, wdecay=0.01, beta=1e-3)
    rng = np.random.default_rng(1)
    x, y = (rng.integers(0, 30, (9, 3)).astype(np.int32) for _ in range(2))
    hidden = tf.constant(rng.normal(size=(3, 16)).astype(np.float32))
    before = [v.numpy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        _, total, _ = step.loss_fn(x, y, hidden, training=True)
    grads, _ = tf.clip_by_global_norm(
        [tf.convert_to_tensor(g) for g in tape.gradient(total, model.trainable_variables)], 0.25)
    lr = 20.0 * 9 / 35
    step.train_step(x, y, hidden, lr, (0, 0))
    for v, w, g in zip(model.trainable_variables, before, grads):
        np.testing.assert_allclose(v.numpy(), w - lr * (g.numpy() + 0.01 * w), atol=2e-6)


@pytest.mark.slow
def test_mirrored_step_equals_single_device_step(two_replicas):
    results = []
    rng = np.random.default_rng(2)
    batches = [(rng.integers(0, 30, (n, 4)).astype(np.int32),
                rng.integers(0, 30, (n, 4)).astype(np.int32)) for n in (7, 11, 4)]
    init = None
    for strategy in (tf.distribute.OneDeviceStrategy("/cpu:0"),
                     two_replicas):
        model = _model(strategy, dropout=False)
        if init is None:
            init = [v.numpy() for v in model.trainable_variables]
        for v, value in zip(model.trainable_variables, init):
            v.assign(value)
        with strategy.scope():
            average = WeightAverage([v.value for v in model.trainable_variables])
        average.active.assign(True)
        step = LMStep(model, strategy, batch_size=4, clip=0.25, wdecay=1e-3, beta=1e-3,
                      average=average)
        hidden, losses = model.initial_hidden(4), []
        for x, y in batches:
            loss, hidden = step.train_step(x, y, hidden, 20.0 * len(x) / 35, (0, len(x)))
            losses.append(float(loss))
        results.append((losses, [v.numpy() for v in model.trainable_variables],
                        average.averages[0].numpy(), hidden.numpy()))
        assert step.train_tracing_count == 1
    (l1, w1, a1, h1), (l2, w2, a2, h2) = results
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a1, a2, atol=1e-5)
    np.testing.assert_allclose(h1, h2, atol=1e-5)
