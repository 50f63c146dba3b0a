"""The controller on a synthetic space whose score function is known (defined here)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nao_tf.algorithm.controller import (
    Controller,
    ControllerConfig,
    FusedLSTM,
    decoder_inputs_for,
)
from nao_tf.algorithm.controller_train import ControllerTrainer, normalize_scores
from nao_tf.algorithm.generate import ControllerInference, generate_new
from nao_tf.algorithm.metrics import hamming_distance, pairwise_accuracy
from nao_tf.spaces.synthetic import SyntheticSpace

SPACE = SyntheticSpace(num_nodes=5, choices=5)
_WEIGHTS = np.random.default_rng(7).normal(size=[SPACE.num_nodes, 2, SPACE.vocab_size])


def known_score(arch) -> float:
    """Additive over (node, input) and (node, op); invariant to swapping a node's branches."""
    x = np.asarray(arch).reshape(-1, 2, 2)
    nodes = np.arange(len(x))[:, None]
    return float((_WEIGHTS[nodes, 0, x[:, :, 0]] + _WEIGHTS[nodes, 1, x[:, :, 1]]).sum())


def _config(**overrides) -> ControllerConfig:
    """A controller half the default width, its batch in one slice: quick to train on CPU."""
    defaults = dict(attention="dot", batch_size=20, learning_rate=3e-3, seed=1, emb_size=24,
                    hidden_size=48, mlp_hidden=50, batch_shards=1)
    return ControllerConfig.for_space(SPACE, **{**defaults, **overrides})


# Its tests share an xdist group: one test process builds it, not each.
@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    archs = SPACE.sample_unique(800, rng)
    tokens = SPACE.encode(archs)
    scores = np.array([known_score(a) for a in archs])
    model = Controller(_config(), SPACE.valid_token_mask())
    trainer = ControllerTrainer(model, augment=SPACE.random_equivalent)
    trainer.fit(tokens[:300], normalize_scores(scores[:300], True), epochs=60, rng=rng)
    trainer.fit(tokens[:300], normalize_scores(scores[:300], True), epochs=60, rng=rng)
    return trainer, ControllerInference(model), tokens, scores


@pytest.mark.xdist_group("trained")
def test_predictor_ranks_unseen_architectures(trained):
    _, inference, tokens, scores = trained
    assert pairwise_accuracy(scores[300:], inference.predict(tokens[300:])) >= 0.85


@pytest.mark.xdist_group("trained")
def test_reconstructs_training_architectures_exactly(trained):
    _, inference, tokens, _ = trained
    assert hamming_distance(tokens[:300], inference.reconstruct(tokens[:300])) == 0.0


@pytest.mark.xdist_group("trained")
def test_train_step_traced_once_across_epochs_and_calls(trained):
    trainer, _, tokens, scores = trained
    trainer.fit(tokens[:7], normalize_scores(scores[:7], True), epochs=2, rng=np.random.default_rng(1))
    assert trainer.train_epoch.experimental_get_tracing_count() == 1


@pytest.mark.xdist_group("trained")
def test_predicted_score_of_generated_archs_grows_with_lambda(trained):
    """f(e_x') rises with lambda, and decoding at moderate lambda improves weak seeds for real."""
    _, inference, tokens, scores = trained
    seeds = tokens[np.argsort(scores[:300])[:50]]
    predicted = [inference.step_and_decode(seeds, lam)[1].mean() for lam in [0.0, 0.5, 1.0, 2.0, 5.0]]
    assert all(b > a for a, b in zip(predicted, predicted[1:])), predicted
    true_scores = [np.mean([known_score(a) for a in inference.step_and_decode(seeds, lam)[0]])
                   for lam in [0.0, 10.0]]
    assert true_scores[1] > true_scores[0] + 1.0, true_scores


