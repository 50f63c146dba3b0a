"""What the two search commands (`weight_sharing_search`, `standalone_search`) share: the search
loop's flags, `--config` presets over a task's flags, and the loop's checks."""

import dataclasses
import os
from typing import Any, Collection, Mapping

from absl import flags

from nao_tf.algorithm.controller import STYLES, ControllerConfig
from nao_tf.algorithm.costs import Budget, BudgetedSpace, parse_count
from nao_tf.algorithm.generate import ACQUISITIONS
from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.commands import cli
from nao_tf.commands.task import Task
from nao_tf.common.errors import NaoError
from nao_tf.runtime.latency import LatencyCache, median_ms


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
    beam_width: int = cli.option(0, "Decode new architectures with a masked, full-length beam "
                                 "search of this width (1 to 64; the TF original's "
                                 "predict_beam_width is unmasked and stops at the end token: "
                                 "docs/differences.md); 0 = greedy, the default of both "
                                 "originals.", minimum=0, maximum=64)
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
class BudgetOptions:
    """A budget on what a searched architecture costs in the network it is for
    (`Task.cost_model`): the seed pool, the random cells and the generated ones all stay within
    it, and best_arch.json holds the best within it with the Pareto front of every cell
    evaluated (also pareto.png). Part of the search's identity."""

    max_params: str = cli.option("", "Search only architectures whose network has at most this "
                                 "many trainable parameters (600k, 3.5M, 1200; '' = no limit).")
    max_mult_adds: str = cli.option("", "Search only architectures whose network needs at most "
                                    "this many multiply-adds for one input (600M for the "
                                    "mobile setting; '' = no limit).")
    max_latency_ms: float = cli.option(0.0, "Search only architectures whose network's forward "
                                       "pass of --latency_batch inputs takes at most this many "
                                       "milliseconds on this machine (measured once per cell, "
                                       "kept in latency.json; 0 = no limit).", minimum=0.0)
    latency_batch: int = cli.option(1, "Inputs of the forward pass --max_latency_ms times.",
                                    minimum=1)
    cost_weight: float = cli.option(0.0, "A soft budget: no cell is excluded; the acquisition "
                                    "ranks the --oversample candidates by predicted score minus "
                                    "this weight times the relative excess cost, sum over the "
                                    "limits of max(0, cost / limit - 1) (predicted scores span "
                                    "0..1). 0 = a hard budget.", minimum=0.0)

    def budget(self) -> Budget:
        return Budget(max_params=parse_count(self.max_params, "max_params"),
                      max_mult_adds=parse_count(self.max_mult_adds, "max_mult_adds"),
                      max_latency_ms=self.max_latency_ms)


@dataclasses.dataclass(frozen=True)
class SearchLoopConfig:
    """The search loop's settings, shared by both search commands (a command or a task may change
    a default)."""

    output_dir: str = cli.option("", "Run directory (re-running the same command resumes).",
                                 required=True)
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
    budget: BudgetOptions = cli.section(BudgetOptions)


@dataclasses.dataclass(frozen=True)
class SpaceChoice:
    """`--space`, offered when a task has several spaces for a search (the choices)."""

    space: str = cli.option("", "Search space.")


LOOP_NAMES = frozenset(f.name for f in cli.Flags(SearchLoopConfig).fields())


def loop_config(fv: flags.FlagValues) -> SearchLoopConfig:
    """The typed loop settings of parsed flags `fv`."""
    return cli.parse(SearchLoopConfig, fv)


def flag_groups(task: Task, command: str, own: type,
                command_defaults: Mapping[str, Any] = {}) -> list[cli.FlagGroup]:
    """`--config` (over the task's presets), `--space` (when the task offers several), the
    task's config, the command's own flags (`own`) and the loop's (their defaults replaced by
    `command_defaults`, then by the task's). The task's presets are checked against them: a
    preset with an unknown name or a value of the wrong type is a `ValueError` before any flag is
    defined."""
    defaults = {**command_defaults, **task.defaults.get(command, {})}
    presets = task.presets.get(command, {})
    spaces = [s.name for s in task.spaces[command]]
    groups = [cli.Flags(cli.PresetChoice, choices={"config": ["", *presets]}),
              *([cli.Flags(SpaceChoice, defaults={"space": spaces[0]},
                           choices={"space": spaces})] if len(spaces) > 1 else []),
              task.require(command), cli.Flags(own, defaults=defaults),
              cli.Flags(SearchLoopConfig, defaults=defaults)]
    for preset in presets.values():
        cli.check_preset(preset, *groups)
    return groups


def chosen_space(task: Task, command: str, fv: flags.FlagValues) -> SearchSpace:
    """The space of `--space`, or the task's only one."""
    return task.space(command, fv.space if "space" in fv else "")


def budgeted_space(task: Task, command: str, config: Any, space: SearchSpace,
                   fv: flags.FlagValues) -> SearchSpace:
    """`space` restricted to the budget of flags `fv` (the task's cost model counts each cell),
    or `space` itself when no limit is given."""
    options = loop_config(fv).budget
    budget = options.budget()
    if not budget.limits:
        return space
    cost_model, counted_in = task.cost_model(command, config, space)
    latency = None
    if budget.max_latency_ms:
        batch = options.latency_batch
        latency = LatencyCache(
            os.path.join(fv.output_dir, "latency.json"),
            lambda arch: median_ms(task.forward_pass(command, config, arch, batch)),
            space.canonical_key, log=cli.say)
        counted_in += f"; latency of {batch} input(s) measured on this machine"
    space = BudgetedSpace(space, budget, cost_model=cost_model, counted_in=counted_in,
                          latency=latency, cost_weight=options.cost_weight)
    kind = f"a soft budget (cost weight {options.cost_weight:g})" if options.cost_weight else \
        "within a budget"
    cli.say(f"searching {kind}: {budget.describe()} (counted in {counted_in})")
    return space


def loop_settings(fv: flags.FlagValues, names: Collection[str]) -> dict[str, Any]:
    """The settings record's entries of the command's own flags `names` (--overwrite aside)."""
    return {name: fv[name].value for name in sorted(names) if name != "overwrite"}


def controller_config(task: Task, command: str, config: Any, space: SearchSpace,
                      fv: flags.FlagValues) -> ControllerConfig:
    """The task's controller for `command`, with the batch, seed and options of flags `fv`."""
    loop = loop_config(fv)
    controller, _ = loop.options.split()
    return ControllerConfig.for_space(space, **{
        **task.controller(command, config), "batch_size": loop.controller_batch_size,
        "seed": fv.seed, **controller})


def check_loop_flags(fv: flags.FlagValues) -> None:
    """The search loop's flags; stops with one line on one that cannot work."""
    loop = loop_config(fv)
    cli.check_bounds(loop)
    if loop.budget.cost_weight and not loop.budget.budget().limits:  # a bad count stops here
        raise NaoError("--cost_weight weighs the excess over a limit; give --max_params, "
                       "--max_mult_adds or --max_latency_ms")
    if loop.budget.cost_weight and loop.options.oversample <= 1.0:
        raise NaoError("--cost_weight ranks the candidates of --oversample; set --oversample "
                       "above 1 (e.g. 4) so that there is a choice to make")
    if loop.lambda_step <= 0 or loop.max_lambda < loop.lambda_step:
        raise NaoError(f"--lambda_step={loop.lambda_step} must be positive and at most "
                       f"--max_lambda={loop.max_lambda}")
