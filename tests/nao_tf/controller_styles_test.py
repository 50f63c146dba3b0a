"""The TF and the PyTorch originals' controllers (`ControllerConfig.init`, `encoder_dropout_site`,
`decay_after_clip`) and the multi-layer details of the TF one, against hand computations."""

import numpy as np
import pytest
import tensorflow as tf

from nao_tf.algorithm.controller import Controller, ControllerConfig, STYLES, dropout
from nao_tf.algorithm.controller_train import ControllerTrainer
from nao_tf.spaces.synthetic import SyntheticSpace

SPACE = SyntheticSpace(num_nodes=5, choices=5)
H = 16


def _controller(**overrides) -> Controller:
    config = ControllerConfig.for_space(SPACE, **{**dict(attention="dot", hidden_size=H,
                                                         emb_size=H, batch_size=20, seed=1),
                                                  **overrides})
    return Controller(config, SPACE.valid_token_mask())


def test_pytorch_initialisers_are_pytorchs_defaults():
    tf_style, torch_style = _controller(), _controller(**STYLES["pytorch"])
    bound = 1.0 / np.sqrt(H)
    for lstm in (torch_style.encoder_layers[0], torch_style.decoder_layers[0]):
        kernel, bias = lstm.kernel.numpy(), lstm.bias.numpy()
        assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound
        # nn.LSTM's two biases, b_ih + b_hh, each uniform(+-1/sqrt(H)).
        assert np.abs(bias).max() <= 2 * bound and np.abs(bias).max() > bound
        assert lstm.forget_bias == 0.0
    assert tf_style.encoder_layers[0].forget_bias == 1.0
    assert not tf_style.encoder_layers[0].bias.numpy().any()
    embedding = torch_style.encoder_embedding.embeddings.numpy()
    assert 0.8 < embedding.std() < 1.2  # nn.Embedding: N(0, 1)
    projection = torch_style.projection  # nn.Linear(H, V): weight and bias uniform(+-1/sqrt(H))
    assert np.abs(projection.kernel.numpy()).max() <= bound
    assert np.abs(projection.bias.numpy()).max() > 0
    for dense in (*torch_style.mlp, torch_style.regressor):  # the encoder's INITRANGE 0.04
        assert np.abs(dense.kernel.numpy()).max() <= 0.04 and not dense.bias.numpy().any()
    assert 0.09 < np.abs(tf_style.projection.kernel.numpy()).max() <= 0.1  # uniform(+-0.1)


@pytest.mark.parametrize("site, layers", [("outputs", 1), ("outputs", 2), ("embeddings", 1),
                                          ("embeddings", 2)])
def test_encoder_dropout_site(site, layers):
    """TF: dropout on each LSTM layer's outputs; PyTorch: on the embeddings and between layers."""
    model = _controller(encoder_dropout=0.5, encoder_dropout_site=site, encoder_layers=layers)
    tokens = tf.constant(SPACE.encode(SPACE.sample_unique(4, np.random.default_rng(0))),
                         tf.int32)
    seed = tf.constant([3, 4], tf.int32)
    fold_in = tf.random.experimental.stateless_fold_in
    x = model.encoder_embedding(tokens)
    if site == "embeddings":
        x = dropout(x, 0.5, fold_in(seed, 0))
    c = model.config
    x = tf.transpose(tf.reshape(x, [-1, c.encoder_length, c.fold * c.emb_size]), [1, 0, 2])
    zeros = tf.zeros([4, H])
    for i, layer in enumerate(model.encoder_layers):
        x, _ = layer.run(x, (zeros, zeros))
        if site == "outputs" or i < layers - 1:
            x = dropout(x, 0.5, fold_in(seed, 1 + i))
    expected = tf.math.l2_normalize(tf.transpose(x, [1, 0, 2]), axis=-1)
    outputs, _ = model.encode(tokens, True, seed)
    np.testing.assert_allclose(outputs.numpy(), expected.numpy(), atol=1e-6)
    assert not np.allclose(outputs.numpy(), model.encode(tokens, False, seed)[0].numpy())


@pytest.mark.parametrize("decay_after_clip", [False, True])
def test_weight_decay_before_or_after_clipping(decay_after_clip):
    """With a clip far below the data gradient's norm, PyTorch's order (clip, then add
    wd * w) leaves a step driven by the decay: Adam's first step is lr * sign(gradient), so every
    weight moves towards zero; TF's (decay inside the clipped gradient) follows the data."""
    model = _controller(max_gradient_norm=1e-6, weight_decay=1e-4, learning_rate=1e-3,
                        decay_after_clip=decay_after_clip, batch_shards=1)
    trainer = ControllerTrainer(model)
    tokens = SPACE.encode(SPACE.sample_unique(20, np.random.default_rng(1)))
    before = [v.numpy() for v in model.trainable_variables]
    trainer.train_step(tf.constant(tokens, tf.int32), tf.linspace(0.0, 1.0, 20))
    moved_to_zero = []
    for b, v in zip(before, model.trainable_variables):
        big = np.abs(b) > 1e-3
        moved_to_zero.append((np.sign(v.numpy() - b) == -np.sign(b))[big])
    fraction = np.concatenate(moved_to_zero).mean()
    assert (fraction > 0.99) if decay_after_clip else (fraction < 0.9), fraction


def test_bahdanau_context_reaches_every_decoder_layer():
    """GNMT's AttentionMultiCell: layer 0 reads [input; previous context], upper layers read
    [output below; new context from layer 0's output]."""
    model = _controller(attention="bahdanau", decoder_layers=2)
    assert model.decoder_layers[1].kernel.shape == (3 * H, 4 * H)  # [h below; context] + state
    embedding = tf.math.l2_normalize(tf.random.normal([3, H]), axis=-1)
    memory = tf.math.l2_normalize(tf.random.normal([3, 5, H]), axis=-1)
    keys = model.attention.keys(memory)
    states, context = model._initial_decoder_state(embedding)
    x = model.decoder_embedding(tf.zeros([3], tf.int32))
    h0, state0 = model.decoder_layers[0].run(tf.concat([x, context], -1)[None], states[0])
    new_context = model.attention(h0[0], memory, keys)
    h1, state1 = model.decoder_layers[1].run(tf.concat([h0[0], new_context], -1)[None], states[1])
    logits, new_states, returned_context = model._decoder_step(
        tf.zeros([3], tf.int32), states, context, memory, keys)
    np.testing.assert_allclose(logits.numpy(), model.projection(h1[0]).numpy(), atol=1e-6)
    np.testing.assert_allclose(returned_context.numpy(), new_context.numpy(), atol=1e-6)


@pytest.mark.parametrize("field, value", [("init", "torch"), ("encoder_dropout_site", "inputs")])
def test_unknown_style_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=f"got .*'{value}'"):
        _controller(**{field: value})
