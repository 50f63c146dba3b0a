import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn import data as data_lib
from cnn.model import NASNetwork
from cnn.search_space import ANY_SPACE
from cnn.training import MomentumSGD, OptimConfig, Trainer

# One separable conv per cell keeps tracing cheap; pools, identity and factorized reduce occur.
ARCH = ANY_SPACE.parse("1 0 0 4 2 3 1 2 0 4 2 4 1 3 3 4 0 4 4 2 "
                       "0 4 1 3 2 2 0 1 1 4 2 4 3 2 4 4 0 3 5 2")


def _trainer(strategy, sync_bn, batch, **cfg):
    keras.utils.set_random_seed(0)
    config = OptimConfig(epochs=1, steps_per_epoch=100, **cfg)
    return Trainer(strategy, lambda: NASNetwork(ARCH, 1, 8, 10, use_aux_head=True,
                                                sync_bn=sync_bn), config, batch)


@pytest.mark.slow
def test_one_replica_and_two_replicas_give_the_same_step(two_replicas):
    """Loss, gradient norm and the SGD update (hence the gradients) agree. Both runs use the
    synchronized batch norm that multi-replica training uses (the fast single-replica BatchNorm
    is compared with Keras' in model_test)."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, size=8).astype(np.int32)
    results = []
    for strategy, sync_bn in ((tf.distribute.OneDeviceStrategy("/cpu:0"), True),
                              (two_replicas, True)):
        trainer = _trainer(strategy, sync_bn, 8, grad_bound=1.0, l2_reg=1e-3)
        before = [v.numpy() for v in trainer.model.trainable_variables]
        ds = strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices((images, labels)).batch(8))
        stats = trainer.train_step(*next(iter(ds)))
        after = [v.numpy() for v in trainer.model.trainable_variables]
        results.append((stats, [a - b for a, b in zip(after, before)], before))
    (s1, d1, b1), (s2, d2, b2) = results
    for a, b in zip(b1, b2):
        np.testing.assert_array_equal(a, b)  # same initial weights
    assert s1["loss"] == pytest.approx(s2["loss"], rel=1e-5)
    assert s1["grad_norm"] == pytest.approx(s2["grad_norm"], rel=1e-4)
    assert s1["grad_norm"] > 1.0  # clipping was active
    for a, b in zip(d1, d2):
        # Each tensor's update within 2% (relative norm of the difference): the gradients of the
        # convolutions in front of a batch norm are differences of large terms, so the float32
        # sums split over two replicas move single elements by a few percent on some CPUs (AVX2
        # kernels), while a wrong reduction over the replicas would be off by half or more.
        assert np.linalg.norm(a - b) <= 0.02 * np.linalg.norm(b), a.shape
    assert max(np.abs(d).max() for d in d1) > 0


@pytest.mark.slow
def test_training_on_synthetic_data_drives_the_loss_down():
    train, _ = data_lib.synthetic_splits(256, 0, seed=3)
    mean = (train.images.reshape(-1, 3).mean(0) / 255).astype(np.float32)
    std = (train.images.reshape(-1, 3).std(0) / 255).astype(np.float32)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    trainer = _trainer(strategy, False, 16, lr_max=0.05, t0=100)
    it = iter(data_lib.train_dataset(train, 16, mean, std, seed=0))
    losses = [trainer.train_step(*next(it))["loss"] for _ in range(40)]
    assert np.mean(losses[-8:]) < 0.6 * np.mean(losses[:8]), losses
    assert trainer.step == 40
    assert trainer.learning_rate() == pytest.approx(0.05 * 0.5 * (1 + np.cos(np.pi * 0 / 100)) +
                                                    0.0001 * 0.5 * (1 - np.cos(0)), rel=1e-5)


@pytest.mark.parametrize("nesterov", [True, False])
def test_fused_momentum_sgd_updates_as_keras_sgd(two_replicas, nesterov):
    """Three steps of `MomentumSGD` and of Keras' SGD (replicated on two devices): the same
    weights and momenta. Keras' SGD sums what the replicas hand it; `MomentumSGD` takes the sum
    (as `Trainer` hands it)."""
    rng = np.random.default_rng(0)
    start = [rng.normal(size=shape).astype(np.float32) for shape in ((3, 4), (5,))]
    grads = [[rng.normal(size=w.shape).astype(np.float32) for w in start] for _ in range(3)]
    results = []
    for optimizer_class in (MomentumSGD, keras.optimizers.SGD):
        with two_replicas.scope():
            weights = [tf.Variable(w) for w in start]
            optimizer = optimizer_class(0.1, momentum=0.9, nesterov=nesterov)
            optimizer.build(weights)
        share = 1.0 if optimizer_class is MomentumSGD else 0.5
        step = tf.function(lambda g: two_replicas.run(
            lambda g: optimizer.apply_gradients(zip([x * share for x in g], weights)), args=(g,)))
        for g in grads:
            step([tf.constant(x) for x in g])
        results.append([copy.numpy() for w in weights + [m.value for m in optimizer.momentums]
                        for copy in w.values])  # each replica's copy
    for ours, keras_sgd in zip(*results):
        np.testing.assert_allclose(ours, keras_sgd, rtol=1e-6, atol=1e-7)
    assert len(results[0]) == 8 and not np.allclose(results[0][0], start[0])
