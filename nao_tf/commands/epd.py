"""The standalone encoder-predictor-decoder: train, evaluate and generate from files.

The original's `epd/main.py` workflow, generic over search spaces:

    python -m nao_tf.commands.epd train --space=nasbench201 --archs=archs.txt --scores=scores.txt --model_dir=epd
    python -m nao_tf.commands.epd evaluate --space=nasbench201 --archs=test.txt --scores=test_scores.txt --model_dir=epd
    python -m nao_tf.commands.epd generate --space=nasbench201 --archs=top100.txt --model_dir=epd \\
        --lambdas=10,20,30 --output=new

Architectures are read one per line in the space's text format (`--format=arch`) or as controller
token sequences (`--format=tokens`, the original's `encoder.*.input`); scores one float per line.
`train` warm-starts from a checkpoint in `--model_dir` (pass `--overwrite` to start afresh). While
it trains it checkpoints every `--save_every_epochs` epochs (`progress` and `progress.json`); a
killed `train` rerun with the same files and `--epochs` continues from there, without redoing
the finished epochs.
`generate` writes OUTPUT.arch (reconstructions), OUTPUT.new_arch (new architectures, never in
--archs or --exclude) and OUTPUT.perf (their predicted normalised scores, 1 = best).
"""

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
from absl import flags

from nao_tf.algorithm.controller import Controller, ControllerConfig
from nao_tf.algorithm.controller_train import ControllerTrainer, normalize_scores
from nao_tf.algorithm.generate import ControllerInference, generate_new
from nao_tf.algorithm.metrics import hamming_distance, kendall_tau, pairwise_accuracy
from nao_tf.algorithm.search_space import SearchSpace, load_space
from nao_tf.commands import cli
from nao_tf.common import io
from nao_tf.common.errors import DataError, InvalidArchitectureError

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class EpdConfig:
    space: str = cli.option("", "Search space: nasbench201, synthetic, or package.module:factory.")
    archs: str = cli.option("", "Architectures, one per line.")
    format: str = cli.option("arch", "Lines of --archs: the space's text or token ids.",
                             ["arch", "tokens"])
    scores: str = cli.option("", "Scores, one per line, in the order of --archs.")
    lower_is_better: bool = cli.option(False, "Scores are errors/losses/perplexities (smaller is "
                                       "better).")
    model_dir: str = cli.option("", "Directory of the controller checkpoint and its config.json.")
    overwrite: bool = cli.option(False, "train: discard an existing checkpoint in --model_dir.")
    epochs: int = cli.option(1000, "train: passes over the data.")
    save_every_epochs: int = cli.option(50, "train: checkpoint this often, so that a killed train "
                                        "resumes.")
    symmetry: bool = cli.option(True, "train: augment with the space's equivalent rewrites.")
    seed: int = cli.option(0, "Random seed.")
    lambdas: list = cli.option(["10", "20", "30"], "generate: step sizes, each a step from the "
                               "seeds.")
    count: int = cli.option(0, "generate: stop at this many new architectures (0: all found).")
    exclude: str = cli.option("", "generate: a file of architectures that do not count as new.")
    beam_width: int = cli.option(0, "Decode with beam search of this width (0: greedy).")
    output: str = cli.option("", "evaluate: predictions file; generate: output prefix.")


# --controller_<field> for each `ControllerConfig` field the space does not fix.
ControllerFlags = dataclasses.make_dataclass("ControllerFlags", [
    (f"controller_{f.name}", f.type, cli.option(f.default, f"ControllerConfig.{f.name}."))
    for f in dataclasses.fields(ControllerConfig)
    if f.name not in ("vocab_size", "source_length", "encoder_length", "seed")], frozen=True)


def read_archs(space: SearchSpace, path: str, fmt: str) -> list:
    archs = []
    for lineno, text in io.read_lines(path):
        try:
            if fmt == "tokens":
                archs.append(space.from_tokens([int(t) for t in text.split()]))
            else:
                archs.append(space.parse(text))
        except (InvalidArchitectureError, ValueError) as err:
            raise DataError(f"{path}:{lineno}: {err}") from None
    if not archs:
        raise DataError(f"{path}: no architectures")
    return archs


def read_scored(space: SearchSpace) -> tuple[list, np.ndarray]:
    archs = read_archs(space, _required("archs"), FLAGS.format)
    scores = io.read_scores(_required("scores"))
    if len(scores) != len(archs):
        raise DataError(f"{FLAGS.scores} has {len(scores)} scores but {FLAGS.archs} has {len(archs)} "
                        "architectures; give one score per architecture, in the same order")
    return archs, np.array(scores)


def _required(name: str) -> str:
    value = getattr(FLAGS, name)
    if not value:
        raise DataError(f"--{name} is required for this command")
    return value


def load_controller(space: SearchSpace, model_dir: Path) -> tuple[ControllerTrainer, dict]:
    """The controller of `model_dir` (weights and optimizer), or a new one built from the flags."""
    config_path = model_dir / "config.json"
    if config_path.exists():
        saved = io.read_json(config_path, {"space": str, "controller": dict, "lower_is_better": bool})
        if saved["space"] != space.name:
            raise DataError(f"{model_dir} holds a controller for space {saved['space']!r}, not {space.name!r}")
        try:
            config = ControllerConfig(**saved["controller"])
        except TypeError as err:
            raise DataError(f"{config_path}: 'controller' is not a controller's settings ({err})") from None
    else:
        overrides = {f.name: getattr(FLAGS, f"controller_{f.name}") for f in dataclasses.fields(ControllerConfig)
                     if f.name not in ("vocab_size", "source_length", "encoder_length", "seed")}
        config = ControllerConfig.for_space(space, seed=FLAGS.seed, **overrides)
        saved = dict(space=space.name, controller=config.to_dict(), lower_is_better=FLAGS.lower_is_better)
    augment = space.random_equivalent if FLAGS.symmetry else None
    trainer = ControllerTrainer(Controller(config, space.valid_token_mask()), augment=augment)
    if (model_dir / "checkpoint.index").exists():
        trainer.restore(str(model_dir / "checkpoint"))
    return trainer, saved


