import json

import pytest
import tensorflow as tf

from nao_tf.common.errors import StateError
from nao_tf.runtime.latency import LatencyCache, median_ms


def test_each_cell_is_measured_once_and_read_back_by_a_new_process(tmp_path):
    path = tmp_path / "latency.json"
    measured = []

    def measure(arch):
        measured.append(arch)
        return float(len(arch))

    cache = LatencyCache(path, measure, key=lambda arch: arch.upper())
    assert [cache("ab"), cache("AB"), cache("abc")] == [2.0, 2.0, 3.0]  # "AB": the same key
    assert measured == ["ab", "abc"] and json.loads(path.read_text()) == {"AB": 2.0, "ABC": 3.0}
    resumed = LatencyCache(path, measure, key=lambda arch: arch.upper())
    assert resumed("abc") == 3.0 and resumed.measured == 0 and len(measured) == 2
    path.write_text('{"AB": "fast"}')
    with pytest.raises(StateError, match="is not a latency table"):
        LatencyCache(path, measure, key=str)("ab")


def test_latency_is_timed_with_the_graph_optimiser_on_and_the_process_setting_kept():
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    seen = []
    try:
        ms = median_ms(lambda: seen.append(
            tf.config.optimizer.get_experimental_options()["disable_meta_optimizer"])
            or tf.zeros([1]), repeats=3, warmup=1)
        assert ms >= 0.0 and seen == [False] * 4
        assert tf.config.optimizer.get_experimental_options()["disable_meta_optimizer"] is True
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
