"""CNN final training on two worker processes (MultiWorkerMirroredStrategy, TF_CONFIG on
loopback): the same weights as one process with the same global batch, only the chief writes, and
a killed job resumes."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from cnn import train_final
from nao_tf import distribute

ROOT = Path(__file__).resolve().parents[2]
ARCH = "1 0 0 4 2 3 1 2 0 4 2 4 1 3 3 4 0 4 4 2 0 4 1 3 2 2 0 1 1 4 2 4 3 2 4 4 0 3 5 2"
CHIEF_FILES = {"checkpoints", "export", "flags.json", "results.json", "tensorboard"}


def _args(out, images, epochs):
    return ["--dataset=synthetic", f"--arch={ARCH}", "--num_cells=1", "--filters=8",
            f"--epochs={epochs}", "--batch_size=16", f"--synthetic_train_images={images}",
            "--synthetic_test_images=32", "--log_every_steps=1", "--eval_every_epochs=1",
            "--seed=1", f"--output_dir={out}"]


def _ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start(args, tf_config=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen([sys.executable, "-m", "cnn.train_final", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _workers(args):
    ports = _ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    return [_start(args, {"cluster": cluster, "task": {"type": "worker", "index": i}})
            for i in range(2)]


def _finish(proc, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _variables(checkpoint):
    reader = tf.train.load_checkpoint(str(checkpoint))
    # The object graph records layer names, which count the networks built in the process.
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith(("save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"))}


def _scratch_dirs():
    return set(Path(tempfile.gettempdir()).glob("nao-worker-*"))


@pytest.mark.slow
def test_two_workers_train_as_one_process_and_only_the_chief_writes(tmp_path, two_replicas,
                                                                     monkeypatch):
    """Two workers of one replica each against one process of two replicas (the two logical
    CPUs of tests/conftest.py): the same replicas, each its half of every global batch, its own
    batch statistics and dropout draws."""
    scratch_before = _scratch_dirs()
    workers = _workers(_args(tmp_path / "workers", images=32, epochs=1))  # 2 steps
    monkeypatch.setattr(distribute, "get_strategy", lambda **_: two_replicas)
    values = flags.FlagValues()
    train_final.define_flags(values)
    values(["prog", *_args(tmp_path / "single", images=32, epochs=1)])
    train_final.train(values)
    logs = [_finish(p) for p in workers]
    assert all("batch 16 over 2 replica(s)" in log for log in logs)
    ours, reference = (_variables(tmp_path / d / "checkpoints" / "ckpt-1")
                       for d in ("workers", "single"))
    assert ours.keys() == reference.keys() and len(ours) > 20
    for name, value in reference.items():
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            np.testing.assert_allclose(ours[name], value, rtol=1e-5, atol=1e-7, err_msg=name)
        else:
            np.testing.assert_array_equal(ours[name], value, err_msg=name)
    assert {p.name for p in (tmp_path / "workers").iterdir()} == CHIEF_FILES
    assert _scratch_dirs() == scratch_before  # the other worker's saves went to scratch, now gone


@pytest.mark.slow
def test_a_killed_worker_then_a_restarted_job_resumes_from_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = _args(out, images=128, epochs=3)  # 8 steps an epoch
    workers = _workers(args)
    reference = _start(_args(tmp_path / "single", images=128, epochs=3))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (out / "results.json").exists():
        time.sleep(0.1)  # written after epoch 1's checkpoint and evaluation
    assert (out / "results.json").exists(), "epoch 1 never ended"
    time.sleep(0.5)  # into epoch 2
    workers[1].send_signal(signal.SIGKILL)
    workers[1].wait(timeout=60)
    workers[0].send_signal(signal.SIGKILL)  # the chief waits on its peer's collectives
    workers[0].wait(timeout=60)
    assert [w.returncode for w in workers] == [-signal.SIGKILL] * 2
    latest = tf.train.latest_checkpoint(str(out / "checkpoints"))
    assert not json.loads((out / "results.json").read_text())["finished"]
    assert latest and int(latest.rsplit("-", 1)[1]) < 3, "the job finished before it was killed"

    restarted = [_finish(p) for p in _workers(args)]
    assert all(f"resumed from {latest}" in log for log in restarted), restarted[0][-2000:]
    _finish(reference)
    results, expected = (json.loads((d / "results.json").read_text())
                         for d in (out, tmp_path / "single"))
    assert results["finished"] and results["steps"] == expected["steps"] == 24
    assert results.keys() == expected.keys()
    assert [r.keys() for r in results["history"]] == [r.keys() for r in expected["history"]]
    assert [r["epoch"] for r in results["history"]] == [1, 2, 3]
    assert {p.name for p in out.iterdir()} == CHIEF_FILES
