"""The command layer every entry point shares: flags from typed configs (dataclasses whose fields
are `option`s), presets checked where they are defined and layered defaults < preset < explicit
flags, and `run`, which reports user errors as one line."""

import atexit
import dataclasses
import difflib
import logging as std_logging
import os
import signal
import sys
import threading
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence, Union

from absl import app, flags, logging

from nao_tf.common.errors import NaoError
from nao_tf.runtime import distribute, startup


def _guarded(main: Callable[[Sequence[str]], Any],
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
            distribute.set_worker_timeout(flags.FLAGS.worker_timeout)
            main(argv)
            distribute.finish_together()
            if not distribute.in_multi_worker_job():
                _exit_now()
        except NaoError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except Exception as err:  # a lost worker: one line, not TensorFlow's traceback
            message = distribute.lost_worker(err)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)

    return wrapped


def _exit_now() -> None:
    """The end of a one-machine command that returned: what a normal exit does that matters
    (other threads joined, output flushed, the `atexit` functions, such as Ray's shutdown, run),
    then exit code 0 without the interpreter's finalization, which frees every traced graph one
    object at a time (1-2.5 s after a CNN command). Every file is already written and closed:
    state atomically, summaries flushed after each write. A worker of a multi-worker job keeps
    TensorFlow's teardown (`distribute.finish_together` orders the workers' ends)."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(0)


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
        subcommands: Sequence[str] = (), define: Callable[[], None] | None = None) -> None:
    """`absl.app.run(main)` after `define()` defines the command's flags, with `NaoError` (in
    `define` too), an unknown or malformed flag and a positional argument (flags are
    `--name=value`; a command with `subcommands` takes exactly one of them) each reported as one
    line `error: <message>`, exit code 2;
    Ctrl-C prints one line and exits with 130 (every command's state is saved atomically, so the
    same command resumes).

    TensorFlow's own INFO chatter is silenced; the commands print their own progress.
    `controller_only`: the command trains no child network, so each TensorFlow op runs on one
    core (intra-op threads 1, unless TF_NUM_INTRAOP_THREADS says otherwise) while independent ops,
    such as the controller's batch shards, run side by side: the controller's small products lose
    time when split across cores (0.44 -> 0.29 s per epoch on 2 cores, docs/benchmarks.md)."""
    import tensorflow as tf  # already imported, quietly, by `nao_tf.runtime.startup`

    if define is not None:
        try:
            define()
        except NaoError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
    tf.get_logger().setLevel("WARNING")
    tf.get_logger().addFilter(_drop_eager_collective_warning)
    if controller_only and "TF_NUM_INTRAOP_THREADS" not in os.environ:
        tf.config.threading.set_intra_op_parallelism_threads(1)
    with startup.held_back():  # the device search writes its own start-up lines
        if os.environ.get("TF_CONFIG"):  # a multi-worker strategy must precede the context
            tf.config.list_physical_devices()
        else:
            tf.config.list_logical_devices()
    flags.DEFINE_bool("deterministic", False, "Reproducible by seed: two runs with the same "
                      "nonzero --seed give the same results (TensorFlow's op determinism on top "
                      "of the seeds; docs/architecture.md).", module_name=sys.argv[0])
    flags.DEFINE_integer("worker_timeout", 300, "Across machines (TF_CONFIG): seconds to wait "
                         "for every worker to start (10 to 86400).", lower_bound=10,
                         upper_bound=86400, module_name=sys.argv[0])
    signal.signal(signal.SIGINT, _interrupted)
    app.run(_guarded(main, tuple(subcommands)), flags_parser=_parse_flags)


def _drop_eager_collective_warning(record: std_logging.LogRecord) -> bool:
    """False for TensorFlow's warning that a multi-worker strategy runs a replica function
    eagerly: the commands do so only while building variables and restoring checkpoints, once,
    and every step is compiled; the warning, five times over on every worker, says nothing a
    user can act on."""
    return "eagerly has significant overhead" not in record.getMessage()


def say(message: str) -> None:
    """A progress line on stdout, flushed at once (visible in the logs of long runs)."""
    print(message, flush=True)


def option(default: Any, help_text: str, choices: Sequence[str] = (), identity: bool = False,
           minimum: float | None = None, maximum: float | None = None,
           required: bool = False) -> Any:
    """A field of a typed config that is also a flag: named as the field, typed by `default`,
    with its `help_text`, an enum of `choices` when given, `identity`: a run directory resumes
    only with the same value (`identity_keys`), and bounds `minimum` / `maximum` of a number
    (absl checks them when the flag is parsed or set, and `--help` states them); a `required`
    flag must be given (absl's `mark_flag_as_required`; `default` is then the value of a config
    built in code). A list default is copied per instance."""
    metadata = {"help": help_text, "choices": tuple(choices), "identity": identity,
                "default": default, "bounds": (minimum, maximum), "required": required}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def section(cls: type, **view: Any) -> Any:
    """A field holding a nested config `cls` (its fields are flags too, under their own names);
    `view`: `Flags`' keywords (only, exclude, defaults, help_prefix, identity) saying which of its
    fields the outer config offers, and how (the others keep the view's defaults)."""
    return dataclasses.field(default_factory=cls,
                             metadata={"view": view} if view else {})


def _settings(cls: type) -> list[dataclasses.Field]:
    """The fields of config `cls` that are options or sections; a field declared otherwise is
    set by the code (e.g. the steps per epoch), keeps its default when the config is parsed,
    and is in no settings record."""
    return [f for f in dataclasses.fields(cls)
            if "help" in f.metadata or dataclasses.is_dataclass(f.default_factory)]


def _fields(cls: type) -> list[dataclasses.Field]:
    """Every option of config `cls`, its sections' options in their place."""
    found = []
    for f in _settings(cls):
        nested = f.default_factory
        found += (_fields(nested) if dataclasses.is_dataclass(nested) else [f])
    return found


@dataclasses.dataclass(frozen=True)
class Flags:
    """The flags of config class `config` as a command offers them: `only` these fields (all when
    None) but those in `exclude`, `defaults` replacing the fields' defaults, `choices` of an enum
    that the command fills in (a task's presets, its spaces), `help_prefix` before every help
    text, and `identity` replacing the fields' own marks (True or False: every field; a set:
    those fields). A section declared with a view (`section(cls, only=...)`) is offered as its
    view says."""

    config: type
    only: Collection[str] | None = None
    exclude: Collection[str] = ()
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    choices: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    help_prefix: str = ""
    identity: bool | Collection[str] | None = None

    @staticmethod
    def of(group: "FlagGroup") -> "Flags":
        """`group` as `Flags` (a config class: all its fields as they are)."""
        return group if isinstance(group, Flags) else Flags(group)

    def leaves(self) -> list[tuple[dataclasses.Field, "Flags"]]:
        """Every leaf field of the config with the view that decides how it is offered."""
        found = []

        def walk(cls: type, view: Flags) -> None:
            for f in _settings(cls):
                nested = f.default_factory
                if dataclasses.is_dataclass(nested):
                    inner = f.metadata.get("view")
                    walk(nested, view if inner is None else Flags(nested, **inner))
                else:
                    found.append((f, view))

        walk(self.config, self)
        return found

    def offers(self, f: dataclasses.Field) -> bool:
        return (self.only is None or f.name in self.only) and f.name not in self.exclude

    def fields(self) -> list[dataclasses.Field]:
        """The fields offered as flags."""
        return [f for f, view in self.leaves() if view.offers(f)]

    def default(self, f: dataclasses.Field) -> Any:
        return self.defaults.get(f.name, f.metadata["default"])

    def is_identity(self, f: dataclasses.Field) -> bool:
        if self.identity is None:
            return f.metadata["identity"]
        return self.identity if isinstance(self.identity, bool) else f.name in self.identity

    def define(self, flag_values: flags.FlagValues) -> None:
        """One absl flag per offered field, listed as the running command's own
        (`--helpshort`)."""
        for f, view in self.leaves():
            if not view.offers(f):
                continue
            default, text = view.default(f), view.help_prefix + f.metadata["help"]
            choices = view.choices.get(f.name, f.metadata["choices"])
            kind = dict(flag_values=flag_values, module_name=sys.argv[0])
            lower, upper = f.metadata["bounds"]
            if f.metadata["required"]:
                _DEFINE[type(default)](f.name, None, text, **kind)
                flags.mark_flag_as_required(f.name, flag_values=flag_values)
            elif choices:
                flags.DEFINE_enum(f.name, default, list(choices), text, **kind)
            elif lower is not None or upper is not None:
                _DEFINE[type(default)](f.name, default, text, lower_bound=lower,
                                       upper_bound=upper, **kind)
            else:
                _DEFINE[type(default)](f.name, default, text, **kind)

    def values(self, config: Any) -> dict[str, Any]:
        """The values of the offered fields of `config` (an instance of the config class)."""
        values = config_values(config)
        return {f.name: values[f.name] for f in self.fields()}

    def parse(self, flag_values: Any) -> Any:
        """The typed config of parsed flags `flag_values` (or of any object with the flags as
        attributes; an instance of the config is taken as it is): a field takes the value of the
        flag of its name when the command has one, else the default its view gives it."""
        if isinstance(flag_values, self.config):
            return flag_values
        views = {f.name: view for f, view in self.leaves()}
        is_flags = isinstance(flag_values, flags.FlagValues)

        def value_of(f: dataclasses.Field) -> Any:
            if f.name in flag_values if is_flags else hasattr(flag_values, f.name):
                return getattr(flag_values, f.name)
            return views[f.name].default(f)

        return config_from_values(self.config, value_of)


_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           str: flags.DEFINE_string, list: flags.DEFINE_list}
FlagGroup = Union[type, Flags]


