"""The NAS-Bench-201 task through the three commands, at smoke size on synthetic images: NAO-WS
killed in supernet training and resumed, the found cell trained from scratch, NAO without weight
sharing."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nao_tf.spaces.nasbench201 import NasBench201Space

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_search_killed_resumes_then_final_training(tmp_path):
    out = tmp_path / "search"
    command = ["scripts/train_search.sh", "nb201", "--config=smoke", "--epochs=3",
               f"--output_dir={out}"]
    proc = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state_path = out / "supernet" / "train_state.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if state_path.exists() and json.loads(state_path.read_text())["epoch"] >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed = json.loads(state_path.read_text())["epoch"]
    assert 1 <= killed < 3, "the run must be killed in supernet training"
    done = _run(*command)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"ckpt-{killed}: epoch {killed}" in done.stdout, done.stdout[-3000:]
    state = json.loads((out / "state.json").read_text())
    assert state["phase"] == "done" and state["iteration"] == 2
    assert json.loads(state_path.read_text())["epoch"] == 3
    best = json.loads((out / "best_arch.json").read_text())
    assert best["space"] == "nasbench201" and best["higher_is_better"] is True
    NasBench201Space().parse(best["arch"])  # a string of the benchmark's table

    final = tmp_path / "final"
    trained = _run("scripts/train_final.sh", "nb201", "--config=smoke",
                   f"--arch={out / 'best_arch.json'}", f"--output_dir={final}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert f"cell {best['arch']}: " in trained.stdout
    results = json.loads((final / "results.json").read_text())
    assert 0.0 <= results["test_accuracy"] <= 1.0


@pytest.mark.slow
def test_nao_without_weight_sharing(tmp_path):
    done = _run("scripts/train_search.sh", "nb201", "--mode=nao", "--config=smoke",
                "--seed_archs=4", "--top_k=2", "--new_archs=2", "--random_archs=0",
                f"--output_dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["phase"] == "done" and len(state["history"]) >= 4
    assert all(0.0 <= r["score"] <= 1.0 for r in state["history"])


def test_final_training_needs_a_cell(tmp_path):
    done = _run(sys.executable, "-m", "nb201.train_final", "--config=smoke",
                f"--output_dir={tmp_path / 'run'}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: pass the cell to train")
    assert not (tmp_path / "run").exists()