def train(space: SearchSpace, model_dir: Path) -> None:
    for name in ("epochs", "save_every_epochs"):
        if FLAGS[name].value < 1:
            raise DataError(f"--{name}={FLAGS[name].value} must be at least 1")
    archs, scores = read_scored(space)
    if FLAGS.overwrite and model_dir.exists():
        shutil.rmtree(model_dir)
    trainer, saved = load_controller(space, model_dir)
    if saved["lower_is_better"] != FLAGS.lower_is_better:
        raise DataError(f"{model_dir} was trained with lower_is_better={saved['lower_is_better']}; "
                        "pass the same flag, or --overwrite")
    tokens = space.encode(archs)
    targets = normalize_scores(scores, higher_is_better=not FLAGS.lower_is_better)
    run = dict(data=hashlib.sha256(tokens.tobytes() + targets.tobytes()).hexdigest()[:16],
               epochs=FLAGS.epochs, seed=FLAGS.seed)
    progress_path, done = model_dir / "progress.json", 0
    if progress_path.exists():
        progress = io.read_json(progress_path, {"run": dict, "epochs_done": int})
        if progress.get("run") == run:
            trainer.restore(str(model_dir / "progress"))
            done = progress["epochs_done"]
            print(f"resuming the training killed after epoch {done} of {FLAGS.epochs}", flush=True)
    model_dir.mkdir(parents=True, exist_ok=True)

    def report(epoch: int, metrics: dict) -> None:
        epoch += done + 1
        if epoch % FLAGS.save_every_epochs == 0 and epoch < FLAGS.epochs:
            trainer.save(str(model_dir / "progress"))
            io.atomic_write_json(progress_path, dict(run=run, epochs_done=epoch))
        if epoch % 50 == 0 or epoch == FLAGS.epochs:
            print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()), flush=True)

    rng = np.random.default_rng([FLAGS.seed, done])
    trainer.fit(tokens, targets, FLAGS.epochs - done, rng, on_epoch_end=report)
    trainer.save(str(model_dir / "checkpoint"))
    io.atomic_write_json(model_dir / "config.json", saved)
    progress_path.unlink(missing_ok=True)
    for stale in model_dir.glob("progress.*"):
        stale.unlink()
    print(f"saved the controller to {model_dir}")


def load_trained_controller(space: SearchSpace, model_dir: Path) -> tuple[ControllerTrainer, dict]:
    """`load_controller` for `evaluate` and `generate`: a directory without a trained controller
    is an error, not an untrained controller."""
    if not (model_dir / "config.json").exists() or not (model_dir / "checkpoint.index").exists():
        raise DataError(f"--model_dir={model_dir} holds no trained controller (config.json and "
                        "checkpoint); train one with `python -m nao_tf.commands.epd train` first")
    return load_controller(space, model_dir)


def evaluate(space: SearchSpace, model_dir: Path) -> None:
    archs, scores = read_scored(space)
    trainer, saved = load_trained_controller(space, model_dir)
    inference = ControllerInference(trainer.model, beam_width=FLAGS.beam_width)
    tokens = space.encode(archs)
    predicted = inference.predict(tokens)
    goodness = -scores if saved["lower_is_better"] else scores
    metrics = dict(pairwise_accuracy=pairwise_accuracy(goodness, predicted),
                   kendall_tau=kendall_tau(goodness, predicted),
                   hamming_distance=hamming_distance(tokens, inference.reconstruct(tokens)))
    print(json.dumps(metrics, indent=2))
    if FLAGS.output:
        io.write_lines(FLAGS.output, (f"{p:.6f}" for p in predicted))


def generate(space: SearchSpace, model_dir: Path) -> None:
    seeds = read_archs(space, _required("archs"), FLAGS.format)
    output = _required("output")
    trainer, _ = load_trained_controller(space, model_dir)
    inference = ControllerInference(trainer.model, beam_width=FLAGS.beam_width)
    excluded = read_archs(space, FLAGS.exclude, "arch") if FLAGS.exclude else []
    seen = {space.canonical_key(a) for a in seeds + excluded}
    try:
        lambdas = [float(x) for x in FLAGS.lambdas]
    except ValueError:
        raise DataError(f"--lambdas must be numbers, got {FLAGS.lambdas}") from None
    count = FLAGS.count or len(seeds) * len(lambdas)
    result = generate_new(inference, space, seeds, count, seen, lambdas)
    reconstructed = space.decode(inference.reconstruct(space.encode(seeds)))
    io.write_lines(f"{output}.arch", (space.to_string(a) for a in reconstructed))
    io.write_lines(f"{output}.new_arch", (space.to_string(a) for a in result.archs))
    io.write_lines(f"{output}.perf", (f"{p:.6f}" for p in result.predicted))
    print(f"{len(result.archs)} new architectures (lambda up to {result.step_size:g}) -> {output}.new_arch")


COMMANDS = {"train": train, "evaluate": evaluate, "generate": generate}


def main(argv: Sequence[str]) -> None:
    space = load_space(_required("space"))
    COMMANDS[argv[1]](space, Path(_required("model_dir")))


if __name__ == "__main__":
    cli.define_flags([EpdConfig, ControllerFlags])
    cli.run(main, controller_only=True, subcommands=tuple(COMMANDS))
