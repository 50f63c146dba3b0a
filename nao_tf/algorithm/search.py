"""The NAO outer loop, shared by every task: pool -> evaluate -> train controller -> generate.

One iteration (the original NAO-WS `train_search.py`, generic over SearchSpace and Evaluator):
  1. evaluate: the Evaluator scores every pool architecture not scored yet (weight-sharing
     evaluators re-score the whole pool each iteration: their supernet has moved on);
  2. train: the controller is fitted (warm start) on (architecture, normalised score) pairs;
  3. generate: from the top-k, step the embeddings by growing lambda and decode until N new
     never-seen architectures are found; new pool = best old + new + a few random.
After the last iteration (or when the query budget is spent) the final pool is evaluated and the
best architecture is written to `best_arch.json`.

Nothing is lost: the whole state (pool, history, iteration, phase, RNG state, controller
checkpoint) is written atomically to `output_dir/state.json` after every phase and, during
evaluation, as scores arrive. Running again resumes after the last completed phase and never
re-scores an architecture whose score was recorded; with deterministic evaluators a killed run
ends exactly as an uninterrupted one.
"""

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from nao_tf.algorithm.controller import Controller, ControllerConfig
from nao_tf.algorithm.controller_train import ControllerTrainer, normalize_scores
from nao_tf.algorithm.costs import BudgetedSpace, pareto_front
from nao_tf.algorithm.draw import CellGraph, render_pareto_png, render_png, to_dot
from nao_tf.algorithm.evaluators import Arch, Evaluator
from nao_tf.algorithm.generate import ACQUISITIONS, ControllerInference, generate_new, step_sizes
from nao_tf.algorithm.metrics import hamming_distance, kendall_tau, pairwise_accuracy
from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.common import io
from nao_tf.common.errors import DataError, StateError
from nao_tf.common.resume import check_identity
from nao_tf.common.summaries import write_scalars

