"""The baselines NAO is compared with on a table: random search and regularized evolution (Real
et al., 2019), each spending a `QueryCounter`'s budget."""

import numpy as np

from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.benchmarks.table import QueryCounter

def random_search(space: SearchSpace, query: QueryCounter, rng: np.random.Generator) -> None:
    for arch in space.sample_unique(query.budget, rng):
        query(arch)


def regularized_evolution(space: SearchSpace, query: QueryCounter, rng: np.random.Generator,
                          population_size: int = 10, tournament_size: int = 3) -> None:
    """Aging evolution: tournament-select a parent, mutate it (`space.mutate`: one token changed,
    for NAS-Bench-201 one edge's op), add the child, drop the oldest.
    A child seen before costs no query (its score is known) but still joins the population."""
    population = [(a, query(a)) for a in space.sample_unique(min(population_size, query.budget), rng)]
    for _ in range(100 * query.budget):
        if query.exhausted:
            return
        contenders = rng.choice(len(population), size=tournament_size, replace=False)
        parent = max((population[i] for i in contenders), key=lambda p: p[1])[0]
        child = space.mutate(parent, rng)
        population.append((child, query(child)))
        population.pop(0)
