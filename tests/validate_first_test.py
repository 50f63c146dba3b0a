"""Every command validates its flags and data before it touches the run directory: a failed
`--overwrite` rerun deletes nothing, and a refused rerun rewrites no record. One-line errors
for bad flags and Ctrl-C."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags

from cnn import train_final as cnn_final
from cnn.task import TASK as CNN
from nao_tf.commands import cli, standalone_search, weight_sharing_search
from nao_tf.commands.task import identity
from nao_tf.common.errors import NaoError
from rnn import train_final as rnn_final
from rnn.task import TASK as RNN
from rnn.train_final import TrainParams

ROOT = Path(__file__).resolve().parents[1]


def _flags(module, argv):
    values = flags.FlagValues()
    module.define_flags(values)
    values(["prog", *argv])
    return values


def _search_flags(skeleton, task, argv):
    values = flags.FlagValues()
    skeleton.define_flags(task, values)
    values(["prog", *argv])
    return values


def _finished_run(path: Path) -> Path:
    """A stand-in for a finished run: files no failed rerun may delete."""
    path.mkdir()
    for name in ("state.json", "search_settings.json", "train_settings.json", "flags.json"):
        (path / name).write_text('{"from": "the finished run"}')
    (path / "results.json").write_text("precious")
    return path


def _cnn_search(out, data):
    fv = _search_flags(weight_sharing_search, CNN,
                       ["--config=smoke", f"--output_dir={out}", "--overwrite", *data])
    weight_sharing_search.run(CNN, fv)


def _cnn_nao(out, data):
    fv = _search_flags(standalone_search, CNN,
                       ["--config=smoke", f"--output_dir={out}", "--overwrite", *data])
    standalone_search.run(CNN, fv)


def _cnn_final(out, data):
    fv = _flags(cnn_final, [f"--output_dir={out}", "--overwrite", *data])
    cnn_final.train(fv)


def _rnn_search(out, data_dir):
    fv = _search_flags(weight_sharing_search, RNN,
                       [f"--output_dir={out}", "--overwrite", f"--data_dir={data_dir}"])
    weight_sharing_search.run(RNN, fv)


def _rnn_nao(out, data_dir):
    fv = _search_flags(standalone_search, RNN,
                       [f"--output_dir={out}", "--overwrite", f"--data_dir={data_dir}"])
    standalone_search.run(RNN, fv)


def _rnn_final(out, data_dir):
    rnn_final.train(TrainParams(output_dir=str(out), data_dir=data_dir, overwrite=True))


CIFAR_TYPO = ["--dataset=cifar10", "--data_source=pickle", "--data_dir=/no/such/cifar"]


@pytest.mark.parametrize("command, data", [
    (_cnn_search, CIFAR_TYPO), (_cnn_nao, CIFAR_TYPO), (_cnn_final, CIFAR_TYPO),
    (_rnn_search, "/no/such/corpus"), (_rnn_nao, "/no/such/corpus"),
    (_rnn_final, "/no/such/corpus")])
def test_overwrite_with_missing_data_deletes_nothing(tmp_path, command, data):
    out = _finished_run(tmp_path / "run")
    before = {p.name: p.read_text() for p in out.iterdir()}
    with pytest.raises(NaoError, match="/no/such/"):
        command(out, data)
    assert {p.name: p.read_text() for p in out.iterdir()} == before


def test_a_refused_final_training_rewrites_no_record(tmp_path):
    argv = ["--dataset=synthetic", f"--output_dir={tmp_path}", "--num_cells=1", "--filters=8",
            "--epochs=1", "--batch_size=16", "--synthetic_train_images=64",
            "--synthetic_test_images=16"]
    (tmp_path / "flags.json").write_text('{"num_cells": 2, "filters": 8}')
    with pytest.raises(NaoError, match=r"num_cells: 2 -> 1"):
        cnn_final.train(_flags(cnn_final, argv))
    assert (tmp_path / "flags.json").read_text() == '{"num_cells": 2, "filters": 8}'


@pytest.mark.parametrize("argv, message", [
    (["--epochs=0"], "flag --epochs=0: 0 is not a positive integer"),  # absl's bounds
    (["--batch_size=0"], "flag --batch_size=0: 0 is not a positive integer"),
    (["--num_cells=0"], "flag --num_cells=0: 0 is not a positive integer"),
    (["--keep_prob=0"], "--keep_prob=0.0 must be a keep probability")])
def test_final_training_flags_out_of_range_stop_before_anything(tmp_path, argv, message):
    with pytest.raises((NaoError, flags.IllegalFlagValueError), match=message):
        cnn_final.train(_flags(cnn_final, ["--dataset=synthetic",
                                           f"--output_dir={tmp_path / 'run'}", *argv]))
    assert not (tmp_path / "run").exists()


def test_a_config_built_in_code_is_held_to_the_flags_bounds():
    with pytest.raises(NaoError, match="--bptt=0 must be at least 1"):
        rnn_final.check_params(TrainParams(output_dir="x", bptt=0))


@pytest.mark.parametrize("argv, message", [
    (["--seed_archs=0"], "flag --seed_archs=0: 0 is not a positive integer"),
    (["--epochs=-1"], "flag --epochs=-1: -1 is not a positive integer"),
    (["--beam_width=100000"], "flag --beam_width=100000: 100000 is not an integer in the range "
                              "\\[0, 64\\]"),
    (["--lambda_step=0"], "--lambda_step=0.0 must be positive"),
    (["--import_archs=a.txt"], "--import_archs and --import_scores go together")])
def test_search_flags_out_of_range_stop_before_anything(tmp_path, argv, message):
    with pytest.raises((NaoError, flags.IllegalFlagValueError), match=message):
        standalone_search.run(CNN, _search_flags(
            standalone_search, CNN, ["--config=smoke", f"--output_dir={tmp_path / 'run'}",
                                         *argv]))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, message", [
    (["--jit_compile"], "--jit_compile needs --op_selection=select"),
    (["--eval_epochs=1,3"], "--eval_epochs=1,3 must be positive, increasing and end at --epochs=2"),
    (["--beam_width=-1"], "flag --beam_width=-1: -1 is not an integer in the range \\[0, 64\\]")])
def test_weight_sharing_search_flags_stop_before_anything(tmp_path, argv, message):
    with pytest.raises((NaoError, flags.IllegalFlagValueError), match=message):
        weight_sharing_search.run(CNN, _search_flags(
            weight_sharing_search, CNN,
            ["--config=smoke", f"--output_dir={tmp_path / 'run'}", *argv]))
    assert not (tmp_path / "run").exists()


def _command(module, *args, **popen):
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--no_such_flag=1"], "error: Unknown command line flag 'no_such_flag'"),
    (["--epochs=many"], "error: flag --epochs=many: invalid literal"),
    (["positional"], "error: unexpected arguments positional"),
    ([], "error: flag --output_dir=None: Flag --output_dir must have a value other than None.")])
def test_bad_command_lines_are_one_error_line(tmp_path, args, message):
    child = _command("cnn.train_final", *args, *(
        [f"--output_dir={tmp_path / 'run'}"] if args else []))
    out, err = child.communicate(timeout=120)
    assert child.returncode == 2
    assert err.splitlines() == [err.strip()] and err.startswith(message), err


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_leaves_a_resumable_state(tmp_path):
    args = ["--iterations=50", f"--output_dir={tmp_path}"]
    child = _command("nao_tf.commands.demo", *args)
    for line in child.stdout:
        if line.startswith("iteration 1: train"):
            child.send_signal(signal.SIGINT)
            break
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, err[-2000:]
    assert err == "interrupted; rerun the same command to resume\n"
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["iteration"] >= 1 and state["phase"] != "done"
    rerun = _command("nao_tf.commands.demo", *args)
    first = rerun.stdout.readline()
    rerun.kill()
    rerun.wait(timeout=60)
    assert first.startswith(f"iteration {state['iteration']}: "), first  # it resumed there


def test_data_identity_is_the_contents_not_the_path(tmp_path):
    import shutil

    from nao_tf.commands.run_dir import RunDir
    from rnn.data import write_generated_corpus

    first, other = write_generated_corpus(tmp_path / "a", seed=1), write_generated_corpus(
        tmp_path / "b", seed=2)
    moved = shutil.copytree(first, tmp_path / "moved")

    def settings(data_dir):
        fv = _search_flags(standalone_search, RNN,
                           [f"--output_dir={tmp_path / 'run'}", f"--data_dir={data_dir}"])
        return RNN.check("nao", cli.parse(RNN.configs["nao"], fv))[0]

    keys = identity(RNN.configs["nao"], settings(first))
    assert "data_fingerprint" in keys
    run = RunDir(tmp_path / "run", keys, standalone_search.SETTINGS_FILE)
    run.prepare(settings(first), overwrite=False)
    run.check(settings(moved), overwrite=False)  # the same corpus elsewhere resumes
    with pytest.raises(NaoError, match="data_fingerprint: '[0-9a-f]{16}' -> '[0-9a-f]{16}'"):
        run.check(settings(other), overwrite=False)
