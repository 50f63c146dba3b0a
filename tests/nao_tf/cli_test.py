"""Flags from typed configs, and presets checked where they are defined."""

import dataclasses
import importlib

import pytest
from absl import flags

from nao_tf.commands import (cli, final_training, search_command, standalone_search,
                             weight_sharing_search)
from nao_tf.common.errors import NaoError
from tests import toy_task


@dataclasses.dataclass(frozen=True)
class Inner:
    lr: float = cli.option(0.1, "Learning rate.", identity=True)


@dataclasses.dataclass(frozen=True)
class Outer:
    inner: Inner = cli.section(Inner)
    mode: str = cli.option("a", "Mode.", ["a", "b"])
    sizes: list = cli.option(["1", "2"], "Sizes.")
    epochs: int = cli.option(3, "Epochs.", minimum=1, maximum=10)


def test_flags_come_from_the_fields_with_the_commands_changes():
    values = flags.FlagValues()
    cli.define_flags([cli.Flags(Outer, exclude=("sizes",), defaults={"epochs": 5},
                                help_prefix="Each: ")], values)
    values(["prog", "--lr=0.5"])
    assert (values.lr, values.mode, values.epochs) == (0.5, "a", 5)
    assert "sizes" not in values and values["lr"].help == "Each: Learning rate."
    assert cli.identity_keys(Outer) == ("lr",)
    assert cli.identity_keys(cli.Flags(Outer, identity={"mode", "epochs"})) == ("mode", "epochs")
    assert Outer().sizes == ["1", "2"] and Outer().sizes is not Outer().sizes
    with pytest.raises(flags.IllegalFlagValueError, match="0 is not an integer in the range"):
        values.epochs = 0  # absl holds the bounds, also when a preset is applied
    assert "in the range [1, 10]" in values.get_help()
    with pytest.raises(NaoError, match="--epochs=12 must be at most 10"):
        cli.check_bounds(Outer(epochs=12))  # a config built in code


@pytest.mark.parametrize("preset, message", [
    (dict(epoch=4), "preset key 'epoch' is no flag of Outer; did you mean 'epochs'?"),
    (dict(epochs=4.0), "preset epochs=4.0: a int flag"),
    (dict(lr="0.1"), "preset lr='0.1': a float flag"),
    (dict(mode="c"), "preset mode='c': one of \\['a', 'b'\\]"),
    (dict(epochs=11), "preset epochs=11: outside \\[1, 10\\]"),
])
def test_a_preset_with_a_typo_or_a_wrong_value_is_refused_where_it_is_defined(preset, message):
    with pytest.raises(ValueError, match=message):
        cli.check_preset(preset, Outer)
    assert cli.check_preset(dict(epochs=4, lr=1, mode="b"), Outer) == dict(epochs=4, lr=1,
                                                                          mode="b")


def test_a_task_whose_preset_misspells_a_flag_cannot_be_defined():
    misspelled = type("Toy", (toy_task.ToyTask,), {
        "presets": {"ws": {"tiny": {"controler_epochs": 20}}}})()
    with pytest.raises(ValueError, match="'controler_epochs' is no flag .*'controller_epochs'"):
        weight_sharing_search.flag_groups(misspelled)
    groups = weight_sharing_search.flag_groups(toy_task.TASK)
    assert search_command.SearchLoopConfig in [getattr(g, "config", g) for g in groups]


@pytest.mark.parametrize("task_ref", ["tests.toy_task:TASK", "cnn.task:TASK", "rnn.task:TASK"])
def test_every_preset_of_every_task_is_a_set_of_its_flags(task_ref):
    """Each command's flag groups check the task's presets for it (an unknown name, a wrong type,
    a value outside an enum or the bounds is a ValueError)."""
    module, _, name = task_ref.partition(":")
    task = getattr(importlib.import_module(module), name)
    skeletons = {"ws": weight_sharing_search, "nao": standalone_search, "final": final_training}
    for command in task.configs:
        groups = skeletons[command].flag_groups(task)
        assert all(set(preset) <= {f.name for g in groups for f in cli.Flags.of(g).fields()}
                   for preset in task.presets.get(command, {}).values())
