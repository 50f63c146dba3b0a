"""What the two search commands (`weight_sharing_search`, `standalone_search`) share: the search
loop's flags, `--config` presets over a task's flags, and the loop's checks."""

import dataclasses
from typing import Any, Mapping, Sequence

from absl import flags

from nao_tf.algorithm.controller import STYLES
from nao_tf.algorithm.generate import ACQUISITIONS
from nao_tf.commands import cli
from nao_tf.common.errors import NaoError


@dataclasses.dataclass(frozen=True)
class ControllerOptions:
    """The options beyond the original (ranking loss, predictor ensemble, acquisition), as every
    search command offers them; the defaults are the original's."""

    predictor_heads: int = cli.option(1, "Predictor heads on the controller's shared encoder (an "
                                      "ensemble whose spread is the predictor's uncertainty); 1 = "
                                      "the original.", minimum=1)
    ranking_weight: float = cli.option(0.0, "Weight of a pairwise ranking loss in the predictor's "
                                       "loss (0: the original's MSE alone, 1: ranking alone).",
                                       minimum=0.0, maximum=1.0)
    oversample: float = cli.option(1.0, "Decode this many times --new_archs candidates and keep "
                                   "the best by --acquisition (1: keep the first found, the "
                                   "original).", minimum=1.0)
    acquisition: str = cli.option("mean", "Which oversampled candidates to keep: the heads' mean, "
                                  "an upper confidence bound (mean + --ucb_beta * std) or "
                                  "Thompson sampling.", ACQUISITIONS)
    ucb_beta: float = cli.option(1.0, "--acquisition=ucb: mean + ucb_beta * std over the "
                                 "predictor heads.", minimum=0.0)
    mutations: int = cli.option(0, "Also offer the acquisition this many neighbours (one token "
                                "changed) of the top-k cells besides the decoded ones "
                                "(predictor-guided local search); 0 = the original.", minimum=0)
    beam_width: int = cli.option(0, "Decode new architectures with a beam search of this width "
                                 "(the TF original's predict_beam_width); 0 = greedy, the default "
                                 "of both originals.", minimum=0, maximum=64)
    controller_style: str = cli.option("", "tf: the TF originals' controller (uniform +-0.1 init, "
                                       "forget bias +1, encoder dropout on LSTM outputs, weight "
                                       "decay clipped with the gradient); pytorch: the PyTorch RNN "
                                       "originals' (PyTorch's default init, dropout on the token "
                                       "embeddings, weight decay added after clipping); '' = the "
                                       "task's original.", ["", *STYLES])

    def split(self) -> tuple[dict, dict]:
        """(ControllerConfig keywords, SearchConfig keywords) of these options."""
        controller = {"predictor_heads": self.predictor_heads,
                      "ranking_weight": self.ranking_weight,
                      **STYLES.get(self.controller_style, {})}
        search = {name: getattr(self, name)
                  for name in ("oversample", "acquisition", "ucb_beta", "mutations", "beam_width")}
        return controller, search


@dataclasses.dataclass(frozen=True)
class SearchLoopConfig:
    """The search loop's settings, shared by both search commands (a command or a task may change
    a default)."""

    output_dir: str = cli.option("", "Run directory (required).")
    overwrite: bool = cli.option(False, "Delete --output_dir first and start a new search (only "
                                 "once every other check has passed).")
    seed_archs: int = cli.option(1000, "Size of the first pool.", minimum=1)
    top_k: int = cli.option(100, "Seeds for generation: the best k of the pool.", minimum=1)
    new_archs: int = cli.option(500, "New architectures generated per iteration.", minimum=0)
    random_archs: int = cli.option(50, "Fresh random architectures added to each new pool.",
                                   minimum=0)
    max_lambda: float = cli.option(100.0, "Largest step size lambda of the generation.")
    lambda_step: float = cli.option(1.0, "lambda = lambda_step, 2 lambda_step, ... up to "
                                    "--max_lambda.")
    controller_epochs: int = cli.option(1000, "Controller training epochs per iteration.",
                                        minimum=1)
    controller_batch_size: int = cli.option(100, "Controller batch.", minimum=1)
    options: ControllerOptions = cli.section(ControllerOptions)


LOOP_NAMES = frozenset(f.name for f in cli.Flags(SearchLoopConfig).fields())


def loop_config(fv: flags.FlagValues) -> SearchLoopConfig:
    """The typed loop settings of parsed flags `fv`."""
    return cli.config_from_flags(SearchLoopConfig, fv)


def flag_groups(presets: Mapping[str, Any], task_flags: Sequence[cli.FlagGroup],
                command: type, defaults: Mapping[str, Any]) -> list[cli.FlagGroup]:
    """`--config` (over `presets`), the task's flags, the command's (`command`) and the loop's
    (their defaults replaced by `defaults` where it names them)."""
    return [cli.Flags(cli.PresetChoice, choices={"config": ["", *presets]}), *task_flags,
            cli.Flags(command, defaults=defaults), cli.Flags(SearchLoopConfig, defaults=defaults)]


def apply_config(presets: Mapping[str, Mapping[str, Any]], fv: flags.FlagValues) -> None:
    """Layers `--config`'s preset under the flags given explicitly."""
    if fv.config:
        cli.apply_preset(fv, presets[fv.config])


def check_loop_flags(fv: flags.FlagValues) -> None:
    """The search loop's flags; stops with one line on one that cannot work."""
    loop = loop_config(fv)
    if not loop.output_dir:
        raise NaoError("--output_dir is required (where the search state and results go)")
    cli.check_bounds(loop)
    if loop.lambda_step <= 0 or loop.max_lambda < loop.lambda_step:
        raise NaoError(f"--lambda_step={loop.lambda_step} must be positive and at most "
                       f"--max_lambda={loop.max_lambda}")
