"""The one protocol of a task (Model Garden's `base_task.Task`): what the three commands ask of
it. A task subclasses `Task`; the commands (`weight_sharing_search` "ws", `standalone_search`
"nao", `final_training` "final") supply the rest: the run directory, resume, the search loop, the
epoch loop, multi-worker and Ray.

For each command it offers, a task names its typed config (`configs`: a config class whose
fields are `cli.option`s, or `cli.Flags` over one; its fields are the task's flags) and its
presets; the command parses the flags into that config once and hands it to every method. A
command the task does not offer stops with one `error:` line.

What each command calls, in order:

    ws     check, cost_model -> (run directory recorded) -> supernet -> controller
    nao    check, cost_model, read_imports -> (run directory recorded) -> candidates ->
           controller
    final  strategy -> check -> (run directory recorded) -> trainee -> (epochs) -> results

`check` validates the config and reads the data without writing anything; it returns the
settings record (what a rerun is compared with: the config's fields marked `identity`, plus every
key of the record that is no flag, such as a fingerprint of the data) and the data.
"""

import abc
import dataclasses
from typing import Any, Callable, ClassVar, Mapping, Sequence

import tensorflow as tf

from nao_tf.algorithm.evaluators import WeightSharingEvaluator
from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.commands import cli
from nao_tf.common.errors import NaoError
from nao_tf.runtime.distribute import get_strategy
from nao_tf.runtime.standalone import ArchDirs, TrainFn
from nao_tf.runtime.train_loop import Trainee

COMMANDS = {"ws": "NAO with weight sharing", "nao": "NAO without weight sharing",
            "final": "the final training"}


@dataclasses.dataclass(frozen=True)
class Candidates:
    """How NAO without weight sharing trains each candidate (`Task.candidates`)."""

    train: TrainFn  # (arch, device) -> score, training in dirs.path(arch)
    failed_score: float | None  # the score of a diverged architecture; None: stop instead
    summary: str  # one line: data and per-architecture schedule


