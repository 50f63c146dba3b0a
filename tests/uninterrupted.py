"""The reference a kill test compares against: the same search, `--deterministic`, run without
interruption in its own directory, side by side with the killed one."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start(module: str, args: list[str], output_dir: Path) -> subprocess.Popen:
    """Starts `python -m module *args --output_dir=output_dir` with no output kept."""
    return subprocess.Popen([sys.executable, "-m", module, *args, f"--output_dir={output_dir}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def assert_same_end(reference: subprocess.Popen, reference_dir: Path, resumed_dir: Path) -> None:
    """The killed-and-resumed search ended exactly as the uninterrupted one: the same scores, in
    the same order, and the same best_arch.json."""
    _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-3000:]
    histories = [json.loads((d / "state.json").read_text())["history"]
                 for d in (reference_dir, resumed_dir)]
    assert len({r["score"] for r in histories[0]}) > 1  # real, differing scores
    assert histories[1] == histories[0]
    assert (resumed_dir / "best_arch.json").read_text() == \
        (reference_dir / "best_arch.json").read_text()
