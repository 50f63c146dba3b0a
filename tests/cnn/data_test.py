import pickle

import numpy as np
import pytest
import tensorflow as tf

from cnn import data as data_lib
from nao_tf.common.errors import DataError


def _write_batch(path, n, num_classes=10, label_key=b"labels", seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n).tolist()
    with open(path, "wb") as f:
        pickle.dump({b"data": images, label_key: labels, b"batch_label": b"x"}, f)
    return images, labels


def test_cifar10_pickle_layout_is_read_in_chw_order(tmp_path):
    images, labels = _write_batch(tmp_path / "data_batch_1", 12)
    _write_batch(tmp_path / "data_batch_2", 8, seed=1)
    _write_batch(tmp_path / "test_batch", 5, seed=2)
    d = data_lib.load("cifar10", str(tmp_path), split="final")
    assert len(d.train) == 20 and len(d.test) == 5 and d.valid is None and d.num_classes == 10
    assert d.train.images.shape == (20, 32, 32, 3)
    # pixel (row 1, col 2) of image 0: red at 1*32+2, green at 1024 + that, blue at 2048 + that.
    assert d.train.images[0, 1, 2].tolist() == [images[0, 34], images[0, 1058], images[0, 2082]]
    assert d.train.labels[:12].tolist() == labels
    np.testing.assert_allclose(d.mean, d.train.images.reshape(-1, 3).mean(0) / 255, rtol=1e-5)


def test_cifar100_pickle_and_search_split(tmp_path):
    _write_batch(tmp_path / "train", 30, num_classes=100, label_key=b"fine_labels")
    d = data_lib.load("cifar100", str(tmp_path), split="search", num_valid=10)
    assert (len(d.train), len(d.valid), d.test, d.num_classes) == (20, 10, None, 100)


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "no cifar10 training batches found"),
    (lambda p: (p / "data_batch_1").write_bytes(b"not a pickle"), "not a CIFAR python-pickle"),
    (lambda p: (p / "data_batch_1").write_bytes(b"cbuiltins\nno_such_name\n."),
     "not a CIFAR python-pickle batch \\(AttributeError"),
    (lambda p: (p / "data_batch_1").write_bytes(b"cno_such_module\nx\n."),
     "not a CIFAR python-pickle batch \\(ModuleNotFoundError"),
    (lambda p: pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]},
                           open(p / "data_batch_1", "wb")), "expected \\[n, 3072\\]"),
    (lambda p: pickle.dump({b"images": 1}, open(p / "data_batch_1", "wb")), "expected a dict"),
])
def test_wrong_layouts_raise_data_errors(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(DataError, match=message):
        data_lib.load("cifar10", str(tmp_path), source="pickle")


def test_missing_directory_and_unprepared_tfds_raise_data_errors(tmp_path):
    with pytest.raises(DataError, match="data directory not found"):
        data_lib.load("cifar10", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="not prepared there"):
        data_lib.load("cifar10", str(tmp_path))  # empty dir: not pickle, so tfds, no download


def test_train_pipeline_shapes_normalisation_and_cutout():
    train, _ = data_lib.synthetic_splits(64, 0)
    mean = train.images.reshape(-1, 3).mean(0) / 255
    std = train.images.reshape(-1, 3).std(0) / 255
    ds = data_lib.train_dataset(train, 16, mean.astype(np.float32), std.astype(np.float32),
                                cutout_size=8, seed=0)
    batches = list(ds.take(5))
    assert all(x.shape == (16, 32, 32, 3) and y.shape == (16,) for x, y in batches)
    x = np.concatenate([b[0].numpy() for b in batches])
    assert abs(x.mean()) < 0.3 and 0.5 < x.std() < 1.5
    image = data_lib.cutout(np.ones((32, 32, 3), np.float32), 8, tf.constant([1, 2])).numpy()
    zeros = (image[:, :, 0] == 0)
    rows, cols = np.nonzero(zeros.any(1))[0], np.nonzero(zeros.any(0))[0]
    assert 16 <= zeros.sum() <= 64 and zeros.sum() == len(rows) * len(cols)  # a clipped square


def test_the_train_stream_is_a_function_of_seed_and_step():
    """Each pass is a permutation of the data; a stream started at step k (a resumed run) yields
    exactly the batches of an uninterrupted stream from step k on, augmentation included."""
    train, _ = data_lib.synthetic_splits(40, 0)
    train = data_lib.Split(train.images, np.arange(40, dtype=np.int32))  # label = image index
    mean, std = np.zeros(3, np.float32), np.ones(3, np.float32)

    def batches(start_step, seed=3):
        ds = data_lib.train_dataset(train, 16, mean, std, 8, seed=seed, start_step=start_step)
        return [(x.numpy(), y.numpy()) for x, y in ds.take(7 - start_step)]

    uninterrupted = batches(0)
    labels = np.concatenate([y for _, y in uninterrupted])
    assert sorted(labels[:40]) == sorted(labels[40:80]) == list(range(40))
    assert labels[:40].tolist() != labels[40:80].tolist()  # reshuffled every pass
    for (x, y), (x_resumed, y_resumed) in zip(uninterrupted[3:], batches(3)):
        np.testing.assert_array_equal(y, y_resumed)
        np.testing.assert_array_equal(x, x_resumed)
    assert not np.array_equal(batches(0, seed=4)[0][1], uninterrupted[0][1])


def test_eval_pipeline_sees_every_image_once_in_order():
    _, test = data_lib.synthetic_splits(0, 37)
    ds = data_lib.eval_dataset(test, 10, np.zeros(3, np.float32), np.ones(3, np.float32))
    labels = np.concatenate([y.numpy() for _, y in ds])
    assert labels.tolist() == test.labels.tolist()
    assert data_lib.steps_per_epoch(50000, 128) == 391
    assert data_lib.steps_per_epoch(50000, 144) == 348


def test_per_image_standardization_as_the_tf_nao_release():
    """Zero-pad the raw pixels, crop, flip, standardise each image, then cut out."""
    train, test = data_lib.synthetic_splits(32, 8)
    train = data_lib.Split(np.maximum(train.images, 1), train.labels)  # no black pixel of its own
    mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)
    x, _ = next(iter(data_lib.train_dataset(train, 32, mean, std, seed=1,
                                            standardization="per_image")))
    per_image = x.numpy().reshape(32, -1)
    np.testing.assert_allclose(per_image.mean(1), 0.0, atol=1e-4)
    np.testing.assert_allclose(per_image.std(1), 1.0, atol=1e-3)
    # A crop that reaches into the padding shows a band of black pixels standardised with their
    # image: one value, (0 - image mean) / image std, the image's minimum.
    images = x.numpy()
    bands = [band for image in images
             for band in (image[0], image[-1], image[:, 0], image[:, -1])
             if np.all(band == image.min())]
    assert len(bands) >= 16
    x_cut, _ = next(iter(data_lib.train_dataset(train, 32, mean, std, cutout_size=8, seed=1,
                                                standardization="per_image")))
    assert (x_cut.numpy() == 0).any() and not (x.numpy() == 0).any()  # cutout after
    evaluated = next(iter(data_lib.eval_dataset(test, 8, mean, std, "per_image")))[0].numpy()
    expected = tf.image.per_image_standardization(test.images.astype(np.float32)).numpy()
    np.testing.assert_allclose(evaluated, expected, rtol=1e-5, atol=1e-5)
