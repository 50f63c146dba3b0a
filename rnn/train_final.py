"""Train a fixed recurrent cell from scratch on PTB / WikiText-2, then evaluate it (batch 1).

    scripts/train_final.sh rnn --config=ptb --arch=NAO --output_dir=runs/ptb_nao
    python -m rnn.train_final --config=wt2 --arch=best_arch.json --output_dir=runs/wt2

Schedule of the original: SGD with lr 20 scaled per step by seq_len / bptt, random BPTT length,
global-norm clipping 0.25, coupled weight decay, NT-ASGD (switch to weight averaging when the
validation loss has not improved on the best of all but the last `nonmono` epochs). Validation
(batch 10) and the best checkpoint use the averaged weights once averaging is on.

`--output_dir` receives flags.json, train_state.json, ckpt/ (latest state, every epoch),
best/ (best validation model), TensorBoard events in tb/, and results.json. Re-running the same
command resumes from the last completed epoch; `--overwrite` starts fresh. A NaN/inf loss rolls
back to the last completed epoch (at most `--max_rollbacks` times in a row, then it stops with an
error). With a TF_CONFIG naming several workers, the same command on each trains one model across
them (the batch columns split over all replicas); only the chief writes (docs/distributed.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import flags

from nao_tf import cli
from nao_tf.distribute import (barrier, from_chief, is_chief, prepare_run_dir,
                                strategy_for_batch, summary_writer, writable_dir)
from nao_tf.divergence import divergence
from nao_tf.errors import NaoError, StateError
from nao_tf.io import atomic_write_json, fingerprint, read_json
from nao_tf.precision import PRECISION_HELP, PRECISIONS, policy
from nao_tf.run_dir import RunDir, require_record, restore, write_scalars
from rnn.configs import CONFIGS, MODEL_KEYS, build_model
from rnn.data import Corpus, batchify, get_batch, read_corpus
from rnn.model import count_params
from rnn.search_space import RnnSearchSpace, resolve_arch
from rnn.training import LMStep, WeightAverage, perplexity, should_switch_to_asgd, train_windows


@dataclasses.dataclass
class TrainParams:
    """Every flag of the trainer; defaults are the original train.py's (PTB final settings)."""

    output_dir: str = ""
    data_dir: str = "data/penn"
    arch: str = "NAO"
    arch_nao_codes: bool = False
    emsize: int = 850
    batch_size: int = 64
    eval_batch_size: int = 10
    test_batch_size: int = 1
    bptt: int = 35
    max_seq_len_delta: int = 20
    lr: float = 20.0
    clip: float = 0.25
    epochs: int = 8000
    dropout: float = 0.75
    dropouth: float = 0.25
    dropoutx: float = 0.75
    dropouti: float = 0.2
    dropoute: float = 0.0
    beta: float = 1e-3
    wdecay: float = 8e-7
    nonmono: int = 5
    seed: int = 1267
    log_interval: int = 200
    max_rollbacks: int = 3
    precision: str = cli.enum_field("fp32", PRECISIONS)
    jit_compile: bool = False
    overwrite: bool = False


FLAG_HELP = dict(
    output_dir="run directory (created; re-running resumes)",
    data_dir="corpus directory with train.txt, valid.txt, test.txt",
    arch="NAO, NAO_WS, a best_arch.json path, or 22 integers 'p1 a1 ... p11 a11'",
    arch_nao_codes="read a 22-int --arch in the NAO (no-WS) code table (2=identity, 3=sigmoid)",
    emsize="embedding size = hidden size d", batch_size="training batch (columns)",
    eval_batch_size="validation batch", test_batch_size="test batch (1 as the original)",
    bptt="base BPTT length", max_seq_len_delta="longest step is bptt + this",
    lr="SGD / ASGD learning rate", clip="global gradient-norm clip (0: none)",
    epochs="training epochs", dropout="locked dropout on the cell output",
    dropouth="variational dropout on h_{t-1} and node inputs",
    dropoutx="variational dropout on x_t", dropouti="locked dropout on the embedding output",
    dropoute="embedding (word) dropout",
    beta="temporal activation regularisation (TAR) weight", wdecay="coupled L2 weight decay",
    nonmono="non-improving epochs before switching to averaged SGD", seed="random seed",
    log_interval="steps between progress lines",
    precision=PRECISION_HELP,
    jit_compile="XLA-compile the training step (compiles once per BPTT length; slower on CPU)",
    max_rollbacks="NaN rollbacks allowed in a row before the run stops",
    overwrite="delete --output_dir and start fresh")


