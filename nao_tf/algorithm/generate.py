"""Inference with a trained controller: prediction, reconstruction, and NAO's generation.

Generation (paper section 3.3): for each seed architecture x, take the encoder outputs, step them
by lambda along the gradient of the predictor f (outputs' = outputs + lambda * df/doutputs,
re-normalised), and decode D(e_x') with hard valid-token masks. `generate_new` raises lambda until
N architectures are found that were never evaluated before. With oversampling it keeps the N that
an acquisition rates best: the predictor's mean, or (K predictor heads) an upper confidence bound
mean + beta * std over the heads, or Thompson sampling (each of the N picks is the best candidate
of one head drawn at random).
"""

import dataclasses
import functools
from typing import Hashable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from nao_tf.algorithm.controller import Controller
from nao_tf.algorithm.search_space import SearchSpace


class ControllerInference:
    """Compiled inference functions of one controller (each traced once, any batch size)."""

    def __init__(self, model: Controller, beam_width: int = 0):
        self.model = model
        self.beam_width = beam_width
        length = model.config.source_length
        tokens = tf.TensorSpec([None, length], tf.int32)
        outputs = tf.TensorSpec([None, model.config.encoder_length, model.config.hidden_size], tf.float32)
        self._zero_seed = tf.zeros([2], tf.int32)
        # Without autograph: no tensor-dependent Python control flow (decoding loops over the
        # static length); converting the code was most of the decoding's trace.
        compiled = functools.partial(tf.function, autograph=False)
        self._encode = compiled(self._encode_fn, input_signature=[tokens])
        self._predict = compiled(self._predict_fn, input_signature=[tokens])
        self._predict_heads = compiled(self._predict_heads_fn, input_signature=[tokens])
        self._decode = compiled(self._decode_fn, input_signature=[outputs])
        self._step_decode = compiled(self._step_decode_fn,
                                     input_signature=[tokens, tf.TensorSpec([], tf.float32)])

    def _encode_fn(self, tokens):
        return self.model.encode(tokens, False, self._zero_seed)[0]

    def _predict_fn(self, tokens):
        return self.model.predict_from(self.model.encode(tokens, False, self._zero_seed)[1])

    def _predict_heads_fn(self, tokens):
        return self.model.predict_heads(self.model.encode(tokens, False, self._zero_seed)[1])

    def _decode_fn(self, outputs):
        if self.beam_width > 1:
            return beam_decode(self.model, outputs, self.beam_width)
        return self.model.greedy_decode(outputs, self.model.pool(outputs))

    def _step_decode_fn(self, tokens, step_size):
        outputs = self.model.step_outputs(self.model.encode(tokens, False, self._zero_seed)[0], step_size)
        return self._decode_fn(outputs), self.model.predict_from(self.model.pool(outputs))

    def predict(self, tokens: np.ndarray) -> np.ndarray:
        """f(E(x)): predicted normalised score (1 = best) for each row of tokens [N, L]."""
        return self._predict(np.asarray(tokens, np.int32)).numpy()

    def predict_heads(self, tokens: np.ndarray) -> np.ndarray:
        """Each predictor head's normalised score, [N, K]."""
        return self._predict_heads(np.asarray(tokens, np.int32)).numpy()

    def encode(self, tokens: np.ndarray) -> np.ndarray:
        return self._encode(np.asarray(tokens, np.int32)).numpy()

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """D from encoder outputs [N, T, H] (normalised per step): token rows [N, L]."""
        return self._decode(np.asarray(outputs, np.float32)).numpy()

    def reconstruct(self, tokens: np.ndarray) -> np.ndarray:
        """D(E(x)) with lambda = 0."""
        return self.decode(self.encode(tokens))

    def step_and_decode(self, tokens: np.ndarray, step_size: float) -> tuple[np.ndarray, np.ndarray]:
        """(decoded tokens of e_x', f(e_x')) after one gradient step of size lambda from each x."""
        decoded, predicted = self._step_decode(np.asarray(tokens, np.int32), np.float32(step_size))
        return decoded.numpy(), predicted.numpy()


