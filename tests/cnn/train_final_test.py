import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from cnn import evaluate, train_final
from cnn.cells import archs
from cnn.data import normalize, synthetic_splits
from cnn.evaluate import load_trained_model
from cnn.task import TASK
from nao_tf.commands import final_training
from nao_tf.common.errors import NaoError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL_ARCH = ("1 0 0 4 2 3 1 2 0 4 2 4 1 3 3 4 0 4 4 2 "
              "0 4 1 3 2 2 0 1 1 4 2 4 3 2 4 4 0 3 5 2")


def _argv(output_dir):
    return ["--dataset=synthetic", f"--output_dir={output_dir}", f"--arch={SMALL_ARCH}",
            "--num_cells=1", "--filters=8", "--epochs=3", "--batch_size=16",
            "--synthetic_train_images=256", "--synthetic_test_images=32", "--log_every_steps=1",
            "--eval_every_epochs=10", "--seed=1"]


def _flags(module, argv):
    values = flags.FlagValues()
    module.define_flags(values)
    values(["prog", *argv])
    return values


def _command(*args):
    return subprocess.run([sys.executable, "-m", "cnn.train_final", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.mark.slow
def test_kill_during_an_epoch_then_rerun_resumes_and_exports(tmp_path, capsys):
    run_dir = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-m", "cnn.train_final", *_argv(run_dir)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    for line in child.stdout:  # progress lines: "epoch E step S/48 ..."
        if "epoch 2 step 20/48" in line:
            child.kill()
            break
    child.wait(timeout=60)
    assert child.returncode == -9, "the run ended before it could be killed in epoch 2"
    assert json.loads((run_dir / "train_state.json").read_text())["epoch"] == 1
    assert not (run_dir / "results.json").exists()  # written when the run is finished

    capsys.readouterr()
    train_final.train(_flags(train_final, _argv(run_dir)))
    resumed = [line for line in capsys.readouterr().out.splitlines() if "resumed from" in line]
    lr = 0.0001 + 0.5 * (0.05 - 0.0001) * (1 + np.cos(np.pi * 1 / 10))  # SGDR at epoch 1
    assert resumed and f"epoch 1, step 16, lr {lr:.6g}" in resumed[0]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["finished"] and results["resumed_from_epoch"] == 1
    assert results["steps"] == 48 and results["epochs"] == 3
    assert 0 <= results["test_accuracy"] <= 1 and results["params"] > 0
    tags = {v.tag for path in (run_dir / "tensorboard").glob("events.out.tfevents.*")
            for event in tf.compat.v1.train.summary_iterator(str(path)) for v in event.summary.value}
    assert {"train/loss", "train/accuracy", "train/lr", "train/images_per_sec",
            "test/accuracy"} <= tags

    # The export loads in a clean interpreter that cannot import this project.
    _, test = synthetic_splits(0, 6, seed=5)
    np.save(tmp_path / "images.npy", test.images.astype(np.float32))
    script = (
        "import importlib.util, numpy as np, tensorflow as tf\n"
        "assert importlib.util.find_spec('cnn') is None\n"
        f"m = tf.saved_model.load({str(run_dir / 'export')!r})\n"
        f"out = m.serve(tf.constant(np.load({str(tmp_path / 'images.npy')!r})))\n"
        f"np.save({str(tmp_path / 'logits.npy')!r}, out['logits'].numpy())\n")
    proc = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    settings = json.loads((run_dir / "flags.json").read_text())
    model = load_trained_model(str(run_dir), settings)
    train, _ = synthetic_splits(256, 32, seed=1)
    mean = (train.images.reshape(-1, 3).mean(0) / 255).astype(np.float32)
    std = np.maximum(train.images.reshape(-1, 3).std(0) / 255, 1e-3).astype(np.float32)
    expected = model(normalize(test.images, mean, std), training=False).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), expected, rtol=1e-4, atol=1e-4)

    metrics = evaluate.evaluate(_flags(evaluate, [f"--output_dir={run_dir}"]))
    assert metrics["images"] == 32
    assert metrics["accuracy"] == pytest.approx(results["test_accuracy"])


@pytest.mark.slow
def test_a_user_error_prints_one_line_and_exits_2(tmp_path):
    proc = _command(f"--output_dir={tmp_path / 'run'}", "--arch=enas_cell")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: unknown architecture name 'enas_cell'"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--arch=0 1 0 4"], "cnn_any: got 4 integers, expected 40"),
    (["--dataset=cifar10", "--data_dir=/nonexistent/cifar"],
     "/nonexistent/cifar: data directory not found"),
])
def test_user_errors_stop_before_anything_is_written(tmp_path, args, message):
    """In this process: the command's errors, which cli.run prints as one line with exit code 2
    (the test above)."""
    with pytest.raises(NaoError, match=message):
        train_final.train(_flags(train_final, [f"--output_dir={tmp_path / 'run'}", *args]))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_divergence_advice_can_be_followed(tmp_path, capsys):
    """The message says to rerun with a lower --lr_max; that rerun is accepted and resumes."""
    argv = [*_argv(tmp_path / "run"), "--epochs=1"]
    with pytest.raises(NaoError, match="rerun the same command with a lower --lr_max"):
        train_final.train(_flags(train_final, [*argv, "--lr_max=1e6"]))
    results = train_final.train(_flags(train_final, [*argv, "--lr_max=0.05"]))
    assert results["finished"] and results["test_accuracy"] is not None


def test_config_sets_defaults_and_explicit_flags_win():
    f = _flags(train_final, ["--config=naonet", "--dataset=cifar100", "--filters=36",
                            "--output_dir=x"])
    final_training.apply_config(TASK, f)
    assert (f.num_cells, f.filters, f.epochs, f.cutout_size, f.nesterov) == (6, 36, 600, 16, False)
    assert (f.drop_path_keep_prob, f.keep_prob, f.t0, f.t_mul) == (0.6, 0.8, 600, 1)
    assert f.arch == "naonet" and f.batch_size == 128


@pytest.mark.parametrize("config, arch, filters, wd, drop_path", [
    ("naonet_a_36", "naonet_a", 36, 3e-4, 0.8),  # NAO_V1 train_cifar.py defaults
    ("naonet_b_36", "naonet_b", 36, 3e-4, 0.8),
    ("naonet_a_128", "naonet_a", 128, 5e-4, 0.7),  # train_NAONet_A_128_cifar10_4cards.sh
    ("naonet_v2_36", "naonet_v2", 36, 5e-4, 0.8),  # NAO_V2 train_cifar.py defaults
])
def test_nao_pytorch_presets_are_the_scripts_recipes(config, arch, filters, wd, drop_path):
    f = _flags(train_final, [f"--config={config}", "--output_dir=x"])
    final_training.apply_config(TASK, f)
    assert (f.arch, f.num_cells, f.filters, f.epochs, f.batch_size) == (arch, 6, filters, 600, 128)
    # PyTorch's weight_decay wd adds wd * w to the gradient; l2_reg * sum(w^2) adds 2 * l2_reg * w.
    assert f.l2_reg == pytest.approx(wd / 2)
    assert (f.drop_path_keep_prob, f.keep_prob, f.cutout_size, f.aux_weight) == \
        (drop_path, 0.6, 16, 0.4)
    assert (f.lr_schedule, f.lr_max, f.lr_min, f.t0, f.t_mul, f.nesterov) == \
        ("sgdr", 0.025, 0.0, 600, 1, False)
    assert f.arch in archs()
