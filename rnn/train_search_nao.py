"""NAO without weight sharing on PTB: every candidate recurrent cell is trained on its own.

    scripts/train_search.sh rnn --mode=nao --data_dir=data/penn --output_dir=runs/nao_ptb \
        [--devices=/gpu:0,/gpu:1] [flags]
    scripts/train_search.sh rnn --mode=nao --config=smoke --output_dir=runs/nao_rnn_smoke

The original's pipeline (`NAO/README.md`, spec original-rnn.md 4.3) as one resumable command: a
pool of random cells, each trained from scratch with the original per-architecture schedule
(`train_ptb_search.sh`, the `ptb_search` preset of rnn/configs.py: the d = 850 PTB model, SGD lr
20 then NT-ASGD, 600 epochs); its score is the best validation perplexity (lower is better). The
controller (the TF original's non-weight-sharing EPD: embedding 96, LSTM 96 over all 22 tokens,
predictor 3 x 200, normalised Bahdanau attention, trade-off 0.8, batch 50, 1000 epochs) learns from
every cell measured so far, generates up to 300 new cells per iteration from the top 100 with
lambda in {10, 20, 30}, and the new cells are trained in turn; 2 iterations by default.

With several devices (`--devices`, default every visible GPU) one cell trains per device.
`--import_archs` / `--import_scores` start from cells already trained (the original's `*.arch`
strings, one per line, in the NAO code table unless `--import_arch_codes=project`, and its
`valid_ppl` file, one perplexity per line). `--config=smoke` is a minutes-long offline run on a
generated corpus with tiny models.

Writes into --output_dir: state.json (the search, resumable), history.jsonl, pool.<i>.txt/.perf,
best_arch.json (for `scripts/train_final.sh rnn --arch=.../best_arch.json`), controller/,
tensorboard/, best_arch.png/.dot, train_settings.json, and archs/<hash>/ per cell (its
train_state.json, tensorboard/, score.json; its checkpoints are deleted once the score is
known). Killed at any moment, the same command resumes: a cell whose score was recorded is never
trained again, and a cell killed mid-training resumes from its last finished epoch.
"""

import dataclasses
from pathlib import Path
from typing import Any

import tensorflow as tf

from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.commands import cli, standalone_search
from nao_tf.commands.task import Candidates
from nao_tf.common.io import fingerprint
from nao_tf.runtime.standalone import ArchDirs, TrainingDiverged, build_lock, read_imported
from nao_tf.runtime.train_loop import Diverged, train_epochs
from rnn.configs import CONFIGS
from rnn.data import read_corpus, write_generated_corpus
from rnn.search_space import RnnCell, RnnSearchSpace, convert_nao_codes
from rnn.train_final import LMTrainee, TrainParams, check_params
from rnn.training import perplexity

# The per-architecture schedule: every TrainParams field but the run directory and the cell.
SCHEDULE_KEYS = tuple(f.name for f in dataclasses.fields(TrainParams)
                      if f.name not in ("output_dir", "arch", "arch_nao_codes", "overwrite"))


@dataclasses.dataclass(frozen=True)
class NaoTaskConfig:
    """The task's other flags."""

    on_diverge: str = cli.option("uniform", "A cell still diverging after --max_rollbacks: "
                                 "'uniform' scores it with the best validation perplexity "
                                 "reached before, else the vocabulary size (the perplexity of a "
                                 "uniform predictor); 'error' stops.", ["uniform", "error"])
    import_arch_codes: str = cli.option("nao", "Activation code table of --import_archs (22 "
                                        "integers a cell): 'nao' (the original no-WS files: "
                                        "2=identity, 3=sigmoid) or 'project' (2=sigmoid, "
                                        "3=identity); --import_scores holds validation "
                                        "perplexities (the original's valid_ppl).",
                                        ["nao", "project"])


@dataclasses.dataclass(frozen=True)
class NaoSearchConfig:
    """Each cell's training (the final training's settings, those of `SCHEDULE_KEYS` offered,
    with the `ptb_search` preset's defaults; a run resumes only with the same schedule, so that
    scores of two schedules never mix) and the task's other flags."""

    schedule: TrainParams = cli.section(
        TrainParams, only=SCHEDULE_KEYS, defaults=CONFIGS["ptb_search"],
        help_prefix="Per-cell training: ",
        identity=set(SCHEDULE_KEYS) - {"data_dir", "log_interval", "max_rollbacks", "jit_compile"})
    task: NaoTaskConfig = cli.section(NaoTaskConfig)


