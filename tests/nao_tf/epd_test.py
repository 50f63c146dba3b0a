"""The standalone controller command: train, then evaluate and generate from its directory."""

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nao_tf.spaces.synthetic import SyntheticObjective, SyntheticSpace

ROOT = Path(__file__).resolve().parents[2]


def _data(tmp_path):
    space = SyntheticSpace()
    archs = space.sample_unique(30, np.random.default_rng(0))
    objective = SyntheticObjective(space)
    (tmp_path / "archs").write_text("".join(space.to_string(a) + "\n" for a in archs))
    (tmp_path / "scores").write_text("".join(f"{objective(a)}\n" for a in archs))
    return ["--space=synthetic", f"--archs={tmp_path / 'archs'}",
            f"--scores={tmp_path / 'scores'}"]


def _epd(*args):
    return subprocess.run([sys.executable, "-m", "nao_tf.commands.epd", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_evaluate_and_generate_need_a_trained_controller(tmp_path):
    common = [*_data(tmp_path), f"--model_dir={tmp_path / 'typo'}"]
    for command in ("evaluate", "generate"):
        run = _epd(command, *common, f"--output={tmp_path / 'out'}")
        assert run.returncode == 2, run.stderr
        assert run.stderr.strip() == (f"error: --model_dir={tmp_path / 'typo'} holds no trained "
                                      "controller (config.json and checkpoint); train one with "
                                      "`python -m nao_tf.commands.epd train` first")
    assert not (tmp_path / "typo").exists()


@pytest.mark.slow
def test_a_killed_train_resumes_without_redoing_finished_epochs(tmp_path):
    args = ["train", *_data(tmp_path), f"--model_dir={tmp_path / 'epd'}", "--epochs=70",
            "--save_every_epochs=10", "--controller_batch_size=10"]
    child = subprocess.Popen([sys.executable, "-m", "nao_tf.commands.epd", *args], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in child.stdout:
        if line.startswith("epoch 50:"):  # printed every 50 epochs, after the save
            child.kill()
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, "train ended before it could be killed"
    rerun = _epd(*args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resumed = int(rerun.stdout.split("killed after epoch ")[1].split()[0])
    assert 50 <= resumed < 70
    epochs = [int(line.split()[1][:-1]) for line in rerun.stdout.splitlines()
              if line.startswith("epoch ")]
    assert epochs[0] > resumed and epochs[-1] == 70  # no finished epoch trained again
    assert sorted(p.name for p in (tmp_path / "epd").iterdir()) == [
        "checkpoint.data-00000-of-00001", "checkpoint.index", "config.json"]
