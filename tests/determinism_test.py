"""`--deterministic`: two searches with the same seed end identically (CNN and RNN NAO-WS, whose
supernets are the multi-threaded part), each pair run side by side."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "cnn.train_search": ["--config=smoke", "--seed_archs=8", "--top_k=4", "--new_archs=4",
                         "--random_archs=1", "--controller_epochs=20"],
    "rnn.train_search": ["--config=smoke", "--epochs=2", "--eval_every_epochs=1",
                         "--seed_archs=8", "--top_k=4", "--new_archs=4", "--random_archs=1",
                         "--controller_epochs=20", "--emsize=16", "--log_interval=1000"],
}


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(TINY))
def test_two_deterministic_runs_are_identical(tmp_path, module):
    runs = [subprocess.Popen([sys.executable, "-m", module, *TINY[module], "--deterministic",
                              f"--output_dir={tmp_path / str(k)}"], cwd=ROOT, text=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for k in range(2)]
    for run in runs:
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err[-2000:]
    histories = [json.loads((tmp_path / str(k) / "state.json").read_text())["history"]
                 for k in range(2)]
    assert histories[0] == histories[1]
    assert len({r["score"] for r in histories[0]}) > 1  # real, differing scores
    best = [(tmp_path / str(k) / "best_arch.json").read_text() for k in range(2)]
    assert best[0] == best[1]
