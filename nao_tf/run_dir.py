"""One run directory per command: its settings record, whether a rerun may resume, `--overwrite`,
and TensorBoard scalars.

Every command goes through the same three steps, in this order:

  1. validate its flags and data (the command's own checks);
  2. `RunDir.check(settings, overwrite)`: the directory can be written, and, unless `--overwrite`,
     a settings record left by an earlier run agrees with `settings` on every identity key (the
     settings the run's weights, scores or state depend on). A mismatch names each differing
     setting with both values. Nothing is written or deleted here;
  3. `RunDir.start(settings, overwrite)`: only now does `--overwrite` delete the old run, and the
     settings record is written (atomically), so a refused rerun never rewrites it.

`RunDir.prepare` runs 2 and 3 together when the command has nothing to check in between.
`restore`, `latest_checkpoint` and `require_record` read a run's checkpoints back, naming a missing
or damaged one, or lost bookkeeping.
"""

import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

import tensorflow as tf

from nao_tf import io
from nao_tf.errors import StateError

_SCALAR_METADATA = tf.compat.v1.SummaryMetadata(
    plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()


def identity_changes(old: Mapping[str, Any], new: Mapping[str, Any],
                     keys: Iterable[str]) -> list[str]:
    """`name: recorded -> now` for each of `keys` whose recorded value differs from the new one
    (a key the old record lacks is not a change: it was added to the identity later)."""
    return [f"{k}: {old[k]!r} -> {new.get(k)!r}" for k in keys if k in old and old[k] != new.get(k)]


def check_identity(old: Mapping[str, Any], new: Mapping[str, Any], keys: Iterable[str],
                   what: str) -> None:
    """Raises `StateError` naming every identity setting in which `new` differs from `old`.
    `what`: the thing that cannot be resumed, e.g. "runs/x holds a search"."""
    changes = identity_changes(old, new, keys)
    if changes:
        raise StateError(f"{what} made with other settings ({'; '.join(changes)}); rerun with the "
                         "recorded values, use another --output_dir, or pass --overwrite to delete "
                         "it and start again")


class RunDir:
    """A command's output directory (see the module docstring).

    `settings_file`: the record of the settings, inside the directory. `identity`: the keys of
    the settings a rerun must keep to resume. `owned`: the entries `--overwrite` deletes (None:
    the whole directory; a final training that shares its directory with others names its own).
    """

    def __init__(self, path: str | os.PathLike, identity: Iterable[str],
                 settings_file: str = "flags.json", owned: Iterable[str] | None = None):
        if not str(path):
            raise StateError("--output_dir is required (the run directory)")
        self.path = Path(path)
        self.identity = tuple(identity)
        self.settings_path = self.path / settings_file
        self.owned = None if owned is None else tuple(owned)

    def recorded(self) -> dict[str, Any] | None:
        """The settings of the run already in the directory, or None when there is none."""
        if not self.settings_path.exists():
            return None
        record = io.read_json(self.settings_path)
        if not isinstance(record, dict):
            raise StateError(f"{self.settings_path} does not hold a settings record (a JSON "
                             "object); move it away or pass --overwrite")
        return record

    def check(self, settings: Mapping[str, Any], overwrite: bool) -> None:
        """Stops if the directory cannot be written, or (without `overwrite`) holds a run whose
        identity settings differ from `settings`. Writes nothing."""
        self._check_writable()
        if overwrite:
            return
        old = self.recorded()
        if old is not None:
            check_identity(old, settings, self.identity, f"{self.path} holds a run")

    def start(self, settings: Mapping[str, Any], overwrite: bool) -> None:
        """Deletes the old run (with `overwrite`), creates the directory and records `settings`."""
        if overwrite and self.path.exists():
            for entry in self._owned_entries():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                elif entry.exists() or entry.is_symlink():
                    entry.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        io.atomic_write_json(self.settings_path, dict(settings))

    def prepare(self, settings: Mapping[str, Any], overwrite: bool) -> None:
        self.check(settings, overwrite)
        self.start(settings, overwrite)

    def _owned_entries(self) -> list[Path]:
        if self.owned is None:
            return list(self.path.iterdir())
        return [self.path / name for name in self.owned]

    def _check_writable(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise StateError(f"--output_dir={self.path} is a file, not a directory; choose a "
                             "directory")
        existing = self.path
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise StateError(f"--output_dir={self.path}: {existing} is a file, so the directory "
                             "cannot be created; choose another path")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise StateError(f"--output_dir={self.path}: {existing} is not writable; choose a "
                             "directory you can write to")


def restore(checkpoint: tf.train.Checkpoint, path: str | os.PathLike, exact: bool = True) -> None:
    """Restores `checkpoint` from `path` (a checkpoint prefix). A missing, damaged or foreign
    checkpoint is a `StateError` naming it. `exact`: every value of the checkpoint must be
    consumed (one made by `write` into a full training state); otherwise every object of
    `checkpoint` must be matched (checkpoint numbers are always given explicitly, so the
    `save_counter` is not restored)."""
    path = str(path)
    fix = "restore it from a copy, or pass --overwrite to start the run again"
    if not tf.io.gfile.exists(path + ".index"):
        raise StateError(f"checkpoint {path} is missing ({path}.index not found); {fix}")
    try:
        status = checkpoint.read(path)
        status.assert_consumed() if exact else status.assert_existing_objects_matched()
        status.expect_partial()  # what is left over was allowed: no warnings about it at exit
    except Exception as err:  # noqa: BLE001 -- damaged files fail in many ways inside the reader
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise StateError(f"checkpoint {path} cannot be restored ({reason}); {fix}") from None


def latest_checkpoint(manager: tf.train.CheckpointManager) -> str | None:
    """The newest checkpoint of `manager`, None for a new run; an error when checkpoint files are
    there but the manager's record of them (the `checkpoint` file) is gone, instead of silently
    training again from the start."""
    if manager.latest_checkpoint:
        return manager.latest_checkpoint
    orphans = tf.io.gfile.glob(os.path.join(manager.directory, "*.index"))
    if orphans:
        raise StateError(f"{manager.directory} holds checkpoints but not its `checkpoint` record "
                         "file, so the step to resume from is unknown; restore that file, or "
                         "pass --overwrite to start the run again")
    return None


def require_record(record: str | os.PathLike, checkpoints: str | os.PathLike) -> None:
    """Stops when `checkpoints` holds trained checkpoints (any but number 0, the initial weights)
    while the bookkeeping file `record` that says where they stand is gone: the run would
    otherwise start again from zero without a word."""
    record = Path(record)
    trained = [p for p in tf.io.gfile.glob(os.path.join(str(checkpoints), "*.index"))
               if not p.endswith("-0.index")]
    if trained and not record.exists():
        raise StateError(f"{record} is missing, but {checkpoints} holds trained checkpoints; "
                         "restore the file, or pass --overwrite to start the run again")


def write_scalars(writer: tf.summary.SummaryWriter, step: int,
                  values: Mapping[str, float]) -> None:
    """TensorBoard scalars (the record `tensorboard.summary.scalar` writes, written with
    TensorFlow's own summary op, so training needs no tensorboard package)."""
    with writer.as_default(step=step):
        for tag, value in values.items():
            tf.summary.write(tag, tf.constant(value, tf.float32), metadata=_SCALAR_METADATA)
    writer.flush()
