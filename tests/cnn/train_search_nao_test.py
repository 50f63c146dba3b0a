"""NAO without weight sharing on CIFAR: SIGKILL in the middle of a pool, rerun, no recorded cell
trained again; imported score files."""

import json
import os
import re
import subprocess
import sys

import pytest
from absl import flags

from cnn import train_search_nao
from cnn.cells import CELLS
from cnn.search_space import NAONET_SPACE
from cnn.task import TASK
from nao_tf.commands import cli, standalone_search
from nao_tf.common.errors import DataError
from tests import uninterrupted

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Smaller still than --config=smoke: 2 cells, then 1 generated one.
TINY = ["--config=smoke", "--seed_archs=2", "--iterations=1", "--top_k=2", "--new_archs=1",
        "--controller_epochs=5", "--epochs=1", "--synthetic_train_images=160", "--num_valid=32",
        "--nouse_aux_head", "--deterministic"]
STARTED = re.compile(r"^  training ([\d ]+) on ")
GENERATED = re.compile(r"generated (\d+) new architectures")


def _start(output_dir) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cnn.train_search_nao", *TINY,
                             f"--output_dir={output_dir}"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=uninterrupted.ENV)


@pytest.mark.slow
def test_sigkill_mid_pool_then_rerun_trains_no_recorded_cell_again(tmp_path):
    """... and, with --deterministic, ends exactly as an uninterrupted run."""
    reference = uninterrupted.start("cnn.train_search_nao", TINY, tmp_path / "uninterrupted")
    run_dir = tmp_path / "run"
    child = _start(run_dir)
    for line in child.stdout:
        if line.startswith("  [1/2] "):  # the first score is recorded and saved
            child.kill()
            break
    child.wait(timeout=60)
    assert child.returncode == -9, "the search ended before it could be killed mid-pool"
    recorded = {r["arch"] for r in json.loads((run_dir / "state.json").read_text())["history"]}
    assert recorded

    rerun = _start(run_dir)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out[-3000:]
    started = [m.group(1) for m in map(STARTED.match, out.splitlines()) if m]
    assert not recorded & set(started), "a cell whose score was recorded was trained again"
    assert len(started) == len(set(started))
    history = [r["arch"] for r in json.loads((run_dir / "state.json").read_text())["history"]]
    # How many cells the controller finds depends on the scores; every one is trained once.
    generated, = [int(m.group(1)) for m in map(GENERATED.search, out.splitlines()) if m]
    assert len(history) == len(set(history)) == 2 + generated
    best = json.loads((run_dir / "best_arch.json").read_text())
    assert best["space"] == "naonet" and best["arch"] in history
    assert 0.0 <= best["score"] <= 1.0
    assert (run_dir / "best_arch.png").exists()
    uninterrupted.assert_same_end(reference, tmp_path / "uninterrupted", run_dir)


def _flags(argv):
    values = flags.FlagValues()
    standalone_search.define_flags(TASK, values)
    values(["prog", *argv])
    TASK.apply_preset("nao", values)
    return values


def _read_imports(fv, space=NAONET_SPACE):
    return TASK.read_imports(cli.parse(TASK.configs["nao"], fv), space, fv.import_archs,
                             fv.import_scores)


@pytest.mark.slow
def test_import_reads_error_rates_as_accuracies_and_names_bad_lines(tmp_path):
    cells, errors = tmp_path / "archs", tmp_path / "valid_error_rate"
    cells.write_text(CELLS["naonet"].text + "\n" + CELLS["naonet_a"].text + "\n")
    errors.write_text("0.08\n0.1\n")
    fv = _flags([f"--import_archs={cells}", f"--import_scores={errors}", "--output_dir=x"])
    pairs = _read_imports(fv)
    assert [round(s, 6) for _, s in pairs] == [0.92, 0.9]

    errors.write_text("8\n10\n")
    with pytest.raises(DataError, match=rf"{errors}:1: score 8.0 is outside \[0, 1\]"):
        _read_imports(fv)
    cells.write_text(CELLS["naonet"].text + "\n" + CELLS["nao_ws"].text + "\n")
    errors.write_text("0.08\n0.1\n")
    with pytest.raises(DataError, match=rf"{cells}:2: naonet: .* op 1 is not in this space"):
        _read_imports(fv)


@pytest.mark.slow
@pytest.mark.parametrize("lr_max, reason", [
    ("1e30", "diverged (training loss is nan"),
    ("1e6", "training has blown up")])  # finite under clipping, but far past any learning
def test_a_diverging_cell_is_scored_at_chance_level(tmp_path, lr_max, reason):
    import dataclasses

    from cnn import data as data_lib
    from nao_tf.runtime.standalone import ArchDirs, StandaloneEvaluator

    data = dataclasses.replace(data_lib.load("synthetic", split="search", num_valid=32,
                                             synthetic_sizes=(96, 0), seed=1), test=None)
    fv = _flags(["--output_dir=x", "--seed=1", "--nouse_aux_head", f"--lr_max={lr_max}",
                 "--epochs=2", "--batch_size=32", "--num_cells=1", "--filters=8"])
    schedule = cli.parse(TASK.configs["nao"], fv).schedule
    dirs = ArchDirs(tmp_path / "archs", NAONET_SPACE.to_string, scratch=("checkpoints",))
    logs = []
    evaluator = StandaloneEvaluator(train_search_nao.CifarArchTrainer(data, schedule, dirs), True,
                                    ["/cpu:0"], dirs=dirs, failed_score=0.1,
                                    to_string=NAONET_SPACE.to_string, log=logs.append)
    cell = NAONET_SPACE.parse(CELLS["naonet"].text)
    recorded = []
    evaluator.evaluate([cell], 0, lambda a, s, failed=False: recorded.append(s))
    assert recorded == [0.1]
    assert any(reason in line for line in logs), logs
    assert json.loads((dirs.path(cell) / "score.json").read_text())["diverged"]


def test_space_flag_searches_the_tf_release_space(tmp_path):
    """`--space=naonet_19`: cells with the TF release's extra ops are imported, scored and
    recorded in that space (imports only: nothing trains)."""
    cells, scores = tmp_path / "archs", tmp_path / "scores"
    cells.write_text(CELLS["amoebanet_b_nao"].text + "\n" + CELLS["amoebanet_a_nao"].text + "\n")
    scores.write_text("0.05\n0.04\n")
    fv = _flags(["--config=smoke", f"--output_dir={tmp_path / 'run'}", "--space=naonet_19",
                 "--seed_archs=2", "--iterations=0", f"--import_archs={cells}",
                 f"--import_scores={scores}"])
    result = standalone_search.run(TASK, fv)
    assert result.best_arch == CELLS["amoebanet_a_nao"].arch  # error 0.04: accuracy 0.96
    best = json.loads((tmp_path / "run" / "best_arch.json").read_text())
    assert best["space"] == "naonet_19" and best["score"] == pytest.approx(0.96)
    with pytest.raises(DataError, match="naonet: normal cell, node 2, branch 1: op 0 is not in"):
        _read_imports(_flags([f"--import_archs={cells}", f"--import_scores={scores}",
                              "--output_dir=x"]))
