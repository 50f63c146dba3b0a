"""The standalone controller command: train, then evaluate and generate from its directory."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nao_tf.benchmarks.synthetic import SyntheticObjective, SyntheticSpace

ROOT = Path(__file__).resolve().parents[2]


def _epd(*args):
    return subprocess.run([sys.executable, "-m", "nao_tf.epd", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_evaluate_and_generate_need_a_trained_controller(tmp_path):
    space = SyntheticSpace()
    archs = space.sample_unique(30, np.random.default_rng(0))
    objective = SyntheticObjective(space)
    (tmp_path / "archs").write_text("".join(space.to_string(a) + "\n" for a in archs))
    (tmp_path / "scores").write_text("".join(f"{objective(a)}\n" for a in archs))
    common = ["--space=synthetic",
              f"--archs={tmp_path / 'archs'}", f"--model_dir={tmp_path / 'typo'}"]
    for command in ("evaluate", "generate"):
        run = _epd(command, *common, f"--scores={tmp_path / 'scores'}",
                   f"--output={tmp_path / 'out'}")
        assert run.returncode == 2, run.stderr
        assert run.stderr.strip() == (f"error: --model_dir={tmp_path / 'typo'} holds no trained "
                                      "controller (config.json and checkpoint); train one with "
                                      "`python -m nao_tf.epd train` first")
    assert not (tmp_path / "typo").exists()
