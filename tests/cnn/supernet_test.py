import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn.costs import CostNetwork
from cnn.search_sampling import draw, sampling_probabilities
from cnn.search_space import NAO_WS_SPACE, cell_graphs
from cnn.supernet import Supernet, arch_tensor
from cnn.training import OptimConfig, Trainer, disable_graph_optimizer

# Two cells that differ everywhere: inputs, ops, and which nodes are left unused.
ARCH_A = NAO_WS_SPACE.parse("0 0 1 1 2 2 0 3 1 4 3 0 4 1 2 2 0 3 5 4 "
                            "1 0 0 4 2 1 1 3 0 2 3 4 4 0 1 1 5 2 3 3")
ARCH_B = NAO_WS_SPACE.parse("1 4 0 3 0 1 2 0 3 2 1 1 0 0 4 3 5 1 2 0 "
                            "0 3 1 2 2 4 0 0 1 1 3 0 2 3 4 4 0 1 5 0")


pytestmark = pytest.mark.usefixtures("restore_graph_optimizer")


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.normal(size=(n, 32, 32, 3)).astype(np.float32)),
            tf.constant(rng.integers(0, 10, size=n).astype(np.int32)))


def _trainer(strategy, op_selection, batch):
    keras.utils.set_random_seed(0)
    cfg = OptimConfig(epochs=1, steps_per_epoch=10, lr_max=0.05, lr_min=0.0005, l2_reg=1e-4)
    disable_graph_optimizer()
    return Trainer(strategy, lambda: Supernet(1, 8, 10, op_selection=op_selection), cfg, batch)


@pytest.mark.slow
def test_two_architectures_share_one_trace_and_train_their_own_weights():
    trainer = _trainer(tf.distribute.OneDeviceStrategy("/cpu:0"), "switch", 8)
    images, labels = _batch()
    cell = trainer.model.cell0
    before = cell.sep5a_depthwise.numpy()
    stats = [trainer.train_step(images, labels, tf.constant(arch_tensor(a)))
             for a in (ARCH_A, ARCH_B, ARCH_A)]
    assert trainer.train_tracing_count == 1
    assert all(np.isfinite(s["loss"]) and s["grad_norm"] > 0 for s in stats)
    # Weight rows are (node, branch, input): ARCH_A's node 2, branch 2 runs sep5 on input 1
    # (row 2 + 1); neither architecture runs sep5 in node 2, branch 1 on input 1 (row 1), whose
    # weights only decay (l2 and momentum), a change orders of magnitude smaller.
    after = cell.sep5a_depthwise.numpy()
    used, unused = np.abs(after[3] - before[3]).max(), np.abs(after[1] - before[1]).max()
    assert used > 100 * unused > 0


