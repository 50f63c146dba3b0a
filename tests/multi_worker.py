"""Loopback jobs of several worker processes (MultiWorkerMirroredStrategy, TF_CONFIG on free
localhost ports) for the multi-worker tests, and the checkpoint values they compare."""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]

# The workers' temporary directory, one per test process: their scratch directories are looked
# for there, so tests running in parallel processes (pytest -n) do not see each other's.
_WORKER_TMP = Path(tempfile.mkdtemp(prefix="nao-tests-"))
atexit.register(shutil.rmtree, _WORKER_TMP, ignore_errors=True)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start(module: str, args: list[str], tf_config: dict | None = None,
          cpp_log: bool = False) -> subprocess.Popen:
    """`python -m module *args` with `tf_config` as TF_CONFIG (none: a one-machine run);
    TensorFlow's C++ log lines are left out unless `cpp_log`."""
    env = dict(os.environ, TMPDIR=str(_WORKER_TMP))
    if not cpp_log:
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def start_workers(module: str, args: list[str], n: int = 2,
                  cpp_log: bool = False) -> list[subprocess.Popen]:
    """The same command on `n` workers of one loopback cluster; worker 0 is the chief."""
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(n)]}
    return [start(module, args, {"cluster": cluster, "task": {"type": "worker", "index": i}},
                  cpp_log) for i in range(n)]


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    """The process's output, once it has exited with 0."""
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def kill_all(workers: list[subprocess.Popen]) -> None:
    """SIGKILLs the workers one after another (the survivors wait in their collectives), and
    asserts that each was killed, not already done."""
    for worker in reversed(workers):
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=60)
    assert [w.returncode for w in workers] == [-signal.SIGKILL] * len(workers)


def checkpoint_values(checkpoint: str | Path) -> dict[str, np.ndarray]:
    """Every saved value of a checkpoint, by name (not the object graph, whose layer names count
    the networks built in the process)."""
    reader = tf.train.load_checkpoint(str(checkpoint))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith(("save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"))}


def assert_same_values(ours: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                       rtol: float = 1e-5, atol: float = 1e-5) -> None:
    """Equal up to float32 rounding: two workers sum a gradient in another order than two
    replicas of one process, and the difference grows with the steps (seen: 2.5e-7 apart on a
    CNN weight of 0.0125 after a few steps, 1.9e-6 on an RNN embedding of 0.042 after a search's
    supernet epochs)."""
    assert ours.keys() == reference.keys()
    for name, value in reference.items():
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            np.testing.assert_allclose(ours[name], value, rtol=rtol, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(ours[name], value, err_msg=name)


def scratch_dirs() -> set[Path]:
    """The other workers' scratch directories that exist now (they remove them at exit)."""
    return set(_WORKER_TMP.glob("nao-worker-*"))