@pytest.mark.xdist_group("trained")
def test_generate_new_finds_unseen_better_archs(trained):
    _, inference, tokens, scores = trained
    archs = SPACE.decode(tokens[:300])
    order = np.argsort(-scores[:300])
    seeds = [archs[i] for i in order[:50]]
    seen = {SPACE.canonical_key(a) for a in archs}
    result = generate_new(inference, SPACE, seeds, count=40, seen_keys=seen,
                          lambdas=[1.0 * k for k in range(1, 31)])
    assert len(result.archs) == 40
    keys = [SPACE.canonical_key(a) for a in result.archs]
    assert len(set(keys)) == 40 and not set(keys) & seen
    assert np.mean([known_score(a) for a in result.archs]) > np.mean(scores[:300])


@pytest.mark.xdist_group("trained")
def test_random_embeddings_always_decode_to_valid_architectures(trained):
    _, inference, _, _ = trained
    config = inference.model.config
    outputs = np.random.default_rng(3).normal(size=[10_000, config.encoder_length, config.hidden_size])
    outputs /= np.linalg.norm(outputs, axis=-1, keepdims=True)
    decoded = inference.decode(outputs.astype(np.float32))
    mask = SPACE.valid_token_mask()
    assert mask[np.arange(SPACE.source_length)[None, :], decoded].all()
    assert len(SPACE.decode(decoded)) == 10_000


def test_untrained_decoder_without_masks_would_be_invalid():
    """The validity above comes from the masks: the raw argmax is often invalid."""
    model = Controller(_config(), SPACE.valid_token_mask())
    outputs, embedding = model.encode(tf.constant(SPACE.encode(SPACE.sample_unique(200, np.random.default_rng(0)))),
                                      False, tf.zeros([2], tf.int32))
    unmasked = Controller(_config(), np.ones_like(SPACE.valid_token_mask()))
    unmasked.set_weights(model.get_weights())
    raw = unmasked.greedy_decode(outputs, embedding).numpy()
    assert not SPACE.valid_token_mask()[np.arange(SPACE.source_length)[None, :], raw].all()


@pytest.mark.parametrize("attention", ["bahdanau", "dot", "general"])
@pytest.mark.xdist_group("trained")
def test_beam_search_decodes_valid_sequences(trained, attention):
    model = Controller(_config(attention=attention), SPACE.valid_token_mask())
    greedy, beam = ControllerInference(model), ControllerInference(model, beam_width=4)
    tokens = trained[2][:16]
    decoded = beam.reconstruct(tokens)
    assert SPACE.valid_token_mask()[np.arange(SPACE.source_length)[None, :], decoded].all()
    assert decoded.shape == greedy.reconstruct(tokens).shape


@pytest.mark.slow
def test_bahdanau_controller_trains():
    archs = SPACE.sample_unique(800, np.random.default_rng(0))[:60]  # the fixture's first 60
    tokens, scores = SPACE.encode(archs), np.array([known_score(a) for a in archs])
    model = Controller(_config(attention="bahdanau"), SPACE.valid_token_mask())
    trainer = ControllerTrainer(model)
    first = trainer.fit(tokens, normalize_scores(scores, True), epochs=1, rng=np.random.default_rng(0))
    last = trainer.fit(tokens, normalize_scores(scores, True), epochs=15, rng=np.random.default_rng(0))
    assert last["loss"] < 0.8 * first["loss"]


@pytest.mark.parametrize("style", ["tf", "pytorch"])
def test_general_attention_decodes_as_it_is_trained(style):
    """Luong's "general" score (the PyTorch V1 decoder): a bias-free query projection and output
    layer; greedy decoding step by step picks what the teacher-forced pass scores highest."""
    from nao_tf.algorithm.controller import STYLES

    model = Controller(_config(attention="general", **STYLES[style]), SPACE.valid_token_mask())
    attention = model.attention
    assert attention.query_layer.kernel.shape == (48, 48)
    assert not attention.query_layer.use_bias and not attention.combine.use_bias
    tokens = tf.constant(SPACE.encode(SPACE.sample_unique(32, np.random.default_rng(2))))
    outputs, embedding = model.encode(tokens, False, tf.zeros([2], tf.int32))
    decoded = model.greedy_decode(outputs, embedding)
    logits = model.decoder_logits(outputs, embedding, decoder_inputs_for(decoded))
    masked = logits + np.where(SPACE.valid_token_mask(), 0.0, -np.inf)[None]
    np.testing.assert_array_equal(np.argmax(masked, -1), decoded.numpy())
    # The query projection takes part in the scores (and so is trained).
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.nn.log_softmax(
            model.decoder_logits(outputs, embedding, decoder_inputs_for(decoded)))[..., 1])
    assert np.abs(tape.gradient(loss, attention.query_layer.kernel)).max() > 0


