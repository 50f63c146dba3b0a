"""CNN final training on two worker processes (MultiWorkerMirroredStrategy, TF_CONFIG on
loopback): the same weights as one process with the same global batch, only the chief writes, and
a killed job resumes."""

import json
import time

import pytest
import tensorflow as tf
from absl import flags

from cnn import evaluate, imagenet, train_final
from cnn.task import TASK
from nao_tf.commands import final_training
from tests.multi_worker import (assert_same_values, checkpoint_values, finish, kill_all,
                                scratch_dirs, start_workers)

CHIEF_FILES = {"checkpoints", "export", "flags.json", "results.json", "tensorboard",
               "train_state.json"}


def _args(out, folder):
    """48 images, global batch 16 (8 per replica): 3 steps an epoch, 3 epochs."""
    return ["--config=imagenet_mobile", f"--data_dir={folder}", "--image_size=32",
            "--use_aux_head=false", "--num_cells=1", "--filters=8", "--batch_size=8",
            "--eval_batch_size=8", "--epochs=3", "--log_every_steps=1", "--seed=1",
            f"--output_dir={out}"]


@pytest.mark.slow
def test_two_workers_on_an_imagenet_folder_killed_and_restarted_train_as_one_process(
        tmp_path, two_replicas):
    """Two workers of one replica each against one process of two replicas (the two logical
    CPUs of tests/conftest.py), on an ImageNet-like JPEG folder: each worker reads and decodes
    only its half of every global batch (`distribute_datasets_from_function`; the halves are
    checked image by image in tests/cnn/imagenet_test.py), with its own batch statistics and
    dropout draws, so together they have the one process's weights after epoch 1 (3 steps; later
    the two sum orders drift apart: these tiny networks amplify the last bit to 1e-2 in 8 steps).
    SIGKILLed after epoch 1 and restarted, the workers resume from the last checkpoint and end as
    the one process does; `cnn.evaluate` rebuilds the ImageNet network from the run directory
    and reproduces the last evaluation. Only the chief writes; the other worker's scratch
    directory is removed."""
    folder = imagenet.write_image_folder(tmp_path / "images", train_per_class=16)
    out = tmp_path / "run"
    args = _args(out, folder)
    scratch_before = scratch_dirs()
    workers = start_workers("cnn.train_final", args)
    deadline = time.monotonic() + 240
    state = out / "train_state.json"
    while time.monotonic() < deadline and not (
            state.exists() and json.loads(state.read_text())["epoch"] >= 1):
        time.sleep(0.1)  # written after epoch 1's evaluation and checkpoint
    assert state.exists() and json.loads(state.read_text())["epoch"] >= 1, "epoch 1 never ended"
    kill_all(workers)
    latest = tf.train.latest_checkpoint(str(out / "checkpoints"))
    assert not (out / "results.json").exists()  # written when the run is finished
    assert latest and int(latest.rsplit("-", 1)[1]) < 3, "the job finished before it was killed"
    left = scratch_dirs() - scratch_before
    assert len(left) == 1  # the killed worker's scratch directory

    restarted = start_workers("cnn.train_final", args)
    values = flags.FlagValues()  # the reference, while the workers resume
    train_final.define_flags(values)
    values(["prog", *_args(tmp_path / "single", folder)])
    final_training.apply_config(TASK, values)
    final_training.run(TASK, values, two_replicas)
    logs = [finish(p) for p in restarted]
    assert all(f"resumed from {latest}" in log for log in logs), logs[0][-2000:]
    assert all("ckpt-1: epoch 1" in log for log in logs)
    assert all("batch 16 over 2 replica(s)" in log for log in logs)
    results, expected = (json.loads((d / "results.json").read_text())
                         for d in (out, tmp_path / "single"))
    assert results["finished"] and results["steps"] == expected["steps"] == 9
    assert results.keys() == expected.keys()
    assert [r.keys() for r in results["history"]] == [r.keys() for r in expected["history"]]
    assert [r["epoch"] for r in results["history"]] == [1, 2, 3]
    assert all(0 <= r["test_accuracy"] <= r["test_top5"] <= 1 for r in results["history"])
    ours, reference = (checkpoint_values(d / "checkpoints" / "ckpt-1")  # written before the kill
                       for d in (out, tmp_path / "single"))
    assert len(ours) > 20
    assert_same_values(ours, reference)
    assert {p.name for p in out.iterdir()} == CHIEF_FILES
    assert not scratch_dirs() & left  # the restarted worker removed it at its start
    assert scratch_dirs() == scratch_before  # and its own saves went to scratch, now gone
    values = flags.FlagValues()
    evaluate.define_flags(values)
    values(["prog", f"--output_dir={out}", "--eval_batch_size=4"])
    metrics = evaluate.evaluate(values)
    assert metrics["accuracy"] == pytest.approx(results["test_accuracy"])
    assert metrics["top5"] == pytest.approx(results["test_top5"])
    # Without --seed: tests/nao_tf/worker_failures_test.py, the normal run.


