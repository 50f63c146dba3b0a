import numpy as np
import pytest
import tensorflow as tf

from rnn.model import RNNModel
from rnn.search_cell_loop import run_search_cell, step_forward
from rnn.search_space import RnnSearchSpace
from rnn.supernet import Supernet, arch_array
from rnn.training import LMStep

D, V, B = 8, 13, 4


def _cells(n, seed=0):
    space = RnnSearchSpace()
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def test_hand_written_backward_matches_autodiff():
    rng = np.random.default_rng(1)
    k, steps = 2, 5
    archs = tf.constant(arch_array(_cells(k)))
    x_proj = tf.constant(rng.normal(size=(steps, B, 2 * D)), tf.float32)
    h0 = tf.constant(rng.normal(size=(k, B, D)), tf.float32)
    mask_h = tf.constant(rng.uniform(0.5, 1.5, size=(B, D)), tf.float32)
    w0_h = tf.constant(rng.normal(scale=0.3, size=(D, 2 * D)), tf.float32)
    w_nodes = tf.constant(rng.normal(scale=0.3, size=(k, 11, D, 2 * D)), tf.float32)
    preds, acts = archs[:, :, 0], archs[:, :, 1]
    probe = tf.constant(rng.normal(size=(steps, k, B, D)), tf.float32)
    probe_last = tf.constant(rng.normal(size=(k, B, D)), tf.float32)
    inputs = [x_proj, h0, w0_h, w_nodes]

    def loss(outputs, last):
        return tf.reduce_sum(outputs * probe) + tf.reduce_sum(last * probe_last)

    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs, last = run_search_cell(x_proj, h0, mask_h, w0_h, w_nodes, preds, acts)
        value = loss(outputs, last)
    fast = tape.gradient(value, inputs)

    onehots = tf.one_hot(acts, 4)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        h, outs = h0, []
        for t in range(steps):
            h, *_ = step_forward(x_proj[t], h, mask_h, w0_h, w_nodes, preds, onehots)
            outs.append(h)
        reference = loss(tf.stack(outs), h)
    slow = tape.gradient(reference, inputs)
    np.testing.assert_allclose(value.numpy(), reference.numpy(), rtol=1e-5)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-4, atol=2e-5)


def test_an_unused_activation_that_overflows_does_not_make_nan():
    """relu and identity of an overflowing pre-activation are inf; a cell using tanh or sigmoid
    there must still get tanh(inf) = 1 and sigmoid(inf) = 1, and their finite derivatives."""
    from rnn.search_cell_loop import _mix_activation_grad, mix_activation

    pre = tf.constant([[[np.inf, -np.inf, 3.0]]] * 4)  # [K=4, B=1, d=3]
    onehot = tf.eye(4)  # cell k uses activation k: tanh, relu, sigmoid, identity
    out = mix_activation(pre, onehot).numpy()
    np.testing.assert_allclose(out[0, 0], [1.0, -1.0, np.tanh(3.0)], rtol=1e-6)
    np.testing.assert_allclose(out[2, 0], [1.0, 0.0, 1 / (1 + np.exp(-3.0))], rtol=1e-6)
    np.testing.assert_array_equal(out[1, 0], [np.inf, 0.0, 3.0])  # relu itself
    grad = _mix_activation_grad(tf.constant(out), onehot).numpy()
    assert np.isfinite(grad[[0, 2]]).all()
    np.testing.assert_allclose(grad[0, 0], [0.0, 0.0, 1 - np.tanh(3.0) ** 2], rtol=1e-4)


