import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from nao_tf.commands import cli, final_training
from nao_tf.common.errors import DataError, StateError
from nao_tf.runtime import train_loop
from nao_tf.runtime.distribute import strategy_for_batch
from rnn import train_final
from rnn.evaluate import evaluate_run
from rnn.task import TASK
from rnn.train_final import TrainParams

REPO = Path(__file__).resolve().parents[2]
TINY = dict(emsize=16, batch_size=4, eval_batch_size=2, log_interval=5, arch="NAO_WS", dropout=0.1,
            dropouth=0.1, dropoutx=0.1, dropouti=0.1)


def _params(corpus_dir, out, **overrides) -> TrainParams:
    return TrainParams(**{**TINY, "data_dir": str(corpus_dir), "output_dir": str(out),
                          **overrides})


def _train(corpus_dir, out, **overrides):
    return train_final.train(_params(corpus_dir, out, **overrides))


def _trainee(corpus_dir, out, **overrides):
    """The trainee alone, to be driven by `train_loop.train_epochs` with its parts patched."""
    params = _params(corpus_dir, out, **overrides)
    strategy = strategy_for_batch(params.batch_size)
    _, data = train_final.check(params)
    return train_final.LMTrainee(params, *data, strategy)


def _run(trainee, **kwargs):
    return train_loop.train_epochs(trainee, trainee.out, trainee.strategy, trainee.p.epochs,
                                       max_rollbacks=trainee.p.max_rollbacks, **kwargs)


def test_short_run_lowers_validation_perplexity(corpus_dir, tmp_path):
    out = tmp_path / "run"
    results = _train(corpus_dir, out, epochs=4)
    history = json.loads((out / "train_state.json").read_text())["val_history"]
    assert len(history) == 4 and history[-1] < history[0] - 0.3
    assert results["valid_ppl"] < np.exp(history[0])
    assert results["test_batch_size"] == 1 and np.isfinite(results["test_ppl"])
    assert json.loads((out / "results.json").read_text()) == results
    assert json.loads((out / "flags.json").read_text())["emsize"] == 16
    assert [r["epoch"] for r in results["history"]] == [1, 2, 3, 4]
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    tags = {v.tag for f in events for e in tf.compat.v1.train.summary_iterator(str(f))
            for v in e.summary.value}
    assert {"train/ppl", "train/tokens_per_sec", "valid/ppl", "asgd", "test/ppl"} <= tags
    # The evaluate entry point reproduces the test perplexity from the best checkpoint.
    assert evaluate_run(out)["test_ppl"] == pytest.approx(results["test_ppl"], rel=1e-5)


