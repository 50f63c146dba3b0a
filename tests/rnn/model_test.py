import numpy as np
import pytest
import tensorflow as tf

from rnn.model import INIT_RANGE, RNNModel, count_params, network_costs, tar_penalty
from rnn.search_space import ACTIVATIONS, NAMED_ARCHS, RnnSearchSpace

SPACE = RnnSearchSpace()
_NP_ACT = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0), "identity": lambda v: v,
           "sigmoid": lambda v: 1 / (1 + np.exp(-v))}


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _reference_cell(arch, w0, ws, xs, h):
    """The original's equations, step by step, in numpy (evaluation: no masks)."""
    outputs = []
    for x in xs:
        c, g = np.split(np.concatenate([x, h], -1) @ w0, 2, axis=-1)
        states = [h + _sigmoid(c) * (np.tanh(g) - h)]
        for (pred, act), w in zip(arch.nodes, ws):
            s = states[pred]
            c, g = np.split(s @ w, 2, axis=-1)
            states.append(s + _sigmoid(c) * (_NP_ACT[ACTIVATIONS[act]](g) - s))
        h = np.mean(states[1:], axis=0)
        outputs.append(h)
    return np.stack(outputs), h


@pytest.mark.parametrize("name", ["NAO", "NAO_WS", "random"])
def test_cell_matches_the_reference_equations(name):
    arch = (SPACE.sample(np.random.default_rng(3)) if name == "random"
            else SPACE.parse(NAMED_ARCHS[name]))
    model = RNNModel(arch, vocab_size=30, units=8)
    # Larger weights than the init so that every activation matters.
    for v in model.cell.trainable_variables:
        v.assign(np.random.default_rng(1).normal(0, 0.5, v.shape))
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(6, 3, 8)).astype(np.float32)
    h0 = rng.normal(size=(3, 8)).astype(np.float32)
    out, h = model.cell(tf.constant(xs), tf.constant(h0), training=False)
    ref_out, ref_h = _reference_cell(arch, model.cell.w0.numpy(),
                                     [w.numpy() for w in model.cell.ws], xs, h0)
    np.testing.assert_allclose(out.numpy(), ref_out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h.numpy(), ref_h, rtol=1e-4, atol=1e-5)


def test_parameter_counts_of_the_final_configs():
    arch = SPACE.parse(NAMED_ARCHS["NAO"])
    ptb = count_params(RNNModel(arch, 10000, 850))
    wt2 = count_params(RNNModel(arch, 33278, 700))
    assert ptb == 10000 * 850 + 10000 + 4 * 850 ** 2 + 11 * 2 * 850 ** 2
    assert network_costs(arch, 10000, 850)["params"] == ptb  # what a search's budget counts
    assert network_costs(arch, 33278, 700)["params"] == wt2
    assert abs(ptb / 27.3e6 - 1) < 0.01 and abs(wt2 / 36.1e6 - 1) < 0.01


def test_init_no_cell_biases_and_tied_decoder():
    model = RNNModel(SPACE.parse(NAMED_ARCHS["NAO"]), vocab_size=30, units=8)
    names = sorted(v.name for v in model.trainable_variables)
    assert names == sorted(["embedding", "decoder_bias", "w0"] + [f"w{i}" for i in range(1, 12)])
    for v in model.trainable_variables:
        if v.name != "decoder_bias":
            assert np.abs(v.numpy()).max() <= INIT_RANGE
    assert not model.decoder_bias.numpy().any()
    ids = tf.constant([[1, 2], [3, 4]])
    logits, raw, _ = model(ids, model.initial_hidden(2), training=False)
    expected = raw.numpy() @ model.embedding.numpy().T
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_dropout_masks_are_shared_across_time():
    # Zero weights and embedding = 1: the cell output is 0, so only the input locked dropout
    # shows; with dropouti the embedded input must carry one mask for every time step.
    model = RNNModel(SPACE.parse(NAMED_ARCHS["NAO"]), vocab_size=5, units=64, dropouti=0.5,
                     dropout=0.0, dropouth=0.0, dropoutx=0.0)
    model.embedding.assign(np.ones((5, 64), np.float32))
    x = model.embed(tf.zeros([7, 3], tf.int32), training=True).numpy()
    assert set(np.unique(x)) <= {0.0, 2.0} and (x == 0).any()
    assert (x == x[:1]).all()


