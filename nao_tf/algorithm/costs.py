"""What an architecture costs, and searches under a budget.

A space that knows its network's costs implements `SearchSpace.costs(arch)`: a mapping from cost
name ("params": trainable parameters, "mult_adds": multiply-adds of one image's inference) to an
integer, computed from the architecture alone (no network is built), fast enough for thousands of
cells. `Budget` holds the limits a user asked for; `BudgetedSpace` is the space restricted to the
cells within them: its `sample` and `mutate` only return such cells, and `allowed` tells any other
caller (the controller's decoded cells in `generate_new`) which cells to drop. Every search method
then stays within the budget without knowing it: random search, regularized evolution (an
over-budget child is never queried) and NAO (seed pool, random cells, generated cells). A soft
budget (`cost_weight` > 0) has no wall: every cell is allowed, and NAO's acquisition ranks its
candidates by predicted score minus `penalty` (the weighted relative excess cost).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Generic, Mapping, Sequence

import numpy as np

from nao_tf.algorithm.search_space import Arch, SearchSpace
from nao_tf.common.errors import InvalidArchitectureError, NaoError

_SUFFIXES = {"": 1, "k": 10 ** 3, "K": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9}


def parse_count(text: str, name: str = "count") -> int:
    """`"600M"`, `"3.5M"`, `"1.2k"`, `"2G"` or `"1200"` as an integer; '' is 0 (no limit)."""
    text = str(text).strip()
    if not text:
        return 0
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([kKMG]?)", text)
    if not match:
        raise NaoError(f"--{name}={text}: not a count; write e.g. 600M, 3.5M, 1.2k or 1200")
    return int(round(float(match.group(1)) * _SUFFIXES[match.group(2)]))


def format_count(value: int) -> str:
    """1,234,567 as '1.23M' (three significant digits)."""
    for suffix, scale in (("G", 10 ** 9), ("M", 10 ** 6), ("k", 10 ** 3)):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return str(value)


@dataclasses.dataclass(frozen=True)
class Budget:
    """Upper limits per cost (0: no limit); latency in milliseconds, measured."""

    max_params: int = 0
    max_mult_adds: int = 0
    max_latency_ms: float = 0.0

    @classmethod
    def from_limits(cls, limits: Mapping[str, float]) -> Budget:
        """The budget whose `limits` are `limits` (as a results file records them)."""
        return cls(**{f"max_{name}": limit for name, limit in limits.items()})

    @property
    def limits(self) -> dict[str, float]:
        """The active limits, by cost name."""
        return {name: limit for name, limit in (("params", self.max_params),
                                                ("mult_adds", self.max_mult_adds),
                                                ("latency_ms", self.max_latency_ms)) if limit}

    def allows(self, costs: Mapping[str, float]) -> bool:
        return all(costs[name] <= limit for name, limit in self.limits.items())

    def describe(self) -> str:
        return ", ".join(f"{name} <= {limit:g}" if isinstance(limit, float) else
                         f"{name} <= {format_count(limit)}" for name, limit in self.limits.items())


class BudgetedSpace(SearchSpace, Generic[Arch]):
    """`space` restricted to the cells within `budget` (see the module docstring). Costs are
    `cost_model(arch)` (default: `space.costs`; a task counts them in the network it will train,
    named by `counted_in`), cached by architecture, with "latency_ms" from `latency(arch)` when
    the budget limits it (measured only for cells within every other limit); the token
    encoding, text format and equivalences are `space`'s."""

    def __init__(self, space: SearchSpace, budget: Budget, max_tries: int = 10_000,
                 max_timed: int = 50,
                 cost_model: Callable[[Arch], Mapping[str, int]] | None = None,
                 counted_in: str = "", latency: Callable[[Arch], float] | None = None,
                 cost_weight: float = 0.0):
        if budget.max_latency_ms and latency is None:
            raise ValueError("a latency limit needs a `latency` to measure it")
        if not budget.limits:
            raise ValueError("a BudgetedSpace needs at least one limit")
        self.space, self.budget, self.max_tries = space, budget, max_tries
        self.max_timed = max_timed
        self.name, self.vocab_size = space.name, space.vocab_size
        self.source_length, self.encoder_length = space.source_length, space.encoder_length
        self.cost_model = cost_model or space.costs
        self.counted_in = counted_in or f"the {space.name} space's network"
        self.latency, self.cost_weight = latency, cost_weight
        self._costs: dict = {}
        self._static_costs(space.sample(np.random.default_rng(0)))  # no cost model: stops here

    @property
    def identity(self) -> str:
        """What a search under this budget depends on beyond the space: the exact limits and the
        network the costs are counted in."""
        limits = ", ".join(f"{name} <= {limit}" for name, limit in self.budget.limits.items())
        soft = f", soft: cost weight {self.cost_weight}" if self.cost_weight else ""
        return f"{limits} (counted in {self.counted_in}){soft}"

    def _static_costs(self, arch: Arch) -> dict[str, float]:
        if arch not in self._costs:
            self._costs[arch] = dict(self.cost_model(arch))
        return self._costs[arch]

    def costs(self, arch: Arch) -> dict[str, float]:
        costs = self._static_costs(arch)
        if self.latency is not None and "latency_ms" not in costs:
            costs["latency_ms"] = self.latency(arch)
        return costs

    def allowed(self, arch: Arch) -> bool:
        """Within the budget; with a `cost_weight` (a soft budget) every cell is."""
        return bool(self.cost_weight) or self.within_budget(arch)

    def penalty(self, arch: Arch) -> float:
        """With a `cost_weight` w: w * sum over the limits of max(0, cost / limit - 1), the
        relative excess cost the acquisition subtracts from the predicted score."""
        if not self.cost_weight:
            return 0.0
        costs = self.costs(arch)
        return self.cost_weight * sum(max(0.0, costs[name] / limit - 1.0)
                                      for name, limit in self.budget.limits.items())

    def within_budget(self, arch: Arch) -> bool:
        """Every cost within its limit (latency measured only when the others are)."""
        static = self._static_costs(arch)
        if not all(static[name] <= limit for name, limit in self.budget.limits.items()
                   if name != "latency_ms"):
            return False
        return self.budget.allows(self.costs(arch))

    def sample(self, rng: np.random.Generator) -> Arch:
        """A cell of `space.sample` within the budget (the first of the draws that is). Each
        draw within the other limits costs a latency measurement, so `max_timed` of them over
        the latency limit end the search."""
        timed = []
        for _ in range(self.max_tries):
            arch = self.space.sample(rng)
            if self.allowed(arch):
                return arch
            if "latency_ms" in self._costs.get(arch, {}):
                timed.append(self._costs[arch]["latency_ms"])
                if len(timed) == self.max_timed:
                    raise InvalidArchitectureError(
                        f"{self.name}: none of {len(timed)} random cells measured is within "
                        f"--max_latency_ms={self.budget.max_latency_ms:g} (the fastest took "
                        f"{min(timed):.3g} ms); raise the limit")
        raise InvalidArchitectureError(
            f"{self.name}: none of {self.max_tries} random cells is within the budget "
            f"({self.budget.describe()}); raise the limits")

    def mutate(self, arch: Arch, rng: np.random.Generator, max_tries: int = 100) -> Arch:
        """A neighbour (`space.mutate`) within the budget: over-budget neighbours are drawn
        again, never returned."""
        for _ in range(max_tries):
            child = self.space.mutate(arch, rng)
            if self.allowed(child):
                return child
        raise InvalidArchitectureError(f"{self.name}: no neighbour of {self.to_string(arch)} "
                                       f"within the budget ({self.budget.describe()}) in "
                                       f"{max_tries} tries")

    # The rest is the space's own.

    def valid_token_mask(self) -> np.ndarray:
        return self.space.valid_token_mask()

    def to_tokens(self, arch: Arch) -> tuple[int, ...]:
        return self.space.to_tokens(arch)

    def from_tokens(self, tokens: Sequence[int]) -> Arch:
        return self.space.from_tokens(tokens)

    def to_string(self, arch: Arch) -> str:
        return self.space.to_string(arch)

    def parse(self, text: str) -> Arch:
        return self.space.parse(text)

    def describe(self, arch: Arch) -> str:
        return self.space.describe(arch)

    def canonical_key(self, arch: Arch) -> str:
        return self.space.canonical_key(arch)

    def symmetry_groups(self) -> list[np.ndarray]:
        return self.space.symmetry_groups()


def pareto_front(records: Sequence[Mapping], cost: str, higher_is_better: bool = True) -> list:
    """The records (each with "score" and "costs") that no other record beats on both `score` and
    `costs[cost]` (a better or equal score at a lower or equal cost, one of them strictly), by
    increasing cost."""
    sign = 1.0 if higher_is_better else -1.0
    ordered = sorted(records, key=lambda r: (r["costs"][cost], -sign * r["score"]))
    front, best = [], -np.inf
    for record in ordered:
        if sign * record["score"] > best:
            front.append(record)
            best = sign * record["score"]
    return front
