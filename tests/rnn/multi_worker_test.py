"""The RNN language model on two worker processes (MultiWorkerMirroredStrategy, TF_CONFIG on
loopback): the same weights as one process of two replicas with the same batch, only the chief
writes, and a killed job resumes."""

import json
import time

import pytest

from rnn.train_final import FinalTrainer, TrainParams
from tests.multi_worker import (assert_same_values, checkpoint_values, finish, kill_all,
                                scratch_dirs, start, start_workers)

TINY = dict(emsize=16, batch_size=4, eval_batch_size=2, log_interval=5, arch="NAO_WS",
            dropout=0.1, dropouth=0.1, dropoutx=0.1, dropouti=0.1, seed=3)
CHIEF_FILES = {"best", "ckpt", "flags.json", "results.json", "tb", "train_state.json"}


def _args(corpus_dir, out, **extra):
    values = {**TINY, "data_dir": corpus_dir, "output_dir": out, **extra}
    return [f"--{name}={value}" for name, value in values.items()]


@pytest.mark.slow
def test_two_workers_train_as_one_process_and_only_the_chief_writes(corpus_dir, tmp_path,
                                                                     two_replicas):
    """Two workers of one replica each against one process of two replicas: each replica its two
    of the four batch columns, their hidden states and its own dropout masks."""
    scratch_before = scratch_dirs()
    out = tmp_path / "workers"
    workers = start_workers("rnn.train_final", _args(corpus_dir, out, epochs=2))
    params = TrainParams(**{**TINY, "data_dir": str(corpus_dir),
                            "output_dir": str(tmp_path / "single"), "epochs": 2})
    expected = FinalTrainer(params, strategy=two_replicas).train()
    logs = [finish(p) for p in workers]
    assert all("2 replica(s)" in log for log in logs)
    assert_same_values(checkpoint_values(out / "ckpt" / "ckpt-2"),
                       checkpoint_values(tmp_path / "single" / "ckpt" / "ckpt-2"))
    results = json.loads((out / "results.json").read_text())
    assert results["valid_loss"] == pytest.approx(expected["valid_loss"], rel=1e-5)
    assert results["test_loss"] == pytest.approx(expected["test_loss"], rel=1e-5)
    assert {p.name for p in out.iterdir()} == CHIEF_FILES
    assert scratch_dirs() == scratch_before  # the other worker's saves went to scratch, now gone


@pytest.mark.slow
def test_a_killed_worker_then_a_restarted_job_resumes_from_the_last_checkpoint(corpus_dir,
                                                                              tmp_path):
    out = tmp_path / "run"
    args = _args(corpus_dir, out, epochs=6)
    workers = start_workers("rnn.train_final", args)
    reference = start("rnn.train_final", _args(corpus_dir, tmp_path / "single", epochs=6))
    state = out / "train_state.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (
            state.exists() and json.loads(state.read_text())["epoch"] >= 1):
        time.sleep(0.1)
    assert state.exists() and json.loads(state.read_text())["epoch"] >= 1, "epoch 1 never ended"
    time.sleep(0.3)  # into the next epoch
    kill_all(workers)
    epoch = json.loads(state.read_text())["epoch"]
    assert 1 <= epoch < 6 and not (out / "results.json").exists(), "it finished before the kill"

    restarted = [finish(p) for p in start_workers("rnn.train_final", args)]
    assert all(f"resuming {out} after epoch {epoch}" in log for log in restarted), \
        restarted[1][-2000:]
    finish(reference)
    results, expected = (json.loads((d / "results.json").read_text())
                         for d in (out, tmp_path / "single"))
    assert results.keys() == expected.keys() and results["epochs"] == expected["epochs"] == 6
    assert len(json.loads(state.read_text())["val_history"]) == 6
    assert {p.name for p in out.iterdir()} == CHIEF_FILES
