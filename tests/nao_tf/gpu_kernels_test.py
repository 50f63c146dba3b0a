"""Every compiled step can run wholly on a GPU: each op of its traced graph (function bodies
included) has a GPU kernel for its dtypes in this TensorFlow build, or is an allow-listed host
op. Checked on the CPU, before a GPU is at hand."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn.model import NASNetwork
from cnn.search_space import ANY_SPACE, NAO_WS_SPACE
from cnn.supernet import Supernet, arch_tensor
from cnn.training import OptimConfig, Trainer, disable_graph_optimizer
from nao_tf.algorithm.controller import Controller, ControllerConfig
from nao_tf.algorithm.controller_train import ControllerTrainer
from nao_tf.algorithm.generate import ControllerInference
from nao_tf.runtime.gpu_kernels import ops_without_gpu_kernel
from nao_tf.spaces.synthetic import SyntheticSpace
from rnn.model import RNNModel
from rnn.search_space import NAMED_ARCHS, RnnSearchSpace
from rnn.supernet import Supernet as RnnSupernet
from rnn.supernet import arch_array
from rnn.training import LMStep

CELL = ANY_SPACE.parse("1 0 0 4 2 3 1 2 0 4 2 4 1 3 3 4 0 4 4 2 0 4 1 3 2 2 0 1 1 4 2 4 3 2 4 4 "
                       "0 3 5 2")
SEARCH_CELL = NAO_WS_SPACE.parse("0 0 1 1 2 2 0 3 1 4 3 0 4 1 2 2 0 3 5 4 "
                                 "1 0 0 4 2 1 1 3 0 2 3 4 4 0 1 1 5 2 3 3")


pytestmark = pytest.mark.usefixtures("restore_graph_optimizer")


def _controller_steps():
    space = SyntheticSpace()
    for attention in ("dot", "bahdanau"):
        config = ControllerConfig.for_space(space, emb_size=8, hidden_size=16, mlp_layers=1,
                                            mlp_hidden=8, attention=attention, batch_size=4)
        model = Controller(config, space.valid_token_mask())
        trainer, inference = ControllerTrainer(model), ControllerInference(model)
        yield f"controller ({attention}) train epoch", trainer.train_epoch.get_concrete_function()
        for name in ("_encode", "_predict", "_decode", "_step_decode"):
            yield (f"controller ({attention}) generation {name[1:]}",
                   getattr(inference, name).get_concrete_function())


def _cnn_steps():
    images = tf.zeros([4, 32, 32, 3])
    labels = tf.zeros([4], tf.int32)
    cfg = OptimConfig(epochs=1, steps_per_epoch=10)
    strategy = tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)
    final = Trainer(strategy, lambda: NASNetwork(CELL, 1, 8, 10, drop_path_keep_prob=0.8,
                                                 dropout_rate=0.2), cfg, 4)
    yield "CNN final train", final._train_step.get_concrete_function(images, labels)
    yield "CNN final eval", final._eval_step.get_concrete_function(images, labels)
    disable_graph_optimizer()
    arch = tf.constant(arch_tensor(SEARCH_CELL))
    for selection in ("switch", "select"):
        supernet = Trainer(strategy, lambda: Supernet(1, 8, 10, op_selection=selection), cfg, 4)
        yield (f"CNN supernet ({selection}) train",
               supernet._train_step.get_concrete_function(images, labels, arch))
        yield (f"CNN supernet ({selection}) scoring",
               supernet._eval_step.get_concrete_function(images, labels, arch))


def _rnn_steps():
    strategy = tf.distribute.get_strategy()
    ids = np.zeros((5, 4), np.int32)
    model = RNNModel(RnnSearchSpace().parse(NAMED_ARCHS["NAO"]), 13, 8, name="lm")
    lm = LMStep(model, strategy, 4, clip=0.25, wdecay=1e-6, beta=1e-3)
    lm.train_step(ids, ids, model.initial_hidden(4), 1.0, (0, 1))
    yield "RNN LM train", lm._compiled_train_step.get_concrete_function()
    yield "RNN LM eval", lm.eval_step.get_concrete_function()
    supernet = RnnSupernet(13, 8)
    step = LMStep(supernet, strategy, 4, clip=0.25, wdecay=1e-6, beta=1e-3)
    cell = arch_array(RnnSearchSpace().sample_unique(1, np.random.default_rng(0)))[0]
    step.train_step(ids, ids, supernet.initial_hidden(4), 1.0, (0, 1), cell)
    yield "RNN supernet train", step._compiled_train_step.get_concrete_function()
    yield "RNN supernet scoring", step.score.get_concrete_function()


@pytest.mark.slow
def test_every_compiled_step_has_gpu_kernels_for_all_its_ops():
    missing = {name: ops for steps in (_controller_steps(), _cnn_steps(), _rnn_steps())
               for name, function in steps if (ops := ops_without_gpu_kernel(function))}
    assert not missing, "\n".join(f"{name}: {ops}" for name, ops in missing.items())


def test_an_op_without_a_gpu_kernel_is_named():
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def step(x):
        return tf.strings.as_string(x * 2.0)  # AsString: a CPU-only kernel

    missing = ops_without_gpu_kernel(step.get_concrete_function())
    assert len(missing) == 1 and missing[0].startswith("AsString (float32) in the step")