PHASES = ("evaluate", "train", "generate", "done")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Every count of the loop (defaults: the original CNN NAO-WS search)."""

    seed_archs: int = 1000  # size of the first pool (random unless `seed_pool` is given)
    iterations: int = 4  # controller rounds; the pool is evaluated iterations + 1 times
    top_k: int = 100  # seeds for generation: the best k of the evaluated pool
    new_archs: int = 500  # N new never-seen architectures per round
    random_archs: int = 50  # fresh random architectures added to each new pool
    max_lambda: float = 100.0  # lambda grows by `lambda_step` up to this
    lambda_step: float = 1.0
    oversample: float = 1.0  # decode this many times N candidates, keep the N predicted best
    controller_epochs: int = 1000
    train_on: str = "pool"  # "pool": the current pool's scores; "history": every arch measured
    normalization: str = "minmax"  # controller targets: "minmax" (original) or "rank"
    symmetry: bool = True  # augment controller data with the space's equivalent rewrites
    query_budget: int | None = None  # at most this many distinct architectures are evaluated
    acquisition: str = "mean"  # which oversampled candidates to keep: generate.acquire
    ucb_beta: float = 1.0  # "ucb": mean + ucb_beta * std over the predictor heads
    mutations: int = 0  # neighbours of the top-k added to the candidates (nao_tf.generate_new)
    beam_width: int = 0  # decode with a beam search of this width (0: greedy, the default of both)
    seed: int = 0

    def __post_init__(self):
        if self.acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition must be one of {ACQUISITIONS}, got {self.acquisition!r}")


@dataclasses.dataclass
class SearchResult:
    best_arch: Arch
    best_score: float
    history: list[dict]
    evaluated: int
    top: list[tuple[Arch, float]]  # the best 5 of the last pool, by their latest scores


class NAOSearch:
    """Runs (or resumes) one NAO search into `output_dir`."""

    def __init__(self, space: SearchSpace, evaluator: Evaluator, config: SearchConfig,
                 controller_config: ControllerConfig, output_dir: str | os.PathLike,
                 seed_pool: Sequence[Arch] | None = None, log: Callable[[str], None] = print,
                 save_every_seconds: float = 2.0,
                 graphs: Callable[[Arch], Sequence[CellGraph]] | None = None,
                 imported: Sequence[tuple[Arch, float]] | None = None):
        """`seed_pool`: the first pool (default: `config.seed_archs` random architectures).
        `graphs`: arch -> cells to draw; when given, `best_arch.png` / `.dot` are written after
        every evaluation and the picture is logged to TensorBoard.
        `imported`: (arch, score) pairs measured before this search (the original's arch and score
        files); they are recorded as iteration-0 scores and lead the first pool."""
        if config.train_on not in ("pool", "history"):
            raise ValueError(f"train_on must be 'pool' or 'history', got {config.train_on!r}")
        if imported and evaluator.rescore_pool:
            raise ValueError("imported scores cannot be used with a weight-sharing evaluator: it "
                             "re-scores every architecture with its own supernet")
        self.space, self.evaluator, self.config = space, evaluator, config
        self.output_dir = Path(output_dir)
        self.log = log
        self.seed_pool = list(seed_pool) if seed_pool is not None else None
        self.graphs = graphs
        self.imported = [(a, float(s)) for a, s in imported] if imported else []
        for arch, score in self.imported:
            if not math.isfinite(score):
                raise ValueError(f"imported score of {space.to_string(arch)} is {score}")
        self.controller = Controller(controller_config, space.valid_token_mask())
        augment = space.random_equivalent if config.symmetry else None
        self.trainer = ControllerTrainer(self.controller, augment=augment)
        self.inference = ControllerInference(self.controller, beam_width=config.beam_width)
        self._identity = _identity(space, config, controller_config,
                                   [(space.to_string(a), s) for a, s in self.imported])
        self._writer = None
        self._last_save = 0.0
        self._save_every_seconds = save_every_seconds

    # State.

    @property
    def state_path(self) -> Path:
        return self.output_dir / "state.json"

    def _new_state(self) -> dict:
        rng = np.random.default_rng(self.config.seed)
        imported = [a for a in _dedupe(self.space, [a for a, _ in self.imported])
                    if self.space.allowed(a)]  # scores outside a budget inform, never lead
        if self.seed_pool is not None:
            seeds = [a for a in self.seed_pool if self.space.allowed(a)]
            if len(seeds) < len(self.seed_pool):
                self.log(f"{len(self.seed_pool) - len(seeds)} of the {len(self.seed_pool)} seed "
                         f"architectures are outside the budget; the pool starts without them")
            pool = _dedupe(self.space, imported + seeds)
            pool = pool[:max(self._within_budget(len(pool)), len(imported))]
        else:
            n_random = max(self._within_budget(self.config.seed_archs) - len(imported), 0)
            exclude = {self.space.canonical_key(a) for a in imported}
            pool = imported + self.space.sample_unique(n_random, rng, exclude=exclude)
        history = [dict(arch=self.space.to_string(a), score=s, iteration=0, imported=True)
                   for a, s in self.imported]
        return dict(identity=self._identity, iteration=0, phase="evaluate",
                    pool=[self.space.to_string(a) for a in pool], history=history,
                    rng=rng.bit_generator.state, controller_checkpoint=None)

    def _load_state(self) -> dict:
        return load_state(self.state_path, self._identity)

    def _save(self, state: dict) -> None:
        io.atomic_write_json(self.state_path, state)
        io.write_lines(self.output_dir / "history.jsonl",
                       (json.dumps(r, sort_keys=True) for r in state["history"]))
        self._last_save = time.monotonic()

    # The loop.

    def run(self) -> SearchResult:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if not self.state_path.exists() and (self.output_dir / "history.jsonl").exists():
            raise StateError(f"{self.state_path} is missing, but history.jsonl holds a search's "
                             "scores; restore state.json, or pass --overwrite to start a new search")
        state = self._load_state() if self.state_path.exists() else self._new_state()
        if state["phase"] != "done":
            self._save(state)
        if state.get("controller_checkpoint"):
            self.trainer.restore(str(self.output_dir / state["controller_checkpoint"]))
        self._writer = tf.summary.create_file_writer(str(self.output_dir / "tensorboard"))
        phases = {"evaluate": self._evaluate, "train": self._train, "generate": self._generate}
        while state["phase"] != "done":
            phase = state["phase"]
            self.log(f"iteration {state['iteration']}: {phase}")
            phases[phase](state)
            self._save(state)
            self._remove_stale_checkpoints(state)
        self._writer.flush()
        return self._result(state)

    def _evaluate(self, state: dict) -> None:
        iteration = state["iteration"]
        self.evaluator.prepare(self._pool(state), iteration)
        done = self._scored_keys(state, iteration)
        todo = [a for a in self._pool(state) if self.space.canonical_key(a) not in done]
        started = time.monotonic()

        def record(arch: Arch, score: float, failed: bool = False) -> None:
            if not math.isfinite(score):
                raise FloatingPointError(f"evaluator returned {score} for {self.space.to_string(arch)}")
            state["history"].append(dict(arch=self.space.to_string(arch), score=float(score),
                                         iteration=iteration, **({"failed": True} if failed else {})))
            if time.monotonic() - self._last_save >= self._save_every_seconds:
                self._save(state)

        if todo:
            self.evaluator.evaluate(todo, iteration, record)
        self.log(f"  evaluated {len(todo)} architectures in {time.monotonic() - started:.1f}s")
        self._write_pool_files(state)
        self._summarize_evaluation(state)
        if self.graphs is not None:
            self._draw_best(state)
        last = iteration >= self.config.iterations or self._remaining_budget(state) == 0
        state["phase"] = "done" if last else "train"
        if last:
            self._write_best(state)

    def _train(self, state: dict) -> None:
        iteration = state["iteration"]
        archs, scores = self._training_set(state)
        tokens = self.space.encode(archs)
        metrics = {}
        held_out = [r for r in state["history"] if r["iteration"] == iteration and iteration > 0]
        if len(held_out) >= 2:
            # Scores the controller has not been trained on yet: an honest check of the predictor.
            values = np.array([r["score"] for r in held_out])
            predicted = self.inference.predict(self.space.encode(self._parse(r["arch"]) for r in held_out))
            sign = 1.0 if self.evaluator.higher_is_better else -1.0
            metrics["pairwise_accuracy"] = pairwise_accuracy(sign * values, predicted)
            metrics["kendall_tau"] = kendall_tau(sign * values, predicted)
        rng = self._rng(state)
        targets = normalize_scores(scores, self.evaluator.higher_is_better, self.config.normalization)
        fit = self.trainer.fit(tokens, targets, self.config.controller_epochs, rng)
        metrics.update(controller_predictor_loss=fit["predictor_loss"],
                       controller_cross_entropy=fit["cross_entropy"],
                       hamming_distance=hamming_distance(tokens, self.inference.reconstruct(tokens)))
        state["rng"] = rng.bit_generator.state
        checkpoint = f"controller/ckpt-{iteration}"
        self.trainer.save(str(self.output_dir / checkpoint))
        state.update(controller_checkpoint=checkpoint, phase="generate")
        self._scalars(iteration, metrics)
        self.log("  controller: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

    def _generate(self, state: dict) -> None:
        c, iteration = self.config, state["iteration"]
        rng = self._rng(state)
        ranked = self._ranked_pool(state)
        budget = self._remaining_budget(state)
        n_random = min(c.random_archs, budget) if budget is not None else c.random_archs
        n_new = min(c.new_archs, budget - n_random) if budget is not None else c.new_archs
        seen = {self.space.canonical_key(self._parse(r["arch"])) for r in state["history"]}
        seen |= {self.space.canonical_key(a) for a in ranked}
        generated = generate_new(self.inference, self.space, ranked[:c.top_k], n_new, seen,
                                 step_sizes(c.max_lambda, c.lambda_step), oversample=c.oversample,
                                 acquisition=c.acquisition, ucb_beta=c.ucb_beta, rng=rng,
                                 mutations=c.mutations)
        seen |= {self.space.canonical_key(a) for a in generated.archs}
        n_random += n_new - len(generated.archs) if budget is not None else 0
        fresh = self.space.sample_unique(n_random, rng, exclude=seen) if n_random else []
        keep = max(len(ranked) - len(generated.archs) - len(fresh), 0)
        pool = ranked[:keep] + generated.archs + fresh
        state.update(pool=[self.space.to_string(a) for a in pool], rng=rng.bit_generator.state,
                     iteration=iteration + 1, phase="evaluate")
        self._scalars(iteration, dict(new_archs=len(generated.archs), lambda_reached=generated.step_size))
        self.log(f"  generated {len(generated.archs)} new architectures (lambda up to "
                 f"{generated.step_size:g}), {len(fresh)} random; pool of {len(pool)}")
        if generated.over_budget and len(generated.archs) < n_new:
            self.log(f"  the budget ({self.space.budget.describe()}) left {len(generated.archs)} "
                     f"of the {n_new} new architectures asked for: {generated.over_budget} decoded "
                     f"cells were over it; a larger --max_lambda steps further")

    # Helpers.

    def _remove_stale_checkpoints(self, state: dict) -> None:
        """Deletes controller checkpoints that the saved state no longer refers to."""
        current = state.get("controller_checkpoint")
        for f in (self.output_dir / "controller").glob("ckpt-*"):
            if current is None or not f.name.startswith(Path(current).name + "."):
                f.unlink()

    def _parse(self, text: str) -> Arch:
        return self.space.parse(text)

    def _pool(self, state: dict) -> list[Arch]:
        return [self._parse(s) for s in state["pool"]]

    def _rng(self, state: dict) -> np.random.Generator:
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        return rng

    def _scored_keys(self, state: dict, iteration: int) -> set[str]:
        records = state["history"]
        if self.evaluator.rescore_pool:
            records = [r for r in records if r["iteration"] == iteration]
        return {self.space.canonical_key(self._parse(r["arch"])) for r in records}

    def _latest_scores(self, state: dict) -> dict[str, tuple[str, float]]:
        latest = {}
        for r in state["history"]:
            latest[self.space.canonical_key(self._parse(r["arch"]))] = (r["arch"], r["score"])
        return latest

    def _ranked_pool(self, state: dict) -> list[Arch]:
        """The pool, best first, by each architecture's latest score."""
        latest = self._latest_scores(state)
        pool = self._pool(state)
        scores = np.array([latest[self.space.canonical_key(a)][1] for a in pool])
        order = np.argsort(-scores if self.evaluator.higher_is_better else scores, kind="stable")
        return [pool[i] for i in order]

    def _training_set(self, state: dict) -> tuple[list[Arch], np.ndarray]:
        latest = self._latest_scores(state)
        if self.config.train_on == "pool":
            keys = [self.space.canonical_key(a) for a in self._pool(state)]
        else:
            keys = list(latest)
        archs = [self._parse(latest[k][0]) for k in keys]
        return archs, np.array([latest[k][1] for k in keys])

    def _evaluated_count(self, state: dict) -> int:
        return len({self.space.canonical_key(self._parse(r["arch"])) for r in state["history"]})

    def _within_budget(self, n: int) -> int:
        """n, capped by the query budget (for the first pool)."""
        return n if self.config.query_budget is None else min(n, self.config.query_budget)

    def _remaining_budget(self, state: dict) -> int | None:
        if self.config.query_budget is None:
            return None
        return max(self.config.query_budget - self._evaluated_count(state), 0)

    def _best(self, state: dict) -> tuple[str, float]:
        latest = list(self._latest_scores(state).values())
        if isinstance(self.space, BudgetedSpace):  # the best within the budget, if any is
            latest = [x for x in latest if self.space.within_budget(self._parse(x[0]))] or latest
        if self.evaluator.rescore_pool:
            final = set(state["pool"])
            latest = [x for x in latest if x[0] in final] or latest
        pick = max if self.evaluator.higher_is_better else min
        return pick(latest, key=lambda x: x[1])

    def _write_pool_files(self, state: dict) -> None:
        latest = self._latest_scores(state)
        ranked = self._ranked_pool(state)
        keys = [self.space.canonical_key(a) for a in ranked]
        iteration = state["iteration"]
        io.write_lines(self.output_dir / f"pool.{iteration}.txt", (self.space.to_string(a) for a in ranked))
        io.write_lines(self.output_dir / f"pool.{iteration}.perf", (repr(latest[k][1]) for k in keys))

    def _summarize_evaluation(self, state: dict) -> None:
        latest = self._latest_scores(state)
        scores = np.array([latest[self.space.canonical_key(a)][1] for a in self._pool(state)])
        best = scores.max() if self.evaluator.higher_is_better else scores.min()
        iteration = state["iteration"]
        self._scalars(iteration, dict(best_score=best, mean_score=scores.mean(),
                                      evaluated=self._evaluated_count(state)))
        top = self._ranked_pool(state)[:10]
        with self._writer.as_default():
            tf.summary.text("top_architectures", "\n\n".join(
                f"{latest[self.space.canonical_key(a)][1]:.5g}  `{self.space.to_string(a)}`" for a in top),
                step=iteration)
        self.log(f"  pool of {len(scores)}: best {best:.5g}, mean {scores.mean():.5g}; "
                 f"{self._evaluated_count(state)} architectures evaluated so far")

    def _write_best(self, state: dict) -> None:
        arch_text, score = self._best(state)
        arch = self._parse(arch_text)
        warning = _warning(state["history"])
        if warning:
            self.log(f"warning: {warning}")
        io.atomic_write_json(self.output_dir / "best_arch.json", dict(
            space=self.space.name, arch=arch_text, score=score, description=self.space.describe(arch),
            higher_is_better=self.evaluator.higher_is_better,
            top=[dict(arch=self.space.to_string(a), score=s) for a, s in self._top(state)],
            **({"warning": warning} if warning else {}), **self._costs_of(arch, state)))

    def _costs_of(self, best: Arch, state: dict) -> dict:
        """In a search under a budget: the best cell's costs, the budget, and per cost the Pareto
        front of every cell evaluated (also drawn to pareto.png and TensorBoard)."""
        if not isinstance(self.space, BudgetedSpace):
            return {}
        records = [dict(arch=text, score=score, costs=self.space.costs(self._parse(text)))
                   for text, score in self._latest_scores(state).values()]
        limits = self.space.budget.limits
        fronts = {cost: pareto_front(records, cost, self.evaluator.higher_is_better)
                  for cost in records[0]["costs"]}
        png = render_pareto_png(records, fronts, limits)
        io.atomic_write_bytes(self.output_dir / "pareto.png", png)
        with self._writer.as_default():
            tf.summary.image("pareto", tf.image.decode_png(png, channels=3)[None],
                             step=state["iteration"])
        return dict(costs=self.space.costs(best), budget=limits,
                    counted_in=self.space.counted_in, pareto=fronts)

    def _top(self, state: dict) -> list[tuple[Arch, float]]:
        latest = self._latest_scores(state)
        return [(a, latest[self.space.canonical_key(a)][1]) for a in self._ranked_pool(state)[:5]]

    def _draw_best(self, state: dict) -> None:
        arch = self._parse(self._best(state)[0])
        graphs = self.graphs(arch)
        png = render_png(graphs)
        io.atomic_write_bytes(self.output_dir / "best_arch.png", png)
        io.atomic_write_text(self.output_dir / "best_arch.dot", to_dot(graphs))
        with self._writer.as_default():
            tf.summary.image("best_arch", tf.image.decode_png(png, channels=3)[None], step=state["iteration"])
        self._writer.flush()

    def _scalars(self, step: int, values: dict) -> None:
        write_scalars(self._writer, step, values)

    def _result(self, state: dict) -> SearchResult:
        arch_text, score = self._best(state)
        return SearchResult(self._parse(arch_text), score, state["history"],
                            self._evaluated_count(state), self._top(state))