def test_tar_penalty():
    raw = tf.constant([[[0.0, 1.0]], [[1.0, 1.0]], [[1.0, 3.0]]])
    assert float(tar_penalty(raw, 0.5)) == pytest.approx(0.5 * (1 + 0 + 0 + 4) / 4)


def test_checkpoint_round_trip_restores_every_weight(tmp_path):
    from rnn.training import WeightAverage
    model = RNNModel(SPACE.parse(NAMED_ARCHS["NAO"]), vocab_size=30, units=8)
    average = WeightAverage([v.value for v in model.trainable_variables])
    average.active.assign(True)
    average.update_if_active()
    ckpt = tf.train.Checkpoint(model=model, average=average)
    path = ckpt.save(str(tmp_path / "c"))
    saved = [v.numpy() for v in model.trainable_variables + average.averages]
    for v in model.trainable_variables + average.averages:
        v.assign(tf.zeros_like(v))
    average.count.assign(0)
    ckpt.restore(path).assert_consumed()
    for v, value in zip(model.trainable_variables + average.averages, saved):
        np.testing.assert_array_equal(v.numpy(), value)
    assert int(average.count.numpy()) == 1


def test_embedding_dropout_drops_whole_words():
    model = RNNModel(SPACE.parse(NAMED_ARCHS["NAO"]), vocab_size=40, units=4, dropoute=0.5,
                     dropouti=0.0)
    model.embedding.assign(np.ones((40, 4), np.float32))
    ids = np.tile(np.arange(40, dtype=np.int32), (3, 1)).T  # every word at 3 positions
    x = model.embed(tf.constant(ids), training=True).numpy()
    assert set(np.unique(x)) == {0.0, 2.0}
    assert (x == x[:, :1, :1]).all()  # one decision per word, for all its positions and units


@pytest.mark.parametrize("name", ["NAO", "NAO_WS", "random"])
def test_hand_written_backward_matches_automatic_differentiation(name):
    from rnn.cell_loop import run_cell
    from rnn.model import dropout_mask, input_projection
    arch = (SPACE.sample(np.random.default_rng(5)) if name == "random"
            else SPACE.parse(NAMED_ARCHS[name]))
    cell = RNNModel(arch, vocab_size=30, units=8).cell
    for v in cell.trainable_variables:
        v.assign(np.random.default_rng(1).normal(0, 0.5, v.shape))
    x, h0 = tf.random.normal([6, 3, 8]), tf.random.normal([3, 8])
    mask = dropout_mask([3, 8], 0.3, tf.constant([1, 2], tf.int64), 0)
    upstream, upstream_last = tf.random.normal([6, 3, 8]), tf.random.normal([3, 8])

    def loss_and_grads(loop):
        with tf.GradientTape() as tape:
            tape.watch([x, h0])
            args = (input_projection(x, cell.w0, None), h0, mask,
                    tf.convert_to_tensor(cell.w0)[8:], cell.grouped_weights())
            out, last = loop(*args)
            loss = tf.reduce_sum(out * upstream) + tf.reduce_sum(last * upstream_last)
        return loss, tape.gradient(loss, [x, h0] + cell.trainable_variables)

    auto_loss, auto_grads = loss_and_grads(cell.forward_loop)
    loss, grads = loss_and_grads(lambda *a: run_cell(*a, cell.schedule))
    assert float(loss) == pytest.approx(float(auto_loss), rel=1e-6)
    for g, ref in zip(grads, auto_grads):
        np.testing.assert_allclose(g.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)
