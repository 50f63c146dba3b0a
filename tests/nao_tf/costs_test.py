"""Costs and budgets: counts typed as 600M, a space restricted to a budget, and NAO's generation
dropping decoded cells over it."""

import numpy as np
import pytest

from nao_tf.algorithm.controller import Controller, ControllerConfig
from nao_tf.algorithm.costs import Budget, BudgetedSpace, format_count, parse_count
from nao_tf.algorithm.generate import ControllerInference, generate_new
from nao_tf.common.errors import InvalidArchitectureError, NaoError
from nao_tf.spaces.nasbench201 import NasBench201Space
from nao_tf.spaces.synthetic import SyntheticSpace

SPACE = NasBench201Space()
BUDGET = Budget(max_params=400_000)  # about 60 % of the cells


@pytest.mark.parametrize("text, value", [("600M", 600_000_000), ("3.5M", 3_500_000),
                                         ("1.2k", 1200), ("2G", 2_000_000_000), ("1200", 1200),
                                         (" 800k ", 800_000), ("", 0)])
def test_counts_are_read_with_their_suffix(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("text", ["600MB", "-5", "M", "1e6", "1.2.3k"])
def test_a_bad_count_is_one_error_naming_the_flag(text):
    with pytest.raises(NaoError, match=f"--max_params={text.strip()}: not a count"):
        parse_count(text, "max_params")


def test_counts_are_printed_with_three_digits():
    assert [format_count(v) for v in (999, 1234, 830_426, 1_243_996_992)] == \
        ["999", "1.23k", "830k", "1.24G"]


def test_a_budgeted_space_samples_and_mutates_only_within_its_budget():
    space = BudgetedSpace(SPACE, BUDGET)
    rng = np.random.default_rng(0)
    archs = space.sample_unique(300, rng)
    assert all(SPACE.costs(a)["params"] <= 400_000 for a in archs)
    over = max((SPACE.sample(rng) for _ in range(200)), key=lambda a: SPACE.costs(a)["params"])
    assert not space.allowed(over) and SPACE.allowed(over)
    children = [space.mutate(a, rng) for a in archs]
    assert all(SPACE.costs(c)["params"] <= 400_000 for c in children)
    assert space.to_string(archs[0]) == SPACE.to_string(archs[0])  # the space's own format


def test_a_budget_nothing_fits_and_a_space_without_costs_are_one_error_each():
    with pytest.raises(InvalidArchitectureError, match="none of 100 random cells is within the "
                       r"budget \(params <= 1\)"):
        BudgetedSpace(SPACE, Budget(max_params=1), max_tries=100).sample(np.random.default_rng(0))
    with pytest.raises(NaoError, match="the synthetic-10x5 space has no cost model"):
        BudgetedSpace(SyntheticSpace(), BUDGET)


def test_generation_proposes_no_cell_over_the_budget():
    """An untrained controller decodes cells of every size; the budgeted space's generation keeps
    only those within the budget, decoded and neighbours alike."""
    space = BudgetedSpace(SPACE, BUDGET)
    config = ControllerConfig.for_space(SPACE, emb_size=8, hidden_size=16, mlp_layers=1,
                                        mlp_hidden=8, attention="dot", seed=0)
    inference = ControllerInference(Controller(config, SPACE.valid_token_mask()))
    rng = np.random.default_rng(0)
    seeds = SPACE.sample_unique(20, rng)  # unbudgeted seeds: their decodings are often over
    generated = generate_new(inference, space, seeds, 10, [], [1.0, 2.0, 4.0], oversample=3.0,
                             rng=rng, mutations=10)
    assert generated.archs
    assert all(SPACE.costs(a)["params"] <= 400_000 for a in generated.archs)
    unbudgeted = generate_new(inference, SPACE, seeds, 10, [], [1.0, 2.0, 4.0], oversample=3.0,
                              rng=np.random.default_rng(0), mutations=10)
    assert any(SPACE.costs(a)["params"] > 400_000 for a in unbudgeted.archs)


def test_a_soft_budget_excludes_nothing_and_ranks_by_score_minus_weighted_excess():
    soft = BudgetedSpace(SPACE, BUDGET, cost_weight=2.0)
    rng = np.random.default_rng(0)
    archs = SPACE.sample_unique(200, rng)
    over = [a for a in archs if SPACE.costs(a)["params"] > 400_000]
    assert over and all(soft.allowed(a) and not soft.within_budget(a) for a in over)
    for arch in archs:
        excess = max(0.0, SPACE.costs(arch)["params"] / 400_000 - 1.0)
        assert soft.penalty(arch) == pytest.approx(2.0 * excess)
    assert BudgetedSpace(SPACE, BUDGET).penalty(over[0]) == 0.0  # a hard budget: a wall
    # The acquisition keeps the candidates whose prediction minus penalty is best: with a large
    # weight, the cells within the budget.
    config = ControllerConfig.for_space(SPACE, emb_size=8, hidden_size=16, mlp_layers=1,
                                        mlp_hidden=8, attention="dot", seed=0)
    inference = ControllerInference(Controller(config, SPACE.valid_token_mask()))
    seeds = SPACE.sample_unique(20, np.random.default_rng(1))
    heavy = BudgetedSpace(SPACE, BUDGET, cost_weight=100.0)
    generated = generate_new(inference, heavy, seeds, 5, [], [1.0, 2.0, 4.0], oversample=6.0,
                             rng=np.random.default_rng(0), mutations=20)
    candidates = generate_new(inference, SPACE, seeds, 50, [], [1.0, 2.0, 4.0], oversample=1.0,
                              rng=np.random.default_rng(0), mutations=20).archs
    assert any(not heavy.within_budget(a) for a in candidates)  # there was a choice
    assert all(heavy.within_budget(a) for a in generated.archs)


def test_a_latency_limit_measures_only_cells_within_the_other_limits_and_gives_up_in_time():
    measured = []

    def latency(arch):
        measured.append(arch)
        return SPACE.costs(arch)["params"] / 1e5  # a stand-in: "ms" growing with the size

    space = BudgetedSpace(SPACE, Budget(max_params=600_000, max_latency_ms=4.0), latency=latency)
    archs = space.sample_unique(50, np.random.default_rng(0))
    assert all(space.costs(a)["latency_ms"] <= 4.0 for a in archs)
    assert all(SPACE.costs(a)["params"] <= 600_000 for a in measured)
    with pytest.raises(InvalidArchitectureError, match=r"none of 7 random cells measured is "
                       r"within --max_latency_ms=0.01 \(the fastest took [\d.]+ ms\); raise"):
        BudgetedSpace(SPACE, Budget(max_latency_ms=0.01), latency=latency,
                      max_timed=7).sample(np.random.default_rng(0))
