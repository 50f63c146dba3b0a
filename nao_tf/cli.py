"""Running absl entry points so that user errors print one clear line instead of a traceback."""

import os
import sys
from typing import Callable, Sequence

from absl import app, logging

from nao_tf.errors import NaoError


def _guarded(main: Callable[[Sequence[str]], None]) -> Callable[[Sequence[str]], None]:
    def wrapped(argv: Sequence[str]) -> None:
        if logging.get_verbosity() == logging.INFO:
            logging.set_verbosity(logging.WARNING)
        try:
            main(argv)
        except NaoError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapped


def run(main: Callable[[Sequence[str]], None], controller_only: bool = False) -> None:
    """`absl.app.run(main)`, with `NaoError` reported as `error: <message>` and exit code 2.

    TensorFlow's own INFO chatter is silenced; the commands print their own progress.
    `controller_only`: the command trains no child network, so each TensorFlow op runs on one
    core (intra-op threads 1, unless TF_NUM_INTRAOP_THREADS says otherwise) while independent ops,
    such as the controller's batch shards, run side by side: the controller's small products lose
    time when split across cores (0.44 -> 0.29 s per epoch on 2 cores, docs/benchmarks.md)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("WARNING")
    if controller_only and "TF_NUM_INTRAOP_THREADS" not in os.environ:
        tf.config.threading.set_intra_op_parallelism_threads(1)
    app.run(_guarded(main))