def load_state(path: Path, identity: dict, unknown: Sequence[str] = ()) -> dict:
    """The search state in `path`; a damaged one, or one whose identity differs from `identity`
    (but in the keys `unknown`), is a `StateError` naming it."""
    try:
        state = io.read_json(path, {"identity": dict, "iteration": int, "phase": str,
                                    "pool": list, "history": list, "rng": dict})
    except (DataError, OSError) as err:
        raise StateError(f"{err} (the search state; it is left untouched)") from None
    if state["phase"] not in PHASES:
        raise StateError(f"{path} is not a search state (unknown phase {state['phase']!r}); it is "
                         "left untouched. Use another --output_dir or pass --overwrite")
    keys = [k for k in identity if k not in unknown]
    check_identity(state["identity"], identity, keys, f"{path} belongs to a search")
    return state


def check_resumable(output_dir: str | os.PathLike, space: SearchSpace, config: SearchConfig,
                    controller_config: ControllerConfig, unknown: Sequence[str] = ()) -> None:
    """Stops, before a command writes anything, when `output_dir` holds a damaged search state or
    one of other settings (`unknown`: identity keys not known yet, compared when the search
    starts)."""
    path = Path(output_dir) / "state.json"
    if path.exists():
        load_state(path, _identity(space, config, controller_config, []), unknown)


