"""CNN final training on two worker processes (MultiWorkerMirroredStrategy, TF_CONFIG on
loopback): the same weights as one process with the same global batch, only the chief writes, and
a killed job resumes."""

import json
import time

import pytest
import tensorflow as tf
from absl import flags

from cnn import train_final
from nao_tf import distribute
from tests.multi_worker import (assert_same_values, checkpoint_values, finish, kill_all,
                                scratch_dirs, start, start_workers)

ARCH = "1 0 0 4 2 3 1 2 0 4 2 4 1 3 3 4 0 4 4 2 0 4 1 3 2 2 0 1 1 4 2 4 3 2 4 4 0 3 5 2"
CHIEF_FILES = {"checkpoints", "export", "flags.json", "results.json", "tensorboard"}


def _args(out, images, epochs):
    return ["--dataset=synthetic", f"--arch={ARCH}", "--num_cells=1", "--filters=8",
            f"--epochs={epochs}", "--batch_size=16", f"--synthetic_train_images={images}",
            "--synthetic_test_images=32", "--log_every_steps=1", "--eval_every_epochs=1",
            "--seed=1", f"--output_dir={out}"]


@pytest.mark.slow
def test_two_workers_train_as_one_process_and_only_the_chief_writes(tmp_path, two_replicas,
                                                                     monkeypatch):
    """Two workers of one replica each against one process of two replicas (the two logical
    CPUs of tests/conftest.py): the same replicas, each its half of every global batch, its own
    batch statistics and dropout draws."""
    scratch_before = scratch_dirs()
    workers = start_workers("cnn.train_final", _args(tmp_path / "workers", images=32, epochs=1))
    monkeypatch.setattr(distribute, "get_strategy", lambda **_: two_replicas)
    values = flags.FlagValues()
    train_final.define_flags(values)
    values(["prog", *_args(tmp_path / "single", images=32, epochs=1)])
    train_final.train(values)
    logs = [finish(p) for p in workers]  # 2 steps
    assert all("batch 16 over 2 replica(s)" in log for log in logs)
    ours, reference = (checkpoint_values(tmp_path / d / "checkpoints" / "ckpt-1")
                       for d in ("workers", "single"))
    assert len(ours) > 20
    assert_same_values(ours, reference)
    assert {p.name for p in (tmp_path / "workers").iterdir()} == CHIEF_FILES
    assert scratch_dirs() == scratch_before  # the other worker's saves went to scratch, now gone


@pytest.mark.slow
def test_a_killed_worker_then_a_restarted_job_resumes_from_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = _args(out, images=128, epochs=3)  # 8 steps an epoch
    workers = start_workers("cnn.train_final", args)
    reference = start("cnn.train_final", _args(tmp_path / "single", images=128, epochs=3))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (out / "results.json").exists():
        time.sleep(0.1)  # written after epoch 1's checkpoint and evaluation
    assert (out / "results.json").exists(), "epoch 1 never ended"
    time.sleep(0.5)  # into epoch 2
    kill_all(workers)
    latest = tf.train.latest_checkpoint(str(out / "checkpoints"))
    assert not json.loads((out / "results.json").read_text())["finished"]
    assert latest and int(latest.rsplit("-", 1)[1]) < 3, "the job finished before it was killed"

    restarted = [finish(p) for p in start_workers("cnn.train_final", args)]
    assert all(f"resumed from {latest}" in log for log in restarted), restarted[0][-2000:]
    finish(reference)
    results, expected = (json.loads((d / "results.json").read_text())
                         for d in (out, tmp_path / "single"))
    assert results["finished"] and results["steps"] == expected["steps"] == 24
    assert results.keys() == expected.keys()
    assert [r.keys() for r in results["history"]] == [r.keys() for r in expected["history"]]
    assert [r["epoch"] for r in results["history"]] == [1, 2, 3]
    assert {p.name for p in out.iterdir()} == CHIEF_FILES