def test_switch_to_averaged_sgd_validates_and_saves_the_average(corpus_dir, tmp_path):
    trainer = _trainee(corpus_dir, tmp_path / "run", epochs=4, nonmono=1)
    scripted = [5.0, 6.0, 7.0, 4.0]  # epoch 3 is worse than epoch 1: switch
    validated, windows = [], []
    real_evaluate, real_train = trainer.lm.evaluate, trainer._train

    def scripted_validation(source, bptt):
        if len(validated) == len(scripted):  # the final evaluation of the best model
            return real_evaluate(source, bptt)
        validated.append([v.numpy() for v in trainer.model.trainable_variables])
        return scripted[len(validated) - 1]

    def recording_train(epoch, attempt, state):
        windows.append(list(train_final.train_windows(
            trainer.train_data, np.random.default_rng([trainer.p.seed, epoch, attempt]),
            trainer.p.bptt, trainer.p.max_seq_len_delta)))
        return real_train(epoch, attempt, state)

    trainer.lm.evaluate, trainer._train = scripted_validation, recording_train
    state = _run(trainer)
    results = trainer.results(state)
    assert state["val_history"] == [5.0, 6.0, 7.0]  # not extended after the switch
    assert results["switched_to_asgd_at_epoch"] == 3 and results["best_epoch"] == 4
    # The epoch-4 checkpoint holds the raw weights and their average over epoch 4's steps.
    tf.train.Checkpoint(**trainer.trackables).restore(
        tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")))
    assert int(trainer.average.count.numpy()) == len(windows[3])
    averaged = [a.numpy() for a in trainer.average.averages]
    raw = [v.numpy() for v in trainer.model.trainable_variables]
    assert any(np.abs(r - a).max() > 1e-6 for r, a in zip(raw, averaged))
    # Epoch 4 was validated with the averaged weights, and those are the saved best model.
    for seen, avg in zip(validated[3], averaged):
        np.testing.assert_allclose(seen, avg)
    trainer.best_ckpt.read(str(tmp_path / "run" / "best" / "model"))
    for v, avg in zip(trainer.model.trainable_variables, averaged):
        np.testing.assert_allclose(v.numpy(), avg)


def _poison_before(trainer, epochs_to_poison):
    """Sets the embedding to NaN at the start of the given epochs (a diverging step)."""
    real = trainer.train_epoch
    calls = []

    def wrapped(epoch, attempt, state, writer):
        calls.append((epoch, attempt))
        if epoch in epochs_to_poison and (epochs_to_poison[epoch] is None or
                                          attempt < epochs_to_poison[epoch]):
            trainer.model.embedding.assign(np.full(trainer.model.embedding.shape, np.nan))
        return real(epoch, attempt, state, writer)
    trainer.train_epoch = wrapped
    return calls


def test_nan_rolls_back_to_the_last_good_checkpoint(corpus_dir, tmp_path):
    trainer = _trainee(corpus_dir, tmp_path / "run", epochs=3)
    calls = _poison_before(trainer, {2: 1})  # epoch 2 diverges once
    state = _run(trainer)
    assert calls == [(1, 0), (2, 0), (2, 1), (3, 0)]
    assert state["rollbacks"] == 1 and state["epoch"] == 3
    assert np.isfinite(trainer.results(state)["test_ppl"])
    assert all(np.isfinite(v.numpy()).all() for v in trainer.model.trainable_variables)


def test_nan_rollback_is_bounded(corpus_dir, tmp_path):
    trainer = _trainee(corpus_dir, tmp_path / "run", epochs=3, max_rollbacks=2)
    calls = _poison_before(trainer, {2: None})  # epoch 2 always diverges
    with pytest.raises(train_loop.Diverged,
                       match="rolled back to the epoch-1 checkpoint 2 times"):
        _run(trainer)
    assert calls == [(1, 0), (2, 0), (2, 1), (2, 2)]
    state = json.loads((tmp_path / "run" / "train_state.json").read_text())
    assert state["epoch"] == 1  # the last good state is kept for a resume


@pytest.mark.slow
def test_resume_after_kill(corpus_dir, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "rnn.train_final", f"--data_dir={corpus_dir}",
           f"--output_dir={out}", "--epochs=4", "--log_interval=100"] + \
        [f"--{k}={v}" for k, v in TINY.items() if k != "log_interval"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state_path = out / "train_state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if state_path.exists() and json.loads(state_path.read_text())["epoch"] >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state_path.read_text())["epoch"]
    assert 1 <= killed_at < 4, "the run must be killed mid-way"
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed from {out}/checkpoints/ckpt-{killed_at}: epoch {killed_at}" in done.stdout, \
        done.stdout[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["epochs"] == 4
    history = json.loads(state_path.read_text())["val_history"]
    assert len(history) == 4


def test_resume_refuses_a_different_model(corpus_dir, tmp_path):
    _train(corpus_dir, tmp_path / "run", epochs=1)
    recorded = (tmp_path / "run" / "flags.json").read_text()
    with pytest.raises(StateError, match="emsize: 16 -> 8.*--overwrite"):
        _train(corpus_dir, tmp_path / "run", emsize=8, epochs=1)
    assert (tmp_path / "run" / "flags.json").read_text() == recorded  # a refused run writes nothing
    _train(corpus_dir, tmp_path / "run", emsize=8, epochs=1, overwrite=True)


def test_other_data_is_refused_and_a_moved_copy_resumes(corpus_dir, tmp_path):
    _train(corpus_dir, tmp_path / "run", epochs=1)
    moved = tmp_path / "moved"
    corpus_dir.rename(moved)
    assert _train(moved, tmp_path / "run", epochs=1)["resumed_from_epoch"] == 1
    with open(moved / "valid.txt", "a") as f:
        f.write("w1 w2\n")
    with pytest.raises(StateError, match="data_fingerprint: '[0-9a-f]{16}' -> '[0-9a-f]{16}'"):
        _train(moved, tmp_path / "run", epochs=1)


def test_lost_or_damaged_bookkeeping_is_named(corpus_dir, tmp_path):
    out = tmp_path / "run"
    _train(corpus_dir, out, epochs=1)
    checkpoints = out / "checkpoints"
    (checkpoints / "ckpt-1.index").rename(checkpoints / "moved.index")
    with pytest.raises(StateError, match="checkpoint .*ckpt-1 is missing"):
        _train(corpus_dir, out, epochs=2)
    (checkpoints / "moved.index").rename(checkpoints / "ckpt-1.index")
    (out / "train_state.json").write_text("[]")
    with pytest.raises(DataError, match="train_state.json: holds a JSON list"):
        _train(corpus_dir, out, epochs=2)
    (out / "train_state.json").unlink()
    with pytest.raises(StateError,
                       match="train_state.json is missing, but .*checkpoints holds trained"):
        _train(corpus_dir, out, epochs=2)


def _params_from(argv):
    values = flags.FlagValues()
    final_training.define_flags(TASK, values)
    values(["prog", "--output_dir=x", *argv])
    final_training.apply_config(TASK, values)
    return cli.parse(TASK.configs["final"], values)


def test_config_sets_defaults_and_explicit_flags_win():
    p = _params_from(["--config=ptb", "--emsize=100"])
    assert (p.emsize, p.epochs, p.wdecay, p.dropouth, p.data_dir) == (100, 4000, 8e-7, 0.25,
                                                                      "data/penn")
    p = _params_from(["--config=wt2"])
    assert (p.emsize, p.epochs, p.wdecay, p.dropouth, p.lr, p.clip) == (700, 2000, 5e-7, 0.15,
                                                                        20.0, 0.25)


@pytest.mark.slow
@pytest.mark.parametrize("flag, message", [
    ("--arch=0 1 0 1", "error: invalid RNN arch '0 1 0 1': an RNN arch string has 22 integers"),
    ("--data_dir={tmp}/nowhere", "error: {tmp}/nowhere: directory not found"),
])
def test_command_line_errors_are_one_line(tmp_path, corpus_dir, flag, message):
    flag = flag.format(tmp=tmp_path)
    data = [] if flag.startswith("--data_dir") else [f"--data_dir={corpus_dir}"]
    proc = subprocess.run(
        [sys.executable, "-m", "rnn.train_final", f"--output_dir={tmp_path}/out", flag] + data,
        cwd=REPO, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(message.format(tmp=tmp_path))