class Task(abc.ABC):
    """A task: its spaces, its configs and presets, its data, its networks (see the module
    docstring). Class attributes:

    name: what the commands print; score_name, higher_is_better: the score of an architecture.
    configs: per command ("ws", "nao", "final"), the typed config of the task's flags.
    presets: per command, `--config` name -> flag defaults (checked against the flags).
    defaults: per search command, the defaults of the command's own flags the task changes.
    spaces: per search command, its spaces (the first is the default; with several, `--space`
      chooses).
    ref: 'module:attribute' naming an instance, for `--executor=ray` (it is rebuilt there).
    final_command: how to train a found architecture, printed after a search (a preset's own:
      `final_command_after`).
    graphs: the architecture's pictures (`nao_tf.algorithm.draw`), or None.
    """

    name: ClassVar[str]
    score_name: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    configs: ClassVar[Mapping[str, cli.FlagGroup]]
    presets: ClassVar[Mapping[str, Mapping[str, Mapping[str, Any]]]] = {}
    defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    spaces: ClassVar[Mapping[str, Sequence[SearchSpace]]] = {}
    ref: ClassVar[str] = ""
    final_command: ClassVar[str] = ""
    graphs: ClassVar[Callable | None] = None

    # Every command.

    def require(self, command: str) -> cli.FlagGroup:
        """The config of `command`; one line when the task does not offer it."""
        if command not in self.configs:
            offered = ", ".join(COMMANDS[c] for c in self.configs)
            raise NaoError(f"task {self.name} offers no {COMMANDS[command]} (it offers: "
                           f"{offered})")
        return self.configs[command]

    def apply_preset(self, command: str, flag_values: Any) -> None:
        """Layers `--config`'s preset of `command` under the flags given explicitly."""
        if flag_values.config:
            config = cli.parse(self.configs[command], flag_values)
            cli.apply_preset(flag_values, self.preset(command, flag_values.config, config))

    def final_command_after(self, preset: str) -> str:
        """How to train an architecture found by a search run with `--config=preset`."""
        return self.final_command

    def preset(self, command: str, name: str, config: Any) -> Mapping[str, Any]:
        """Preset `name` of `command`; a task may change it with the rest of the flags'
        `config` (e.g. with the dataset)."""
        return self.presets[command][name]

    @abc.abstractmethod
    def check(self, command: str, config: Any,
              strategy: tf.distribute.Strategy | None = None) -> tuple[dict[str, Any], Any]:
        """The settings record and the data of `command` (the final training's `strategy`
        given), nothing written; raises `NaoError` on a setting that cannot work."""

    # The two searches.

    def space(self, command: str, name: str = "") -> SearchSpace:
        """The space of a search command: the one called `name`, or its first."""
        spaces = self.spaces[command]
        return next((s for s in spaces if s.name == name), spaces[0])

    def cost_model(self, command: str, config: Any,
                   space: SearchSpace) -> tuple[Callable[[Any], Mapping[str, int]], str]:
        """What an architecture of `space` costs in the network the search is for
        (`nao_tf.algorithm.costs`: "params", "mult_adds"), and that network in words (a budget's
        identity); by default the space's own `SearchSpace.costs`."""
        return space.costs, f"the {space.name} space's network"

    def forward_pass(self, command: str, config: Any, arch: Any,
                     batch: int) -> Callable[[], tf.Tensor]:
        """The network `cost_model` counts, built for `arch`, as a call of its compiled inference
        on `batch` inputs (what `--max_latency_ms` times)."""
        raise NaoError(f"task {self.name} cannot measure a network's latency; drop "
                       "--max_latency_ms")

    def controller(self, command: str, config: Any) -> dict[str, Any]:
        """The `ControllerConfig` fields of the task's original controller for `command`."""
        return {}

    # NAO-WS.

    settings_file: ClassVar[str] = "search_settings.json"
    search_options: ClassVar[Mapping[str, Any]] = {}  # `SearchConfig` fields the task fixes

    def supernet(self, config: Any, data: Any, output_dir: str) -> WeightSharingEvaluator:
        """The supernet that scores candidates (built once the run directory is recorded)."""
        raise NaoError(f"task {self.name} has no supernet, so no NAO with weight sharing")

    # NAO without weight sharing.

    scratch: ClassVar[Sequence[str]] = ()  # what of a candidate's directory its score frees

    def candidates(self, config: Any, settings: dict[str, Any], data: Any,
                   dirs: ArchDirs, output_dir: str) -> Candidates:
        """How each candidate trains, in `dirs.path(arch)` (after the run directory is recorded;
        it may write there, e.g. a generated corpus)."""
        raise NaoError(f"task {self.name} trains no candidate alone, so no NAO without weight "
                       "sharing")

    def read_imports(self, config: Any, space: SearchSpace, archs_path: str,
                     scores_path: str) -> list[tuple[Any, float]]:
        """The (architecture, score) pairs of files `archs_path` and `scores_path` (one a line:
        --import_archs, --import_scores), trained before."""
        raise NaoError(f"task {self.name} reads no imported architectures")

    # The final training.

    advice: ClassVar[str] = "lower the learning rate"  # how to go on after a divergence
    owned: ClassVar[Sequence[str]] = ()  # the task's own files in the run directory

    def strategy(self, config: Any) -> tf.distribute.Strategy:
        """The final training's strategy (first: a multi-worker one precedes every op)."""
        return get_strategy(multi_worker=True)

    def trainee(self, config: Any, data: Any, strategy: tf.distribute.Strategy) -> Trainee:
        """The architecture's `Trainee`, built once the run directory is recorded."""
        raise NaoError(f"task {self.name} has no final training")

    def epochs(self, config: Any) -> dict[str, int]:
        """`train_epochs`' epochs, keep_checkpoints, max_rollbacks (from the config)."""
        return {"epochs": config.epochs}

    def results(self, config: Any, trainee: Trainee, state: dict[str, Any], chief: bool,
                output_dir: str) -> dict[str, Any]:
        """The results after the last epoch (and any last evaluation or export); by default the
        last epoch's record."""
        return dict(state["history"][-1]) if state["history"] else {}


def identity(group: cli.FlagGroup, settings: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys of a settings record that a rerun must keep: the fields of config `group` marked
    identity, and every key of `settings` that is no field of it (a value derived from the data,
    such as its fingerprint)."""
    names = {f.name for f, _ in cli.Flags.of(group).leaves()}
    return (*cli.identity_keys(group), *(key for key in settings if key not in names))
