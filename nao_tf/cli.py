"""The command layer every entry point shares: flags defined from specs or dataclasses, presets
layered defaults < preset < explicit flags, and `run`, which reports user errors as one line."""

import dataclasses
import os
import signal
import sys
from typing import Any, Callable, Iterable, Mapping, Sequence

from absl import app, flags, logging

from nao_tf import startup
from nao_tf.errors import NaoError


def _guarded(main: Callable[[Sequence[str]], None],
             subcommands: Sequence[str]) -> Callable[[Sequence[str]], None]:
    def wrapped(argv: Sequence[str]) -> None:
        if logging.get_verbosity() == logging.INFO:
            logging.set_verbosity(logging.WARNING)
        try:
            if subcommands and (len(argv) != 2 or argv[1] not in subcommands):
                raise NaoError(f"usage: python -m {_program()} {{{'|'.join(subcommands)}}} "
                               "--name=value ...")
            if not subcommands and len(argv) > 1:
                raise NaoError(f"unexpected arguments {' '.join(argv[1:])}; flags look like "
                               "--name=value")
            if flags.FLAGS.deterministic:
                import tensorflow as tf

                tf.config.experimental.enable_op_determinism()
            main(argv)
        except NaoError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapped


def _interrupted(signum: int, frame: Any) -> None:
    """Ctrl-C: one line, exit code 130, at once. Every command writes its state atomically and
    resumes after a SIGKILL, so stopping here is as safe; a KeyboardInterrupt raised instead can
    be swallowed when it lands inside TensorFlow's runtime, and the run would go on."""
    try:
        sys.stdout.flush()
    except (OSError, RuntimeError):  # a flush already in progress when the signal came
        pass
    os.write(2, b"interrupted; rerun the same command to resume\n")
    os._exit(130)


def _program() -> str:
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    return spec.name if spec else os.path.basename(sys.argv[0])


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a bad flag reported as one `error:` line and exit code 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        print(f"error: {err}; --helpfull lists the flags", file=sys.stderr)
        sys.exit(2)


def run(main: Callable[[Sequence[str]], Any], controller_only: bool = False,
        subcommands: Sequence[str] = ()) -> None:
    """`absl.app.run(main)`, with `NaoError`, an unknown or malformed flag and a positional
    argument (flags are `--name=value`; a command with `subcommands` takes exactly one of them)
    each reported as one line `error: <message>`, exit code 2;
    Ctrl-C prints one line and exits with 130 (every command's state is saved atomically, so the
    same command resumes).

    TensorFlow's own INFO chatter is silenced; the commands print their own progress.
    `controller_only`: the command trains no child network, so each TensorFlow op runs on one
    core (intra-op threads 1, unless TF_NUM_INTRAOP_THREADS says otherwise) while independent ops,
    such as the controller's batch shards, run side by side: the controller's small products lose
    time when split across cores (0.44 -> 0.29 s per epoch on 2 cores, docs/benchmarks.md)."""
    import tensorflow as tf  # already imported, quietly, by `nao_tf.startup`

    tf.get_logger().setLevel("WARNING")
    if controller_only and "TF_NUM_INTRAOP_THREADS" not in os.environ:
        tf.config.threading.set_intra_op_parallelism_threads(1)
    if not os.environ.get("TF_CONFIG"):  # else a multi-worker strategy must come first
        with startup.held_back():
            tf.config.list_logical_devices()  # the device search writes its own start-up lines
    flags.DEFINE_bool("deterministic", False, "Reproducible by seed: two runs with the same "
                      "nonzero --seed give the same results (TensorFlow's op determinism on top "
                      "of the seeds; docs/architecture.md).", module_name=sys.argv[0])
    signal.signal(signal.SIGINT, _interrupted)
    app.run(_guarded(main, tuple(subcommands)), flags_parser=_parse_flags)


def say(message: str) -> None:
    """A progress line on stdout, flushed at once (visible in the logs of long runs)."""
    print(message, flush=True)


# A flag spec: (name, default, help) or (name, default, help, enum values); the type of the
# default picks the kind of absl flag.
FlagSpec = tuple
_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           str: flags.DEFINE_string}


def define_flags(specs: Iterable[FlagSpec], flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """One absl flag per spec in `flag_values`, listed as the running command's own flags (by
    `--helpshort`, and first by `--help`)."""
    for name, default, help_text, *choices in specs:
        if choices:
            flags.DEFINE_enum(name, default, choices[0], help_text, flag_values=flag_values,
                              module_name=sys.argv[0])
        else:
            _DEFINE[type(default)](name, default, help_text, flag_values=flag_values,
                                   module_name=sys.argv[0])


def dataclass_flag_specs(cls: type, help_texts: Mapping[str, str]) -> list[FlagSpec]:
    """A flag spec per field of dataclass `cls`: named as the field, typed by its default, with the
    help text `help_texts[name]` (an enum of `f.metadata["choices"]` where the field has them)."""
    return [(f.name, f.default, help_texts[f.name], *([list(f.metadata["choices"])]
                                                      if "choices" in f.metadata else []))
            for f in dataclasses.fields(cls)]


def enum_field(default: str, choices: Sequence[str]) -> Any:
    """A dataclass field whose flag is an enum of `choices` (see `dataclass_flag_specs`)."""
    return dataclasses.field(default=default, metadata={"choices": tuple(choices)})


def define_dataclass_flags(cls: type, help_texts: Mapping[str, str],
                           flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """`define_flags` for the fields of dataclass `cls` (see `dataclass_flag_specs`)."""
    define_flags(dataclass_flag_specs(cls, help_texts), flag_values)


def apply_preset(flag_values: flags.FlagValues, preset: Mapping[str, Any]) -> None:
    """Layers a preset between the defaults and the command line: every flag of `preset` not
    given explicitly takes the preset's value."""
    for name, value in preset.items():
        if not flag_values[name].present:
            setattr(flag_values, name, value)


def dataclass_from_flags(cls: type, flag_values: flags.FlagValues = flags.FLAGS,
                         preset: Mapping[str, Any] | None = None, **overrides: Any) -> Any:
    """An instance of `cls` from the parsed flags that `define_dataclass_flags` defined:
    defaults < `preset` < flags given on the command line < `overrides`."""
    preset = preset or {}
    values = {f.name: (preset[f.name] if f.name in preset and not flag_values[f.name].present
                       else flag_values[f.name].value) for f in dataclasses.fields(cls)}
    return cls(**{**values, **overrides})


def check_at_least(value_of: Callable[[str], Any], minimum: float, *names: str) -> None:
    """Stops with one line naming the first flag of `names` whose value is below `minimum`."""
    for name in names:
        if value_of(name) < minimum:
            raise NaoError(f"--{name}={value_of(name)} must be at least {minimum}")


def check_keep_probability(value_of: Callable[[str], Any], *names: str) -> None:
    """Stops with one line naming the first flag of `names` outside (0, 1]."""
    for name in names:
        if not 0.0 < value_of(name) <= 1.0:
            raise NaoError(f"--{name}={value_of(name)} must be a keep probability in (0, 1]")
