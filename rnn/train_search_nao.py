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
from absl import flags

from nao_tf.commands import cli, standalone_search
from nao_tf.common.errors import NaoError
from nao_tf.common.io import fingerprint
from nao_tf.runtime.standalone import ArchDirs, TrainingDiverged, build_lock, read_imported
from nao_tf.runtime.train_loop import Diverged, train_epochs
from rnn.configs import CONFIGS
from rnn.data import read_corpus, write_generated_corpus
from rnn.search_space import RnnCell, RnnSearchSpace, cell_graphs, convert_nao_codes
from rnn.train_final import LMTrainee, TrainParams, check_params
from rnn.training import perplexity

SPACE = RnnSearchSpace()
# The per-architecture schedule: every TrainParams field but the run directory and the cell.
SCHEDULE_KEYS = tuple(f.name for f in dataclasses.fields(TrainParams)
                      if f.name not in ("output_dir", "arch", "arch_nao_codes", "overwrite"))
# Its values a run resumes only with (scores from different schedules must not mix).
SCHEDULE_FLAGS = cli.Flags(TrainParams, only=SCHEDULE_KEYS, defaults=CONFIGS["ptb_search"],
                           help_prefix="Per-cell training: ",
                           identity=set(SCHEDULE_KEYS) - {"data_dir", "log_interval",
                                                          "max_rollbacks", "jit_compile"})


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


# `--config=smoke`: defaults for a minutes-long offline run (no --data_dir: a generated corpus).
SMOKE: dict[str, Any] = dict(
    data_dir="", emsize=16, batch_size=16, eval_batch_size=10, bptt=12, max_seq_len_delta=4,
    epochs=2, log_interval=1000, seed_archs=6, iterations=1, top_k=4, new_archs=4,
    controller_epochs=30, controller_batch_size=8)

RESUME_KEYS = (*cli.identity_keys(SCHEDULE_FLAGS), "data_fingerprint")


def _check_perplexity(score: float) -> str | None:
    return None if score >= 1.0 else (f"perplexity {score} is below 1; the file must hold "
                                      "validation perplexities (valid_ppl), not losses")


def read_imports(fv: flags.FlagValues) -> list[tuple[RnnCell, float]]:
    """The (cell, perplexity) pairs of --import_archs / --import_scores ([] when not given)."""
    if not fv.import_archs:
        return []
    parse = ((lambda text: SPACE.parse(convert_nao_codes(text)))
             if fv.import_arch_codes == "nao" else SPACE.parse)
    return read_imported(SPACE, fv.import_archs, fv.import_scores, check=_check_perplexity,
                         parse=parse)


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


def check(fv: flags.FlagValues) -> tuple[dict[str, Any], int | None]:
    """The per-cell schedule and the corpus; returns the settings record and the vocabulary
    size (None for the corpus a smoke run generates)."""
    schedule = {k: fv[k].value for k in SCHEDULE_KEYS}
    check_params(TrainParams(output_dir=fv.output_dir, **schedule))
    if not schedule["data_dir"]:
        if fv.config != "smoke":
            raise NaoError("--data_dir is required: a directory with train.txt, valid.txt and "
                           "test.txt (scripts/get_data.sh ptb)")
        return schedule, None
    vocab_size = read_corpus(schedule["data_dir"]).vocab_size
    return {**schedule, "data_fingerprint": fingerprint(schedule["data_dir"])}, vocab_size


def setup(fv: flags.FlagValues, schedule: dict[str, Any], vocab_size: int | None,
          dirs: ArchDirs) -> standalone_search.Setup:
    tf.get_logger().setLevel("ERROR")  # every cell is a new model: its steps trace anew
    schedule = {k: schedule[k] for k in SCHEDULE_KEYS}
    if vocab_size is None:  # --config=smoke: a generated corpus inside the run directory
        schedule = {**schedule, "data_dir": str(write_generated_corpus(
            Path(fv.output_dir) / "corpus", seed=fv.seed))}
        vocab_size = read_corpus(schedule["data_dir"]).vocab_size
    return standalone_search.Setup(
        PtbArchTrainer(schedule, dirs, SPACE),
        failed_score=float(vocab_size) if fv.on_diverge == "uniform" else None,
        summary=f"{schedule['data_dir']} (vocabulary {vocab_size}); each cell d={fv.emsize}, "
                f"{fv.epochs} epochs")


TASK = standalone_search.StandaloneTask(
    name="rnn", space=SPACE,
    flags=[SCHEDULE_FLAGS, NaoTaskConfig],
    presets={"smoke": SMOKE}, identity=RESUME_KEYS,
    # The TF original's non-weight-sharing EPD: the LSTM reads all 22 tokens.
    controller=dict(encoder_length=SPACE.source_length, emb_size=96, hidden_size=96,
                    mlp_layers=3, mlp_hidden=200, encoder_dropout=0.1, mlp_dropout=0.1,
                    attention="bahdanau", trade_off=0.8, weight_decay=1e-4, learning_rate=1e-3,
                    max_gradient_norm=5.0),
    higher_is_better=False, score_name="validation perplexity", check=check, setup=setup,
    read_imports=read_imports, scratch=("checkpoints", "best"), graphs=cell_graphs,
    final_command="scripts/train_final.sh rnn --config=ptb", ref="rnn.train_search_nao:TASK")


if __name__ == "__main__":
    standalone_search.main(TASK)
