"""The NAO controller: encoder E, performance predictor f and decoder D in one Keras model.

Paper notation -> code:
  x            architecture token sequence, `tokens` [B, source_length]
  E(x)         `encode`: embedding, `fold` consecutive token embeddings concatenated per step,
               an n-layer LSTM, each step output L2-normalised (`outputs` [B, T, H], also the
               decoder's attention memory), and e_x = L2norm(mean_t outputs) (`embedding` [B, H])
  f(e_x)       `predict_from`: m x (Dense + ReLU + dropout), Dense(1), sigmoid; with
               `predictor_heads` = K > 1, K such heads on the shared embedding, f = their mean
               and their spread the predictor's uncertainty (`predict_heads`)
  D(e_x)       `decoder_logits` (teacher forcing) / `greedy_decode` (hard valid-token masks): an
               LSTM whose (h, c) start at e_x, with attention over the encoder outputs
  e_x'         `step_outputs`: outputs + lambda * d f / d outputs, re-normalised (the gradient
               step in the continuous space that generates better architectures)

Attention is the TF original's normalised Bahdanau (context of step t-1 fed with the input of step
t, LSTM output projected to the vocabulary; with several decoder layers, the bottom layer's new
context is fed to every upper layer, as TF's GNMT `AttentionMultiCell` of the original) or, with
`attention="dot"`, the PyTorch NAO-WS/rnn controller's Luong-style dot product (tanh(W [context;
h]) projected), or `attention="general"`, NAO_pytorch V1's Luong "general" score (h W_q . m_j,
and tanh(W [context; h]) without biases). Dropout is stateless: its masks are a function of an
explicit `seed` tensor, so a resumed run draws the same masks as an uninterrupted one. The
controller always runs in float32.

Two styles (`STYLES`, `ControllerConfig.with_style`): "tf", the TF originals' controller (uniform
+-0.1 initialisers, LSTM forget-gate bias +1, encoder dropout on every LSTM layer's outputs, weight
decay in the loss, so clipped with the rest of the gradient), and "pytorch", the PyTorch NAO-WS/rnn
and NAO/rnn controller (PyTorch's default initialisers, no forget bias, the predictor's
uniform +-0.04 and zero biases, encoder dropout on the token embeddings and between LSTM layers,
Adam's L2 weight decay added after the gradient is clipped).
"""

import dataclasses
import functools

import keras
import numpy as np
import tensorflow as tf

from nao_tf.algorithm.search_space import SearchSpace

