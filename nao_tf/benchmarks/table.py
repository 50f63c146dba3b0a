"""A tabular benchmark's table (one measured row per cell) as an evaluator and as a counted
query budget."""

import csv
import math
import os
from typing import Callable, Sequence

import numpy as np

from nao_tf.algorithm.evaluators import Arch, Evaluator, Record
from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.common.errors import DataError, InvalidArchitectureError

class Table:
    """The benchmark table: one row per cell, numeric metric columns by name."""

    def __init__(self, path: str | os.PathLike, space: SearchSpace):
        try:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                columns = reader.fieldnames or []
        except FileNotFoundError:
            raise DataError(f"{path}: table not found; pass --table=PATH to the benchmark's CSV") from None
        if "arch" not in columns:
            raise DataError(f"{path}: no 'arch' column (columns: {columns})")
        self.path, self.columns = str(path), [c for c in columns if c not in ("arch", "index")]
        self.rows: dict[Arch, dict[str, float]] = {}
        self.index: dict[Arch, int] = {}
        first_line: dict[Arch, int] = {}
        for lineno, row in enumerate(rows, start=2):
            try:
                arch = space.parse(row["arch"])
                values = {c: float(row[c]) for c in self.columns}
            except (InvalidArchitectureError, ValueError, TypeError) as err:
                raise DataError(f"{path}:{lineno}: {err}") from None
            bad = [c for c, v in values.items() if not math.isfinite(v)]
            if bad:
                raise DataError(f"{path}:{lineno}: {bad[0]} is {values[bad[0]]}; every metric "
                                "must be a finite number")
            if arch in first_line:  # the same cell again: harmless only with the same values
                if values != self.rows[arch]:
                    raise DataError(f"{path}:{lineno}: {row['arch']} has other values than on "
                                    f"line {first_line[arch]}; keep one of the two rows")
                continue
            first_line[arch], self.rows[arch] = lineno, values
            self.index[arch] = int(row.get("index") or lineno - 2)
        # Every token sequence the space allows is a cell the searches may query.
        expected = int(np.prod(space.valid_token_mask().sum(axis=1), dtype=np.float64))
        if len(self.rows) < expected:
            raise DataError(f"{path}: {len(self.rows)} distinct cells, but the space "
                            f"{space.name!r} has {expected}; a benchmark needs the whole table "
                            "(a partial export would stop at the first cell it lacks)")

    def metric(self, arch: Arch, column: str) -> float:
        return self.rows[arch][column]

    def check_column(self, column: str) -> None:
        if column not in self.columns:
            raise DataError(f"{self.path}: no column {column!r}; choose one of {self.columns}")

    def best(self, column: str, allowed: Callable[[Arch], bool] | None = None) -> float:
        """The best value of `column`, over the cells `allowed` (default: all)."""
        return max(r[column] for arch, r in self.rows.items() if allowed is None or allowed(arch))


class TabularEvaluator(Evaluator):
    """Scores an architecture by looking up `column` (an accuracy: higher is better)."""

    higher_is_better = True

    def __init__(self, table: Table, column: str):
        table.check_column(column)
        self.table, self.column = table, column

    def evaluate(self, archs: Sequence[Arch], iteration: int, record: Record) -> None:
        for arch in archs:
            record(arch, self.table.metric(arch, self.column))


class QueryCounter:
    """Counts distinct architectures queried, refusing any beyond the budget."""

    def __init__(self, table: Table, column: str, budget: int):
        self.table, self.column, self.budget = table, column, budget
        self.queried: dict[Arch, float] = {}

    def __call__(self, arch: Arch) -> float:
        if arch not in self.queried:
            if len(self.queried) >= self.budget:
                raise RuntimeError("query budget exceeded")
            self.queried[arch] = self.table.metric(arch, self.column)
        return self.queried[arch]

    @property
    def exhausted(self) -> bool:
        return len(self.queried) >= self.budget