@pytest.mark.xdist_group("trained")
def test_save_restore_is_bit_exact(trained, tmp_path):
    trainer, inference, tokens, scores = trained
    path = trainer.save(str(tmp_path / "ckpt"))
    batch = tokens[:20], normalize_scores(scores[:20], True)
    restored = ControllerTrainer(Controller(_config(), SPACE.valid_token_mask()))
    restored.train_step(*batch)  # moves weights and optimizer state away from the saved ones
    restored.restore(path)
    for a, b in zip(trainer.model.weights + trainer.optimizer.variables,
                    restored.model.weights + restored.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(inference.predict(tokens[:50]),
                                  ControllerInference(restored.model).predict(tokens[:50]))
    np.testing.assert_array_equal(trainer.train_step(*batch)["loss"], restored.train_step(*batch)["loss"])


@pytest.mark.parametrize("forget_bias", [1.0, 0.0])  # TF's LSTMCell, PyTorch's nn.LSTM
def test_lstm_backward_matches_tensorflows_block_lstm_gradient(forget_bias):
    """The hand-written backward pass equals the registered gradient of `BlockLSTM`."""
    layer = FusedLSTM(8, 6, (keras.initializers.RandomUniform(-0.1, 0.1, seed=3), "zeros",
                             forget_bias))
    layer.bias.assign(tf.random.stateless_uniform([32], [0, 1], -0.5, 0.5))
    x = tf.random.stateless_normal([7, 5, 6], [0, 2])
    h0, c0 = tf.random.stateless_normal([5, 8], [0, 3]), tf.random.stateless_normal([5, 8], [0, 4])
    weights = tf.random.stateless_normal([7, 5, 8], [0, 5])

    def loss(outputs, h, c):
        return tf.reduce_sum(outputs * weights) + tf.reduce_sum(h) + 2.0 * tf.reduce_sum(c)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, h0, c0])
        outputs, (h, c) = layer.run(x, (h0, c0))
        ours = loss(outputs, h, c)
        zeros = tf.zeros([8])
        out = tf.raw_ops.BlockLSTM(seq_len_max=tf.constant(7, tf.int64), x=x, cs_prev=c0, h_prev=h0,
                                   w=layer.kernel, wci=zeros, wcf=zeros, wco=zeros, b=layer.bias,
                                   forget_bias=forget_bias, cell_clip=-1.0, use_peephole=False)
        reference = loss(out.h, out.h[-1], out.cs[-1])
    np.testing.assert_allclose(ours, reference, rtol=1e-6)
    sources = [x, h0, c0, layer.kernel, layer.bias]
    for a, b in zip(tape.gradient(ours, sources), tape.gradient(reference, sources)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.xdist_group("trained")
def test_batch_shards_give_the_same_loss_and_update(trained):
    """Without dropout, a batch split into slices trains exactly like the whole batch."""
    tokens, scores = trained[2][:20], normalize_scores(trained[3][:20], True)
    results = []
    for shards in (1, 3):
        config = _config(batch_shards=shards, encoder_dropout=0.0, mlp_dropout=0.0)
        trainer = ControllerTrainer(Controller(config, SPACE.valid_token_mask()))
        loss = trainer.train_step(tokens, scores)["loss"]
        results.append((loss, [np.asarray(v) for v in trainer.model.weights]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_normalize_scores_direction():
    np.testing.assert_allclose(normalize_scores([1.0, 3.0, 2.0], True), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(normalize_scores([1.0, 3.0, 2.0], False), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(normalize_scores([2.0, 2.0], False), [0.5, 0.5])
