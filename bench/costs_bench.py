"""What a search under a budget pays to know a cell's costs: counting the parameters and
multiply-adds of 1,000 random cells (`cnn.costs.CostNetwork`, no network built) in each final
network, against building one network and counting it from its traced graph, and timing one
cell's forward pass as `--max_latency_ms` does.

    python bench/costs_bench.py
    python bench/costs_bench.py --cells=5000 --output=costs.json
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import nao_tf  # noqa: E402,F401  (TensorFlow without its start-up lines)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from cnn.costs import FINAL_NETWORKS  # noqa: E402
from cnn.model import NASNetwork, count_mult_adds, count_params  # noqa: E402
from cnn.search_space import NAO_WS_SPACE, NAONET_SPACE  # noqa: E402
from nao_tf.runtime.latency import median_ms  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("cells", 1000, "Random cells counted per network and space.")
flags.DEFINE_string("output", "", "Also write the results as JSON here.")


def main(argv):
    del argv
    rows = []
    for space in (NAO_WS_SPACE, NAONET_SPACE):
        archs = space.sample_unique(FLAGS.cells, np.random.default_rng(0))
        for name, network in FINAL_NETWORKS.items():
            started = time.perf_counter()
            costs = [network.costs(a) for a in archs]
            seconds = time.perf_counter() - started
            rows.append(dict(space=space.name, network=str(network), cells=len(archs),
                             seconds=round(seconds, 3),
                             median_mult_adds=int(np.median([c["mult_adds"] for c in costs])),
                             median_params=int(np.median([c["params"] for c in costs]))))
            print(json.dumps(rows[-1]), flush=True)
    # One cell the other ways: a built network counted from its graph, and its forward pass timed.
    arch, network = NAO_WS_SPACE.sample(np.random.default_rng(1)), FINAL_NETWORKS["nao_ws"]
    started = time.perf_counter()
    model = NASNetwork(arch, network.num_cells_per_stage, network.filters, 10,
                       use_aux_head=False)
    model.build_now()
    graph = dict(params=count_params(model), mult_adds=count_mult_adds(model))
    built = time.perf_counter() - started
    assert graph == network.costs(arch), (graph, network.costs(arch))
    infer = tf.function(lambda x: model(x, training=False))
    images = tf.zeros([1, 32, 32, 3])
    started = time.perf_counter()
    latency = median_ms(lambda: infer(images))
    rows.append(dict(one_cell=str(network), build_and_count_seconds=round(built, 2),
                     latency_ms_batch_1=round(latency, 2),
                     latency_measurement_seconds=round(time.perf_counter() - started, 2)))
    print(json.dumps(rows[-1]), flush=True)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    app.run(main)
