import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn import ops
from cnn.model import NASNetwork, count_params
from cnn.cells import named_arch
from cnn.search_space import ANY_SPACE

# A cheap cell (few convs) for tests of the network's wiring; every op kind appears once.
SMALL_ARCH = ANY_SPACE.parse("1 0 0 4 2 3 1 2 0 4 2 4 1 3 3 4 0 4 4 2 "
                             "0 4 1 3 2 2 0 1 1 4 2 4 3 2 4 4 0 3 5 2")


@pytest.mark.slow
def test_nao_ws_final_network_has_the_published_2_5m_parameters():
    model = NASNetwork(named_arch("nao_ws"), 5, 36, 10, use_aux_head=True)
    model.build_now()
    params = count_params(model)
    assert abs(params - 2.5e6) / 2.5e6 < 0.05, params
    assert count_params(model, include_aux_head=True) > params
    assert len(model.cells) == 17
    assert [c.cell is model.arch.reduction for c in model.cells].count(True) == 2
    assert model.cells[5].cell is model.arch.reduction
    assert model.cells[11].cell is model.arch.reduction
    assert model.aux_index == 12  # first normal cell after the second reduction


def test_shapes_widths_and_aux_output():
    model = NASNetwork(SMALL_ARCH, 1, 8, 7, use_aux_head=True, drop_path_keep_prob=0.5,
                       dropout_rate=0.5)
    x = tf.random.normal([4, 32, 32, 3])
    logits, aux = model(x, training=True, drop_path_progress=tf.constant(1.0))
    assert logits.shape == (4, 7) and aux.shape == (4, 7)
    assert model(x, training=False).shape == (4, 7)
    # widths: loose ends x cell width; reduction cells double the width
    normal_loose = len(SMALL_ARCH.normal.loose_ends())
    reduction_loose = len(SMALL_ARCH.reduction.loose_ends())
    assert [c.output_channels for c in model.cells] == [
        8 * normal_loose, 16 * reduction_loose, 16 * normal_loose, 32 * reduction_loose,
        32 * normal_loose]


def test_training_draws_are_a_function_of_the_step_seed():
    model = NASNetwork(SMALL_ARCH, 1, 8, 10, drop_path_keep_prob=0.5, dropout_rate=0.5)
    model.build_now()
    x = tf.random.normal([4, 32, 32, 3])
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())

    def train(seed):
        return model(x, training=True, drop_path_progress=tf.constant(1.0),
                     seed=tf.constant(seed, tf.int64))[0].numpy()

    np.testing.assert_array_equal(train([1, 7]), train([1, 7]))
    assert not np.allclose(train([1, 7]), train([1, 8]))


def test_drop_path_keeps_whole_examples_and_preserves_the_mean():
    x = tf.ones([4000, 2, 2, 3])
    y = ops.drop_path(x, tf.constant(0.7), tf.constant([3, 4], tf.int64)).numpy()
    per_example = y.reshape(4000, -1)
    assert np.allclose(per_example, per_example[:, :1])
    values = np.unique(per_example)
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.7)
    assert abs(y.mean() - 1.0) < 0.05


def test_factorized_reduce_halves_space():
    fr = ops.FactorizedReduce(6)
    assert fr(tf.random.normal([2, 8, 8, 5])).shape == (2, 4, 4, 6)
    with pytest.raises(ValueError, match="even number of filters"):
        ops.FactorizedReduce(5)


@pytest.mark.parametrize("size", [7, 8])
def test_shifted_by_one_traced_for_any_size_pads_as_for_its_size(size):
    x = tf.random.normal([2, size, size, 3])
    any_size = tf.function(lambda x: ops.shifted_by_one(x, False),
                           input_signature=[tf.TensorSpec([None] * 4)])
    np.testing.assert_array_equal(any_size(x), ops.shifted_by_one(x, False))
    padded = size + size % 2
    assert any_size(x).shape == (2, padded - 1, padded - 1, 3)


