"""`bench/gpu_suite.sh --tiny` runs end to end on the CPU and writes its table."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_suite_tiny_runs_and_writes_its_table(tmp_path):
    out = tmp_path / "suite.md"
    proc = subprocess.run(
        ["bash", "bench/gpu_suite.sh", "--tiny", "--precisions=fp32", "--modes=switch",
         "--noxla", f"--out={out}"], cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",  # the script's `python`: this one's
             "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])})
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    assert table.startswith("# GPU suite (tiny) on CPU")
    rows = {line.split(" | ")[0].lstrip("| ") + " / " + line.split(" | ")[1]:
            float(line.split(" | ")[2]) for line in table.splitlines()
            if line.count(" | ") == 3 and not line.startswith("| measured")
            and not line.startswith("|---")}
    for name in ("controller / dot attention", "controller / bahdanau attention",
                 "naonet final train / fp32", "rnn lm train / fp32",
                 "rnn supernet train / fp32", "rnn supernet score / fp32",
                 "cnn supernet train / switch, fp32", "cnn supernet score / switch, fp32",
                 "input pipeline / CIFAR, augmented + cutout", "input pipeline / PTB BPTT windows"):
        assert rows[name] > 0, name
    for job in ("NAO-WS CNN search", "NAO-WS RNN search", "NAONet final training"):
        assert f"| {job} |" in table and " h |" in table.split(f"| {job} |")[1].splitlines()[0]
