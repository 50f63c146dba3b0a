"""Cell pictures: DOT text that names every node and op, a real PNG, clear errors."""

import pytest
import tensorflow as tf

from nao_tf.algorithm.draw import CellGraph, render_png, to_dot

NORMAL = CellGraph("normal cell", ["c_{k-2}", "c_{k-1}"],
                   [("c_{k-2}", "0", "sep 3x3"), ("c_{k-1}", "0", "identity"),
                    ("c_{k-1}", "1", "avg 3x3"), ("c_{k-1}", "1", "max 3x3"),
                    ("0", "2", "sep 5x5"), ("1", "2", "identity")],
                   "c_{k}", ["2"], "concat")


def test_nodes_are_the_edge_targets_in_order():
    assert NORMAL.nodes == ["0", "1", "2"]


def test_dot_has_every_node_and_edge():
    dot = to_dot([NORMAL, NORMAL])
    assert dot.startswith("digraph cells {") and dot.count("subgraph cluster_") == 2
    for _, _, op in NORMAL.edges:
        assert f'label="{op}"' in dot
    assert dot.count("->") == 2 * (len(NORMAL.edges) + 1)
    assert 'label="c_{k} (concat)"' in dot


def test_png_stacks_the_cells_near_4_to_3():
    image = tf.image.decode_png(render_png([NORMAL, NORMAL]), channels=3)
    height, width, _ = image.shape  # side by side was about 7:1, a strip on TensorBoard's card
    assert height > 100 and 0.75 <= width / height <= 1.5
    assert float(tf.math.reduce_std(tf.cast(image, tf.float32))) > 10  # not a blank canvas


def test_unknown_source_is_refused():
    bad = CellGraph("bad", ["x"], [("y", "0", "op")], "out", ["0"])
    with pytest.raises(ValueError, match="unknown nodes \\['y'\\]"):
        to_dot([bad])
