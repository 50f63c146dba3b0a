"""Measured latency: the median wall time of a network's forward pass on this device, kept in the
run directory (`latency.json`) so that a resumed search never measures a cell twice."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Callable, Hashable, Iterator

import numpy as np
import tensorflow as tf

from nao_tf.common import io
from nao_tf.common.errors import StateError


@contextlib.contextmanager
def graph_optimizer_on() -> Iterator[None]:
    """TensorFlow's graph optimiser (grappler) on inside the block, as a deployed network runs,
    whatever the process set for its own steps (the CNN supernet switches it off); the functions
    instantiated before keep their instantiations."""
    options = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options(
            {"disable_meta_optimizer": options.get("disable_meta_optimizer", False)})


def median_ms(forward: Callable[[], Any], repeats: int = 10, warmup: int = 2) -> float:
    """The median of `repeats` timings of `forward()` in milliseconds, after `warmup` untimed
    calls (the first traces, optimises and allocates), with the graph optimiser on. `forward`
    returns a tensor; reading its value waits for the device."""
    with graph_optimizer_on():
        for _ in range(warmup):
            np.asarray(forward())
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            np.asarray(forward())
            times.append(1000.0 * (time.perf_counter() - started))
    return float(np.median(times))


class LatencyCache:
    """`measure(arch)` in milliseconds, each architecture (by `key(arch)`) measured once and
    recorded in the JSON file `path` (read when first needed, so that a run directory deleted by
    --overwrite before the search starts leaves nothing behind)."""

    def __init__(self, path: str | os.PathLike, measure: Callable[[Hashable], float],
                 key: Callable[[Hashable], str], log: Callable[[str], None] | None = None,
                 log_every: int = 10):
        self.path, self.measure, self.key = path, measure, key
        self.log, self.log_every = log, log_every
        self._table: dict[str, float] | None = None
        self.measured = 0  # measurements made by this process

    def _load(self) -> dict[str, float]:
        if not os.path.exists(self.path):
            return {}
        table = io.read_json(self.path)
        if not isinstance(table, dict) or not all(isinstance(v, float) for v in table.values()):
            raise StateError(f"{self.path} is not a latency table (architecture -> milliseconds); "
                             "delete it to measure again")
        return table

    def __call__(self, arch: Hashable) -> float:
        if self._table is None:
            self._table = self._load()
        key = self.key(arch)
        if key not in self._table:
            self._table[key] = self.measure(arch)
            self.measured += 1
            io.atomic_write_json(self.path, self._table)
            if self.log and self.measured % self.log_every == 0:
                values = list(self._table.values())
                self.log(f"  latency: {self.measured} cells measured ({len(values)} in "
                         f"{self.path}, median {np.median(values):.3g} ms)")
        return self._table[key]
