"""Running absl entry points so that user errors print one clear line instead of a traceback."""

import sys
from typing import Callable, Sequence

from absl import app

from nao_tf.errors import NaoError


def _guarded(main: Callable[[Sequence[str]], None]) -> Callable[[Sequence[str]], None]:
    def wrapped(argv: Sequence[str]) -> None:
        try:
            main(argv)
        except NaoError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapped


def run(main: Callable[[Sequence[str]], None]) -> None:
    """`absl.app.run(main)`, with `NaoError` reported as `error: <message>` and exit code 2."""
    app.run(_guarded(main))
