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


def run(main: Callable[[Sequence[str]], None]) -> None:
    """`absl.app.run(main)`, with `NaoError` reported as `error: <message>` and exit code 2.

    TensorFlow's own INFO chatter is silenced; the commands print their own progress."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("WARNING")
    app.run(_guarded(main))
