"""A weight-sharing search on many machines: the chief runs the search, the other workers follow
its supernet calls.

The supernet trains and scores collectively (`MultiWorkerMirroredStrategy`), so every worker must
make the same `prepare` and `evaluate` calls, with the same pool, in the same order. On the chief,
`ChiefDrivenEvaluator` sends each call (operation, iteration, and the architectures as the
space's token sequences, through `distribute.from_chief`) before making it; on every other
worker `follow_chief` receives the calls and makes them on its own evaluator until the chief says
the search is done. Everything else of the search (the controller rounds, the pool, every file)
happens on the chief alone; the others wait in their next collective meanwhile.
"""

from typing import Sequence

import numpy as np
import tensorflow as tf

from nao_tf.algorithm.evaluators import Arch, Record, WeightSharingEvaluator
from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.runtime.distribute import from_chief

PREPARE, EVALUATE, DONE = 1, 2, 3


def _exchange(strategy: tf.distribute.Strategy, space: SearchSpace,
              call: tuple[int, int, Sequence[Arch]] = (0, 0, ())
              ) -> tuple[int, int, list[Arch]]:
    """The chief's `call` (operation, iteration, architectures), on every worker; the others
    pass the default."""
    op, iteration, archs = call
    op, iteration, count = (int(v) for v in from_chief(strategy, [op, iteration, len(archs)]))
    if not count:
        return op, iteration, []
    tokens = np.zeros([count, space.source_length])
    if archs:
        tokens = np.array([space.to_tokens(a) for a in archs])
    tokens = from_chief(strategy, tokens).astype(int)
    return op, iteration, [space.from_tokens(t) for t in tokens]


class ChiefDrivenEvaluator(WeightSharingEvaluator):
    """The chief's supernet evaluator: each call is sent to the other workers, then made."""

    def __init__(self, evaluator: WeightSharingEvaluator, space: SearchSpace,
                 strategy: tf.distribute.Strategy):
        self.evaluator, self.space, self.strategy = evaluator, space, strategy
        self.higher_is_better = evaluator.higher_is_better
        self.epochs, self.eval_every_epochs = evaluator.epochs, evaluator.eval_every_epochs
        self.eval_epochs = evaluator.eval_epochs

    def prepare(self, pool: Sequence[Arch], iteration: int) -> None:
        _exchange(self.strategy, self.space, (PREPARE, iteration, pool))
        self.evaluator.prepare(pool, iteration)

    def evaluate(self, archs: Sequence[Arch], iteration: int, record: Record) -> None:
        _exchange(self.strategy, self.space, (EVALUATE, iteration, archs))
        self.evaluator.evaluate(archs, iteration, record)

    def done(self) -> None:
        """Releases the other workers: the search is over."""
        _exchange(self.strategy, self.space, (DONE, 0, ()))


def follow_chief(evaluator: WeightSharingEvaluator, space: SearchSpace,
                 strategy: tf.distribute.Strategy) -> None:
    """Makes the chief's supernet calls on this worker's `evaluator` until the search is done."""
    while True:
        op, iteration, archs = _exchange(strategy, space)
        if op == DONE:
            return
        if op == PREPARE:
            evaluator.prepare(archs, iteration)
        else:
            evaluator.evaluate(archs, iteration, lambda *_, **__: None)
