"""The command layer every entry point shares: flags defined from specs or dataclasses, presets
layered defaults < preset < explicit flags, and `run`, which reports user errors as one line."""

import dataclasses
import os
import signal
import sys
from typing import Any, Callable, Iterable, Mapping, Sequence

from absl import app, flags, logging

from nao_tf.common.errors import NaoError
from nao_tf.runtime import startup


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
    import tensorflow as tf  # already imported, quietly, by `nao_tf.runtime.startup`

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
           str: flags.DEFINE_string, list: flags.DEFINE_list}


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


def option(default: Any, help_text: str, choices: Sequence[str] = (),
           identity: bool = False) -> Any:
    """A field of a typed config that is also a flag: named as the field, typed by `default`,
    with its `help_text`, an enum of `choices` when given, and `identity`: a run directory
    resumes only with the same value (`identity_keys`)."""
    return dataclasses.field(default=default, metadata={"help": help_text,
                                                        "choices": tuple(choices),
                                                        "identity": identity})


def section(cls: type) -> Any:
    """A field holding a nested config `cls` (its fields are flags too, under their own names)."""
    return dataclasses.field(default_factory=cls)


def _fields(cls: type) -> list[dataclasses.Field]:
    """The flag fields of config `cls`, its sections' fields in their place."""
    found = []
    for f in dataclasses.fields(cls):
        nested = f.default_factory
        found += (_fields(nested) if dataclasses.is_dataclass(nested) else [f])
    return found


def config_flag_specs(cls: type) -> list[FlagSpec]:
    """A flag spec per field of config `cls` (see `option`), nested sections included."""
    return [(f.name, f.default, f.metadata["help"],
             *([list(f.metadata["choices"])] if f.metadata["choices"] else []))
            for f in _fields(cls)]


def identity_keys(cls: type) -> tuple[str, ...]:
    """The fields of config `cls` marked `identity`."""
    return tuple(f.name for f in _fields(cls) if f.metadata["identity"])


def config_values(config: Any) -> dict[str, Any]:
    """Every field of `config` by name, its sections flattened (the settings record)."""
    values = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values.update(config_values(value) if dataclasses.is_dataclass(value) else
                      {f.name: value})
    return values


def config_from_values(cls: type, value_of: Callable[[dataclasses.Field], Any]) -> Any:
    """An instance of config `cls` whose every field is `value_of(field)`, nested sections built
    the same way."""
    return cls(**{f.name: (config_from_values(f.default_factory, value_of)
                           if dataclasses.is_dataclass(f.default_factory) else value_of(f))
                  for f in dataclasses.fields(cls)})


def config_from_flags(cls: type, flag_values: flags.FlagValues = flags.FLAGS,
                      preset: Mapping[str, Any] | None = None) -> Any:
    """An instance of config `cls` from the parsed flags that `config_flag_specs` defined:
    defaults < `preset` < flags given on the command line."""
    preset = preset or {}

    def value_of(f: dataclasses.Field) -> Any:
        given = flag_values[f.name]
        return preset[f.name] if f.name in preset and not given.present else given.value

    return config_from_values(cls, value_of)


def apply_preset(flag_values: flags.FlagValues, preset: Mapping[str, Any]) -> None:
    """Layers a preset between the defaults and the command line: every flag of `preset` not
    given explicitly takes the preset's value."""
    for name, value in preset.items():
        if not flag_values[name].present:
            setattr(flag_values, name, value)


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
