"""NAO on a table: its settings scaled to a query budget of about 100 cells, the search under that
budget, and the predictor study of the paper's section 4.1."""

import dataclasses
from typing import Callable

import numpy as np

from nao_tf.algorithm.controller import Controller, ControllerConfig
from nao_tf.algorithm.controller_train import ControllerTrainer, normalize_scores
from nao_tf.algorithm.evaluators import Arch
from nao_tf.algorithm.generate import ControllerInference
from nao_tf.algorithm.metrics import (hamming_distance, kendall_tau, pairwise_accuracy,
                                      top_fraction_pairwise_accuracy)
from nao_tf.algorithm.search import NAOSearch, SearchConfig
from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.benchmarks.table import Table, TabularEvaluator
from nao_tf.commands import cli
from nao_tf.commands.search_command import ControllerOptions

_OPTION_HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(ControllerOptions)}


@dataclasses.dataclass(frozen=True)
class NaoSettings:
    """NAO settings for a small tabular budget: the original's loop with its counts scaled to
    ~100 queries (10 random seeds, then rounds of 5 new architectures from the top 5), lambda
    growing in small steps, and 10x oversampling: 50 decoded cells and 50 neighbours (one edge
    changed) of the top 5, of which the predictor keeps the best 5 (predictor-guided local
    search; without the neighbours NAO only ties regularized evolution, docs/benchmarks.md).
    Targets are rank-normalised: with min-max, the many near-chance cells of the space squeeze
    every good cell close to 1 and the predictor learns little about ordering them."""

    seed_archs: int = cli.option(10, "NAO: random cells of the first pool.")
    top_k: int = cli.option(5, "NAO: seeds of each generation round (the best k measured).")
    new_archs: int = cli.option(5, "NAO: new cells per round.")
    random_archs: int = cli.option(0, "NAO: fresh random cells per round.")
    max_lambda: float = cli.option(25.0, "NAO: largest step size lambda.")
    lambda_step: float = cli.option(0.25, "NAO: lambda grows by this.")
    oversample: float = cli.option(10.0, _OPTION_HELP["oversample"])
    controller_epochs: int = cli.option(60, "NAO: controller epochs per round (warm start).")
    normalization: str = cli.option("rank", "NAO: controller targets, 'rank' or 'minmax'.")
    emb_size: int = cli.option(32, "Controller token embedding size.")
    hidden_size: int = cli.option(64, "Controller LSTM size.")
    mlp_layers: int = cli.option(2, "Predictor hidden layers.")
    mlp_hidden: int = cli.option(64, "Predictor width.")
    batch_size: int = cli.option(20, "Controller batch.")
    learning_rate: float = cli.option(3e-3, "Controller Adam learning rate.")
    trade_off: float = cli.option(0.95, "Predictor share of the controller loss (the rest: "
                                  "reconstruction).")
    predictor_heads: int = cli.option(1, _OPTION_HELP["predictor_heads"])
    ranking_weight: float = cli.option(0.0, _OPTION_HELP["ranking_weight"])
    acquisition: str = cli.option("mean", _OPTION_HELP["acquisition"])
    ucb_beta: float = cli.option(1.0, _OPTION_HELP["ucb_beta"])
    mutations: int = cli.option(50, _OPTION_HELP["mutations"])

    def controller_config(self, space: SearchSpace, seed: int) -> ControllerConfig:
        return ControllerConfig.for_space(
            space, emb_size=self.emb_size, hidden_size=self.hidden_size, mlp_layers=self.mlp_layers,
            mlp_hidden=self.mlp_hidden, attention="dot", batch_size=self.batch_size,
            learning_rate=self.learning_rate, trade_off=self.trade_off,
            predictor_heads=self.predictor_heads, ranking_weight=self.ranking_weight, seed=seed)


