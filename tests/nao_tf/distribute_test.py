import json

import pytest
import tensorflow as tf

from nao_tf import distribute
from nao_tf.errors import NaoError


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


def test_one_machine_strategies_write_where_asked(tmp_path, two_replicas):
    for strategy in (tf.distribute.get_strategy(), two_replicas):
        assert distribute.is_chief(strategy)
        assert distribute.writable_dir(str(tmp_path), strategy) == str(tmp_path)