@pytest.mark.slow
def test_switch_and_select_compute_the_same_network():
    images, _ = _batch(4)
    logits = {}
    for mode in ("switch", "select"):
        keras.utils.set_random_seed(3)
        model = Supernet(1, 8, 10, op_selection=mode)
        model.build_now()
        logits[mode] = [model(images, tf.constant(arch_tensor(a))).numpy() for a in (ARCH_A,
                                                                                     ARCH_B)]
    for a, b in zip(logits["switch"], logits["select"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert np.abs(logits["switch"][0] - logits["switch"][1]).max() > 1e-3


@pytest.mark.slow
def test_score_dropout_keeps_the_classifier_dropout_when_scoring():
    """--score_dropout: the TF original scores cells with its classifier dropout on; one fixed
    mask here, so a cell's score is repeatable and every cell gets the same mask."""
    images, _ = _batch(4)
    arch = tf.constant(arch_tensor(ARCH_A))
    logits = {}
    for score_dropout in (False, True):
        keras.utils.set_random_seed(3)
        model = Supernet(1, 8, 10, dropout_rate=0.5, op_selection="select",
                         score_dropout=score_dropout)
        model.build_now()
        logits[score_dropout] = model(images, arch).numpy()
    assert np.abs(logits[True] - logits[False]).max() > 1e-3
    np.testing.assert_array_equal(model(images, arch).numpy(), logits[True])
    # Without --score_dropout a cell scores as in a network without dropout.
    keras.utils.set_random_seed(3)
    plain = Supernet(1, 8, 10, dropout_rate=0.0, op_selection="select")
    plain.build_now()
    np.testing.assert_allclose(plain(images, arch).numpy(), logits[False], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_supernet_step_on_two_replicas(two_replicas):
    trainer = _trainer(two_replicas, "switch", 8)
    images, labels = _batch()
    ds = two_replicas.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((images, labels)).batch(8))
    batch = next(iter(ds))
    first = trainer.train_step(*batch, tf.constant(arch_tensor(ARCH_A)))
    second = trainer.train_step(*batch, tf.constant(arch_tensor(ARCH_B)))
    assert trainer.train_tracing_count == 1 and trainer.step == 2
    assert np.isfinite(first["loss"]) and np.isfinite(second["loss"])
    correct = float(trainer.correct_count(*batch, tf.constant(arch_tensor(ARCH_A))))
    assert 0 <= correct <= 8 and correct == int(correct)


def test_sampling_policies():
    pool = [ARCH_A, ARCH_B, NAO_WS_SPACE.parse(" ".join(["1 4 1 4"] * 10))]
    uniform = sampling_probabilities(pool, "uniform", 2, 20)
    params = sampling_probabilities(pool, "params", 2, 20)
    np.testing.assert_allclose(uniform, [1 / 3] * 3)
    assert params.sum() == pytest.approx(1.0) and not np.allclose(params, uniform)
    counts = [CostNetwork("nao_ws", 2, 20).costs(a)["params"] for a in pool]
    np.testing.assert_allclose(params, np.array(counts) / sum(counts))
    draws = [draw(params, seed=5, step=s) for s in range(300)]
    assert draws == [draw(params, seed=5, step=s) for s in range(300)]
    assert set(draws) == {0, 1, 2}


def test_cell_graphs_follow_the_architecture():
    normal, reduction = cell_graphs(ARCH_A)
    assert normal.inputs == ["c_{k-2}", "c_{k-1}"]
    assert ("c_{k-2}", "0", "sep_conv_3x3") in normal.edges and len(normal.edges) == 10
    assert normal.output_from == ["4"]  # only node 6 is unused in ARCH_A's normal cell
    assert reduction.title == "reduction cell"


def _params(layer) -> int:
    return int(sum(v.shape.num_elements() for v in layer.trainable_variables))


@pytest.mark.slow
def test_tf_style_reductions_and_base_conv():
    """--supernet_reduction=tf: a reduction is FR(h[i-1]), then a stride-1 cell on (h[i-1],
    FR(h[i-1])) whose h[i-1] is calibrated by ReLU + FR (h[i-2] dropped); the next cell reads
    (FR(h[i-1]), the cell's output). --nosupernet_base_conv: no unconditional 1x1 on h[i-1]."""
    images, _ = _batch(2)
    models = {}
    for name, kwargs in (("stride2", {}), ("tf", dict(reduction="tf")),
                         ("tf_no_base", dict(reduction="tf", base_conv=False))):
        models[name] = Supernet(1, 8, 10, use_aux_head=False, op_selection="select", **kwargs)
        models[name].build_now()
    stride2, tf_style = models["stride2"], models["tf"]
    assert tf_style(images, tf.constant(arch_tensor(ARCH_A))).shape == (2, 10)
    assert tf_style.reductions == stride2.reductions == [False, True, False, True, False]
    cells = [getattr(tf_style, f"cell{i}") for i in range(5)]
    for idx in (1, 3):
        cell, after = cells[idx], cells[idx + 1]
        assert not cell.reduction and getattr(tf_style, f"pre_reduce{idx}") is not None
        assert type(cell.calibrate0).__name__ == "FactorizedReduce" and cell.relu_before_reduce
        assert cell.calibrate1 is None  # FR(h[i-1]) already has the cell's width
        assert after.calibrate0 is None and after.calibrate1 is None
        # The stride-2 cell's extra weights: its stride-2 identities (20 FRs' rows) and the
        # factorized reductions of its two unused inputs; the tf-style cell has neither.
        real = getattr(stride2, f"cell{idx}")
        assert real.reduce1.shape[0] == 2 * 5 * 2 and not hasattr(cell, "reduce1")
    assert all(c.base1 is not None for c in cells)
    no_base = models["tf_no_base"]
    assert all(getattr(no_base, f"cell{i}").base1 is None for i in range(5))
    # Each cell of width w lost a w x w 1x1 conv and its BN's 2w.
    assert _params(tf_style) - _params(no_base) == sum(w * w + 2 * w for w in (8, 16, 16, 32, 32))


@pytest.mark.slow
def test_drop_path_follows_the_pytorch_v1_schedule_on_every_op():
    """--drop_path_keep_prob (the PyTorch V1 search): in training only, on every branch output,
    identities included, and scaled by the training's progress (none at progress 0); each draw a
    function of the step's seed."""
    images, _ = _batch(16)
    seed = tf.constant([7, 3], tf.int64)
    keras.utils.set_random_seed(3)
    model = Supernet(1, 8, 10, use_aux_head=False, op_selection="select", dropout_rate=0.0,
                     drop_path_keep_prob=0.5)
    model.build_now()

    def logits(arch, **kwargs):
        return model(images, tf.constant(arch_tensor(arch)), seed=seed, **kwargs).numpy()

    plain = logits(ARCH_A, training=True)  # no progress given: no drop-path
    np.testing.assert_array_equal(logits(ARCH_A, training=True, drop_path_progress=0.0), plain)
    dropped = logits(ARCH_A, training=True, drop_path_progress=1.0)
    assert np.abs(dropped - plain).max() > 1e-3
    np.testing.assert_array_equal(logits(ARCH_A, training=True, drop_path_progress=1.0), dropped)
    # Scoring never drops.
    np.testing.assert_array_equal(logits(ARCH_A, drop_path_progress=1.0), logits(ARCH_A))
    # Only identities (op 4): the final network never drops them, the V1 supernet does.
    identities = NAO_WS_SPACE.parse(" ".join(["0 4 1 4"] * 10))
    assert np.abs(logits(identities, training=True, drop_path_progress=1.0)
                  - logits(identities, training=True)).max() > 1e-3