# The NAO-WS search: 10 supernet steps an epoch, scored after epochs 1 and 2. The next pool is
# the best of the scored one plus random cells: which cells the controller decodes depends on
# near-ties of its argmax (the subject here is the supernet's training and scoring).
SEARCH_ARGS = ["--config=smoke", "--synthetic_train_images=192", "--num_valid=32",
               "--batch_size=16", "--eval_images=32", "--eval_batch_size=16", "--seed_archs=6",
               "--top_k=3", "--new_archs=0", "--random_archs=3", "--controller_epochs=20",
               "--controller_batch_size=6", "--log_every_steps=1"]
SEARCH_FILES = {"best_arch.dot", "best_arch.json", "best_arch.png", "controller", "history.jsonl",
                "pool.0.perf", "pool.0.txt", "pool.1.perf", "pool.1.txt", "search_settings.json",
                "state.json", "supernet", "tensorboard"}


def _history(out):
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_search_on_two_workers_killed_and_restarted_ends_as_one_process(
        tmp_path, two_replicas, monkeypatch, restore_graph_optimizer):
    """SIGKILLed in the supernet's second epoch and restarted, the two workers resume without
    redoing (neither the first epoch nor the first scoring), and end as one uninterrupted
    process of two replicas: both scorings of the pool and the supernet's weights. The chief
    alone runs the controller and writes."""
    from cnn import train_search
    from nao_tf.commands import weight_sharing_search

    scratch_before = scratch_dirs()
    out, single = tmp_path / "workers", tmp_path / "single"
    args = [*SEARCH_ARGS, "--save_every_seconds=0", f"--output_dir={out}"]
    workers = start_workers("cnn.train_search", args)
    chief_log = []
    for line in workers[0].stdout:  # the chief's log
        chief_log.append(line)
        if "supernet epoch 2 step 14/20" in line:
            break
    kill_all(workers)
    other_log = workers[1].stdout.read()
    assert any("iteration 0: train" in line for line in chief_log)
    assert "iteration 0: train" not in other_log
    assert any("batch 16 over 2 replica(s)" in line for line in chief_log)

    restarted = start_workers("cnn.train_search", args)
    monkeypatch.setattr(train_search, "get_strategy", lambda **_: two_replicas)
    values = flags.FlagValues()
    weight_sharing_search.define_flags(TASK, values)
    values(["prog", *SEARCH_ARGS, "--save_every_seconds=0", f"--output_dir={single}"])
    weight_sharing_search.run(TASK, values)  # the reference, while the workers resume
    chief, other = (finish(p) for p in restarted)
    assert "supernet: resumed from" in chief and "supernet: resumed from" in other, other[-2000:]
    assert "iteration 0: evaluate" not in chief
    assert "the chief's search is done" in other
    ours, reference = _history(out), _history(single)
    assert sorted({r["iteration"] for r in ours}) == [0, 1]
    assert len({(r["iteration"], r["arch"]) for r in ours}) == len(ours) == 12
    assert [(r["iteration"], r["arch"]) for r in ours] == \
        [(r["iteration"], r["arch"]) for r in reference]
    assert [r["score"] for r in ours] == [r["score"] for r in reference]
    assert_same_values(*(checkpoint_values(tf.train.latest_checkpoint(str(d / "supernet")))
                         for d in (out, single)))
    assert json.loads((out / "best_arch.json").read_text())["space"] == "nao_ws"
    assert {p.name for p in out.iterdir()} == SEARCH_FILES
    assert scratch_dirs() == scratch_before
