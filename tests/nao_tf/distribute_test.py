import json

import pytest
import tensorflow as tf

from nao_tf.common.errors import NaoError
from nao_tf.runtime import distribute


def _tf_config(monkeypatch, workers):
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": [f"localhost:{2000 + i}" for i in range(workers)]},
        "task": {"type": "worker", "index": 0}}))


def test_cluster_workers_reads_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.cluster_workers() == 0
    _tf_config(monkeypatch, 3)
    assert distribute.cluster_workers() == 3
    monkeypatch.setenv("TF_CONFIG", "not json")
    with pytest.raises(NaoError, match="TF_CONFIG is not a JSON object"):
        distribute.cluster_workers()


def test_a_one_machine_command_refuses_a_cluster(monkeypatch):
    _tf_config(monkeypatch, 2)
    with pytest.raises(NaoError, match="TF_CONFIG names 2 workers, but this command trains on "
                                       "one machine"):
        distribute.get_strategy()
    # A single worker's TF_CONFIG is one machine.
    _tf_config(monkeypatch, 1)
    assert isinstance(distribute.get_strategy(), tf.distribute.OneDeviceStrategy)


def test_the_chief_is_the_chief_task_else_worker_0():
    workers = ["localhost:2000", "localhost:2001"]
    assert distribute.chief_task({"worker": workers}) == ("worker", 0)
    assert distribute.chief_task({"chief": ["localhost:1999"], "worker": workers}) == ("chief", 0)


def test_one_machine_strategies_write_where_asked(tmp_path, two_replicas):
    for strategy in (tf.distribute.get_strategy(), two_replicas):
        assert distribute.is_chief(strategy)
        assert distribute.writable_dir(str(tmp_path), strategy) == str(tmp_path)


def test_on_one_machine_the_chiefs_word_is_the_own_and_calls_pass_through(two_replicas):
    """Without a multi-worker strategy `from_chief` returns the value itself, and a
    chief-driven evaluator makes each call once, with its own pool."""
    import numpy as np

    from nao_tf.spaces.synthetic import SyntheticSpace
    from nao_tf.runtime.chief_driven import ChiefDrivenEvaluator
    from nao_tf.algorithm.evaluators import WeightSharingEvaluator

    for strategy in (tf.distribute.get_strategy(), two_replicas):
        np.testing.assert_array_equal(distribute.from_chief(strategy, [[1, 2], [3, 4]]),
                                      [[1.0, 2.0], [3.0, 4.0]])
        distribute.barrier(strategy)

    calls = []

    class Recording(WeightSharingEvaluator):
        epochs, eval_every_epochs = 4, 2

        def prepare(self, pool, iteration):
            calls.append(("prepare", iteration, list(pool)))

        def evaluate(self, archs, iteration, record):
            calls.append(("evaluate", iteration, list(archs)))

    space = SyntheticSpace()
    pool = [space.sample(np.random.default_rng(i)) for i in range(3)]
    driven = ChiefDrivenEvaluator(Recording(), space, two_replicas)
    driven.prepare(pool, 1)
    driven.evaluate(pool[:2], 1, lambda *_: None)
    driven.done()
    assert calls == [("prepare", 1, pool), ("evaluate", 1, pool[:2])]
    assert driven.iterations == 1
