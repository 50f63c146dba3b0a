"""The cost of training one CNN across workers: two local worker processes of one core each
(MultiWorkerMirroredStrategy over TF_CONFIG on loopback) against one process of two cores.

Both train the same network on the same global batch, synthetic CIFAR-shaped images, one epoch:
`--job=final` the final network (`cnn.train_final`; `train_images_per_sec` of results.json),
`--job=supernet` the NAO-WS supernet (`cnn.train_search`, one scoring of a small pool and no
controller round; the images/s of its last progress line). Both rates leave out each process's
first step, which traces. On 2 cores the ideal ratio is 1.0: what is missing is the price of the
collective steps (gradient all-reduce over gRPC, two processes' Python and tracing).

    python bench/multi_worker_bench.py [--job=final|supernet --num_cells=1 --filters=16
                                        --batch_size=64 --images=2048]
"""

import json
import os
import re
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
flags.DEFINE_string("arch", "nao_ws", "Final network: cell (a published name or 40 integers).")
flags.DEFINE_enum("job", "final", ["final", "supernet"], "What trains (see the docstring).")


def _args(out: str) -> list[str]:
    common = ["--dataset=synthetic", f"--num_cells={FLAGS.num_cells}",
              f"--filters={FLAGS.filters}", "--epochs=1", f"--batch_size={FLAGS.batch_size}",
              f"--synthetic_train_images={FLAGS.images}", "--seed=1", f"--output_dir={out}"]
    if FLAGS.job == "final":
        return [sys.executable, "-m", "cnn.train_final", *common, f"--arch={FLAGS.arch}",
                "--synthetic_test_images=64", "--log_every_steps=1000"]
    return [sys.executable, "-m", "cnn.train_search", "--config=smoke", *common,
            "--num_valid=64", "--eval_images=64", f"--eval_batch_size={FLAGS.batch_size}",
            "--seed_archs=4", "--top_k=2", "--log_every_steps=100000"]


def _rate(out: str, log: str) -> float:
    if FLAGS.job == "supernet":
        return float(re.findall(r"([\d.]+) images/s", log)[-1])
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)["train_images_per_sec"]


def _pinned(core: int):
    return lambda: os.sched_setaffinity(0, {core})


def main(_):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    with tempfile.TemporaryDirectory() as tmp:
        one = os.path.join(tmp, "one")
        single = _rate(one, subprocess.run(_args(one), cwd=ROOT, env=env, check=True,
                                           capture_output=True, text=True).stdout)
        ports = []
        for _ in range(2):
            with socket.socket() as s:
                s.bind(("localhost", 0))
                ports.append(s.getsockname()[1])
        cluster = {"worker": [f"localhost:{p}" for p in ports]}
        two = os.path.join(tmp, "two")
        workers = [subprocess.Popen(
            _args(two), cwd=ROOT, preexec_fn=_pinned(i), stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
            env=dict(env, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1",
                     TF_CONFIG=json.dumps({"cluster": cluster,
                                           "task": {"type": "worker", "index": i}})))
            for i in range(2)]
        logs = [worker.communicate()[0] for worker in workers]
        if any(worker.returncode for worker in workers):
            raise SystemExit(f"a worker failed: {[w.returncode for w in workers]}")
        multi = _rate(two, logs[0])
    network = FLAGS.arch if FLAGS.job == "final" else "supernet"
    print(f"CNN N={FLAGS.num_cells} F={FLAGS.filters} ({network}), global batch "
          f"{FLAGS.batch_size}, {FLAGS.images} images")
    print(f"1 process, 2 cores:            {single:8.1f} images/s")
    print(f"2 workers, 1 core each (gRPC): {multi:8.1f} images/s   x{multi / single:.2f}")


if __name__ == "__main__":
    app.run(main)
