"""What the two search commands (`weight_sharing_search`, `standalone_search`) share: the search
loop's flags, `--config` presets over a task's flags, and the loop's checks."""

from typing import Any, Mapping, Sequence

from absl import flags

from nao_tf import cli
from nao_tf.errors import NaoError
from nao_tf.search import CONTROLLER_OPTION_FLAGS, check_controller_options

# (name, default, help[, enum values]); a command or a task may change a default.
LOOP_FLAGS: tuple[cli.FlagSpec, ...] = (
    ("output_dir", "", "Run directory (required)."),
    ("overwrite", False, "Delete --output_dir first and start a new search (only once every "
     "other check has passed)."),
    ("seed_archs", 1000, "Size of the first pool."),
    ("top_k", 100, "Seeds for generation: the best k of the pool."),
    ("new_archs", 500, "New architectures generated per iteration."),
    ("random_archs", 50, "Fresh random architectures added to each new pool."),
    ("max_lambda", 100.0, "Largest step size lambda of the generation."),
    ("lambda_step", 1.0, "lambda = lambda_step, 2 lambda_step, ... up to --max_lambda."),
    ("controller_epochs", 1000, "Controller training epochs per iteration."),
    ("controller_batch_size", 100, "Controller batch."),
    *CONTROLLER_OPTION_FLAGS,
)


def define_flags(presets: Mapping[str, Any], task_flags: Sequence[cli.FlagSpec],
                 command_flags: Sequence[cli.FlagSpec], defaults: Mapping[str, Any],
                 fv: flags.FlagValues) -> None:
    """`--config` (over `presets`), the task's flags, the command's and `LOOP_FLAGS` (their
    defaults replaced by `defaults` where it names them)."""
    common = [(name, defaults.get(name, default), text, *choices)
              for name, default, text, *choices in (*LOOP_FLAGS, *command_flags)]
    cli.define_flags([("config", "", f"Preset ({', '.join(presets)}); '' = the original's "
                       "settings.", ["", *presets]), *task_flags, *common], fv)


def apply_config(presets: Mapping[str, Mapping[str, Any]], fv: flags.FlagValues) -> None:
    """Layers `--config`'s preset under the flags given explicitly."""
    if fv.config:
        cli.apply_preset(fv, presets[fv.config])


def check_loop_flags(fv: flags.FlagValues) -> None:
    """The search loop's flags; stops with one line on one that cannot work."""
    if not fv.output_dir:
        raise NaoError("--output_dir is required (where the search state and results go)")
    value = lambda name: fv[name].value  # noqa: E731
    cli.check_at_least(value, 1, "seed_archs", "top_k", "controller_epochs",
                       "controller_batch_size")
    cli.check_at_least(value, 0, "new_archs", "random_archs")
    if fv.lambda_step <= 0 or fv.max_lambda < fv.lambda_step:
        raise NaoError(f"--lambda_step={fv.lambda_step} must be positive and at most "
                       f"--max_lambda={fv.max_lambda}")
    check_controller_options(value)