def test_supernet_cell_equals_a_fixed_cell_with_its_blocks():
    """With dropout off, the supernet on arch A computes the final cell of A whose W_i are A's
    blocks, except that the supernet's output averages s_0..s_11 (s_1..s_11 in the final cell)."""
    cell = _cells(1, seed=3)[0]
    net = Supernet(V, D, dropout=0, dropouth=0, dropoutx=0, dropouti=0)
    fixed = RNNModel(cell, V, D, dropout=0, dropouth=0, dropoutx=0, dropouti=0)
    fixed.embedding.assign(net.embedding)
    fixed.cell.w0.assign(net.w0)
    for i, (pred, act) in enumerate(cell.nodes):
        fixed.cell.ws[i].assign(net.node_blocks[i][pred * 4 + act])
    ids = tf.constant(np.random.default_rng(0).integers(0, V, size=(6, B)), tf.int32)
    h0 = tf.zeros([B, D])
    _, raw_net, _ = net(ids, h0, tf.constant(arch_array([cell])[0]))
    # One step from a zero state: h_1 = (s_0 + 11 · mean(s_1..s_11)) / 12.
    x = tf.gather(net.embedding, ids)
    w0 = tf.convert_to_tensor(net.w0)
    cg0 = tf.matmul(x[0], w0[:D])
    s0 = tf.sigmoid(cg0[:, :D]) * tf.tanh(cg0[:, D:])
    _, raw_fixed, _ = fixed(ids[:1], h0)
    np.testing.assert_allclose(raw_net[0].numpy(), ((s0 + 11 * raw_fixed[0]) / 12).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_train_step_traces_once_and_moves_only_the_sampled_blocks():
    net = Supernet(V, D, dropout=0.1, dropouth=0.1, dropoutx=0.1, dropouti=0.1)
    step = LMStep(net, tf.distribute.get_strategy(), B, clip=10.0, wdecay=0.0, beta=1e-3)
    rng = np.random.default_rng(0)
    cells = _cells(3)
    hidden = net.initial_hidden(B)
    before = [w.numpy() for w in net.node_blocks]
    for t, cell in enumerate(cells):
        ids = rng.integers(0, V, size=(5 + t, B + 0)).astype(np.int32)
        _, hidden = step.train_step(ids[:-1], ids[1:], hidden, 0.25, (0, t),
                                    arch_array([cell])[0])
    assert step.train_tracing_count == 1
    used = {(i, p * 4 + a) for cell in cells for i, (p, a) in enumerate(cell.nodes)}
    for i, (old, new) in enumerate(zip(before, (w.numpy() for w in net.node_blocks))):
        for block in range(old.shape[0]):
            moved = not np.array_equal(old[block], new[block])
            assert moved == ((i, block) in used), (i, block)


@pytest.mark.slow
def test_train_step_on_two_replicas_matches_one_device(two_replicas):
    cell = _cells(1, seed=5)[0]
    ids = np.random.default_rng(2).integers(0, V, size=(7, B)).astype(np.int32)
    results, initial = [], None
    for strategy in (tf.distribute.get_strategy(), two_replicas):
        with strategy.scope():
            net = Supernet(V, D, dropout=0, dropouth=0, dropoutx=0, dropouti=0)
        if initial is None:
            initial = [v.numpy() for v in net.trainable_variables]
        for v, value in zip(net.trainable_variables, initial):
            v.assign(value)
        step = LMStep(net, strategy, B, clip=0.5, wdecay=1e-3, beta=1e-3)
        step.train_step(ids[:-1], ids[1:], net.initial_hidden(B), 0.5, (0, 0),
                        arch_array([cell])[0])
        results.append([v.numpy() for v in net.trainable_variables])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_scoring_batches_cells_without_retracing():
    net = Supernet(V, D)
    step = LMStep(net, tf.distribute.get_strategy(), B, clip=10.0, wdecay=0.0, beta=0.0)
    cells = _cells(5)
    ids = np.random.default_rng(0).integers(0, V, size=(6, 3)).astype(np.int32)
    x, y = ids[:-1], ids[1:]
    together = step.score(x, y, arch_array(cells[:4])).numpy()
    alone = [float(step.score(x, y, arch_array([c]))[0]) for c in cells[:4]]
    np.testing.assert_allclose(together, alone, rtol=1e-5)
    step.score(x, y, arch_array(cells[1:5]))
    assert step.score.experimental_get_tracing_count() == 1
    # The score is the summed NLL of the eval-mode model (zero initial state).
    logits, _, _ = net(x, net.initial_hidden(3), arch_array([cells[0]])[0])
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    assert together[0] == pytest.approx(float(tf.reduce_sum(nll)), rel=1e-5)
