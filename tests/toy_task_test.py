"""A third task from a space, one network and presets (tests/toy_task.py) runs both search modes
end to end through the shared command skeletons."""

import json
import subprocess
import sys
import re

import pytest
from absl import flags

from nao_tf.commands import standalone_search, weight_sharing_search
from nao_tf.commands.task import Candidates
from nao_tf.common.errors import NaoError, StateError
from tests import toy_task
from tests.snapshot import run_dir_snapshot

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _flags(skeleton, task, *argv):
    values = flags.FlagValues()
    skeleton.define_flags(task, values)
    values(["prog", "--config=tiny", *argv])
    return values


def _check_result(out, result, space):
    best = json.loads((out / "best_arch.json").read_text())
    assert best["arch"] == space.to_string(result.best_arch)
    assert best["higher_is_better"] is False and best["score"] == result.best_score
    assert 0.0 < result.best_score < 2.0  # a validation MSE, finite and learned


@pytest.mark.slow
def test_toy_task_searches_with_weight_sharing(tmp_path):
    values = _flags(weight_sharing_search, toy_task.TASK, f"--output_dir={tmp_path}")
    result = weight_sharing_search.run(toy_task.TASK, values)
    _check_result(tmp_path, result, toy_task.SPACE)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["phase"] == "done" and state["iteration"] == 1  # epochs 6, scored every 3
    assert {r["iteration"] for r in state["history"]} == {0, 1}  # the pool re-scored
    assert json.loads((tmp_path / "search_settings.json").read_text())["epochs"] == 6
    rerun = weight_sharing_search.run(toy_task.TASK, _flags(
        weight_sharing_search, toy_task.TASK, f"--output_dir={tmp_path}"))
    assert rerun.history == result.history  # a finished search resumes as done
    before = run_dir_snapshot(tmp_path)
    with pytest.raises(StateError, match=r"lr: 0.01 -> 0.02"):  # refused: nothing written
        weight_sharing_search.run(toy_task.TASK, _flags(
            weight_sharing_search, toy_task.TASK, f"--output_dir={tmp_path}", "--lr=0.02"))
    assert run_dir_snapshot(tmp_path) == before


# At most two of the four branches a dense layer (the toy network's cost model).
BUDGET = 2 * (8 * 16 + 16) + 17 + 2 * (16 * 16 + 16)


@pytest.mark.slow
def test_toy_task_searches_without_weight_sharing_within_a_budget(tmp_path):
    argv = (f"--output_dir={tmp_path}", "--iterations=1", "--epochs=3", f"--max_params={BUDGET}")
    result = standalone_search.run(toy_task.TASK, _flags(standalone_search, toy_task.TASK, *argv))
    _check_result(tmp_path, result, toy_task.SPACE)
    trained = list((tmp_path / "archs").glob("*/score.json"))
    assert len(trained) == result.evaluated == len(result.history) > 8  # the pool, then new ones
    costs, _ = toy_task.TASK.cost_model("nao", None, toy_task.SPACE)
    params = [costs(toy_task.SPACE.parse(r["arch"]))["params"] for r in result.history]
    assert max(params) <= BUDGET  # no cell over the budget was trained
    best = json.loads((tmp_path / "best_arch.json").read_text())
    assert best["budget"] == {"params": BUDGET} and best["counted_in"] == "the toy network"
    front = best["pareto"]["params"]
    assert front[0]["costs"]["params"] == min(params) and front[-1]["score"] == result.best_score
    assert (tmp_path / "pareto.png").stat().st_size > 0
    before = run_dir_snapshot(tmp_path)
    for change, message in (("--lr=0.02", r"lr: 0.01 -> 0.02"),
                            ("--max_params=", r"budget: 'params <= 849 \(counted in the toy "
                                              r"network\)' -> None")):
        with pytest.raises(StateError, match=message):  # refused: nothing written
            standalone_search.run(toy_task.TASK, _flags(standalone_search, toy_task.TASK, *argv,
                                                        change))
        assert run_dir_snapshot(tmp_path) == before


class _Killed(Exception):
    pass


class _TimedToy(toy_task.ToyTask):
    """Records the cells whose latency it measures; its `kill_after`-th training raises."""

    def __init__(self, kill_after=None):
        self.timed, self.kill_after, self.trained = [], kill_after, 0

    def forward_pass(self, command, config, arch, batch):
        self.timed.append(toy_task.SPACE.canonical_key(arch))  # latency.json's keys
        return super().forward_pass(command, config, arch, batch)

    def candidates(self, config, settings, data, dirs, output_dir):
        train = super().candidates(config, settings, data, dirs, output_dir).train

        def train_or_die(arch, device):
            self.trained += 1
            if self.trained == self.kill_after:
                raise _Killed()
            return train(arch, device)
        return Candidates(train_or_die, None, "toy")


