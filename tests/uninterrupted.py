"""The reference a kill test compares against: the same search, `--deterministic`, run without
interruption in its own directory, side by side with the killed one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# The environment of every run a kill test compares, killed or not: one intra-op thread. On a
# loaded machine two uninterrupted processes of the same --deterministic search were seen to
# round differently with TensorFlow's default intra-op threads (3 of 16 RNN smoke searches ended
# 1e-5 to 1.3 % apart, a last-bit difference that the smoke settings' lr of 20 amplifies; none of
# 10 with one thread), which a comparison to 1e-6 cannot tell from a resume that lost a step.
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": "1"}


def start(module: str, args: list[str], output_dir: Path) -> subprocess.Popen:
    """Starts `python -m module *args --output_dir=output_dir` with no output kept."""
    return subprocess.Popen([sys.executable, "-m", module, *args, f"--output_dir={output_dir}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=ENV)


def assert_same_end(reference: subprocess.Popen, reference_dir: Path, resumed_dir: Path) -> None:
    """The killed-and-resumed search ended as the uninterrupted one: the same architectures, in
    the same order, with the same scores, and the same best_arch.json. Scores agree to a relative
    1e-6, not bit for bit: a cell trained in a fresh process can differ in the last bits from the
    same cell trained later in a long-running one (measured: 5e-8 relative, in one RNN cell's
    perplexity in one run of three)."""
    _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-3000:]
    histories, best = ([json.loads((d / name).read_text()) for d in (reference_dir, resumed_dir)]
                       for name in ("state.json", "best_arch.json"))
    histories = [h["history"] for h in histories]
    assert len({r["score"] for r in histories[0]}) > 1  # real, differing scores
    records = [[(r["iteration"], r["arch"]) for r in h] for h in histories]
    differ = [i for i, (a, b) in enumerate(zip(*records)) if a != b]
    assert records[1] == records[0], (
        f"the resumed run scored other architectures, or in another order, than the "
        f"uninterrupted one: first at record {differ[0] if differ else min(map(len, records))} "
        f"of {len(records[0])} (iteration, arch): {records[1][differ[0]] if differ else '-'} "
        f"!= {records[0][differ[0]] if differ else '-'}")
    for records in (histories, [[b] + b["top"] for b in best]):
        scores = [np.array([r.pop("score") for r in rs]) for rs in records]
        np.testing.assert_allclose(scores[1], scores[0], rtol=1e-6)
    assert histories[1] == histories[0]
    assert best[1] == best[0]