def _warning(history: list[dict]) -> str | None:
    """What makes a search's result meaningless: every measured architecture failed, or all
    scores are the same (a supernet or trainer that learned nothing scores every cell alike)."""
    measured = [r for r in history if not r.get("imported")]
    if measured and all(r.get("failed") for r in measured):
        return (f"all {len(measured)} architectures failed to train (they diverged); their scores "
                "are the failure score, so the best architecture is arbitrary. Lower the "
                "learning rate and start again with --overwrite")
    if len(measured) > 1 and len({r["score"] for r in measured}) == 1:
        return (f"all {len(measured)} scores are {measured[0]['score']:.6g}: nothing was learned "
                "that tells the architectures apart, so the best architecture is arbitrary")
    return None


def _dedupe(space: SearchSpace, archs: Sequence[Arch]) -> list[Arch]:
    seen, out = set(), []
    for a in archs:
        key = space.canonical_key(a)
        if key not in seen:
            seen.add(key)
            out.append(a)
    return out


def _identity(space: SearchSpace, config: SearchConfig, controller_config: ControllerConfig,
              imported: list[tuple[str, float]]) -> dict:
    """What a search's state depends on, by name: the space (and its budget), every search and
    controller setting (`search.<field>`, `controller.<field>`) and a digest of the imported
    scores."""
    identity = {"space": space.name,
                "budget": space.identity if isinstance(space, BudgetedSpace) else None}
    identity.update({f"search.{k}": v for k, v in dataclasses.asdict(config).items()})
    identity.update({f"controller.{k}": v
                     for k, v in dataclasses.asdict(controller_config).items()})
    if imported:
        blob = json.dumps(imported, sort_keys=True).encode()
        identity["imported"] = hashlib.sha256(blob).hexdigest()[:16]
    return json.loads(json.dumps(identity))  # tuples as lists, as they are read back
