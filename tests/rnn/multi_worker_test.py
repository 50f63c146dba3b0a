"""The RNN language model on two worker processes (MultiWorkerMirroredStrategy, TF_CONFIG on
loopback): the same weights as one process of two replicas with the same batch, only the chief
writes, and a killed job resumes."""

import json
import time

import numpy as np
import pytest
from absl import flags

from rnn import train_final
from rnn.task import TASK
from rnn.train_final import TrainParams
from tests.multi_worker import (assert_same_values, checkpoint_values, finish, kill_all,
                                scratch_dirs, start_workers)

TINY = dict(emsize=16, batch_size=4, eval_batch_size=2, log_interval=5, arch="NAO_WS",
            dropout=0.1, dropouth=0.1, dropoutx=0.1, dropouti=0.1, seed=3)
CHIEF_FILES = {"best", "checkpoints", "flags.json", "results.json", "tensorboard",
               "train_state.json"}


def _args(corpus_dir, out, **extra):
    values = {**TINY, "data_dir": corpus_dir, "output_dir": out, **extra}
    return [f"--{name}={value}" for name, value in values.items()]


@pytest.mark.slow
def test_two_workers_killed_and_restarted_train_as_one_process_and_only_the_chief_writes(
        corpus_dir, tmp_path, two_replicas):
    """Two workers of one replica each against one process of two replicas: each replica its two
    of the four batch columns, their hidden states and its own dropout masks. SIGKILLed in an
    epoch after the first and restarted, the workers resume from the last checkpoint and end
    with the one process's weights and losses. Only the chief writes."""
    scratch_before = scratch_dirs()
    out = tmp_path / "run"
    args = _args(corpus_dir, out, epochs=4)
    workers = start_workers("rnn.train_final", args)
    state = out / "train_state.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (
            state.exists() and json.loads(state.read_text())["epoch"] >= 1):
        time.sleep(0.1)
    assert state.exists() and json.loads(state.read_text())["epoch"] >= 1, "epoch 1 never ended"
    time.sleep(0.3)  # into the next epoch
    kill_all(workers)
    epoch = json.loads(state.read_text())["epoch"]
    assert 1 <= epoch < 4 and not (out / "results.json").exists(), "it finished before the kill"

    restarted = start_workers("rnn.train_final", args)
    params = TrainParams(**{**TINY, "data_dir": str(corpus_dir),  # the reference, meanwhile
                            "output_dir": str(tmp_path / "single"), "epochs": 4})
    expected = train_final.train(params, two_replicas)
    logs = [finish(p) for p in restarted]
    assert all(f"resumed from {out}/checkpoints/ckpt-{epoch}: epoch {epoch}" in log
               for log in logs), logs[1][-2000:]
    assert all("2 replica(s)" in log for log in logs)
    assert_same_values(checkpoint_values(out / "checkpoints" / "ckpt-4"),
                       checkpoint_values(tmp_path / "single" / "checkpoints" / "ckpt-4"))
    results = json.loads((out / "results.json").read_text())
    assert results.keys() == expected.keys() and results["epochs"] == expected["epochs"] == 4
    assert results["valid_loss"] == pytest.approx(expected["valid_loss"], rel=1e-5)
    assert results["test_loss"] == pytest.approx(expected["test_loss"], rel=1e-5)
    assert len(json.loads(state.read_text())["val_history"]) == 4
    assert {p.name for p in out.iterdir()} == CHIEF_FILES
    assert scratch_dirs() == scratch_before  # the other worker's saves went to scratch, now gone


# The NAO-WS search on the smoke config's generated corpus, scored after every epoch; the next
# pool is the best of the scored one plus random cells (the subject is the supernet).
SEARCH_ARGS = ["--config=smoke", "--eval_every_epochs=1", "--batch_size=4",
               "--emsize=8", "--seed_archs=6", "--top_k=3", "--new_archs=0", "--random_archs=3",
               "--controller_epochs=5", "--log_interval=1000"]


@pytest.mark.slow
def test_a_search_on_two_workers_killed_and_restarted_ends_as_one_process(
        tmp_path, two_replicas, monkeypatch):
    """SIGKILLed in the supernet's training and restarted, the two workers resume after the last
    step saved and end as one uninterrupted process of two replicas (each replica its two of the
    four batch columns): the same cells scored alike and the same supernet weights. The chief
    alone runs the controller and writes."""
    from nao_tf.commands import weight_sharing_search
    from rnn import train_search

    out, single = tmp_path / "workers", tmp_path / "single"
    args = [*SEARCH_ARGS, "--epochs=3", "--save_every_seconds=0.2"]  # scored 3 times
    workers = start_workers("rnn.train_search", [*args, f"--output_dir={out}"])
    state = out / "supernet" / "state.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (
            state.exists() and json.loads(state.read_text())["epoch"] >= 1):
        time.sleep(0.05)
    kill_all(workers)
    killed = json.loads(state.read_text())
    assert 1 <= killed["epoch"] < 3, "the search must be killed in supernet training"

    restarted = start_workers("rnn.train_search", [*args, f"--output_dir={out}"])
    monkeypatch.setattr(train_search, "strategy_for_batch", lambda *_, **__: two_replicas)
    values = flags.FlagValues()  # the reference, while the workers resume
    weight_sharing_search.define_flags(TASK, values)
    values(["prog", *args, f"--output_dir={single}"])
    weight_sharing_search.run(TASK, values)
    chief, other = (finish(p) for p in restarted)
    resumed = f"supernet: resuming after epoch {killed['epoch']}, step {killed['step']}"
    assert resumed in chief and resumed in other, other[-2000:]
    assert "the chief's search is done" in other and "iteration 0: train" not in other
    assert json.loads(state.read_text())["epoch"] == 3
    ours, reference = ([json.loads(line) for line in (d / "history.jsonl").read_text().splitlines()]
                       for d in (out, single))
    assert len({(r["iteration"], r["arch"]) for r in ours}) == len(ours) == 18
    assert [(r["iteration"], r["arch"]) for r in ours] == \
        [(r["iteration"], r["arch"]) for r in reference]
    np.testing.assert_allclose([r["score"] for r in ours], [r["score"] for r in reference],
                               rtol=1e-5)
    assert_same_values(*(checkpoint_values(d / "supernet" / "ckpt" / json.loads(
        (d / "supernet" / "state.json").read_text())["checkpoint"]) for d in (out, single)))
    assert {p.name for p in out.iterdir()} == {p.name for p in single.iterdir()}
    assert json.loads((out / "best_arch.json").read_text())["space"] == "nao_rnn"
