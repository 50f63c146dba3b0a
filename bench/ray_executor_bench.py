"""Candidate throughput of NAO without weight sharing: worker threads against Ray tasks.

Trains the same random CNN cells (`--config=smoke` candidates: synthetic CIFAR-shaped images,
N=1, F=8, `--epochs` epochs) three ways on this machine's CPUs and prints candidates per minute:
  threads   the thread executor on /cpu:0 (one candidate at a time, TensorFlow on every core);
  ray:C     a local Ray instance with every core, one Ray task per candidate holding C CPUs
            (C = all cores: one at a time, as the threads; C = 1: one candidate per core).
Each run trains in a fresh directory and counts everything a user waits for: Ray's start, its
worker processes importing TensorFlow and rebuilding the task, tracing.

    python bench/ray_executor_bench.py --candidates=6
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import nao_tf  # noqa: E402,F401  (TensorFlow without its start-up lines)

import numpy as np  # noqa: E402
from absl import flags, logging  # noqa: E402

from cnn.task import TASK  # noqa: E402
from nao_tf.commands import cli, standalone_search  # noqa: E402
from nao_tf.runtime import ray_executor
from nao_tf.runtime.standalone import ArchDirs, StandaloneEvaluator

FLAGS = flags.FLAGS
flags.DEFINE_integer("candidates", 6, "Cells trained per executor.")
flags.DEFINE_integer("epochs", 1, "Epochs per cell.")
flags.DEFINE_list("executors", ["threads", "ray:2", "ray:1"], "threads and/or ray:<CPUs per "
                  "candidate>.")


def _values(output_dir: str) -> dict:
    fv = flags.FlagValues()
    standalone_search.define_flags(TASK, fv)
    fv(["bench", "--config=smoke", f"--output_dir={output_dir}", f"--epochs={FLAGS.epochs}"])
    TASK.apply_preset("nao", fv)
    return {name: fv[name].value for name in fv}


def _time(executor: str, archs: list) -> float:
    """Seconds to train `archs` with `executor` in a fresh directory."""
    import ray

    task, space = TASK, TASK.space("nao")
    with tempfile.TemporaryDirectory() as out:
        values = _values(out)
        dirs = ArchDirs(os.path.join(out, "archs"), space.to_string, task.scratch)
        started = time.monotonic()
        if executor == "threads":
            _, train = standalone_search.rebuild(task.ref, values)
            evaluator = StandaloneEvaluator(train, True, ["/cpu:0"], dirs=dirs,
                                            to_string=space.to_string, log=lambda _: None)
        else:
            cpus = int(executor.split(":")[1])
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR",
                     log_to_driver=False)
            job = ray_executor.CandidateJob(standalone_search.rebuild, (task.ref, values),
                                            str(dirs.root), cpus)
            evaluator = ray_executor.RayEvaluator(job, "", True, dirs=dirs,
                                                  to_string=space.to_string,
                                                  log=lambda _: None)
        scores = []
        evaluator.evaluate(archs, 0, lambda arch, score, failed=False: scores.append(score))
        seconds = time.monotonic() - started
        if executor != "threads":
            ray.shutdown()
    assert len(scores) == len(archs)
    return seconds


def main(_):
    logging.set_verbosity(logging.WARNING)
    archs = TASK.space("nao").sample_unique(FLAGS.candidates, np.random.default_rng(0))
    print(f"{FLAGS.candidates} smoke CNN cells, {FLAGS.epochs} epoch(s) each, {os.cpu_count()} "
          "CPUs")
    base = None
    for executor in FLAGS.executors:
        seconds = _time(executor, archs)
        rate = 60.0 * len(archs) / seconds
        base = base or rate
        print(f"{executor:8s} {seconds:7.1f} s  {rate:6.2f} candidates/min  "
              f"x{rate / base:.2f} of {FLAGS.executors[0]}", flush=True)


if __name__ == "__main__":
    cli.run(main)
