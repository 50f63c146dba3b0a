"""What the search loop (`nao_tf.algorithm.search`) asks of whatever scores architectures: an
`Evaluator` (a table, a trained-alone network, ...), or a `WeightSharingEvaluator` whose supernet
trains between scorings and so sets the number of controller rounds."""

import abc
import math
from typing import Callable, Hashable, Sequence

from nao_tf.common.errors import NaoError

Arch = Hashable


# record(arch, score, failed=False): `failed` marks a score that is the evaluator's stand-in for
# an architecture that could not be trained (it diverged), not a measurement.
Record = Callable[..., None]


class Evaluator(abc.ABC):
    """Scores architectures. `higher_is_better` gives the direction of the score (accuracy:
    True; error, loss, perplexity: False); `rescore_pool` is True when a score depends on the
    iteration (weight sharing), so the whole pool is scored again every iteration."""

    higher_is_better: bool = True
    rescore_pool: bool = False

    def prepare(self, pool: Sequence[Arch], iteration: int) -> None:
        """Called at the start of every evaluation phase (also when a run resumes into one) with
        the whole current pool. Weight-sharing evaluators train their supernet here; they must
        keep their own checkpoint so that a second call for the same iteration does no work."""

    @abc.abstractmethod
    def evaluate(self, archs: Sequence[Arch], iteration: int, record: Record) -> None:
        """Scores `archs`, calling `record(arch, score)` for each as soon as it is known."""


class WeightSharingEvaluator(Evaluator):
    """A supernet evaluator: `prepare` trains the shared weights up to the epoch at which the pool
    is scored (`evaluation_epoch`), and the evaluator owns the number of controller rounds."""

    rescore_pool = True
    epochs: int  # supernet training epochs in all
    eval_every_epochs: int  # the pool is scored after every this many epochs, and at the end
    eval_epochs: tuple[int, ...] = ()  # or after exactly these epochs (`parse_eval_epochs`)

    @property
    def iterations(self) -> int:
        """Controller rounds: one after every scoring but the last (ceil(epochs / every) - 1)."""
        if self.eval_epochs:
            return len(self.eval_epochs) - 1
        return max(math.ceil(self.epochs / self.eval_every_epochs) - 1, 0)

    def evaluation_epoch(self, iteration: int) -> int:
        """The supernet epoch after which iteration `iteration`'s pool is scored."""
        if self.eval_epochs:
            return self.eval_epochs[min(iteration, len(self.eval_epochs) - 1)]
        return min((iteration + 1) * self.eval_every_epochs, self.epochs)


EVAL_EPOCHS_HELP = ("Score the pool after exactly these supernet epochs (comma-separated, "
                    "increasing, the last one = --epochs; the TF original's list-valued "
                    "schedule); '' = every --eval_every_epochs.")


def parse_eval_epochs(text: str, epochs: int) -> tuple[int, ...]:
    """`--eval_epochs` ("30,60,90,120,150") as a tuple; () for ''. Stops with one line unless the
    epochs are positive, increasing and end at `epochs`."""
    if not text.strip():
        return ()
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise NaoError(f"--eval_epochs={text!r} must be comma-separated whole epochs, e.g. "
                       "30,60,90,120,150") from None
    if values[0] < 1 or any(b <= a for a, b in zip(values, values[1:])) or values[-1] != epochs:
        raise NaoError(f"--eval_epochs={text} must be positive, increasing and end at "
                       f"--epochs={epochs}")
    return values
