"""What a resume reads back: a run's identity (the settings its state depends on) compared with
the new settings, and its checkpoints, each failure named with its fix."""

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import tensorflow as tf

from nao_tf.common.errors import StateError

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
