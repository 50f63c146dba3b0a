"""What a resume reads back: a run's identity (the settings its state depends on) compared with
the new settings, and its checkpoints, each failure named with its fix."""

import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import tensorflow as tf

from nao_tf.common.errors import StateError
from nao_tf.common.io import atomic_write_text

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


RECORD = "checkpoint"  # tf.train.CheckpointManager's record of the checkpoints it keeps


def unrecorded_checkpoints(directory: str | os.PathLike) -> list[str]:
    """The checkpoints (prefixes, oldest first) in `directory` when its manager's record file is
    missing, [] when the record is there. A run killed after writing its first checkpoint but
    before the record leaves this state; a checkpoint's `.index` file is its last, so each listed
    one is whole."""
    directory = str(directory)
    if tf.io.gfile.exists(os.path.join(directory, RECORD)):
        return []
    prefixes = [p[:-len(".index")] for p in tf.io.gfile.glob(os.path.join(directory, "*.index"))]
    numbered = [p for p in prefixes if re.fullmatch(r".*-\d+", p)]
    return sorted(numbered, key=lambda p: int(p.rsplit("-", 1)[1]))


def write_record(directory: str | os.PathLike, prefixes: list[str]) -> None:
    """Writes the manager's record of `prefixes` (oldest first; a `CheckpointState` text proto,
    as `tf.train.CheckpointManager` writes it): a manager opened on `directory` then resumes from
    the newest and deletes them in turn, past its `max_to_keep`."""
    names = [os.path.basename(p) for p in prefixes]
    lines = [f'model_checkpoint_path: "{names[-1]}"']
    lines += [f'all_model_checkpoint_paths: "{name}"' for name in names]
    lines += [f"all_model_checkpoint_timestamps: {tf.io.gfile.stat(p + '.index').mtime_nsec / 1e9}"
              for p in prefixes]
    atomic_write_text(os.path.join(str(directory), RECORD), "\n".join(lines) + "\n")


def latest_checkpoint(manager: tf.train.CheckpointManager) -> str | None:
    """The newest checkpoint of `manager`, None for a new run; when the manager's record is
    missing (see `unrecorded_checkpoints`), the newest checkpoint file."""
    unrecorded = unrecorded_checkpoints(manager.directory)
    return manager.latest_checkpoint or (unrecorded[-1] if unrecorded else None)


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
