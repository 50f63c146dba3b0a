"""The run directory: validate, then touch; a mismatch names every differing setting."""

import json

import pytest
import tensorflow as tf

from nao_tf.commands.run_dir import RunDir
from nao_tf.common.errors import DataError, StateError
from nao_tf.common.io import read_json
from nao_tf.common.resume import check_identity, latest_checkpoint, require_record, restore
from nao_tf.common.summaries import write_scalars
from nao_tf.runtime.distribute import checkpoint_manager


def test_a_new_run_records_its_settings(tmp_path):
    RunDir(tmp_path / "run", ["lr"]).prepare({"lr": 0.1, "log": 5}, overwrite=False)
    assert json.loads((tmp_path / "run" / "flags.json").read_text()) == {"lr": 0.1, "log": 5}


def test_a_refused_rerun_names_each_difference_and_writes_nothing(tmp_path):
    run = RunDir(tmp_path, ["lr", "depth", "seed"])
    run.prepare({"lr": 0.1, "depth": 3, "seed": 1, "log": 5}, overwrite=False)
    (tmp_path / "weights").write_text("trained")
    before = (tmp_path / "flags.json").read_text()
    with pytest.raises(StateError, match=r"lr: 0.1 -> 0.2; depth: 3 -> 4\).*--overwrite"):
        run.prepare({"lr": 0.2, "depth": 4, "seed": 1, "log": 5}, overwrite=False)
    assert (tmp_path / "flags.json").read_text() == before
    assert (tmp_path / "weights").read_text() == "trained"


def test_settings_outside_the_identity_may_change_on_a_rerun(tmp_path):
    run = RunDir(tmp_path, ["lr"])
    run.prepare({"lr": 0.1, "log": 5}, overwrite=False)
    run.prepare({"lr": 0.1, "log": 50}, overwrite=False)
    assert json.loads((tmp_path / "flags.json").read_text())["log"] == 50


def test_overwrite_deletes_only_what_the_command_owns(tmp_path):
    RunDir(tmp_path, ["lr"]).prepare({"lr": 0.1}, overwrite=False)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ckpt-1").write_text("x")
    (tmp_path / "notes.txt").write_text("mine")
    RunDir(tmp_path, ["lr"], owned=["checkpoints", "flags.json"]).prepare({"lr": 0.2}, True)
    assert not (tmp_path / "checkpoints").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert json.loads((tmp_path / "flags.json").read_text()) == {"lr": 0.2}


def test_overwrite_of_a_whole_directory(tmp_path):
    RunDir(tmp_path / "run", ["lr"]).prepare({"lr": 0.1}, overwrite=False)
    (tmp_path / "run" / "state.json").write_text("{}")
    RunDir(tmp_path / "run", ["lr"]).prepare({"lr": 0.2}, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["flags.json"]


@pytest.mark.parametrize("make", ["file", "file_parent"])
def test_an_unwritable_place_is_one_error_before_anything_happens(tmp_path, make):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    path = blocker if make == "file" else blocker / "run"
    with pytest.raises(StateError, match="is a file"):
        RunDir(path, []).prepare({}, overwrite=True)
    assert blocker.read_text() == "a file"


def test_a_settings_file_that_is_not_a_record_is_refused(tmp_path):
    (tmp_path / "flags.json").write_text("[1, 2]")
    with pytest.raises(StateError, match="not hold a settings record"):
        RunDir(tmp_path, ["lr"]).check({"lr": 1}, overwrite=False)


def test_identity_keys_added_later_do_not_block_old_runs():
    check_identity({"lr": 1}, {"lr": 1, "new_key": 2}, ["lr", "new_key"], "x")


def test_scalars_reach_the_event_file(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    write_scalars(writer, 3, {"loss": 1.5, "acc": 0.25})
    events = [e for f in tmp_path.iterdir() for e in tf.compat.v1.train.summary_iterator(str(f))]
    values = {v.tag: tf.make_ndarray(v.tensor).item() for e in events for v in e.summary.value}
    assert values == {"loss": 1.5, "acc": 0.25}
    assert {e.step for e in events if e.summary.value} == {3}


def test_json_that_parses_but_holds_something_else_is_named(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"epoch": 3, "history": {}}')
    assert read_json(path, {"epoch": int})["epoch"] == 3
    with pytest.raises(DataError, match="state.json: field 'history' is missing or not of type "
                                        "list; restore it"):
        read_json(path, {"epoch": int, "history": list})
    path.write_text('"a string"')
    with pytest.raises(DataError, match="holds a JSON str, not the object"):
        read_json(path, {"epoch": int})


def test_missing_damaged_and_foreign_checkpoints_are_named(tmp_path):
    weights = tf.Variable([1.0, 2.0])
    checkpoint = tf.train.Checkpoint(weights=weights)
    manager = tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=2)
    path = manager.save(checkpoint_number=7)
    weights.assign([0.0, 0.0])
    restore(checkpoint, latest_checkpoint(manager), exact=False)
    assert weights.numpy().tolist() == [1.0, 2.0]
    with pytest.raises(StateError, match="cannot be restored"):  # another program's checkpoint
        restore(tf.train.Checkpoint(other=tf.Variable(0.0)), path, exact=False)
    data = next(tmp_path.glob("ckpt-7.data-*"))
    data.write_bytes(b"damaged")
    with pytest.raises(StateError, match="ckpt-7 cannot be restored"):
        restore(checkpoint, path, exact=False)
    (tmp_path / "ckpt-7.index").unlink()
    with pytest.raises(StateError, match="ckpt-7 is missing"):
        restore(checkpoint, path, exact=False)


def test_lost_bookkeeping_stops_instead_of_starting_over(tmp_path):
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), str(tmp_path),
                                         max_to_keep=2)
    assert latest_checkpoint(manager) is None  # a new run
    manager.save(checkpoint_number=0)
    require_record(tmp_path / "state.json", tmp_path)  # the initial weights alone: nothing lost
    manager.save(checkpoint_number=5)
    with pytest.raises(StateError, match="state.json is missing, but .* holds trained"):
        require_record(tmp_path / "state.json", tmp_path)


def test_checkpoints_saved_without_their_record_are_resumed_and_then_deleted(tmp_path):
    """A run killed between writing a checkpoint and the manager's record of it: the newest
    checkpoint is resumed, and the chief's manager takes the old files into its record."""
    checkpoint = tf.train.Checkpoint(v=tf.Variable(1.0))
    manager = tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=2)
    manager.save(checkpoint_number=3)
    checkpoint.v.assign(2.0)
    manager.save(checkpoint_number=10)
    (tmp_path / "checkpoint").unlink()
    assert latest_checkpoint(tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=2)
                             ) == str(tmp_path / "ckpt-10")  # what another worker reads
    manager, latest = checkpoint_manager(checkpoint, tmp_path, tf.distribute.get_strategy(), 2)
    assert latest == str(tmp_path / "ckpt-10") == manager.latest_checkpoint
    checkpoint.v.assign(0.0)
    restore(checkpoint, latest, exact=False)
    assert checkpoint.v.numpy() == 2.0
    manager.save(checkpoint_number=11)
    assert sorted(p.name for p in tmp_path.glob("*.index")) == ["ckpt-10.index", "ckpt-11.index"]
