"""Train a fixed recurrent cell from scratch on PTB / WikiText-2, then evaluate it (batch 1).

    scripts/train_final.sh rnn --config=ptb --arch=NAO --output_dir=runs/ptb_nao
    python -m rnn.train_final --config=wt2 --arch=best_arch.json --output_dir=runs/wt2

Schedule of the original: SGD with lr 20 scaled per step by seq_len / bptt, random BPTT length,
global-norm clipping 0.25, coupled weight decay, NT-ASGD (switch to weight averaging when the
validation loss has not improved on the best of all but the last `nonmono` epochs). Validation
(batch 10) and the best checkpoint use the averaged weights once averaging is on.

The command is `nao_tf.commands.final_training`'s over `rnn.task.TASK`: `--output_dir` receives
flags.json, train_state.json, checkpoints/ (every epoch: raw weights, averaged weights, averaging
counters), best/ (best validation model), tensorboard/, and results.json. Re-running the same
command resumes after the last finished epoch; `--overwrite` starts fresh. A NaN/inf loss rolls
back to the last finished epoch (at most `--max_rollbacks` times in a row, then it stops with an
error). With a TF_CONFIG naming several workers, the same command on each trains one model across
them (the batch columns split over all replicas); only the chief writes (docs/distributed.md).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Mapping

import keras
import numpy as np
import tensorflow as tf

from nao_tf.commands import cli, final_training
from nao_tf.common.errors import NaoError, StateError
from nao_tf.common.io import fingerprint
from nao_tf.common.resume import restore
from nao_tf.common.summaries import summary_writer, write_scalars
from nao_tf.runtime.distribute import barrier, from_chief, is_chief, writable_dir
from nao_tf.runtime.divergence import divergence
from nao_tf.runtime.precision import PRECISIONS, PRECISION_HELP, policy
from nao_tf.runtime.train_loop import Diverged, Trainee, format_eta
from rnn.configs import build_model
from rnn.data import Corpus, batchify, get_batch, read_corpus
from rnn.model import count_params
from rnn.search_space import RnnCell, RnnSearchSpace, resolve_arch
from rnn.training import LMStep, WeightAverage, perplexity, should_switch_to_asgd, train_windows


@dataclasses.dataclass
class TrainParams:
    """Every flag of the trainer; defaults are the original train.py's (PTB final settings).
    `identity`: what defines the trained function, with the corpus (vocabulary, fingerprint)."""

    output_dir: str = cli.option("", "run directory (created; re-running resumes)")
    data_dir: str = cli.option("data/penn", "corpus directory with train.txt, valid.txt, test.txt")
    arch: str = cli.option("NAO", "NAO, NAO_WS, a best_arch.json path, or 22 integers "
                           "'p1 a1 ... p11 a11'", identity=True)
    arch_nao_codes: bool = cli.option(False, "read a 22-int --arch in the NAO (no-WS) code table "
                                      "(2=identity, 3=sigmoid)")
    emsize: int = cli.option(850, "embedding size = hidden size d", identity=True, minimum=1)
    batch_size: int = cli.option(64, "training batch (columns)", minimum=1)
    eval_batch_size: int = cli.option(10, "validation batch", minimum=1)
    test_batch_size: int = cli.option(1, "test batch (1 as the original)", minimum=1)
    bptt: int = cli.option(35, "base BPTT length", minimum=1)
    max_seq_len_delta: int = cli.option(20, "longest step is bptt + this", minimum=0)
    lr: float = cli.option(20.0, "SGD / ASGD learning rate")
    clip: float = cli.option(0.25, "global gradient-norm clip (0: none)", minimum=0.0)
    epochs: int = cli.option(8000, "training epochs", minimum=1)
    dropout: float = cli.option(0.75, "locked dropout on the cell output", minimum=0.0)
    dropouth: float = cli.option(0.25, "variational dropout on h_{t-1} and node inputs",
                                 minimum=0.0)
    dropoutx: float = cli.option(0.75, "variational dropout on x_t", minimum=0.0)
    dropouti: float = cli.option(0.2, "locked dropout on the embedding output", minimum=0.0)
    dropoute: float = cli.option(0.0, "embedding (word) dropout", minimum=0.0)
    beta: float = cli.option(1e-3, "temporal activation regularisation (TAR) weight", minimum=0.0)
    wdecay: float = cli.option(8e-7, "coupled L2 weight decay", minimum=0.0)
    nonmono: int = cli.option(5, "non-improving epochs before switching to averaged SGD", minimum=1)
    seed: int = cli.option(1267, "random seed", identity=True)
    log_interval: int = cli.option(200, "steps between progress lines", minimum=1)
    max_rollbacks: int = cli.option(3, "NaN rollbacks allowed in a row before the run stops",
                                    minimum=0)
    precision: str = cli.option("fp32", PRECISION_HELP, PRECISIONS)
    jit_compile: bool = cli.option(False, "XLA-compile the training step (compiles once per BPTT "
                                   "length; slower on CPU)")
    overwrite: bool = cli.option(False, "delete --output_dir and start fresh")


class LMTrainee(Trainee):
    """One cell's language model trained on a corpus, epoch by epoch (a
    `nao_tf.runtime.train_loop.Trainee`; see the module docstring). Its keys of the run's state:
    the validation history NT-ASGD reads, the best validation loss and epoch, the switch epoch."""

    def __init__(self, params: TrainParams, arch: RnnCell, arch_source: str, corpus: Corpus,
                 strategy: tf.distribute.Strategy):
        self.p, self.arch, self.arch_source, self.corpus = params, arch, arch_source, corpus
        self.strategy, self.space = strategy, RnnSearchSpace()
        data_dir = Path(params.data_dir)
        self.train_data = batchify(corpus.train, params.batch_size, data_dir / "train.txt")
        self.valid_data = batchify(corpus.valid, params.eval_batch_size, data_dir / "valid.txt")
        self.test_data = batchify(corpus.test, params.test_batch_size, data_dir / "test.txt")
        self.out = Path(params.output_dir)
        # Other workers save into scratch (saves are collective) and read the chief's files.
        self.saves = Path(writable_dir(str(self.out), strategy))
        keras.utils.set_random_seed(params.seed)  # initial weights, dropout masks
        with strategy.scope(), policy(params.precision):
            self.model = build_model(dataclasses.asdict(params), arch, corpus.vocab_size)
            self.average = WeightAverage([v.value for v in self.model.trainable_variables])
        self.lm = LMStep(self.model, strategy, params.batch_size, params.clip, params.wdecay,
                         params.beta, self.average, params.jit_compile)
        self.trackables = {"model": self.model, "average": self.average}
        self.initial_state = {"val_history": [], "best_val_loss": math.inf, "best_epoch": 0,
                              "switched_at_epoch": None}
        self.best_ckpt = tf.train.Checkpoint(model=self.model)
        self.num_params = count_params(self.model)

    def position(self) -> str:
        return "averaged SGD" if bool(self.average.active.numpy()) else ""

    def train_epoch(self, epoch: int, attempt: int, state: dict[str, Any],
                    writer: tf.summary.SummaryWriter) -> dict[str, Any]:
        """One pass over the training stream, then validation (averaged weights under ASGD), the
        best model and the NT-ASGD switch. Raises `Diverged`."""
        train_loss, tokens_per_s = self._train(epoch, attempt, state)
        p = self.p
        with self.average.swapped_in():
            # Every worker takes the chief's decisions (the switch, the best epoch).
            val_loss = float(from_chief(self.strategy, self.lm.evaluate(self.valid_data, p.bptt)))
            if not math.isfinite(val_loss):
                raise Diverged(f"validation loss is {val_loss} after epoch {epoch}")
            if val_loss < state["best_val_loss"]:
                state["best_val_loss"], state["best_epoch"] = val_loss, epoch
                self.best_ckpt.write(str(self.saves / "best" / "model"))
        if state["switched_at_epoch"] is None:
            if should_switch_to_asgd(state["val_history"], val_loss, p.nonmono):
                cli.say(f"switching to averaged SGD after epoch {epoch}")
                state["switched_at_epoch"] = epoch
                self.average.count.assign(0)
                self.average.active.assign(True)
            state["val_history"].append(val_loss)
        write_scalars(writer, epoch, {
            "train/loss": train_loss, "train/ppl": perplexity(train_loss),
            "train/tokens_per_sec": tokens_per_s, "valid/loss": val_loss,
            "valid/ppl": perplexity(val_loss),
            "asgd": float(state["switched_at_epoch"] is not None)})
        self.best = state["best_val_loss"], state["best_epoch"]
        return {"train_loss": train_loss, "valid_loss": val_loss, "tokens_per_sec": tokens_per_s}

    def epoch_summary(self, record: Mapping[str, Any]) -> str:
        return (f"train ppl {perplexity(record['train_loss']):.2f} | valid ppl "
                f"{perplexity(record['valid_loss']):.2f} | best {perplexity(self.best[0]):.2f} "
                f"(epoch {self.best[1]})")

    def _train(self, epoch: int, attempt: int, state: dict[str, Any]) -> tuple[float, float]:
        """One pass over the training stream; returns (mean loss, tokens/s)."""
        p = self.p
        rng = np.random.default_rng([p.seed, epoch, attempt])
        windows = list(train_windows(self.train_data, rng, p.bptt, p.max_seq_len_delta))
        hidden = self.model.initial_hidden(p.batch_size)
        total_loss, tokens, interval_loss, interval_steps = 0.0, 0, 0.0, 0
        start = interval_start = time.perf_counter()
        for step, (i, seq_len) in enumerate(windows, 1):
            x, y = get_batch(self.train_data, i, seq_len)
            seed = (p.seed, (epoch * 1000 + attempt) * 1_000_000 + step)  # unique per step
            loss, hidden = self.lm.train_step(x, y, hidden, p.lr * len(x) / p.bptt, seed)
            loss = float(loss)
            diverged = divergence(loss, self.corpus.vocab_size)
            if diverged:
                raise Diverged(f"training {diverged} at epoch {epoch}, step {step}")
            total_loss += loss * len(x)
            tokens += x.size
            interval_loss += loss
            interval_steps += 1
            if step % p.log_interval == 0 or step == len(windows):
                now = time.perf_counter()
                epoch_seconds = len(windows) * (now - interval_start) / interval_steps
                eta = (p.epochs - (epoch - 1 + step / len(windows))) * epoch_seconds
                loss_now = interval_loss / interval_steps
                cli.say(f"epoch {epoch} step {step}/{len(windows)} | loss {loss_now:.3f} ppl "
                        f"{perplexity(loss_now):.1f} | {tokens / (now - start):.0f} tokens/s | "
                        f"ETA {format_eta(eta)}"
                        + (" | ASGD" if state["switched_at_epoch"] else ""))
                interval_loss, interval_steps, interval_start = 0.0, 0, now
        rows = sum(seq_len for _, seq_len in windows)
        return total_loss / rows, tokens / (time.perf_counter() - start)

    def results(self, state: dict[str, Any]) -> dict[str, Any]:
        """Loads the best model and evaluates validation (batch 10) and test (batch 1)."""
        if state["best_epoch"] == 0:
            raise StateError(f"{self.out}: no epoch finished, nothing to evaluate")
        barrier(self.strategy)  # the chief's best model is written
        restore(self.best_ckpt, self.out / "best" / "model", exact=False)
        val_loss = self.lm.evaluate(self.valid_data, self.p.bptt)
        test_loss = self.lm.evaluate(self.test_data, self.p.bptt)
        writer = summary_writer(self.out / "tensorboard", is_chief(self.strategy))
        write_scalars(writer, state["epoch"],
                      {"test/ppl": perplexity(test_loss)})
        return {
            "arch": self.space.to_string(self.arch), "space": self.space.name,
            "arch_source": self.arch_source, "params": self.num_params,
            "vocab_size": self.corpus.vocab_size, "best_epoch": state["best_epoch"],
            "switched_to_asgd_at_epoch": state["switched_at_epoch"], "valid_loss": val_loss,
            "valid_ppl": perplexity(val_loss), "test_loss": test_loss,
            "test_ppl": perplexity(test_loss), "test_batch_size": self.p.test_batch_size,
            "last_epoch_tokens_per_sec": state["history"][-1]["tokens_per_sec"]
            if state["history"] else None}


def check_params(p: TrainParams) -> None:
    """Stops with one line on a setting that cannot work, before anything is read or written."""
    cli.check_bounds(p)
    for name in ("dropout", "dropouth", "dropoutx", "dropouti", "dropoute"):
        if getattr(p, name) >= 1:
            raise NaoError(f"--{name}={getattr(p, name)} must be a drop rate in [0, 1)")
    if p.lr <= 0:
        raise NaoError(f"--lr={p.lr} must be positive")


def check(p: TrainParams) -> tuple[dict[str, Any], tuple]:
    """The settings, the cell and the corpus; returns the settings record and (cell, its
    source, corpus)."""
    check_params(p)
    arch, arch_source = resolve_arch(p.arch, p.arch_nao_codes)
    corpus = read_corpus(p.data_dir)
    settings = {**dataclasses.asdict(p), "arch": RnnSearchSpace().to_string(arch),
                "vocab_size": corpus.vocab_size, "data_fingerprint": fingerprint(p.data_dir)}
    settings.pop("overwrite")
    return settings, (arch, arch_source, corpus)


def build(p: TrainParams, data: tuple, strategy: tf.distribute.Strategy) -> LMTrainee:
    trainee = LMTrainee(p, *data, strategy)
    cli.say(f"arch {trainee.space.to_string(trainee.arch)} ({trainee.arch_source}), "
            f"{trainee.num_params} parameters, vocabulary {trainee.corpus.vocab_size}, "
            f"{strategy.num_replicas_in_sync} replica(s)")
    return trainee


def report(results: dict[str, Any]) -> dict[str, Any]:
    cli.say(f"done: best epoch {results['best_epoch']}; valid ppl {results['valid_ppl']:.2f}, "
            f"test ppl {results['test_ppl']:.2f} (batch {results['test_batch_size']})")
    return results


def train(params: TrainParams,
          strategy: tf.distribute.Strategy | None = None) -> dict[str, Any]:
    """Trains (or resumes) the run of `params`; returns the results (also in results.json)."""
    from rnn.task import TASK

    return final_training.run(TASK, params, strategy)


if __name__ == "__main__":
    from rnn.task import TASK

    final_training.main(TASK)
