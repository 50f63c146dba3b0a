"""Mixed precision and XLA on every network the commands train, on the CPU: a few steps in each
policy lower the loss, a checkpoint written under one policy restores under another, and XLA
steps equal the plain ones.

Each network is one fixed batch it learns by heart: the CNN final network and supernet ("switch"
mode, "select" under XLA) through `cnn.training.Trainer`, the RNN language model and supernet
through `rnn.training.LMStep`.
"""

from typing import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn.model import NASNetwork
from cnn.search_space import NAO_WS_SPACE
from cnn.supernet import Supernet as CnnSupernet, arch_tensor
from cnn.training import OptimConfig, Trainer, disable_graph_optimizer
from nao_tf.common.resume import restore
from nao_tf.runtime import precision
from rnn.model import RNNModel
from rnn.search_space import RnnSearchSpace
from rnn.supernet import Supernet as RnnSupernet, arch_array
from rnn.training import LMStep

CNN_ARCH = NAO_WS_SPACE.parse("0 0 1 1 2 2 0 3 1 4 3 0 4 1 2 2 0 3 5 4 "
                              "1 0 0 4 2 1 1 3 0 2 3 4 4 0 1 1 5 2 3 3")
RNN_CELL = RnnSearchSpace().sample(np.random.default_rng(0))
VOCAB, UNITS, COLUMNS = 30, 16, 4

pytestmark = pytest.mark.usefixtures("restore_graph_optimizer")


class Network:
    """One network on one fixed batch: `step(i)` trains once and returns the loss;
    `checkpoint` holds what the command's checkpoint holds."""

    def __init__(self, step: Callable[[int], float], checkpoint: tf.train.Checkpoint,
                 model: keras.Model, optimizer: keras.optimizers.Optimizer):
        self.step, self.checkpoint, self.model = step, checkpoint, model
        self.optimizer = optimizer

    def weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.model.weights]


def _cnn(kind: str, policy: str, jit_compile: bool = False, drop: float = 0.1,
         cells_per_stage: int = 1) -> Network:
    keras.utils.set_random_seed(0)
    cfg = OptimConfig(epochs=1, steps_per_epoch=20, lr_max=0.05, lr_min=0.0005, l2_reg=1e-4,
                      precision=policy)
    if kind == "final":
        def build():
            return NASNetwork(CNN_ARCH, cells_per_stage, 8, 10, use_aux_head=True,
                              drop_path_keep_prob=1.0 - drop, dropout_rate=drop)
        arch = ()
    else:
        disable_graph_optimizer()

        def build():
            return CnnSupernet(cells_per_stage, 8, 10, dropout_rate=drop,
                               op_selection="select" if jit_compile else "switch")
        arch = (tf.constant(arch_tensor(CNN_ARCH)),)
    trainer = Trainer(tf.distribute.OneDeviceStrategy("/cpu:0"), build, cfg, 8, jit_compile)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=(8, 32, 32, 3)).astype(np.float32))
    labels = tf.constant(rng.integers(0, 10, size=8).astype(np.int32))
    checkpoint = tf.train.Checkpoint(model=trainer.model,
                                     optimizer=precision.checkpointed(trainer.optimizer))
    return Network(lambda i: trainer.train_step(images, labels, *arch)["loss"], checkpoint,
                   trainer.model, trainer.optimizer)


def _rnn(kind: str, policy: str, jit_compile: bool = False, drop: float = 0.1) -> Network:
    keras.utils.set_random_seed(0)
    with precision.policy(policy):
        if kind == "final":
            model = RNNModel(RNN_CELL, VOCAB, UNITS, dropout=drop, dropouth=drop,
                             dropoutx=drop, dropouti=drop)
            arch = ()
        else:
            model = RnnSupernet(VOCAB, UNITS, dropout=drop, dropouth=drop, dropoutx=drop,
                                dropouti=drop)
            arch = (tf.constant(arch_array([RNN_CELL])[0]),)
    lm = LMStep(model, tf.distribute.OneDeviceStrategy("/cpu:0"), COLUMNS, clip=0.25,
                wdecay=1e-6, beta=1e-3, jit_compile=jit_compile)
    tokens = np.random.default_rng(0).integers(0, VOCAB, size=(13, COLUMNS)).astype(np.int32)
    x, y, hidden = tf.constant(tokens[:-1]), tf.constant(tokens[1:]), tf.zeros([COLUMNS, UNITS])
    return Network(lambda i: float(lm.train_step(x, y, hidden, 5.0, (0, i), *arch)[0]),
                   tf.train.Checkpoint(model=model), model, lm.optimizer)