def beam_decode(model: Controller, outputs: tf.Tensor, width: int) -> tf.Tensor:
    """Masked beam search over D; returns the most probable valid sequence per row."""
    length, vocab = model.config.source_length, model.config.vocab_size
    batch = tf.shape(outputs)[0]
    memory = tf.repeat(outputs, width, axis=0)
    keys = model.attention.keys(memory)
    states, attention_in = model._initial_decoder_state(model.pool(memory))
    scores = tf.tile(tf.concat([[0.0], tf.fill([width - 1], -np.inf)], 0)[None], [batch, 1])
    token = tf.zeros([batch * width], tf.int32)
    sequences = tf.zeros([batch * width, 0], tf.int32)
    for t in range(length):
        log_probs, states, attention_in = model.step_logits(token, states, attention_in, memory, keys, t)
        total = tf.reshape(tf.reshape(scores, [-1, 1]) + log_probs, [batch, width * vocab])
        scores, best = tf.math.top_k(total, k=width)
        parent = tf.reshape(tf.range(batch)[:, None] * width + best // vocab, [-1])
        token = tf.reshape(best % vocab, [-1])
        states = [[tf.gather(s, parent) for s in layer] for layer in states]
        attention_in = tf.gather(attention_in, parent)
        sequences = tf.concat([tf.gather(sequences, parent), token[:, None]], axis=1)
    return tf.reshape(sequences, [batch, width, length])[:, 0]


@dataclasses.dataclass
class Generated:
    archs: list  # new architectures, best predicted first
    predicted: list[float]  # f(E(arch)): the predictor's score of each decoded architecture
    step_size: float  # the last lambda tried
    over_budget: int = 0  # unseen decoded cells dropped because the space does not allow them


def step_sizes(maximum: float, increment: float = 1.0) -> list[float]:
    """The original's lambda schedule: increment, 2 * increment, ..., up to maximum."""
    count = int(round(maximum / increment))
    return [increment * (k + 1) for k in range(count)]


ACQUISITIONS = ("mean", "ucb", "thompson")


def _unseen_neighbours(space: SearchSpace, seeds: list, count: int, keys: set,
                       rng: np.random.Generator | None, tries_per_neighbour: int = 20) -> list:
    """Up to `count` neighbours (`space.mutate`) of the canonical forms of random seeds (the
    cells as the controller sees them) whose canonical keys are not in `keys` (which gains
    them)."""
    if rng is None:
        raise ValueError("mutation candidates need an rng")
    found: list = []
    for _ in range(count * tries_per_neighbour):
        if len(found) == count:
            break
        seed = seeds[int(rng.integers(len(seeds)))]
        arch = space.mutate(space.from_tokens(space.to_tokens(seed)), rng)
        key = space.canonical_key(arch)
        if key not in keys and space.allowed(arch):
            keys.add(key)
            found.append(arch)
    return found


def acquire(head_scores: np.ndarray, count: int, acquisition: str = "mean", ucb_beta: float = 1.0,
            rng: np.random.Generator | None = None) -> list[int]:
    """Indices of the `count` candidates to keep, best first, from each candidate's predicted
    normalised score per head `head_scores` [N, K]: by the heads' mean, by mean + ucb_beta * std
    ("ucb"), or by Thompson sampling ("thompson": each pick is the best remaining candidate of a
    head drawn uniformly by `rng`). With one head every acquisition is the mean."""
    if acquisition not in ACQUISITIONS:
        raise ValueError(f"acquisition must be one of {ACQUISITIONS}, got {acquisition!r}")
    head_scores = np.asarray(head_scores, np.float64)
    mean = head_scores.mean(axis=1)
    if head_scores.shape[1] == 1 or acquisition == "mean":
        return np.argsort(-mean, kind="stable")[:count].tolist()
    if acquisition == "ucb":
        value = mean + ucb_beta * head_scores.std(axis=1)
        return np.argsort(-value, kind="stable")[:count].tolist()
    if rng is None:
        raise ValueError("Thompson sampling needs an rng")
    picked: list[int] = []
    remaining = np.ones(len(head_scores), bool)
    for _ in range(min(count, len(head_scores))):
        column = np.where(remaining, head_scores[:, rng.integers(head_scores.shape[1])], -np.inf)
        picked.append(int(np.argmax(column)))
        remaining[picked[-1]] = False
    return picked


def generate_new(inference: ControllerInference, space: SearchSpace, seeds: Sequence[Hashable],
                 count: int, seen_keys: Iterable[str], lambdas: Sequence[float],
                 oversample: float = 1.0, acquisition: str = "mean", ucb_beta: float = 1.0,
                 rng: np.random.Generator | None = None, mutations: int = 0) -> Generated:
    """Decodes from `seeds` with growing lambda (each a single step from the seeds' embeddings)
    until `ceil(oversample * count)` architectures are found whose canonical keys are neither in
    `seen_keys` (everything ever evaluated or pooled) nor found before; returns the `count` of
    them that the acquisition (`acquire`) rates best. `oversample=1` keeps the first found, as
    the original. Stops early when the lambdas run out; the result may then hold fewer. Only
    cells the space allows (`SearchSpace.allowed`: within a search's budget) are candidates, and
    the acquisition rates each by its predicted score minus `SearchSpace.penalty` (a soft
    budget's weighted excess cost).

    `mutations` > 0 adds that many more unseen candidates, each a neighbour (`space.mutate`) of a
    seed drawn uniformly by `rng`, before the acquisition chooses: the predictor then also ranks
    the seeds' immediate neighbourhood, as in predictor-guided local search (BANANAS, White et
    al. 2021, optimises its acquisition over mutations the same way)."""
    tokens = space.encode(seeds)
    keys = set(seen_keys)
    wanted = int(np.ceil(oversample * count))
    found: list = []
    step_size, over_budget = 0.0, 0
    for step_size in lambdas:
        decoded, _ = inference.step_and_decode(tokens, step_size)
        for row in decoded:
            arch = space.from_tokens([int(t) for t in row])
            key = space.canonical_key(arch)
            if key not in keys:
                keys.add(key)
                if space.allowed(arch):  # outside a budget: dropped, and not decoded again
                    found.append(arch)
                else:
                    over_budget += 1
        if len(found) >= wanted:
            break
    found = found[:wanted]
    if mutations:
        found += _unseen_neighbours(space, list(seeds), mutations, keys, rng)
    if not found:
        return Generated([], [], step_size, over_budget)
    head_scores = inference.predict_heads(space.encode(found))
    penalties = np.array([space.penalty(arch) for arch in found])
    best = acquire(head_scores - penalties[:, None], count, acquisition, ucb_beta, rng)
    predicted = head_scores.mean(axis=1)
    return Generated([found[i] for i in best], [float(predicted[i]) for i in best], step_size,
                     over_budget)