ATTENTIONS = ("bahdanau", "dot", "general")
INITS = ("tf", "pytorch")
DROPOUT_SITES = ("outputs", "embeddings")
STYLES: dict[str, dict] = {
    "tf": dict(init="tf", encoder_dropout_site="outputs", decay_after_clip=False),
    "pytorch": dict(init="pytorch", encoder_dropout_site="embeddings", decay_after_clip=True),
}


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    """Controller sizes and training hyper-parameters (defaults: the original CNN NAO-WS script).

    `vocab_size`, `source_length` and `encoder_length` come from the search space
    (`ControllerConfig.for_space`). `trade_off` is the paper's lambda_mse weighting:
    loss = trade_off * MSE(f) + (1 - trade_off) * CE(D) + weight_decay * sum ||w||^2 / 2.
    `batch_shards`: each training batch is split into this many independent slices whose loss
    terms are summed (the same loss; each slice draws its own dropout masks). TensorFlow runs the
    slices concurrently, one per core: the LSTMs are too small to split across cores otherwise.
    `predictor_heads`: K predictor MLPs on the shared encoder, each with its own initialisation and
    dropout masks and each trained on the targets; f is their mean, their standard deviation the
    uncertainty that an acquisition (`nao_tf.algorithm.generate.ACQUISITIONS`) can use.
    `ranking_weight` w: the predictor's loss is (1 - w) * MSE + w * a pairwise logistic ranking
    loss, mean over ordered pairs (i, j) of a batch slice with s_i > s_j of
    log(1 + exp(-(z_i - z_j))), z the predictor's logit (its output before the sigmoid). w = 0 is
    the original's MSE.
    `init`, `encoder_dropout_site`, `decay_after_clip`: the TF or the PyTorch originals' way (see
    the module docstring and `STYLES`).
    """

    vocab_size: int
    source_length: int
    encoder_length: int
    emb_size: int = 48
    hidden_size: int = 96
    encoder_layers: int = 1
    decoder_layers: int = 1
    mlp_layers: int = 3
    mlp_hidden: int = 100
    encoder_dropout: float = 0.1
    mlp_dropout: float = 0.1
    attention: str = "bahdanau"
    trade_off: float = 0.8
    weight_decay: float = 1e-4
    learning_rate: float = 1e-3
    max_gradient_norm: float = 5.0
    batch_size: int = 100
    batch_shards: int = 2
    predictor_heads: int = 1
    ranking_weight: float = 0.0
    init: str = "tf"
    encoder_dropout_site: str = "outputs"
    decay_after_clip: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.source_length % self.encoder_length:
            raise ValueError(f"source_length {self.source_length} is not a multiple of "
                             f"encoder_length {self.encoder_length}")
        if not 1 <= self.batch_shards <= self.batch_size:
            raise ValueError(f"batch_shards must be in [1, batch_size={self.batch_size}], "
                             f"got {self.batch_shards}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.predictor_heads < 1:
            raise ValueError(f"predictor_heads must be at least 1, got {self.predictor_heads}")
        if not 0.0 <= self.ranking_weight <= 1.0:
            raise ValueError(f"ranking_weight must be in [0, 1], got {self.ranking_weight}")
        if self.init not in INITS or self.encoder_dropout_site not in DROPOUT_SITES:
            raise ValueError(f"init must be one of {INITS} and encoder_dropout_site one of "
                             f"{DROPOUT_SITES}, got {self.init!r}, {self.encoder_dropout_site!r}")

    @property
    def fold(self) -> int:
        return self.source_length // self.encoder_length

    @classmethod
    def for_space(cls, space: SearchSpace, **overrides) -> "ControllerConfig":
        return cls(**{"vocab_size": space.vocab_size, "source_length": space.source_length,
                      "encoder_length": space.encoder_length, **overrides})

    def to_dict(self) -> dict:
        """The fields, less the later options at their defaults (so a controller saved before
        they existed reads back the same)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in OPTIONAL_DEFAULTS or OPTIONAL_DEFAULTS[k] != v}


# Options added after the first release, omitted from `to_dict` while at these defaults.
OPTIONAL_DEFAULTS = {"predictor_heads": 1, "ranking_weight": 0.0, **STYLES["tf"]}


def dropout(x: tf.Tensor, rate: float, seed: tf.Tensor) -> tf.Tensor:
    """Inverted dropout whose mask is a pure function of `seed` (int32 [2])."""
    if rate <= 0.0:
        return x
    keep = tf.random.stateless_uniform(tf.shape(x), seed) >= rate
    return tf.where(keep, x / (1.0 - rate), tf.zeros_like(x))


class NormalizedBahdanauAttention(keras.layers.Layer):
    """score_j = g * v/||v|| . tanh(W_k m_j + W_q h + b)  (Bahdanau et al. with weight norm)."""

    def __init__(self, units: int, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.memory_layer = keras.layers.Dense(units, use_bias=False, kernel_initializer=_uniform(seed))
        self.query_layer = keras.layers.Dense(units, use_bias=False, kernel_initializer=_uniform(seed + 1))
        self.v = self.add_weight(name="v", shape=(units,), initializer=_uniform(seed + 2))
        self.g = self.add_weight(name="g", shape=(), initializer=keras.initializers.Constant(
            np.sqrt(1.0 / units)))
        self.b = self.add_weight(name="b", shape=(units,), initializer="zeros")

    def keys(self, memory: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Per-sequence constants: (W_k m + b, g * v / ||v||), computed once per decode."""
        return self.memory_layer(memory) + self.b, self.g * self.v / tf.norm(self.v)

    def call(self, query: tf.Tensor, memory: tf.Tensor, keys: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        projected_memory, v = keys
        scores = tf.linalg.matvec(tf.tanh(projected_memory + self.query_layer(query)[:, None]), v)
        weights = tf.nn.softmax(scores, axis=-1)
        return tf.matmul(weights[:, None], memory)[:, 0]


class DotAttention(keras.layers.Layer):
    """Luong dot attention: context = softmax(h . m_j) m; output = tanh(W [context; h] + b).
    `query_init` given: Luong's "general" score, softmax(h W_q . m_j), and no bias b (NAO_pytorch
    `NAO_V1/decoder.py` `Attention`: bias-free `input_proj` and `output_proj`).

    The query may be one step [B, H] or all steps [B, L, H]."""

    def __init__(self, units: int, dense_init: dict, query_init: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        general = query_init is not None
        self.query_layer = (keras.layers.Dense(units, use_bias=False, **query_init,
                                               name="query") if general else None)
        self.combine = keras.layers.Dense(units, activation="tanh", use_bias=not general,
                                          **dense_init)

    def keys(self, memory: tf.Tensor) -> tf.Tensor:
        return memory

    def call(self, query: tf.Tensor, memory: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
        steps = query if query.shape.rank == 3 else query[:, None]
        scoring = steps if self.query_layer is None else self.query_layer(steps)
        weights = tf.nn.softmax(tf.matmul(scoring, keys, transpose_b=True), axis=-1)
        context = tf.matmul(weights, memory)
        if query.shape.rank == 2:
            context = context[:, 0]
        return self.combine(tf.concat([context, query], axis=-1))


def _uniform(seed: int, limit: float = 0.1) -> keras.initializers.Initializer:
    return keras.initializers.RandomUniform(-limit, limit, seed=seed)


class Initializers:
    """The initialisers of one style (`ControllerConfig.init`), by role. "tf": every weight
    uniform(-0.1, 0.1), biases zero, LSTM forget bias +1. "pytorch": PyTorch's defaults -- an
    embedding N(0, 1); an LSTM's weights uniform(+-1/sqrt(H)) and its bias the sum of PyTorch's two
    such biases; a linear layer's weight and bias uniform(+-1/sqrt(fan_in)) -- except the
    predictor's explicit uniform(+-0.04) weights and zero biases (`NAO-WS/rnn/encoder`)."""

    def __init__(self, init: str, seeds):
        self.pytorch, self.seeds = init == "pytorch", seeds

    def embedding(self):
        seed = next(self.seeds)
        return keras.initializers.RandomNormal(0.0, 1.0, seed=seed) if self.pytorch else \
            _uniform(seed)

    def lstm(self, units: int) -> tuple[keras.initializers.Initializer, object, float]:
        """(kernel initialiser, bias initialiser, forget bias)."""
        seed = next(self.seeds)
        if not self.pytorch:
            return _uniform(seed), "zeros", 1.0
        limit = 1.0 / np.sqrt(units)
        first, second = _uniform(seed + 500_000, limit), _uniform(seed + 700_000, limit)
        return _uniform(seed, limit), lambda shape, dtype=None: (first(shape, dtype)
                                                                 + second(shape, dtype)), 0.0

    def linear(self, fan_in: int, predictor: bool = False) -> dict:
        """Keyword arguments of a `keras.layers.Dense` reading `fan_in` features."""
        seed = next(self.seeds)
        if not self.pytorch:
            return dict(kernel_initializer=_uniform(seed))
        if predictor:
            return dict(kernel_initializer=_uniform(seed, 0.04))
        limit = 1.0 / np.sqrt(fan_in)
        return dict(kernel_initializer=_uniform(seed, limit),
                    bias_initializer=_uniform(seed + 500_000, limit))


class FusedLSTM(keras.layers.Layer):
    """An LSTM layer with TF1 `LSTMCell` semantics (forget-gate bias +1, no peepholes, no cell
    clipping). The forward pass is TensorFlow's fused `BlockLSTM` kernel (one op for a whole
    sequence); the backward pass of a sequence is `block_lstm_backward`."""

    def __init__(self, units: int, input_size: int, initializers: tuple, **kwargs):
        super().__init__(**kwargs)
        kernel_init, bias_init, self.forget_bias = initializers
        self.units = units
        self.kernel = self.add_weight(name="kernel", shape=(input_size + units, 4 * units),
                                      initializer=kernel_init)
        self.bias = self.add_weight(name="bias", shape=(4 * units,), initializer=bias_init)

    def run(self, inputs: tf.Tensor, state: tuple[tf.Tensor, tf.Tensor]):
        """inputs [T, B, in] (time-major), state (h, c) -> (outputs [T, B, H], final (h, c)).

        A single step (the Bahdanau decoder, decoding) keeps `BlockLSTM`'s registered gradient:
        it has no per-step products to batch, and is cheaper to trace."""
        if inputs.shape[0] == 1:
            out = _block_lstm_forward(inputs, state[0], state[1], self.kernel.value,
                                      self.bias.value, self.forget_bias)
            return out.h, (out.h[-1], out.cs[-1])
        outputs, h, c = _block_lstm(self.forget_bias)(inputs, state[0], state[1],
                                                      self.kernel.value, self.bias.value)
        return outputs, (h, c)


def _block_lstm_forward(x, h0, c0, kernel, bias, forget_bias: float):
    no_peephole = tf.zeros([kernel.shape[1] // 4])
    return tf.raw_ops.BlockLSTM(
        seq_len_max=tf.cast(tf.shape(x)[0], tf.int64), x=x, cs_prev=c0, h_prev=h0, w=kernel,
        wci=no_peephole, wcf=no_peephole, wco=no_peephole, b=bias, forget_bias=forget_bias,
        cell_clip=-1.0, use_peephole=False)


@functools.cache
def _block_lstm(forget_bias: float):
    """(outputs h_1..T, h_T, c_T) of `BlockLSTM`, with `block_lstm_backward` as its gradient (the
    saved gate activations already hold the forget bias)."""

    @tf.custom_gradient
    def block_lstm(x, h0, c0, kernel, bias):
        out = _block_lstm_forward(x, h0, c0, kernel, bias, forget_bias)

        def grad(d_outputs, d_h_last, d_c_last):
            return block_lstm_backward(x, h0, c0, kernel, bias, out, d_outputs, d_h_last,
                                       d_c_last)

        return (out.h, out.h[-1], out.cs[-1]), grad

    return block_lstm


def block_lstm_backward(x, h0, c0, kernel, bias, out, d_outputs, d_h_last, d_c_last):
    """Gradients of `BlockLSTM` w.r.t. (x, h0, c0, kernel, bias).

    Only the recurrence runs step by step: each step is the fused `LSTMBlockCellGrad` (gate
    gradients from the saved activations) and one product with the recurrent weights. The weight
    and input gradients are then single large matrix products over all T x B rows, which oneDNN
    runs several times faster than the per-step products of TensorFlow's registered gradient.
    """
    steps, batch, input_size = x.shape[0], tf.shape(x)[1], x.shape[2]
    hidden = h0.shape[-1]
    no_peephole = tf.zeros([hidden])
    h_prev = tf.concat([h0[None], out.h[:-1]], axis=0)
    c_prev = tf.concat([c0[None], out.cs[:-1]], axis=0)
    d_h = tf.zeros_like(h0) if d_h_last is None else d_h_last
    d_c = tf.zeros_like(c0) if d_c_last is None else d_c_last
    recurrent_kernel = kernel[input_size:]
    per_step = [tf.unstack(t) for t in (x, c_prev, h_prev, out.i, out.cs, out.f, out.o, out.ci,
                                        out.co, d_outputs)]
    d_gates = [None] * steps
    for t in reversed(range(steps)):
        x_t, c_prev_t, h_prev_t, i, cs, f, o, ci, co, d_output = (v[t] for v in per_step)
        d_c, d_gates[t], _, _, _ = tf.raw_ops.LSTMBlockCellGrad(
            x=x_t, cs_prev=c_prev_t, h_prev=h_prev_t, w=kernel, wci=no_peephole,
            wcf=no_peephole, wco=no_peephole, b=bias, i=i, cs=cs, f=f, o=o, ci=ci, co=co,
            cs_grad=d_c, h_grad=d_output + d_h, use_peephole=False)
        d_h = tf.matmul(d_gates[t], recurrent_kernel, transpose_b=True)
    d_gates = tf.reshape(tf.stack(d_gates), [-1, 4 * hidden])
    rows = tf.reshape(tf.concat([x, h_prev], axis=-1), [-1, input_size + hidden])
    d_kernel = tf.matmul(rows, d_gates, transpose_a=True)
    d_x = tf.reshape(tf.matmul(d_gates, kernel[:input_size], transpose_b=True),
                     [steps, batch, input_size])
    return d_x, d_h, d_c, d_kernel, tf.reduce_sum(d_gates, axis=0)


class Controller(keras.Model):
    """Encoder-predictor-decoder. `token_mask` [source_length, vocab_size] (bool) lists the tokens
    allowed at each position: decoding never emits anything else."""

    def __init__(self, config: ControllerConfig, token_mask: np.ndarray, **kwargs):
        super().__init__(**kwargs)
        c = self.config = config
        token_mask = np.asarray(token_mask, dtype=bool)
        if token_mask.shape != (c.source_length, c.vocab_size):
            raise ValueError(f"token_mask has shape {token_mask.shape}, expected "
                             f"{(c.source_length, c.vocab_size)}")
        self.token_mask = token_mask
        self._logit_bias = tf.constant(np.where(token_mask, 0.0, -np.inf), tf.float32)
        seeds = iter(range(c.seed * 1000, c.seed * 1000 + 1000))
        inits = Initializers(c.init, seeds)
        self.encoder_embedding = keras.layers.Embedding(
            c.vocab_size, c.emb_size, embeddings_initializer=inits.embedding(), name="enc_emb")
        self.encoder_layers = [
            FusedLSTM(c.hidden_size, c.fold * c.emb_size if i == 0 else c.hidden_size,
                      inits.lstm(c.hidden_size), name=f"enc_lstm_{i}")
            for i in range(c.encoder_layers)]
        self.mlp, self.regressor = self._predictor_head(inits, "")
        self.decoder_embedding = keras.layers.Embedding(
            c.vocab_size, c.hidden_size, embeddings_initializer=inits.embedding(), name="dec_emb")
        feeds_context = c.attention == "bahdanau"  # every layer reads [input; context]
        self.decoder_layers = [
            FusedLSTM(c.hidden_size, 2 * c.hidden_size if feeds_context else c.hidden_size,
                      inits.lstm(c.hidden_size), name=f"dec_lstm_{i}")
            for i in range(c.decoder_layers)]
        self.attention = (NormalizedBahdanauAttention(c.hidden_size, seed=next(seeds),
                                                      name="attention") if feeds_context else
                          DotAttention(c.hidden_size, inits.linear(2 * c.hidden_size),
                                       inits.linear(c.hidden_size)
                                       if c.attention == "general" else None, name="attention"))
        self.projection = keras.layers.Dense(c.vocab_size, **inits.linear(c.hidden_size),
                                             name="projection")
        if c.predictor_heads > 1:  # head 0 is `mlp` + `regressor`, as in a one-head controller
            self.extra_heads = [self._predictor_head(inits, f"head{k}_")
                                for k in range(1, c.predictor_heads)]
        self._build_all()

    def _predictor_head(self, inits: Initializers,
                        prefix: str) -> tuple[list[keras.layers.Dense], keras.layers.Dense]:
        c = self.config
        mlp = [keras.layers.Dense(c.mlp_hidden, activation="relu", name=f"{prefix}mlp_{i}",
                                  **inits.linear(0, predictor=True))
               for i in range(c.mlp_layers)]
        return mlp, keras.layers.Dense(1, **inits.linear(0, predictor=True),
                                       name=f"{prefix}regressor")

    @property
    def predictor_heads(self) -> list[tuple[list[keras.layers.Dense], keras.layers.Dense]]:
        return [(self.mlp, self.regressor)] + list(getattr(self, "extra_heads", []))

    def _build_all(self) -> None:
        """Creates every variable eagerly (required before tracing, and by checkpoint restore)."""
        tokens = tf.ones([1, self.config.source_length], tf.int32)
        self.train_forward(tokens, tokens, training=False, seed=tf.zeros([2], tf.int32))

    # Encoder and predictor.

    def encode(self, tokens: tf.Tensor, training: bool, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """E(x): returns (per-step normalised outputs [B, T, H], embedding e_x [B, H])."""
        c = self.config
        fold_in = tf.random.experimental.stateless_fold_in
        x = self.encoder_embedding(tokens)
        on_embeddings = c.encoder_dropout_site == "embeddings"
        if training and on_embeddings:
            x = dropout(x, c.encoder_dropout, fold_in(seed, 0))
        x = tf.transpose(tf.reshape(x, [-1, c.encoder_length, c.fold * c.emb_size]), [1, 0, 2])
        zeros = tf.zeros([tf.shape(x)[1], c.hidden_size])
        for i, layer in enumerate(self.encoder_layers):
            x, _ = layer.run(x, (zeros, zeros))
            # TF: dropout on every layer's outputs; PyTorch's nn.LSTM: between layers only.
            if training and (not on_embeddings or i < c.encoder_layers - 1):
                x = dropout(x, c.encoder_dropout, fold_in(seed, 1 + i))
        outputs = tf.math.l2_normalize(tf.transpose(x, [1, 0, 2]), axis=-1)
        return outputs, self.pool(outputs)

    @staticmethod
    def pool(outputs: tf.Tensor) -> tf.Tensor:
        """e_x = L2norm(mean over encoder steps)."""
        return tf.math.l2_normalize(tf.reduce_mean(outputs, axis=1), axis=-1)

    def predictor_logits(self, embedding: tf.Tensor, training: bool = False,
                         seed: tf.Tensor | None = None) -> tf.Tensor:
        """Each predictor head's logit (before the sigmoid), [B, K]."""
        logits = []
        for k, (mlp, regressor) in enumerate(self.predictor_heads):
            h = embedding
            for i, dense in enumerate(mlp):
                h = dense(h)
                if training:
                    h = dropout(h, self.config.mlp_dropout,
                                tf.random.experimental.stateless_fold_in(seed, 10 + 100 * k + i))
            logits.append(regressor(h))
        return tf.concat(logits, axis=1)

    def predict_heads(self, embedding: tf.Tensor) -> tf.Tensor:
        """Each head's f(e_x) in (0, 1), [B, K]."""
        return tf.sigmoid(self.predictor_logits(embedding))

    def predict_from(self, embedding: tf.Tensor, training: bool = False,
                     seed: tf.Tensor | None = None) -> tf.Tensor:
        """f(e_x) in (0, 1): predicted normalised score, higher is better (the heads' mean).
        Shape [B]."""
        return tf.reduce_mean(tf.sigmoid(self.predictor_logits(embedding, training, seed)), axis=1)

    # Decoder.

    def _bahdanau_step(self, x, states, context, memory, keys):
        """One step of the TF original's decoder: the bottom layer reads [x; context of the last
        step]; its output gives the new context, which every upper layer reads beside the output
        of the layer below (GNMT's `AttentionMultiCell`). Returns (top output, states, context)."""
        h, state = self.decoder_layers[0].run(tf.concat([x, context], axis=-1)[None], states[0])
        new_states = [state]
        context = self.attention(h[0], memory, keys)
        for layer, state in zip(self.decoder_layers[1:], states[1:]):
            h, state = layer.run(tf.concat([h[0], context], axis=-1)[None], state)
            new_states.append(state)
        return h[0], new_states, context

    def _decoder_step(self, prev_token, states, attention_in, memory, keys):
        """One decoder step; returns (logits, new states, attention input for the next step)."""
        x = self.decoder_embedding(prev_token)
        if self.config.attention == "bahdanau":
            h, new_states, context = self._bahdanau_step(x, states, attention_in, memory, keys)
            return self.projection(h), new_states, context
        h, new_states = x[None], []
        for layer, state in zip(self.decoder_layers, states):
            h, state = layer.run(h, state)
            new_states.append(state)
        return self.projection(self.attention(h[0], memory, keys)), new_states, attention_in

    def _initial_decoder_state(self, embedding):
        """(h, c) = (e_x, e_x) in every decoder layer; no attention context yet."""
        return [(embedding, embedding) for _ in self.decoder_layers], tf.zeros_like(embedding)

    def decoder_logits(self, outputs: tf.Tensor, embedding: tf.Tensor,
                       decoder_inputs: tf.Tensor) -> tf.Tensor:
        """Teacher-forced D: logits [B, L, V] given the inputs [<sos>, x_1 .. x_{L-1}]."""
        keys = self.attention.keys(outputs)
        states, attention_in = self._initial_decoder_state(embedding)
        inputs = self.decoder_embedding(decoder_inputs)
        if self.config.attention != "bahdanau":
            # No input feeding: the LSTM runs over the whole sequence, attention over all steps.
            h = tf.transpose(inputs, [1, 0, 2])
            for layer, state in zip(self.decoder_layers, states):
                h, _ = layer.run(h, state)
            return self.projection(self.attention(tf.transpose(h, [1, 0, 2]), outputs, keys))
        hidden = []
        for t in range(self.config.source_length):
            h, states, attention_in = self._bahdanau_step(inputs[:, t], states, attention_in,
                                                          outputs, keys)
            hidden.append(h)
        return self.projection(tf.stack(hidden, axis=1))

    def greedy_decode(self, outputs: tf.Tensor, embedding: tf.Tensor) -> tf.Tensor:
        """Masked greedy D: at each position the best *allowed* token (others get -inf)."""
        keys = self.attention.keys(outputs)
        states, attention_in = self._initial_decoder_state(embedding)
        token = tf.zeros([tf.shape(embedding)[0]], tf.int32)
        tokens = []
        for t in range(self.config.source_length):
            logits, states, attention_in = self._decoder_step(token, states, attention_in, outputs, keys)
            token = tf.argmax(logits + self._logit_bias[t], axis=-1, output_type=tf.int32)
            tokens.append(token)
        return tf.stack(tokens, axis=1)

    def step_logits(self, prev_token, states, attention_in, memory, keys, position: int):
        """Masked log-probabilities of one step (for beam search)."""
        logits, states, attention_in = self._decoder_step(prev_token, states, attention_in, memory, keys)
        return tf.nn.log_softmax(logits) + self._logit_bias[position], states, attention_in

    # Whole-model passes.

    def train_forward(self, tokens: tf.Tensor, decoder_inputs: tf.Tensor, training: bool,
                      seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(each predictor head's logit [B, K], D logits [B, L, V]) with teacher forcing."""
        outputs, embedding = self.encode(tokens, training, seed)
        prediction_logits = self.predictor_logits(embedding, training, seed)
        return prediction_logits, self.decoder_logits(outputs, embedding, decoder_inputs)

    def step_outputs(self, outputs: tf.Tensor, step_size: tf.Tensor) -> tf.Tensor:
        """outputs' = L2norm(outputs + lambda * d f(pool(outputs)) / d outputs)."""
        with tf.GradientTape() as tape:
            tape.watch(outputs)
            score = tf.reduce_sum(self.predict_from(self.pool(outputs)))
        gradient = tape.gradient(score, outputs)
        return tf.math.l2_normalize(outputs + step_size * gradient, axis=-1)


def decoder_inputs_for(tokens: tf.Tensor) -> tf.Tensor:
    """Teacher-forcing inputs: [<sos>=0, x_1, ..., x_{L-1}]."""
    return tf.concat([tf.zeros_like(tokens[:, :1]), tokens[:, :-1]], axis=1)