def _groups(groups: Iterable[FlagGroup]) -> list[Flags]:
    return [Flags.of(g) for g in groups]


def define_flags(groups: Iterable[FlagGroup],
                 flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The flags of every group (a config class, or `Flags` over one) in `flag_values`."""
    for group in _groups(groups):
        group.define(flag_values)


def identity_keys(*groups: FlagGroup) -> tuple[str, ...]:
    """The flags of `groups` marked identity (`option(identity=True)`, or `Flags.identity`)."""
    return tuple(f.name for g in _groups(groups) for f, view in g.leaves()
                 if view.offers(f) and view.is_identity(f))


@dataclasses.dataclass(frozen=True)
class PresetChoice:
    """`--config`, whose choices are the task's presets."""

    config: str = option("", "Preset: defaults for a known setting ('' = the original's); "
                         "flags given explicitly win.")


def check_preset(values: Mapping[str, Any], *groups: FlagGroup) -> dict[str, Any]:
    """`values` (a preset: defaults for `--config`), checked against the flags of `groups` when
    it is defined: an unknown name, a value of another type, or one outside an enum's choices is
    a `ValueError` naming it, so a preset with a typo never reaches a user."""
    fields = {f.name: (view, f) for g in _groups(groups) for f, view in g.leaves()
              if view.offers(f)}
    for name, value in values.items():
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            owners = ", ".join(g.config.__name__ for g in _groups(groups))
            raise ValueError(f"preset key {name!r} is no flag of {owners}"
                             + (f"; did you mean {close[0]!r}?" if close else ""))
        group, f = fields[name]
        default = group.default(f)
        kinds = (int, float) if type(default) is float else (type(default),)
        if type(value) not in kinds:
            raise ValueError(f"preset {name}={value!r}: a {type(default).__name__} flag")
        choices = group.choices.get(name, f.metadata["choices"])
        if choices and value not in choices:
            raise ValueError(f"preset {name}={value!r}: one of {list(choices)}")
        lower, upper = f.metadata["bounds"]
        if (lower is not None and value < lower) or (upper is not None and value > upper):
            raise ValueError(f"preset {name}={value!r}: outside [{lower}, {upper}]")
    return dict(values)


def config_values(config: Any) -> dict[str, Any]:
    """Every option of `config` by name, its sections flattened (the settings record)."""
    values = {}
    for f in _settings(type(config)):
        value = getattr(config, f.name)
        values.update(config_values(value) if dataclasses.is_dataclass(value) else
                      {f.name: value})
    return values


def config_from_values(cls: type, value_of: Callable[[dataclasses.Field], Any]) -> Any:
    """An instance of config `cls` whose every option is `value_of(field)`, nested sections built
    the same way."""
    return cls(**{f.name: (config_from_values(f.default_factory, value_of)
                           if dataclasses.is_dataclass(f.default_factory) else value_of(f))
                  for f in _settings(cls)})


def parse(group: "FlagGroup", flag_values: Any = flags.FLAGS) -> Any:
    """The typed config of `group` (a config class, or `Flags` over one) from parsed flags."""
    return Flags.of(group).parse(flag_values)


def apply_preset(flag_values: flags.FlagValues, preset: Mapping[str, Any]) -> None:
    """Layers a preset between the defaults and the command line: every flag of `preset` not
    given explicitly takes the preset's value."""
    for name, value in preset.items():
        if not flag_values[name].present:
            setattr(flag_values, name, value)


def check_bounds(config: Any) -> None:
    """Stops with one line naming the first field of `config` (sections included) outside the
    bounds of its `option`: absl checks flags as they are parsed, this the configs built
    otherwise."""
    values = config_values(config)
    for f in _fields(type(config)):
        value, (lower, upper) = values[f.name], f.metadata["bounds"]
        if lower is not None and value < lower:
            raise NaoError(f"--{f.name}={value} must be at least {lower}")
        if upper is not None and value > upper:
            raise NaoError(f"--{f.name}={value} must be at most {upper}")


def check_keep_probability(value_of: Callable[[str], Any], *names: str) -> None:
    """Stops with one line naming the first flag of `names` outside (0, 1]."""
    for name in names:
        if not 0.0 < value_of(name) <= 1.0:
            raise NaoError(f"--{name}={value_of(name)} must be a keep probability in (0, 1]")