# `--config=smoke`: defaults for a minutes-long offline run (no --data_dir: a generated corpus).
SMOKE: dict[str, Any] = dict(
    data_dir="", emsize=16, batch_size=16, eval_batch_size=10, bptt=12, max_seq_len_delta=4,
    epochs=2, log_interval=1000, seed_archs=6, iterations=1, top_k=4, new_archs=4,
    controller_epochs=30, controller_batch_size=8)

def _check_perplexity(score: float) -> str | None:
    return None if score >= 1.0 else (f"perplexity {score} is below 1; the file must hold "
                                      "validation perplexities (valid_ppl), not losses")


def read_imports(c: NaoSearchConfig, space: SearchSpace, archs_path: str,
                 scores_path: str) -> list[tuple[RnnCell, float]]:
    """The (cell, perplexity) pairs of --import_archs / --import_scores."""
    parse = ((lambda text: space.parse(convert_nao_codes(text)))
             if c.task.import_arch_codes == "nao" else space.parse)
    return read_imported(space, archs_path, scores_path, check=_check_perplexity, parse=parse)


class PtbArchTrainer:
    """`(arch, device) -> best validation perplexity`: trains one cell from scratch in its own
    directory (resuming after its last finished epoch if a killed run left one); a cell that keeps
    diverging after --max_rollbacks raises `TrainingDiverged`."""

    def __init__(self, schedule: dict[str, Any], dirs: ArchDirs, space: RnnSearchSpace):
        self.schedule, self.dirs, self.space = schedule, dirs, space

    def __call__(self, arch: RnnCell, device: str) -> float:
        params = TrainParams(output_dir=str(self.dirs.path(arch)), arch=self.space.to_string(arch),
                             **self.schedule)
        strategy = tf.distribute.OneDeviceStrategy(device)
        with build_lock:  # the trainee seeds Keras, then builds the model
            trainee = LMTrainee(params, arch, "search", read_corpus(params.data_dir), strategy)
        try:
            state = train_epochs(trainee, params.output_dir, strategy, params.epochs,
                                 max_rollbacks=params.max_rollbacks)
        except Diverged as err:
            best = err.state["best_val_loss"] if err.state["best_epoch"] else None
            raise TrainingDiverged(f"{err}", None if best is None else perplexity(best)) from None
        return perplexity(state["best_val_loss"])


def check(c: NaoSearchConfig) -> tuple[dict[str, Any], int | None]:
    """The per-cell schedule and the corpus; returns the settings record and the vocabulary
    size (None without --data_dir: a corpus is generated, as `--config=smoke` does)."""
    schedule = c.schedule
    check_params(schedule)
    settings = cli.Flags(NaoSearchConfig).values(c)
    if not schedule.data_dir:
        return settings, None
    vocab_size = read_corpus(schedule.data_dir).vocab_size
    return {**settings, "data_fingerprint": fingerprint(schedule.data_dir)}, vocab_size


def candidates(c: NaoSearchConfig, vocab_size: int | None, dirs: ArchDirs,
               output_dir: str) -> Candidates:
    tf.get_logger().setLevel("ERROR")  # every cell is a new model: its steps trace anew
    schedule = {k: getattr(c.schedule, k) for k in SCHEDULE_KEYS}
    if vocab_size is None:  # --config=smoke: a generated corpus inside the run directory
        schedule["data_dir"] = str(write_generated_corpus(Path(output_dir) / "corpus",
                                                          seed=c.schedule.seed))
        vocab_size = read_corpus(schedule["data_dir"]).vocab_size
    return Candidates(
        PtbArchTrainer(schedule, dirs, RnnSearchSpace()),
        failed_score=float(vocab_size) if c.task.on_diverge == "uniform" else None,
        summary=f"{schedule['data_dir']} (vocabulary {vocab_size}); each cell "
                f"d={c.schedule.emsize}, {c.schedule.epochs} epochs")


if __name__ == "__main__":
    from rnn.task import TASK

    standalone_search.main(TASK)
