"""NAO-WS on language modelling: the supernet evaluator that `NAOSearch` drives.

`SupernetEvaluator.prepare(pool, iteration)` trains the supernet up to epoch
(iteration + 1) · eval_every_epochs, one cell drawn uniformly from `pool` per step (the original's
`model_search.train`: SGD lr 0.25 scaled by seq_len / bptt, clip 10, NLL + TAR, hidden state
carried across steps within an epoch). Progress is checkpointed after every epoch and every
`save_every_seconds`, so a killed run resumes at the step where it stopped; a second call for an
iteration already trained does nothing.

`evaluate(archs, iteration, record)` scores cells by their validation loss (mean NLL per token,
lower is better: the original's score) on `eval_windows` windows of `bptt` tokens spread evenly
over the whole validation stream, each started from a zero state. The windows depend only on the
iteration (a seeded offset), so every cell of an iteration sees the same data; `eval_arch_batch`
cells run side by side in one compiled call.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from nao_tf.algorithm.evaluators import (EVAL_EPOCHS_HELP, Record, WeightSharingEvaluator,
                                         parse_eval_epochs)
from nao_tf.commands import cli
from nao_tf.common.errors import DataError, NaoError
from nao_tf.common.io import atomic_write_json, read_json
from nao_tf.common.resume import check_identity, require_record, restore
from nao_tf.common.summaries import summary_writer, write_scalars
from nao_tf.runtime.distribute import barrier, from_chief, is_chief, writable_dir
from nao_tf.runtime.divergence import divergence
from nao_tf.runtime.precision import PRECISIONS, PRECISION_HELP, policy
from rnn.data import Corpus, batchify, get_batch
from rnn.search_space import RnnCell, RnnSearchSpace
from rnn.model import count_params
from rnn.supernet import Supernet, arch_array
from rnn.training import LMStep, perplexity, search_windows


@dataclasses.dataclass(frozen=True)
class SupernetParams:
    """Supernet training and scoring settings (defaults: NAO-WS/rnn/train_search.sh). `identity`:
    what defines the supernet's weights, so a directory resumes only with the same; the learning
    rate and clipping are not, since a rerun after a divergence lowers them."""

    emsize: int = cli.option(300, "supernet embedding size = hidden size d", identity=True,
                             minimum=1)
    batch_size: int = cli.option(256, "supernet training batch", identity=True, minimum=1)
    bptt: int = cli.option(35, "BPTT length (training: this, or half w.p. 0.05; scoring windows: "
                           "this)", identity=True, minimum=1)
    lr: float = cli.option(0.25, "supernet SGD learning rate (scaled per step by length / bptt)")
    clip: float = cli.option(10.0, "global gradient-norm clip (0: none)")
    wdecay: float = cli.option(5e-7, "coupled L2 weight decay", identity=True)
    beta: float = cli.option(1e-3, "temporal activation regularisation (TAR) weight",
                             identity=True)
    dropout: float = cli.option(0.75, "locked dropout on the cell output", identity=True)
    dropouth: float = cli.option(0.25, "variational dropout on h_{t-1} and node inputs",
                                 identity=True)
    dropoutx: float = cli.option(0.75, "variational dropout on x_t", identity=True)
    dropouti: float = cli.option(0.2, "locked dropout on the embedding output", identity=True)
    dropoute: float = cli.option(0.0, "embedding (word) dropout", identity=True)
    epochs: int = cli.option(1000, "supernet training epochs in all", minimum=1)
    eval_every_epochs: int = cli.option(200, "supernet epochs between pool evaluations (and one "
                                        "at the end)", identity=True, minimum=1)
    eval_epochs: str = cli.option("", EVAL_EPOCHS_HELP, identity=True)
    eval_windows: int = cli.option(256, "validation windows of bptt tokens per score, spread over "
                                   "the whole validation split (0: all of it)", minimum=0)
    eval_arch_batch: int = cli.option(4, "cells scored side by side in one call", minimum=1)
    save_every_seconds: float = cli.option(300.0, "supernet checkpoint interval within an epoch "
                                           "(also after every epoch)")
    log_interval: int = cli.option(50, "supernet steps between progress lines", minimum=1)
    seed: int = cli.option(1267, "random seed", identity=True)
    precision: str = cli.option("fp32", PRECISION_HELP, PRECISIONS)
    jit_compile: bool = cli.option(False, "XLA-compile the supernet's training step")


def validation_windows(stream: np.ndarray, windows: int, bptt: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets [bptt, n] of n windows spread evenly over `stream` (one per column).

    The stream is cut into n equal spans and each window starts at the same random offset
    inside its span, so the windows cover the whole stream and never overlap. `windows=0`
    takes as many as fit (all of the stream, in windows of bptt + 1 tokens).
    """
    most = len(stream) // (bptt + 1)
    if most < 1:
        raise DataError(f"the validation split has {len(stream)} tokens, fewer than one window "
                        f"of bptt + 1 = {bptt + 1}")
    n = most if windows == 0 else windows
    if n > most:
        raise DataError(f"--eval_windows={windows} windows of {bptt + 1} tokens need "
                        f"{windows * (bptt + 1)} tokens; the validation split has {len(stream)} "
                        f"(use at most {most}, or 0 for all)")
    span = len(stream) // n
    offset = int(rng.integers(0, span - bptt))  # span >= bptt + 1
    starts = offset + span * np.arange(n)
    cols = np.stack([stream[s:s + bptt + 1] for s in starts], axis=1)
    return cols[:-1], cols[1:]


