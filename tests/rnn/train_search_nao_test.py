"""NAO without weight sharing on a generated corpus: a search that starts from imported
perplexities, SIGKILLed in the middle of a pool and rerun, trains no recorded cell again."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from nao_tf.commands import cli, standalone_search
from nao_tf.common.errors import DataError
from nao_tf.runtime.standalone import ArchDirs, StandaloneEvaluator
from rnn import train_search_nao
from rnn.search_space import NAMED_ARCHS, RnnSearchSpace
from rnn.task import TASK
from tests import uninterrupted

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--config=smoke", "--seed_archs=4", "--iterations=1", "--top_k=2", "--new_archs=2",
        "--controller_epochs=5", "--emsize=8", "--epochs=1", "--deterministic"]
STARTED = re.compile(r"^  training ([\d ]+) on ")
GENERATED = re.compile(r"generated (\d+) new architectures")
# The original's best NAO cell, in the NAO code table (2=identity, 3=sigmoid), as in its files.
NAO_CELL = "0 1 0 1 1 1 3 0 4 1 4 1 5 1 1 1 7 1 1 1 1 2"


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rnn.train_search_nao", *TINY, *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=uninterrupted.ENV)


def _imports(directory) -> list[str]:
    """Flags that import two scored cells (the original's best, its perplexity far below any
    trained here, and a chain) and turn on the controller options beyond the original (ranking
    loss, two heads, UCB on 2x)."""
    cells, ppl = directory / "archs", directory / "valid_ppl"
    chain = "0 0 0 0 1 0 2 0 3 0 4 0 5 0 6 0 7 0 8 0 9 0"  # tanh only: the same in both tables
    cells.write_text(f"{NAO_CELL}\n{chain}\n")
    ppl.write_text("1.5\n80.25\n")
    return [f"--import_archs={cells}", f"--import_scores={ppl}", "--predictor_heads=2",
            "--ranking_weight=0.5", "--oversample=2", "--acquisition=ucb"]


@pytest.mark.slow
def test_sigkill_mid_pool_then_rerun_trains_no_recorded_cell_again(tmp_path):
    """... and, with --deterministic, ends exactly as an uninterrupted run. The search starts
    from imported perplexities: they lead the first pool (two imported cells, two sampled ones)
    and are never trained."""
    imports = _imports(tmp_path)
    reference = uninterrupted.start("rnn.train_search_nao", [*TINY, *imports],
                                    tmp_path / "uninterrupted")
    run_dir = tmp_path / "run"
    child = _start(f"--output_dir={run_dir}", *imports)
    for line in child.stdout:
        if line.startswith("  [1/2] "):  # the first trained cell's score is recorded
            child.kill()
            break
    child.wait(timeout=60)
    assert child.returncode == -9, "the search ended before it could be killed mid-pool"
    recorded = {r["arch"] for r in json.loads((run_dir / "state.json").read_text())["history"]}
    assert 3 <= len(recorded) < 4  # the two imported cells and one or two trained ones

    rerun = _start(f"--output_dir={run_dir}", *imports)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out[-3000:]
    started = [m.group(1) for m in map(STARTED.match, out.splitlines()) if m]
    assert not recorded & set(started), "a cell whose score was recorded was trained again"
    history = json.loads((run_dir / "state.json").read_text())["history"]
    assert [r["arch"] for r in history if r.get("imported")] == \
        [NAMED_ARCHS["NAO"], "0 0 0 0 1 0 2 0 3 0 4 0 5 0 6 0 7 0 8 0 9 0"]
    archs = [r["arch"] for r in history]
    # How many cells the 5-epoch controller finds depends on the scores; every one is trained once.
    generated, = [int(m.group(1)) for m in map(GENERATED.search, out.splitlines()) if m]
    assert len(archs) == len(set(archs)) == 4 + generated
    assert len(started) == len(archs) - len(recorded)
    best = json.loads((run_dir / "best_arch.json").read_text())
    assert best["arch"] == NAMED_ARCHS["NAO"] and best["higher_is_better"] is False
    assert (run_dir / "best_arch.png").exists()
    uninterrupted.assert_same_end(reference, tmp_path / "uninterrupted", run_dir)


@pytest.mark.slow
def test_cells_train_in_parallel_on_two_devices(tmp_path, corpus_dir):
    space = RnnSearchSpace()
    defaults = cli.parse(TASK.configs["nao"], object()).schedule
    schedule = {**{k: getattr(defaults, k) for k in train_search_nao.SCHEDULE_KEYS},
                "data_dir": str(corpus_dir), "emsize": 8, "batch_size": 8, "bptt": 10,
                "max_seq_len_delta": 2, "epochs": 1}
    dirs = ArchDirs(tmp_path / "archs", space.to_string, scratch=("checkpoints", "best"))
    evaluator = StandaloneEvaluator(train_search_nao.PtbArchTrainer(schedule, dirs, space), False,
                                    ["/cpu:0", "/cpu:1"], dirs=dirs, to_string=space.to_string,
                                    log=lambda _: None)
    cells = space.sample_unique(4, np.random.default_rng(0))
    recorded = {}
    evaluator.evaluate(cells, 0, lambda a, s, failed=False: recorded.setdefault(space.to_string(a), s))
    assert set(recorded) == {space.to_string(c) for c in cells}
    assert all(1.0 < s < 100.0 for s in recorded.values())
    saved = [json.loads((dirs.path(c) / "score.json").read_text()) for c in cells]
    assert {r["device"] for r in saved} == {"/cpu:0", "/cpu:1"}
    assert not any((dirs.path(c) / "checkpoints").exists() for c in cells)


@pytest.mark.slow
def test_import_errors_name_the_file_and_line(tmp_path):
    values = flags.FlagValues()
    standalone_search.define_flags(TASK, values)
    cells, ppl = tmp_path / "archs", tmp_path / "valid_ppl"
    values(["prog", "--output_dir=x", f"--import_archs={cells}", f"--import_scores={ppl}"])
    cells.write_text(NAO_CELL + "\n" + NAO_CELL.replace("0 1 0 1", "0 1 5 1") + "\n")
    ppl.write_text("60\n70\n")
    with pytest.raises(DataError, match=rf"{cells}:2: "):
        TASK.read_imports(cli.parse(TASK.configs["nao"], values), TASK.space("nao"),
                          values.import_archs, values.import_scores)
    cells.write_text(NAO_CELL + "\n")
    ppl.write_text("4.1\n")
    values.import_scores = str(ppl)
    ppl.write_text("0.5\n")
    with pytest.raises(DataError, match=rf"{ppl}:1: perplexity 0.5 is below 1"):
        TASK.read_imports(cli.parse(TASK.configs["nao"], values), TASK.space("nao"),
                          values.import_archs, values.import_scores)