@pytest.mark.slow
def test_a_latency_budget_measures_each_cell_once_across_a_kill(tmp_path):
    argv = (f"--output_dir={tmp_path}", "--iterations=1", "--epochs=1", "--max_latency_ms=1000",
            "--latency_batch=4", f"--max_params={BUDGET}")
    killed = _TimedToy(kill_after=5)
    with pytest.raises(_Killed):
        standalone_search.run(killed, _flags(standalone_search, killed, *argv))
    table = json.loads((tmp_path / "latency.json").read_text())
    pool = json.loads((tmp_path / "state.json").read_text())["pool"]
    key = lambda text: toy_task.SPACE.canonical_key(toy_task.SPACE.parse(text))  # noqa: E731
    assert {key(a) for a in pool} <= set(table)  # every pool cell timed,
    assert len(killed.timed) == len(set(killed.timed)) and set(table) == set(killed.timed)  # once

    resumed = _TimedToy()
    result = standalone_search.run(resumed, _flags(standalone_search, resumed, *argv))
    assert resumed.timed and not set(resumed.timed) & set(killed.timed)  # only the new cells
    table = json.loads((tmp_path / "latency.json").read_text())
    assert set(table) == set(killed.timed) | set(resumed.timed)
    best = json.loads((tmp_path / "best_arch.json").read_text())
    assert best["costs"]["latency_ms"] == table[key(best["arch"])] <= 1000
    assert best["budget"] == {"params": BUDGET, "latency_ms": 1000.0}
    assert result.evaluated == len(result.history)
    with pytest.raises(StateError, match=r"latency of 4 input\(s\) measured on this machine\)' -> "):
        standalone_search.run(resumed, _flags(standalone_search, resumed, *argv,
                                              "--latency_batch=8"))


def test_a_budget_on_a_space_without_costs_stops_in_one_line(tmp_path):
    from nao_tf.commands.task import Task

    task = type("Toy", (toy_task.ToyTask,), {"cost_model": Task.cost_model})()
    with pytest.raises(NaoError, match="^the synthetic-2x3 space has no cost model, so it cannot "
                       "search under a budget; drop --max_params and --max_mult_adds$"):
        standalone_search.run(task, _flags(standalone_search, task, "--max_params=3k",
                                           f"--output_dir={tmp_path / 'run'}"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(NaoError, match="^--max_params=3 apples: not a count"):
        standalone_search.run(task, _flags(standalone_search, task, "--max_params=3 apples",
                                           f"--output_dir={tmp_path / 'run'}"))


@pytest.mark.parametrize("argv, ref, ray_installed, message", [
    (["--executor=ray"], "tests.toy_task:TASK", False,
     "--executor=ray needs Ray, which is not installed: pip install -r requirements-cluster.txt"),
    (["--executor=ray"], "", True, "task toy cannot run on Ray: it names no `ref`"),
])
def test_executor_flags_that_cannot_work_stop_before_writing(tmp_path, monkeypatch, argv, ref,
                                                             ray_installed, message):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
        (find_spec("json") if ray_installed else None) if name == "ray" else find_spec(name, *a)))
    task = type("Toy", (toy_task.ToyTask,), {"ref": ref})()
    out = tmp_path / "run"
    with pytest.raises(NaoError, match=re.escape(message)):
        standalone_search.run(task, _flags(standalone_search, task, f"--output_dir={out}", *argv))
    assert not out.exists()


def test_sizes_are_bounded_by_the_flags():
    with pytest.raises(flags.IllegalFlagValueError, match="--cpus_per_candidate=0: 0 is not a "
                       "positive integer"):
        _flags(standalone_search, toy_task.TASK, "--cpus_per_candidate=0")


class _NoSupernet(toy_task.ToyTask):
    configs = {"final": toy_task.ToyTask.configs["final"]}


def test_a_task_without_a_supernet_says_so_in_one_line(tmp_path):
    with pytest.raises(NaoError, match="^task toy offers no NAO with weight sharing .it offers: "
                       "the final training.$"):
        weight_sharing_search.flag_groups(_NoSupernet())
    command = ("from nao_tf.commands import weight_sharing_search; "
               "from tests.toy_task_test import _NoSupernet; "
               "weight_sharing_search.main(_NoSupernet())")
    done = subprocess.run([sys.executable, "-c", command, f"--output_dir={tmp_path}"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("error: task toy offers no NAO with weight sharing (it offers: the "
                           "final training)\n")
