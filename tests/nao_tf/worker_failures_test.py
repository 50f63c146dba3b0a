"""Across machines, every failure ends in bounded time with one line (two real loopback workers
of the NAS-Bench-201 final training): a worker that never starts, a worker lost in training,
workers started with different settings; and a normal run (the CNN final training on an
ImageNet-like folder) says nothing else."""

import json
import signal
import time

import pytest

from cnn import imagenet
from tests import multi_worker

ARCH = "--arch=|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|avg_pool_3x3~2|"


def _args(out, *extra):
    return ["--config=smoke", ARCH, f"--output_dir={out}", *extra]


def _error_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert "Traceback" not in output, output[-3000:]
    return lines[-1]


@pytest.mark.slow
def test_a_normal_run_on_two_workers_prints_only_its_own_lines(tmp_path):
    """TensorFlow's C++ log on (as a user has it): no start-up line of the device search
    (cuInit on a machine without a GPU), no warning about the strategy's eager calls, and no
    coordination-service line as the chief ends after the other worker. The run is the CNN
    final training on an ImageNet-like folder without --seed, where each worker decodes its own
    share of every batch: the workers agree on a random stream (the first replica's draw)."""
    folder = imagenet.write_image_folder(tmp_path / "images", train_per_class=16)
    args = ["--config=imagenet_mobile", f"--data_dir={folder}", "--image_size=32",
            "--use_aux_head=false", "--num_cells=1", "--filters=8", "--batch_size=8",
            "--eval_batch_size=8", "--epochs=1", f"--output_dir={tmp_path / 'run'}"]
    workers = multi_worker.start_workers("cnn.train_final", args, cpp_log=True)
    for worker in workers:
        out = multi_worker.finish(worker, timeout=300)
        assert "epoch 1/1:" in out
        for unwanted in ("cuInit", "cuda_platform", "eagerly has significant overhead",
                         "StartAbort", "UNAVAILABLE", "WARNING:tensorflow", "Traceback"):
            assert unwanted not in out, out[-3000:]


@pytest.mark.slow
def test_a_worker_that_never_starts(tmp_path):
    cluster = {"worker": [f"localhost:{p}" for p in multi_worker._free_ports(2)]}
    started = time.monotonic()
    chief = multi_worker.start("nb201.train_final", _args(tmp_path / "run", "--worker_timeout=12"),
                               {"cluster": cluster, "task": {"type": "worker", "index": 0}})
    out, _ = chief.communicate(timeout=120)
    assert chief.returncode == 2, out[-3000:]
    assert time.monotonic() - started < 100
    assert f"waiting for the other workers of TF_CONFIG: worker 1 ({cluster['worker'][1]}) not " \
           "started" in out
    assert _error_line(out) == (
        f"error: not every worker of TF_CONFIG started within --worker_timeout=12s (not started: "
        f"worker 1 ({cluster['worker'][1]})); start the same command on every worker, or raise "
        "--worker_timeout")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_workers_with_different_settings_both_stop_before_writing(tmp_path):
    cluster = {"worker": [f"localhost:{p}" for p in multi_worker._free_ports(2)]}
    workers = [multi_worker.start("nb201.train_final", _args(tmp_path / "run", f"--epochs={e}"),
                                  {"cluster": cluster, "task": {"type": "worker", "index": i}})
               for i, e in enumerate((2, 3))]
    outs = [w.communicate(timeout=180)[0] for w in workers]
    assert [w.returncode for w in workers] == [2, 2], outs
    assert _error_line(outs[1]) == ("error: this worker's settings differ from the chief's: "
                                    "epochs=3 (the chief: 2); start every worker with the same "
                                    "command")
    assert _error_line(outs[0]).startswith("error: a worker was started with other settings")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_worker_lost_in_training(tmp_path):
    out = tmp_path / "run"
    workers = multi_worker.start_workers("nb201.train_final", _args(out, "--epochs=500"))
    state = out / "train_state.json"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and workers[0].poll() is None and not (
            state.exists() and json.loads(state.read_text())["epoch"] >= 1):
        time.sleep(0.1)
    workers[1].send_signal(signal.SIGKILL)
    workers[1].wait(timeout=60)
    assert workers[1].returncode == -signal.SIGKILL
    killed = time.monotonic()
    output, _ = workers[0].communicate(timeout=120)
    assert workers[0].returncode == 2, output[-3000:]
    assert time.monotonic() - killed < 90
    line = _error_line(output)  # the heartbeat, or the dropped connection, whichever is first
    assert line.startswith("error: lost worker 1 of TF_CONFIG ("), line
    assert line.endswith("); restart all workers with the same command to resume"), line
