"""A minute-long NAO search on the synthetic space, offline: the controller core end to end.

    python -m nao_tf.commands.demo --output_dir=runs/demo

Searches `SyntheticSpace` against its hidden `SyntheticObjective` (a stand-in for accuracy), prints
per iteration the predictor's pairwise accuracy on architectures it has not been trained on and
the score of the best architecture found, and compares the result with random search given the
same number of evaluations. Rerunning the command resumes; `--overwrite` starts afresh.
"""

import dataclasses
import shutil
from typing import Sequence

import numpy as np
from absl import flags

from nao_tf.algorithm.controller import ControllerConfig
from nao_tf.algorithm.evaluators import Evaluator, Record
from nao_tf.algorithm.search import NAOSearch, SearchConfig
from nao_tf.commands import cli
from nao_tf.spaces.synthetic import SyntheticObjective, SyntheticSpace

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    output_dir: str = cli.option("runs/demo", "Where the search writes its state and results.")
    overwrite: bool = cli.option(False, "Delete --output_dir first.")
    iterations: int = cli.option(3, "Controller rounds.")
    seed_archs: int = cli.option(200, "Random architectures in the first pool.")
    new_archs: int = cli.option(100, "New architectures generated per round.")
    controller_epochs: int = cli.option(40, "Controller epochs per round.")
    seed: int = cli.option(0, "Random seed.")


class ObjectiveEvaluator(Evaluator):
    """Scores an architecture with the synthetic objective (deterministic, instant)."""

    def __init__(self, objective: SyntheticObjective):
        self.objective = objective

    def evaluate(self, archs, iteration: int, record: Record) -> None:
        for arch in archs:
            record(arch, self.objective(arch))


def build_search(output_dir: str, iterations: int, seed_archs: int, new_archs: int,
                 controller_epochs: int, seed: int, log=print) -> tuple[NAOSearch, SyntheticSpace,
                                                                         SyntheticObjective]:
    space = SyntheticSpace(num_nodes=5, choices=5)
    objective = SyntheticObjective(space, seed=seed)
    config = SearchConfig(seed_archs=seed_archs, iterations=iterations, top_k=50, new_archs=new_archs,
                          random_archs=10, max_lambda=30.0, controller_epochs=controller_epochs,
                          train_on="history", seed=seed)
    controller = ControllerConfig.for_space(space, attention="dot", batch_size=20, learning_rate=3e-3,
                                            seed=seed)
    return NAOSearch(space, ObjectiveEvaluator(objective), config, controller, output_dir, log=log), space, objective


def main(argv: Sequence[str]) -> None:
    del argv
    if FLAGS.overwrite:
        shutil.rmtree(FLAGS.output_dir, ignore_errors=True)
    search, space, objective = build_search(FLAGS.output_dir, FLAGS.iterations, FLAGS.seed_archs,
                                            FLAGS.new_archs, FLAGS.controller_epochs, FLAGS.seed)
    result = search.run()
    rng = np.random.default_rng(FLAGS.seed + 1)
    random_best = max(objective(a) for a in space.sample_unique(result.evaluated, rng))
    print(f"\nNAO: best score {result.best_score:.3f} after {result.evaluated} evaluations")
    print(f"random search with the same {result.evaluated} evaluations: best {random_best:.3f}")
    print(f"best architecture:\n{space.describe(result.best_arch)}")
    print(f"results in {FLAGS.output_dir} (best_arch.json, history.jsonl, tensorboard/)")


if __name__ == "__main__":
    cli.define_flags([DemoConfig])
    cli.run(main, controller_only=True)
