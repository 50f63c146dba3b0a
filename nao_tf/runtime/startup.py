"""TensorFlow's C++ start-up lines, held back.

TensorFlow writes a few lines to the process's stderr while its libraries load and when it first
looks for devices, before its logging starts, so `TF_CPP_MIN_LOG_LEVEL` cannot hide them ("All
log messages before absl::InitializeLog()", "Could not find cuda drivers", the CPU-instructions
notice, "oneDNN custom operations are on" on CPUs with AVX-512, "failed call to cuInit" on a
machine without a GPU). `held_back()` captures file
descriptor 2 around such a block and passes on every other line, so nothing else is lost.
"""

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator

STARTUP_LINES = re.compile(
    r"All log messages before absl::InitializeLog|cudart_stub\.cc|cpu_feature_guard\.cc|"
    r"^To enable the following instructions|cuda_platform\.cc:\d+\] failed call to cuInit|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|port\.cc:\d+\] oneDNN custom operations are on")


@contextlib.contextmanager
def held_back(dropped: re.Pattern = STARTUP_LINES) -> Iterator[None]:
    """Runs the block with fd 2 captured; afterwards writes the captured lines that `dropped`
    does not match (by default: TensorFlow's start-up lines) to stderr (also when the block
    raises)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no real stderr (an embedding host)
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines()
                    if line.strip() and not dropped.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


def import_tensorflow() -> None:
    """Imports TensorFlow (once) without its start-up lines."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with held_back():
        import tensorflow  # noqa: F401
