"""The cost of training one CNN across workers: two local worker processes of one core each
(MultiWorkerMirroredStrategy over TF_CONFIG on loopback) against one process of two cores.

Both train the same network on the same global batch (`cnn.train_final`, synthetic CIFAR-shaped
images) and report `train_images_per_sec` from results.json (every step but each process's first,
which traces). On 2 cores the ideal ratio is 1.0: what is missing is the price of the collective
steps (gradient all-reduce over gRPC, two processes' Python and tracing).

    python bench/multi_worker_bench.py [--num_cells=1 --filters=16 --batch_size=64 --images=2048]
"""

import json
import os
import socket
import subprocess
import sys
import tempfile

from absl import app, flags

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FLAGS = flags.FLAGS
flags.DEFINE_integer("num_cells", 1, "N of the network.")
flags.DEFINE_integer("filters", 16, "F of the network.")
flags.DEFINE_integer("batch_size", 64, "Global batch.")
flags.DEFINE_integer("images", 2048, "Synthetic training images (one epoch).")
flags.DEFINE_string("arch", "nao_ws", "Cell (a published name or 40 integers).")


def _args(out: str) -> list[str]:
    return [sys.executable, "-m", "cnn.train_final", "--dataset=synthetic", f"--arch={FLAGS.arch}",
            f"--num_cells={FLAGS.num_cells}", f"--filters={FLAGS.filters}", "--epochs=1",
            f"--batch_size={FLAGS.batch_size}", f"--synthetic_train_images={FLAGS.images}",
            "--synthetic_test_images=64", "--log_every_steps=1000", "--seed=1",
            f"--output_dir={out}"]


def _rate(out: str) -> float:
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)["train_images_per_sec"]


def _pinned(core: int):
    return lambda: os.sched_setaffinity(0, {core})


def main(_):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    with tempfile.TemporaryDirectory() as tmp:
        one = os.path.join(tmp, "one")
        subprocess.run(_args(one), cwd=ROOT, env=env, check=True, capture_output=True)
        ports = []
        for _ in range(2):
            with socket.socket() as s:
                s.bind(("localhost", 0))
                ports.append(s.getsockname()[1])
        cluster = {"worker": [f"localhost:{p}" for p in ports]}
        two = os.path.join(tmp, "two")
        workers = [subprocess.Popen(
            _args(two), cwd=ROOT, preexec_fn=_pinned(i), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(env, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1",
                     TF_CONFIG=json.dumps({"cluster": cluster,
                                           "task": {"type": "worker", "index": i}})))
            for i in range(2)]
        for worker in workers:
            if worker.wait() != 0:
                raise SystemExit(f"worker failed with exit code {worker.returncode}")
        single, multi = _rate(one), _rate(two)
    print(f"CNN N={FLAGS.num_cells} F={FLAGS.filters} ({FLAGS.arch}), global batch "
          f"{FLAGS.batch_size}, {FLAGS.images} images")
    print(f"1 process, 2 cores:            {single:8.1f} images/s")
    print(f"2 workers, 1 core each (gRPC): {multi:8.1f} images/s   x{multi / single:.2f}")


if __name__ == "__main__":
    app.run(main)