# name -> (policy, jit_compile=False, drop=0.1[, cells_per_stage=1 for the CNNs]) -> Network
NETWORKS = {"cnn_final": lambda *args, **kwargs: _cnn("final", *args, **kwargs),
            "cnn_supernet": lambda *args, **kwargs: _cnn("supernet", *args, **kwargs),
            "rnn_final": lambda *args: _rnn("final", *args),
            "rnn_supernet": lambda *args: _rnn("supernet", *args)}
# Every network in both policies; the CNNs (most of a minute each) in one policy each, in the
# slow tier (the policy mechanism is the same for every network).
CASES = [("rnn_final", "bf16"), ("rnn_final", "fp16"), ("rnn_supernet", "bf16"),
         ("rnn_supernet", "fp16"), pytest.param("cnn_final", "fp16", marks=pytest.mark.slow),
         pytest.param("cnn_supernet", "bf16", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name, policy", CASES)
def test_mixed_precision_trains_and_restores_under_float32(name, policy, tmp_path):
    net = NETWORKS[name](policy)
    assert net.model.dtype_policy.compute_dtype == {"bf16": "bfloat16",
                                                    "fp16": "float16"}[policy]
    assert keras.config.dtype_policy().name == "float32"  # the policy did not leak
    losses = [net.step(i) for i in range(8)]
    assert all(np.isfinite(losses)) and np.mean(losses[-2:]) < losses[0] - 0.05, losses
    path = net.checkpoint.write(str(tmp_path / "ckpt"))
    plain = NETWORKS[name]("fp32")
    assert plain.model.dtype_policy.compute_dtype == "float32"
    restore(plain.checkpoint, path, exact=True)
    for a, b in zip(net.weights(), plain.weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # And back: a float32 checkpoint restores under the mixed policy.
    back = NETWORKS[name](policy)
    restore(back.checkpoint, plain.checkpoint.write(str(tmp_path / "plain")), exact=True)
    for a, b in zip(back.weights(), plain.weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NETWORKS))
def test_xla_steps_equal_plain_steps(name):
    """Without dropout: stateless random draws are not the same under XLA (TensorFlow promises
    them only per device and compiler). The first loss is the same forward pass (for the CNN
    supernet, the default "switch" network against XLA's "select": the same function), the
    first update the same up to XLA's own arithmetic (its convolution and batch-norm gradients
    differ from the plain kernels' by a few percent of the update on this 8-image batch), and
    the next loss agrees to 2%. The CNNs have no normal cell (N=0: stem, the two reduction
    cells, whose nodes run every stride-1 op too, and the classifier): XLA's compile time
    follows the cells, 50 CPU s for the supernet of N=1, 26 for N=0."""
    small = {"cells_per_stage": 0} if name.startswith("cnn") else {}
    plain, xla = (NETWORKS[name]("fp32", jit_compile, 0.0, **small)
                  for jit_compile in (False, True))
    start = np.concatenate([w.ravel() for w in plain.weights()])
    assert xla.step(0) == pytest.approx(plain.step(0), rel=1e-5)
    plain_update = np.concatenate([w.ravel() for w in plain.weights()]) - start
    xla_update = np.concatenate([w.ravel() for w in xla.weights()]) - start
    difference = np.linalg.norm(xla_update - plain_update) / np.linalg.norm(plain_update)
    assert difference < 0.05, difference
    assert xla.step(1) == pytest.approx(plain.step(1), rel=2e-2)


def test_float16_loss_scaling_skips_a_non_finite_step():
    """fp16's dynamic loss scale: a step whose scaled gradient overflows is skipped (weights
    unchanged) and the scale halves."""
    net = NETWORKS["rnn_final"]("fp16")
    net.step(0)
    assert isinstance(net.optimizer, keras.optimizers.LossScaleOptimizer)
    net.optimizer.dynamic_scale.assign(1e30)  # overflows float16 in the backward pass
    before = net.weights()
    net.step(1)
    assert float(net.optimizer.dynamic_scale.numpy()) == pytest.approx(5e29, rel=1e-6)
    for a, b in zip(before, net.weights(), strict=True):
        np.testing.assert_array_equal(a, b)