class SupernetEvaluator(WeightSharingEvaluator):
    """Weight-sharing scores for `nao_tf.algorithm.search` (see the module docstring).

    Writes into `directory`: `state.json` (epoch, step within the epoch, checkpoint name),
    `ckpt/` (weights and the carried hidden state) and TensorBoard scalars in `tb/`. Across
    machines only the chief writes there (the others save into scratch and read the chief's), and
    the chief decides when a save falls due.
    """

    higher_is_better = False

    def __init__(self, params: SupernetParams, corpus: Corpus, directory: str | Path,
                 strategy: tf.distribute.Strategy | None = None,
                 log: Callable[[str], None] = print):
        self.p, self.corpus, self.log = params, corpus, log
        self.epochs, self.eval_every_epochs = params.epochs, params.eval_every_epochs
        self.eval_epochs = parse_eval_epochs(params.eval_epochs, params.epochs)
        self.dir = Path(directory)
        self.space = RnnSearchSpace()
        self.train_data = batchify(corpus.train, params.batch_size, "the training split")
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope(), policy(params.precision):
            self.model = Supernet(corpus.vocab_size, params.emsize, dropout=params.dropout,
                                  dropouth=params.dropouth, dropoutx=params.dropoutx,
                                  dropouti=params.dropouti, dropoute=params.dropoute,
                                  name="supernet")
            self.hidden = tf.Variable(tf.zeros([params.batch_size, params.emsize]),
                                      trainable=False, name="hidden")
        self.step = LMStep(self.model, self.strategy, params.batch_size, params.clip,
                           params.wdecay, params.beta, jit_compile=params.jit_compile)
        self.ckpt = tf.train.Checkpoint(model=self.model, hidden=self.hidden)
        # Across machines every worker saves (into scratch but the chief) and reads the chief's.
        self.chief = is_chief(self.strategy)
        self.manager = tf.train.CheckpointManager(
            self.ckpt, str(Path(writable_dir(str(self.dir), self.strategy)) / "ckpt"),
            max_to_keep=2)
        self.writer = summary_writer(self.dir / "tb", is_chief(self.strategy))
        self.num_params = count_params(self.model)
        self.state = self._load_or_init_state()

    # State.

    def _identity(self) -> dict[str, Any]:
        identity = {k: getattr(self.p, k) for k in cli.identity_keys(SupernetParams)}
        identity["vocab_size"] = self.corpus.vocab_size
        return identity

    def _load_or_init_state(self) -> dict[str, Any]:
        path = self.dir / "state.json"
        identity = self._identity()
        require_record(path, self.dir / "ckpt")
        state = read_json(path, {"identity": dict, "epoch": int, "step": int, "checkpoint": str,
                                 "train_seconds": (int, float)}) if path.exists() else None
        barrier(self.strategy)  # every worker has read the chief's state before it writes one
        if state:
            check_identity(state["identity"], identity, identity, f"{self.dir} holds a supernet")
            restore(self.ckpt, self.dir / "ckpt" / state["checkpoint"], exact=False)
            self.log(f"supernet: resuming after epoch {state['epoch']}, step {state['step']}")
            return state
        state = {"identity": identity, "epoch": 0, "step": 0, "train_seconds": 0.0,
                 "params": self.num_params, "checkpoint": None}
        self._save(state)
        return state

    def _save(self, state: dict[str, Any]) -> None:
        """Checkpoint first, then the state that names it (both atomic)."""
        number = state["epoch"] * 1_000_000 + state["step"]
        state["checkpoint"] = Path(self.manager.save(checkpoint_number=number)).name
        if self.chief:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.dir / "state.json", state)

    # Training.

    def prepare(self, pool: Sequence[RnnCell], iteration: int) -> None:
        """Trains the supernet up to `evaluation_epoch(iteration)` on `pool`."""
        target = self.evaluation_epoch(iteration)
        if self.state["epoch"] >= target:
            return
        archs = arch_array(pool)
        self.log(f"supernet ({self.num_params:,} parameters): training epochs "
                 f"{self.state['epoch'] + 1}..{target} on a pool of {len(pool)} cells")
        while self.state["epoch"] < target:
            self._train_epoch(self.state["epoch"] + 1, archs)

    def _train_epoch(self, epoch: int, archs: np.ndarray) -> None:
        p, st = self.p, self.state
        rng = np.random.default_rng([p.seed, epoch])
        windows = search_windows(self.train_data, rng, p.bptt)
        picks = rng.integers(0, len(archs), size=len(windows))
        if st["step"] == 0:
            self.hidden.assign(self.model.initial_hidden(p.batch_size))
        hidden = tf.convert_to_tensor(self.hidden)
        total, rows, tokens = 0.0, 0, 0
        interval_loss, interval_steps = 0.0, 0
        start = last_save = time.perf_counter()
        for step in range(st["step"], len(windows)):
            i, seq_len = windows[step]
            x, y = get_batch(self.train_data, i, seq_len)
            arch = archs[picks[step]]
            loss, hidden = self.step.train_step(x, y, hidden, p.lr * len(x) / p.bptt,
                                                (p.seed, epoch * 1_000_000 + step), arch)
            loss = float(loss)
            diverged = divergence(loss, self.corpus.vocab_size)
            if diverged:
                raise NaoError(f"supernet training {diverged} at epoch {epoch}, step {step + 1}; "
                               "lower --lr or --clip, then re-run the same command to resume "
                               "from the last checkpoint")
            total += loss * len(x)
            rows += len(x)
            tokens += x.size
            interval_loss += loss
            interval_steps += 1
            now = time.perf_counter()
            if (step + 1) % p.log_interval == 0 or step + 1 == len(windows):
                self.log(f"  epoch {epoch} step {step + 1}/{len(windows)} | loss "
                         f"{interval_loss / interval_steps:.3f} | {tokens / (now - start):.0f} "
                         f"tokens/s | arch {' '.join(map(str, arch.ravel()))}")
                interval_loss, interval_steps = 0.0, 0
            if step + 1 < len(windows) and from_chief(self.strategy,
                                                      now - last_save >= p.save_every_seconds):
                self.hidden.assign(hidden)
                st["step"] = step + 1
                st["train_seconds"] += now - last_save
                self._save(st)
                last_save = now
        now = time.perf_counter()
        st.update(epoch=epoch, step=0, train_seconds=st["train_seconds"] + now - last_save)
        self.hidden.assign(hidden)
        self._save(st)
        if rows:
            write_scalars(self.writer, epoch, {
                "supernet/train_loss": total / rows, "supernet/train_ppl": perplexity(total / rows),
                "supernet/tokens_per_sec": tokens / (now - start)})

    # Scoring.

    def windows_for(self, iteration: int) -> tuple[np.ndarray, np.ndarray]:
        """The validation windows every cell of `iteration` is scored on."""
        rng = np.random.default_rng([self.p.seed, 1, iteration])
        return validation_windows(self.corpus.valid, self.p.eval_windows, self.p.bptt, rng)

    def scores(self, archs: Sequence[RnnCell], x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Mean NLL per token of each cell on the windows (x, y)."""
        out = []
        batch = max(1, self.p.eval_arch_batch)
        for k in range(0, len(archs), batch):
            out.append(self.step.score(x, y, arch_array(archs[k:k + batch])).numpy() / y.size)
        return np.concatenate(out) if out else np.zeros([0])

    def evaluate(self, archs: Sequence[RnnCell], iteration: int, record: Record) -> None:
        x, y = self.windows_for(iteration)
        batch = max(1, self.p.eval_arch_batch)
        start = time.perf_counter()
        for k in range(0, len(archs), batch):
            chunk = list(archs[k:k + batch])
            for arch, score in zip(chunk, self.scores(chunk, x, y)):
                record(arch, float(score))
        seconds = time.perf_counter() - start
        if archs:
            self.log(f"  scored {len(archs)} cells on {y.shape[1]} validation windows of "
                     f"{y.shape[0]} tokens in {seconds:.1f}s ({len(archs) / seconds:.1f} cells/s)")
            write_scalars(self.writer, iteration, {"supernet/score_archs_per_sec":
                                                   len(archs) / seconds})
