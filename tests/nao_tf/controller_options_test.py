"""Options beyond the original controller: a ranking loss, predictor heads, acquisitions."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from nao_tf.algorithm.controller import Controller, ControllerConfig
from nao_tf.algorithm.controller_train import (ControllerTrainer, normalize_scores,
                                               predictor_loss_sum)
from nao_tf.algorithm.generate import ControllerInference, acquire, generate_new, step_sizes
from nao_tf.algorithm.metrics import (paired_t_test, pairwise_accuracy,
                                      top_fraction_pairwise_accuracy)
from nao_tf.algorithm.search import NAOSearch, SearchConfig
from nao_tf.commands.search_command import ControllerOptions
from nao_tf.common.errors import StateError
from nao_tf.spaces.synthetic import SyntheticObjective, SyntheticSpace

SPACE = SyntheticSpace(num_nodes=4, choices=4)
OBJECTIVE = SyntheticObjective(SPACE, seed=2)


def _config(**overrides) -> ControllerConfig:
    defaults = dict(emb_size=16, hidden_size=32, mlp_layers=1, mlp_hidden=32, attention="dot",
                    batch_size=20, learning_rate=3e-3, seed=3, batch_shards=1)
    return ControllerConfig.for_space(SPACE, **{**defaults, **overrides})


def _data(n: int, seed: int = 0):
    archs = SPACE.sample_unique(n, np.random.default_rng(seed))
    return SPACE.encode(archs), np.array([OBJECTIVE(a) for a in archs])


def test_ranking_loss_is_the_mean_pairwise_logistic_loss_computed_by_hand():
    logits = np.array([[0.5, -1.0], [2.0, 0.0], [-0.3, 0.4]], np.float32)  # [B = 3, K = 2]
    targets = np.array([0.2, 1.0, 0.2], np.float32)
    pairs = [(1, 0), (1, 2)]  # (better, worse); the tie (0, 2) is no pair
    ranking = np.mean([[np.log1p(np.exp(-(logits[i, k] - logits[j, k]))) for i, j in pairs]
                       for k in range(2)])
    squared = np.mean((1.0 / (1.0 + np.exp(-logits)) - targets[:, None]) ** 2)
    for weight in (0.0, 0.3, 1.0):
        got = float(predictor_loss_sum(tf.constant(logits), tf.constant(targets), weight)) / 3
        np.testing.assert_allclose(got, (1 - weight) * squared + weight * ranking, rtol=1e-5)
    equal = float(predictor_loss_sum(tf.constant(logits), tf.constant([0.5, 0.5, 0.5]), 1.0))
    assert equal == 0.0  # no ordered pair: no ranking term


def test_one_head_controller_is_unchanged_and_keeps_its_saved_settings():
    config = _config()
    assert "predictor_heads" not in config.to_dict() and "ranking_weight" not in config.to_dict()
    assert _config(predictor_heads=3).to_dict()["predictor_heads"] == 3
    model = Controller(config, SPACE.valid_token_mask())
    names = sorted(v.path for v in model.trainable_variables)
    assert not any("head" in n for n in names)


# Its tests share an xdist group: one test process builds it, not each.
@pytest.fixture(scope="module")
def ensemble():
    tokens, scores = _data(400)
    model = Controller(_config(predictor_heads=3, ranking_weight=0.5), SPACE.valid_token_mask())
    trainer = ControllerTrainer(model)
    trainer.fit(tokens[:150], normalize_scores(scores[:150], True, "rank"), 60,
                np.random.default_rng(0))
    return trainer, ControllerInference(model), tokens, scores


@pytest.mark.xdist_group("ensemble")
def test_heads_differ_and_their_mean_is_the_prediction(ensemble):
    _, inference, tokens, scores = ensemble
    heads = inference.predict_heads(tokens[150:])
    assert heads.shape == (250, 3)
    np.testing.assert_allclose(inference.predict(tokens[150:]), heads.mean(axis=1), rtol=1e-5)
    assert heads.std(axis=1).mean() > 1e-3  # different initialisations and dropout masks
    for k in range(3):  # every head learnt the ranking, with the ranking loss on
        assert pairwise_accuracy(scores[150:], heads[:, k]) > 0.7


def test_ranking_only_predictor_orders_unseen_architectures():
    tokens, scores = _data(400, seed=1)
    model = Controller(_config(ranking_weight=1.0), SPACE.valid_token_mask())
    ControllerTrainer(model).fit(tokens[:150], normalize_scores(scores[:150], True), 60,
                                 np.random.default_rng(1))
    assert pairwise_accuracy(scores[150:], ControllerInference(model).predict(tokens[150:])) > 0.7


def test_acquisitions_pick_by_mean_upper_bound_or_one_head_at_a_time():
    heads = np.array([[0.5, 0.5, 0.5],   # mean 0.5, no spread
                      [0.2, 0.4, 0.75],  # mean 0.45, wide
                      [0.9, 0.0, 0.0],   # mean 0.3, widest
                      [0.1, 0.1, 0.1]])
    assert acquire(heads, 2, "mean") == [0, 1]
    assert acquire(heads, 2, "ucb", ucb_beta=2.0) == [2, 1]
    assert acquire(heads[:, :1], 2, "ucb", ucb_beta=2.0) == [2, 0]  # one head: the mean
    picks = acquire(heads, 4, "thompson", rng=np.random.default_rng(0))
    assert sorted(picks) == [0, 1, 2, 3]
    first = {acquire(heads, 1, "thompson", rng=np.random.default_rng(s))[0] for s in range(20)}
    assert first == {0, 1, 2}  # each head's best leads when that head is drawn
    with pytest.raises(ValueError, match="acquisition"):
        acquire(heads, 1, "best")


@pytest.mark.xdist_group("ensemble")
def test_generation_keeps_the_candidates_the_acquisition_rates_best(ensemble):
    _, inference, tokens, scores = ensemble
    seeds = SPACE.decode(tokens[np.argsort(-scores[:150])[:5]])
    seen = {SPACE.canonical_key(a) for a in SPACE.decode(tokens[:150])}
    lambdas = step_sizes(10.0, 0.5)
    everything = generate_new(inference, SPACE, seeds, 60, seen, lambdas)
    kept = generate_new(inference, SPACE, seeds, 5, seen, lambdas, oversample=12.0,
                        acquisition="ucb", ucb_beta=1.0)
    assert len(kept.archs) == 5
    candidates = everything.archs
    assert set(map(SPACE.canonical_key, kept.archs)) <= set(map(SPACE.canonical_key, candidates))
    heads = inference.predict_heads(SPACE.encode(candidates))
    ucb = heads.mean(axis=1) + heads.std(axis=1)
    chosen = np.array([candidates.index(a) for a in kept.archs])
    assert np.all(ucb[chosen] >= np.sort(ucb)[-5] - 1e-6)


@pytest.mark.slow
def test_search_runs_with_every_option_and_resumes_only_with_the_same(tmp_path):
    class Lookup:
        higher_is_better, rescore_pool = True, False

        def prepare(self, pool, iteration):
            pass

        def evaluate(self, archs, iteration, record):
            for arch in archs:
                record(arch, OBJECTIVE(arch))

    controller_extra, search_extra = ControllerOptions(
        predictor_heads=2, ranking_weight=0.5, oversample=4.0, acquisition="thompson",
        ucb_beta=1.0, mutations=0, beam_width=2).split()
    config = SearchConfig(seed_archs=10, iterations=3, top_k=4, new_archs=4, random_archs=1,
                          max_lambda=5.0, lambda_step=0.5, controller_epochs=5, train_on="history",
                          query_budget=20, seed=1, **search_extra)
    controller = _config(batch_size=8, **controller_extra)
    result = NAOSearch(SPACE, Lookup(), config, controller, tmp_path, log=lambda _: None).run()
    assert result.evaluated == 20  # rounds of 5 (random cells fill what decoding misses)
    other = dataclasses.replace(config, acquisition="ucb")
    with pytest.raises(StateError, match="search.acquisition: 'thompson' -> 'ucb'"):
        NAOSearch(SPACE, Lookup(), other, controller, tmp_path, log=lambda _: None).run()


def test_top_fraction_pairwise_accuracy_looks_only_at_the_best():
    targets = np.arange(20.0)
    predictions = np.concatenate([np.arange(18.0), [1.0, 0.0]])  # the best two ranked last
    assert pairwise_accuracy(targets, predictions) < 1.0
    assert top_fraction_pairwise_accuracy(targets, predictions, 0.1) == 0.0  # the pair is swapped
    assert top_fraction_pairwise_accuracy(targets[:18], predictions[:18], 0.2) == 1.0


def test_paired_t_test_matches_the_tabulated_values():
    # d = 1, 2, 3, 4: mean 2.5, s.e. 0.6455, t = 3.873 with 3 degrees of freedom, p = 0.0305.
    result = paired_t_test([2.0, 4.0, 6.0, 8.0], [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose([result["mean_difference"], result["standard_error"], result["t"],
                                result["p_value"]], [2.5, 0.645497, 3.872983, 0.030466], rtol=1e-4)
    assert (result["wins"], result["losses"], result["ties"]) == (4, 0, 0)
    # 49 degrees of freedom, t = 2.0: p = 0.05106 (two-sided).
    d = np.array([1.0, -1.0] * 25) + 2.0 / np.sqrt(50) * np.std([1.0, -1.0] * 25, ddof=1)
    np.testing.assert_allclose(paired_t_test(d, np.zeros(50))["p_value"], 0.051059, rtol=1e-3)
    assert paired_t_test([1.0, 1.0], [1.0, 1.0])["p_value"] == 1.0


def test_mutate_changes_exactly_one_token_to_an_allowed_one():
    rng = np.random.default_rng(0)
    mask = SPACE.valid_token_mask()
    for arch in SPACE.sample_unique(30, rng):
        neighbour = SPACE.mutate(arch, rng)
        before, after = np.array(SPACE.to_tokens(arch)), np.array(SPACE.to_tokens(neighbour))
        changed = np.flatnonzero(before != after)
        assert len(changed) == 1 and mask[changed[0], after[changed[0]]]


@pytest.mark.xdist_group("ensemble")
def test_mutation_candidates_join_the_decoded_ones(ensemble):
    _, inference, tokens, scores = ensemble
    seeds = SPACE.decode(tokens[np.argsort(-scores[:150])[:3]])
    seen = {SPACE.canonical_key(a) for a in SPACE.decode(tokens[:150])}
    seed_tokens = np.array([SPACE.to_tokens(a) for a in seeds])
    result = generate_new(inference, SPACE, seeds, 40, seen, [0.0], oversample=1.0,
                          rng=np.random.default_rng(0), mutations=30)
    distances = [np.min((seed_tokens != np.array(SPACE.to_tokens(a))).sum(axis=1))
                 for a in result.archs]
    assert sum(d == 1 for d in distances) >= 20  # lambda 0 decodes the seeds, already seen
    assert not seen & set(map(SPACE.canonical_key, result.archs))
    assert len(set(map(SPACE.canonical_key, result.archs))) == len(result.archs)