def nao_search(space: SearchSpace, table: Table, column: str, budget: int, seed: int,
               settings: NaoSettings, work_dir: str) -> list[Arch]:
    """Runs NAO with a query budget; returns the architectures it evaluated, in order."""
    search_config = SearchConfig(
        seed_archs=settings.seed_archs, iterations=10 ** 6, top_k=settings.top_k,
        new_archs=settings.new_archs, random_archs=settings.random_archs,
        max_lambda=settings.max_lambda, lambda_step=settings.lambda_step, oversample=settings.oversample,
        controller_epochs=settings.controller_epochs, train_on="history", symmetry=False,
        normalization=settings.normalization, acquisition=settings.acquisition,
        ucb_beta=settings.ucb_beta, mutations=settings.mutations, query_budget=budget, seed=seed)
    search = NAOSearch(space, TabularEvaluator(table, column), search_config,
                       settings.controller_config(space, seed),
                       work_dir, log=lambda _: None)
    return [space.parse(r["arch"]) for r in search.run().history]


def predictor_quality(space: SearchSpace, table: Table, column: str, n_train: int, n_test: int,
                      epochs: int, seed: int, settings: NaoSettings,
                      controllers: int = 1) -> dict[str, float]:
    """Trains the controller on n_train random archs; ranks n_test others (paper section 4.1).

    The last `FINAL_EPOCHS_FRACTION` of the epochs run at a tenth of the learning rate, so that
    training ends settled rather than with Adam's full steps still flipping a few tokens.
    `controllers` > 1 trains that many separate controllers (seeds seed * controllers + k, their
    own encoders) and ranks by their mean prediction: the ensemble with separate encoders, to set
    beside `predictor_heads` (heads on one shared encoder). `top10_pairwise_accuracy` is the
    pairwise accuracy among the best tenth of the test cells. `linear_pairwise_accuracy` is a
    reference point for the same cells: ridge regression on the one-hot (edge, op) features, the
    simplest model that sees exactly what the tokens say."""
    rng = np.random.default_rng(seed)
    archs = space.sample_unique(n_train + n_test, rng)
    tokens = space.encode(archs)
    scores = np.array([table.metric(a, column) for a in archs])
    targets = normalize_scores(scores[:n_train], True, settings.normalization)
    predictions, distances = [], []
    for k in range(controllers):
        member_seed = seed if controllers == 1 else seed * controllers + k
        model = Controller(settings.controller_config(space, member_seed), space.valid_token_mask())
        trainer = ControllerTrainer(model)
        trainer.fit(tokens[:n_train], targets, epochs, rng,
                    on_epoch_end=_final_rate_drop(trainer, settings.learning_rate, epochs))
        inference = ControllerInference(model)
        predictions.append(inference.predict(tokens[n_train:]))
        distances.append(hamming_distance(tokens[:n_train], inference.reconstruct(tokens[:n_train])))
    predicted = np.mean(predictions, axis=0)
    return dict(pairwise_accuracy=pairwise_accuracy(scores[n_train:], predicted),
                top10_pairwise_accuracy=top_fraction_pairwise_accuracy(scores[n_train:], predicted),
                kendall_tau=kendall_tau(scores[n_train:], predicted),
                hamming_distance=float(np.mean(distances)),
                linear_pairwise_accuracy=pairwise_accuracy(
                    scores[n_train:], _ridge_predictions(tokens, scores, n_train, space.vocab_size)))


FINAL_EPOCHS_FRACTION = 0.2


def _final_rate_drop(trainer: ControllerTrainer, learning_rate: float,
                     epochs: int) -> Callable[[int, dict[str, float]], None]:
    """An epoch-end callback that sets a tenth of `learning_rate` for the last
    `FINAL_EPOCHS_FRACTION` of `epochs`."""
    first_slow_epoch = round(epochs * (1.0 - FINAL_EPOCHS_FRACTION))

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        del metrics
        if epoch + 1 == first_slow_epoch:
            trainer.optimizer.learning_rate.assign(learning_rate / 10.0)

    return on_epoch_end


def _ridge_predictions(tokens: np.ndarray, scores: np.ndarray, n_train: int, vocab_size: int,
                       l2: float = 1.0) -> np.ndarray:
    """Ridge regression on one-hot tokens, fitted on the first n_train rows; predicts the rest."""
    features = np.zeros([len(tokens), vocab_size])
    np.put_along_axis(features, tokens, 1.0, axis=1)
    x, y = features[:n_train], scores[:n_train] - scores[:n_train].mean()
    weights = np.linalg.solve(x.T @ x + l2 * np.eye(vocab_size), x.T @ y)
    return features[n_train:] @ weights
