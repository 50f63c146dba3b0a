"""Running absl entry points so that user errors print one clear line instead of a traceback."""

import dataclasses
import os
import sys
from typing import Any, Callable, Mapping, Sequence

from absl import app, flags, logging

from nao_tf.errors import NaoError


def _guarded(main: Callable[[Sequence[str]], None]) -> Callable[[Sequence[str]], None]:
    def wrapped(argv: Sequence[str]) -> None:
        if logging.get_verbosity() == logging.INFO:
            logging.set_verbosity(logging.WARNING)
        try:
            main(argv)
        except NaoError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapped


def run(main: Callable[[Sequence[str]], None], controller_only: bool = False) -> None:
    """`absl.app.run(main)`, with `NaoError` reported as `error: <message>` and exit code 2.

    TensorFlow's own INFO chatter is silenced; the commands print their own progress.
    `controller_only`: the command trains no child network, so each TensorFlow op runs on one
    core (intra-op threads 1, unless TF_NUM_INTRAOP_THREADS says otherwise) while independent ops,
    such as the controller's batch shards, run side by side: the controller's small products lose
    time when split across cores (0.44 -> 0.29 s per epoch on 2 cores, docs/benchmarks.md)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("WARNING")
    if controller_only and "TF_NUM_INTRAOP_THREADS" not in os.environ:
        tf.config.threading.set_intra_op_parallelism_threads(1)
    app.run(_guarded(main))


_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           str: flags.DEFINE_string}


def define_dataclass_flags(cls: type, help_texts: Mapping[str, str],
                           flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """One absl flag per field of dataclass `cls`, named as the field, typed by its default,
    with the help text `help_texts[name]`."""
    for field in dataclasses.fields(cls):
        _DEFINE[type(field.default)](field.name, field.default, help_texts[field.name],
                                     flag_values=flag_values)


def dataclass_from_flags(cls: type, flag_values: flags.FlagValues = flags.FLAGS,
                         **overrides: Any) -> Any:
    """An instance of `cls` from the parsed flags that `define_dataclass_flags` defined."""
    values = {f.name: flag_values[f.name].value for f in dataclasses.fields(cls)}
    return cls(**{**values, **overrides})