class Diverged(Exception):
    """The loss became NaN or infinite."""


class FinalTrainer:
    """One training run in `params.output_dir` (see the module docstring)."""

    def __init__(self, params: TrainParams, strategy: tf.distribute.Strategy | None = None):
        check_params(params)
        # First: a multi-worker strategy must exist before any other TensorFlow op.
        self.strategy = strategy or strategy_for_batch(params.batch_size, multi_worker=True)
        self.chief = is_chief(self.strategy)
        self.p = params
        self.out = Path(params.output_dir)
        self.space = RnnSearchSpace()
        self.arch, self.arch_source = resolve_arch(params.arch, params.arch_nao_codes)
        self.corpus: Corpus = read_corpus(params.data_dir)
        data_dir = Path(params.data_dir)
        self.train_data = batchify(self.corpus.train, params.batch_size, data_dir / "train.txt")
        self.valid_data = batchify(self.corpus.valid, params.eval_batch_size,
                                   data_dir / "valid.txt")
        self.test_data = batchify(self.corpus.test, params.test_batch_size, data_dir / "test.txt")
        settings = {**dataclasses.asdict(params), "arch": self.space.to_string(self.arch),
                    "vocab_size": self.corpus.vocab_size,
                    "data_fingerprint": fingerprint(params.data_dir)}
        settings.pop("overwrite")
        prepare_run_dir(RunDir(self.out, MODEL_KEYS), settings, params.overwrite, self.strategy)
        # Other workers save into scratch (saves are collective) and read the chief's files.
        self.saves = Path(writable_dir(str(self.out), self.strategy))
        keras.utils.set_random_seed(params.seed)  # initial weights, dropout masks
        with self.strategy.scope(), policy(params.precision):
            self.model = build_model(dataclasses.asdict(params), self.arch, self.corpus.vocab_size)
            variables = [v.value for v in self.model.trainable_variables]
            self.average = WeightAverage(variables)
        self.lm = LMStep(self.model, self.strategy, params.batch_size, params.clip, params.wdecay,
                         params.beta, self.average, params.jit_compile)
        self.ckpt = tf.train.Checkpoint(model=self.model, average=self.average)
        self.manager = tf.train.CheckpointManager(self.ckpt, str(self.saves / "ckpt"),
                                                  max_to_keep=2)
        self.best_ckpt = tf.train.Checkpoint(model=self.model)
        self.writer = summary_writer(self.out / "tb", self.strategy)
        self.num_params = count_params(self.model)
        self.state = self._load_or_init_state()

    # Run-directory state.

    def _load_or_init_state(self) -> dict[str, Any]:
        state_path = self.out / "train_state.json"
        require_record(state_path, self.out / "ckpt")
        state = read_json(state_path, STATE_FIELDS) if state_path.exists() else None
        barrier(self.strategy)  # every worker has read the chief's record before it writes one
        if state:
            self._restore(state)
            cli.say(f"resuming {self.out} after epoch {state['epoch']}")
            return state
        state = {"epoch": 0, "val_history": [], "best_val_loss": math.inf,
                 "best_epoch": 0, "switched_at_epoch": None, "rollbacks": 0,
                 "checkpoint": self._save(0), "train_seconds": 0.0, "tokens_per_sec": 0.0}
        self._write_state(state)
        return state

    def _save(self, epoch: int) -> str:
        """Saves the full state; returns the checkpoint's name inside ckpt/."""
        return Path(self.manager.save(checkpoint_number=epoch)).name

    def _restore(self, state: dict[str, Any]) -> None:
        restore(self.ckpt, self.out / "ckpt" / state["checkpoint"], exact=False)

    def _write_state(self, state: dict[str, Any]) -> None:
        if self.chief:
            atomic_write_json(self.out / "train_state.json", state)

    # Training.

    def train_epoch(self, epoch: int, attempt: int) -> tuple[float, float]:
        """One pass over the training stream; returns (mean loss, tokens/s). Raises Diverged."""
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
                self._log_progress(epoch, step, len(windows), interval_loss / interval_steps,
                                   now - interval_start, tokens / (now - start))
                interval_loss, interval_steps, interval_start = 0.0, 0, now
        rows = sum(seq_len for _, seq_len in windows)
        return total_loss / rows, tokens / (time.perf_counter() - start)

    def _log_progress(self, epoch: int, step: int, steps: int, loss: float, seconds: float,
                      tokens_per_s: float) -> None:
        done = self.state["epoch"] + step / steps
        epoch_seconds = steps * seconds / max(1, (step - 1) % self.p.log_interval + 1)
        eta = (self.p.epochs - done) * epoch_seconds
        cli.say(f"epoch {epoch} step {step}/{steps} | loss {loss:.3f} ppl {perplexity(loss):.1f} | "
             f"{tokens_per_s:.0f} tokens/s | ETA {_hms(eta)}"
             + (" | ASGD" if self.state["switched_at_epoch"] else ""))

    def _rollback(self, err: Diverged, failures: int) -> None:
        self.state["rollbacks"] += 1
        if failures > self.p.max_rollbacks:
            raise NaoError(
                f"{err}; rolled back to the epoch-{self.state['epoch']} checkpoint "
                f"{self.p.max_rollbacks} times in a row and it diverged again. Lower --lr or "
                f"--clip, then re-run the same command to resume from epoch {self.state['epoch']}")
        cli.say(f"{err}; rolling back to the checkpoint after epoch {self.state['epoch']} "
             f"(rollback {failures} of {self.p.max_rollbacks})")
        self._restore(self.state)

    def _validate_and_checkpoint(self, epoch: int, train_loss: float, tokens_per_s: float) -> None:
        """Validation (averaged weights under ASGD), best model, NT-ASGD switch, state."""
        st, p = self.state, self.p
        with self.average.swapped_in():
            # Every worker takes the chief's decisions (the switch, the best epoch).
            val_loss = float(from_chief(self.strategy, self.lm.evaluate(self.valid_data, p.bptt)))
            if not math.isfinite(val_loss):
                raise Diverged(f"validation loss is {val_loss} after epoch {epoch}")
            if val_loss < st["best_val_loss"]:
                st["best_val_loss"], st["best_epoch"] = val_loss, epoch
                self.best_ckpt.write(str(self.saves / "best" / "model"))
        if st["switched_at_epoch"] is None:
            if should_switch_to_asgd(st["val_history"], val_loss, p.nonmono):
                cli.say(f"switching to averaged SGD after epoch {epoch}")
                st["switched_at_epoch"] = epoch
                self.average.count.assign(0)
                self.average.active.assign(True)
            st["val_history"].append(val_loss)
        st["epoch"] = epoch
        st["checkpoint"] = self._save(epoch)
        self._write_state(st)
        write_scalars(self.writer, epoch, {
            "train/loss": train_loss, "train/ppl": perplexity(train_loss),
            "train/tokens_per_sec": tokens_per_s, "valid/loss": val_loss,
            "valid/ppl": perplexity(val_loss), "asgd": float(st["switched_at_epoch"] is not None)})
        cli.say(f"end of epoch {epoch} | train ppl {perplexity(train_loss):.2f} | valid ppl "
             f"{perplexity(val_loss):.2f} | best {perplexity(st['best_val_loss']):.2f} "
             f"(epoch {st['best_epoch']})")

    def train(self) -> dict[str, Any]:
        """Trains to `epochs`, then evaluates the best model; returns (and writes) results."""
        cli.say(f"arch {self.space.to_string(self.arch)} ({self.arch_source}), {self.num_params} "
             f"parameters, vocabulary {self.corpus.vocab_size}, "
             f"{self.strategy.num_replicas_in_sync} replica(s)")
        failures = 0
        while self.state["epoch"] < self.p.epochs:
            epoch = self.state["epoch"] + 1
            start = time.perf_counter()
            try:
                train_loss, tokens_per_s = self.train_epoch(epoch, failures)
                self.state["tokens_per_sec"] = tokens_per_s
                self._validate_and_checkpoint(epoch, train_loss, tokens_per_s)
            except Diverged as err:
                failures += 1
                self._rollback(err, failures)
                continue
            failures = 0
            self.state["train_seconds"] += time.perf_counter() - start
            self._write_state(self.state)
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Loads the best model and evaluates validation (batch 10) and test (batch 1)."""
        st = self.state
        if st["best_epoch"] == 0:
            raise StateError(f"{self.out}: no epoch finished, nothing to evaluate")
        barrier(self.strategy)  # the chief's best model is written
        restore(self.best_ckpt, self.out / "best" / "model", exact=False)
        val_loss = self.lm.evaluate(self.valid_data, self.p.bptt)
        test_loss = self.lm.evaluate(self.test_data, self.p.bptt)
        results = {
            "arch": self.space.to_string(self.arch), "space": self.space.name,
            "arch_source": self.arch_source, "params": self.num_params,
            "vocab_size": self.corpus.vocab_size, "epochs": st["epoch"],
            "best_epoch": st["best_epoch"], "switched_to_asgd_at_epoch": st["switched_at_epoch"],
            "rollbacks": st["rollbacks"], "valid_loss": val_loss,
            "valid_ppl": perplexity(val_loss), "test_loss": test_loss,
            "test_ppl": perplexity(test_loss), "test_batch_size": self.p.test_batch_size,
            "train_seconds": st["train_seconds"], "last_epoch_tokens_per_sec": st["tokens_per_sec"],
        }
        if self.chief:
            atomic_write_json(self.out / "results.json", results)
        write_scalars(self.writer, st["epoch"], {"test/ppl": results["test_ppl"]})
        return results


# train_state.json: what a resume reads back (a file holding anything else is named, not a KeyError).
STATE_FIELDS = {"epoch": int, "val_history": list, "best_val_loss": (int, float), "best_epoch": int,
                "rollbacks": int, "checkpoint": str, "train_seconds": (int, float)}


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def check_params(p: TrainParams) -> None:
    """Stops with one line on a setting that cannot work, before anything is read or written."""
    if not p.output_dir:
        raise NaoError("--output_dir is required (the run directory)")
    value = lambda name: getattr(p, name)  # noqa: E731
    cli.check_at_least(value, 1, "emsize", "batch_size", "eval_batch_size", "test_batch_size",
                       "bptt", "epochs", "nonmono", "log_interval")
    cli.check_at_least(value, 0, "max_seq_len_delta", "clip", "beta", "wdecay", "max_rollbacks",
                       "dropout", "dropouth", "dropoutx", "dropouti", "dropoute")
    for name in ("dropout", "dropouth", "dropoutx", "dropouti", "dropoute"):
        if getattr(p, name) >= 1:
            raise NaoError(f"--{name}={getattr(p, name)} must be a drop rate in [0, 1)")
    if p.lr <= 0:
        raise NaoError(f"--lr={p.lr} must be positive")


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """absl flags for every `TrainParams` field, plus `--config`."""
    flags.DEFINE_enum("config", None, sorted(CONFIGS),
                      "original final configuration (sets flag defaults; explicit flags win)",
                      flag_values=flag_values)
    cli.define_dataclass_flags(TrainParams, FLAG_HELP, flag_values)


def params_from_flags(values: flags.FlagValues) -> TrainParams:
    """`TrainParams` from parsed flags: defaults < `--config` < explicit flags."""
    return cli.dataclass_from_flags(TrainParams, values, CONFIGS.get(values.config))


if __name__ == "__main__":
    define_flags()
    cli.run(lambda _: print(json.dumps(FinalTrainer(params_from_flags(flags.FLAGS)).train(),
                                       indent=2)))
