"""One run directory per command: its settings record, whether a rerun may resume, `--overwrite`.

Every command goes through the same three steps, in this order:

  1. validate its flags and data (the command's own checks);
  2. `RunDir.check(settings, overwrite)`: the directory can be written, and, unless `--overwrite`,
     a settings record left by an earlier run agrees with `settings` on every identity key (the
     settings the run's weights, scores or state depend on). A mismatch names each differing
     setting with both values. Nothing is written or deleted here;
  3. `RunDir.start(settings, overwrite)`: only now does `--overwrite` delete the old run, and the
     settings record is written (atomically), so a refused rerun never rewrites it.

`RunDir.prepare` runs 2 and 3 together when the command has nothing to check in between;
`prepare_run_dir` does so across workers.
"""

import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

import tensorflow as tf

from nao_tf.common import io
from nao_tf.common.errors import StateError
from nao_tf.common.resume import check_identity
from nao_tf.runtime.distribute import agree_with_chief, barrier, is_chief


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


def prepare_run_dir(run_dir: RunDir, settings: dict, overwrite: bool,
                    strategy: tf.distribute.Strategy) -> None:
    """`run_dir.prepare` on the chief, `run_dir.check` on the other workers, once every worker's
    settings are the chief's; returns once the chief's is done (its `--overwrite` included), so
    no worker reads a run being deleted."""
    agree_with_chief(settings, strategy)
    if is_chief(strategy):
        run_dir.prepare(settings, overwrite)
    else:
        run_dir.check(settings, overwrite)
    barrier(strategy)
