"""The "train one architecture" skeleton over the toy task (tests/toy_task.py): resume, the
settings a rerun must keep, and rollback after a diverged epoch."""

import json
import re

import pytest
from absl import flags

from nao_tf.commands import final_training
from nao_tf.common.errors import NaoError, StateError
from nao_tf.runtime import train_loop
from tests import toy_task
from tests.snapshot import run_dir_snapshot

ARCH = toy_task.SPACE.to_string(toy_task.SPACE.sample(__import__("numpy").random.default_rng(3)))


def _run(task, out, *argv):
    values = flags.FlagValues()
    final_training.define_flags(task, values)
    values(["prog", f"--output_dir={out}", f"--arch={ARCH}", *argv])
    final_training.apply_config(task, values)
    return final_training.run(task, values)


def test_a_toy_architecture_trains_resumes_and_keeps_its_settings(tmp_path, capsys):
    task = toy_task.TASK
    first = _run(task, tmp_path, "--epochs=2")
    assert [r["epoch"] for r in first["history"]] == [1, 2] and first["finished"]
    assert json.loads((tmp_path / "results.json").read_text()) == first
    assert re.search(r"^epoch 2/2: valid_mse [0-9.]+ \| [0-9.]+s, ETA 0:00:00$",
                     capsys.readouterr().out, re.M)  # the skeleton's progress line
    longer = _run(task, tmp_path, "--epochs=4")  # the epoch count may grow on a rerun
    out = capsys.readouterr().out
    assert f"resumed from {tmp_path}/checkpoints/ckpt-2: epoch 2" in out
    assert re.search(r"^epoch 3/4: valid_mse [0-9.]+ \| [0-9.]+s, ETA 0:00:0\d$", out, re.M)
    assert longer["resumed_from_epoch"] == 2 and longer["epochs"] == 4
    assert longer["history"][:2] == first["history"]
    assert longer["valid_mse"] < longer["history"][0]["valid_mse"]  # it learns
    before = run_dir_snapshot(tmp_path)
    with pytest.raises(StateError, match=r"lr: 0.01 -> 0.02.*--overwrite"):
        _run(task, tmp_path, "--epochs=4", "--lr=0.02")
    assert run_dir_snapshot(tmp_path) == before  # refused: nothing written
    again = _run(task, tmp_path, "--epochs=1", "--lr=0.02", "--overwrite")
    assert again["resumed_from_epoch"] == 0 and again["epochs"] == 1


class _Diverging(toy_task.ToyTrainee):
    """Diverges in epoch 2 on its first `times` attempts (None: always)."""

    times: int | None = None
    calls: list = []

    def train_epoch(self, epoch, attempt, state, writer):
        self.calls.append((epoch, attempt))
        if epoch == 2 and (self.times is None or attempt < self.times):
            super().train_epoch(epoch, attempt, state, writer)  # the weights move, then the
            raise train_loop.Diverged(f"training loss is nan at epoch {epoch}")  # loss "diverges"
        return super().train_epoch(epoch, attempt, state, writer)


@pytest.mark.parametrize("times", [1, None])
def test_a_diverged_epoch_rolls_back_then_stops_with_the_advice(tmp_path, times):
    trainee = type("Trainee", (_Diverging,), {"times": times, "calls": []})

    class RollingBack(toy_task.ToyTask):
        def trainee(self, config, arch, strategy):
            return trainee([arch], config)

        def epochs(self, config):
            return {"epochs": config.epochs, "max_rollbacks": 1}

    task = RollingBack()
    if times:
        results = _run(task, tmp_path, "--epochs=3")
        assert trainee.calls == [(1, 0), (2, 0), (2, 1), (3, 0)] and results["rollbacks"] == 1
        reference = _run(toy_task.TASK, tmp_path / "reference", "--epochs=3")
        assert results["valid_mse"] == pytest.approx(reference["valid_mse"], rel=1e-6)
        return  # the rollback restored epoch 1's weights and optimizer: the same end
    with pytest.raises(NaoError, match="rolled back to the epoch-1 checkpoint 1 times in a row "
                                       "and it diverged again; lower --lr: it resumes from"):
        _run(task, tmp_path, "--epochs=3")
    assert trainee.calls == [(1, 0), (2, 0), (2, 1)]
    assert json.loads((tmp_path / "train_state.json").read_text())["epoch"] == 1
    assert not (tmp_path / "results.json").exists()


def test_arch_may_be_a_searchs_best_arch_json(tmp_path):
    best = tmp_path / "best_arch.json"
    best.write_text(json.dumps({"space": toy_task.SPACE.name, "arch": ARCH, "score": 0.1}))
    values = flags.FlagValues()
    final_training.define_flags(toy_task.TASK, values)
    values(["prog", f"--output_dir={tmp_path / 'run'}", f"--arch={best}", "--epochs=1"])
    assert final_training.run(toy_task.TASK, values)["epochs"] == 1
    values.arch = str(tmp_path / "missing.json")
    with pytest.raises(NaoError, match="missing.json: file not found"):
        final_training.run(toy_task.TASK, values)