def test_fused_batch_norm_matches_keras_batch_norm():
    x = tf.random.normal([8, 6, 6, 5]) * 3 + 2
    upstream = tf.random.normal([8, 6, 6, 5])
    ours, ref = ops.BatchNorm(), keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    for layer in (ours, ref):
        layer.build(x.shape)
        layer.gamma.assign(tf.random.stateless_normal([5], [1, 2]))
        layer.beta.assign(tf.random.stateless_normal([5], [3, 4]))
    results = []
    for layer in (ours, ref):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append([y] + grads + [layer.moving_mean])
    for a, b in zip(*results):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)
    # moving variance from the unbiased batch variance (n = 8 * 6 * 6), as TF1's fused batch norm
    var = np.var(x.numpy(), axis=(0, 1, 2)) * 288 / 287
    np.testing.assert_allclose(ours.moving_variance.numpy(), 0.9 + 0.1 * var, rtol=1e-5)
    scale = ours.gamma.numpy() / np.sqrt(ours.moving_variance.numpy() + 1e-5)
    expected = (x.numpy() - ours.moving_mean.numpy()) * scale + ours.beta.numpy()
    np.testing.assert_allclose(ours(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [8, 7])
def test_factorized_reduce_reads_even_and_odd_pixels(size):
    """An odd size (7x7, as ImageNet's last stage) is zero-padded at the end before the shift, as
    the original's pad-then-slice: both paths read ceil(7 / 2) = 4 pixels a side."""
    fr = ops.FactorizedReduce(4)
    x = tf.random.normal([2, size, size, 3])
    fr(x)
    fr.bn.gamma.assign(tf.ones([4]))
    out = fr(x, training=False).numpy()  # moving stats 0/1: out = conv outputs / sqrt(1 + eps)
    w1, w2 = fr.conv1.kernel.numpy()[0, 0], fr.conv2.kernel.numpy()[0, 0]
    padded = np.pad(x.numpy(), [(0, 0), (0, size % 2), (0, size % 2), (0, 0)])
    even, odd = x.numpy()[:, ::2, ::2] @ w1, padded[:, 1::2, 1::2] @ w2
    assert out.shape == (2, 4, 4, 4)
    np.testing.assert_allclose(out, np.concatenate([even, odd], -1) / np.sqrt(1 + 1e-5),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("strides", [1, 2])
def test_max_pool_with_recomputing_gradient_matches_tensorflows(strides):
    """`ops.max_pool` (used in a switch branch, as the supernet does) has max_pool2d's value and
    gradient."""
    x = tf.random.stateless_normal([2, 9, 9, 3], [0, 1])
    pool = tf.function(ops.max_pool)

    @tf.function
    def gradients(branch):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            ours = tf.switch_case(branch, [lambda: pool(x, 3, [1, strides, strides, 1], "NHWC"),
                                           lambda: x[:, ::strides, ::strides]])
            reference = tf.nn.max_pool2d(x, 3, strides, "SAME")
            weights = tf.reshape(tf.range(tf.size(reference), dtype=tf.float32), tf.shape(reference))
            loss_ours, loss_reference = tf.reduce_sum(ours * weights), tf.reduce_sum(reference * weights)
        return (ours, reference, tape.gradient(loss_ours, x), tape.gradient(loss_reference, x))

    ours, reference, grad_ours, grad_reference = gradients(tf.constant(0))
    np.testing.assert_array_equal(ours, reference)
    np.testing.assert_allclose(grad_ours, grad_reference, rtol=1e-6)


def test_the_tf_nao_release_network():
    """--network=nao: the structure of `NAO/cnn/model.py` (see cnn.model's docstring)."""
    model = NASNetwork(SMALL_ARCH, 1, 8, 10, use_aux_head=True, network="nao")
    model.build_now()
    cell0, reduction = model.cells[0], model.cells[1]
    assert reduction.cell is SMALL_ARCH.reduction
    # The first cell reads the raw stem (24 channels) as h[i-2]; one 1x1 maps h[i-1].
    assert cell0.calibrate0 is None and cell0.calibrate1 is None
    assert cell0.base1.conv.kernel.shape == (1, 1, 24, 8)
    identity_on_stem = cell0.op1  # normal node 2, branch 2: identity of input 0
    assert isinstance(identity_on_stem, ops.Identity)
    assert identity_on_stem.reduce.conv.kernel.shape == (1, 1, 24, 8)
    # A stride-2 identity is ReLU-1x1(stride 2)-BN, not a factorized reduction.
    assert isinstance(reduction.op0, ops.Identity)  # reduction node 2, branch 1: identity of 0
    assert isinstance(reduction.op0.reduce, ops.ReLUConvBN)
    assert reduction.op0.reduce.conv.strides == (2, 2)
    assert reduction.calibrate1 is None
    assert reduction.base1.conv.kernel.shape[2] == cell0.output_channels
    # Heads: the classifier and the aux head's dense layer have a bias; the 768 conv is VALID.
    assert model.classifier.bias is not None and model.aux_head.fc.bias is not None
    assert model.aux_head.conv.padding == "valid"
    # Fan-out variance scaling: a 3x3 conv to 24 channels has std sqrt(1 / (9 * 24)).
    stem = model.stem_conv.kernel.numpy()
    assert abs(stem.std() - np.sqrt(1 / (9 * 24))) < 0.2 * np.sqrt(1 / (9 * 24))
    logits, aux = model(tf.random.normal([2, 32, 32, 3]), training=True,
                        drop_path_progress=tf.constant(1.0))
    assert logits.shape == aux.shape == (2, 10)
    # An unused raw stem is mapped by 1x1-BN (the release's stride-1 factorized reduction).
    stem_unused = ANY_SPACE.parse("1 0 1 4 2 3 1 2 2 4 3 4 1 3 3 4 4 4 4 2 "
                                  + " ".join(SMALL_ARCH.reduction.text().split()))
    widened = NASNetwork(stem_unused, 1, 8, 10, network="nao")
    widened.build_now()
    cell = widened.cells[0]
    assert cell.loose_ends == (0, 5, 6) and cell.output_channels == 3 * 8
    assert cell.widen_output0.conv.kernel.shape == (1, 1, 24, 8) and not cell.widen_output0.relu
    default = NASNetwork(SMALL_ARCH, 1, 8, 10, use_aux_head=True)
    default.build_now()
    assert default.cells[0].calibrate0 is not None and default.classifier.bias is None
    assert isinstance(default.cells[1].op0.reduce, ops.FactorizedReduce)


def test_naonet_a_imagenet_network_is_the_originals():
    """NAO_pytorch's NASNetworkImageNet for NAONet-A (N=4, F=42, 1000 classes), built with the
    original's code (NAO_V1/model.py, PyTorch 2.13 on CPU) and counted there: 11,353,831
    parameters without the aux head, 12,603,855 with it; 1,243,996,992 multiply-adds of one
    224x224 image (forward hooks summing out_h * out_w * k_h * k_w * in / groups * out of every
    Conv2d and in * out of every Linear, inference, no aux head; docs/cnn.md)."""
    from cnn.model import count_mult_adds

    net = NASNetwork(named_arch("naonet_a"), 4, 42, 1000, use_aux_head=True, image_size=224,
                     network="imagenet")
    net.build_now()
    assert count_params(net) == 11_353_831
    assert count_params(net, include_aux_head=True) == 12_603_855
    assert count_mult_adds(net) == 1_243_996_992
    logits, aux = net(tf.zeros([2, 224, 224, 3]), training=True,
                      drop_path_progress=tf.constant(0.5))
    assert logits.shape == aux.shape == (2, 1000)
