"""CIFAR-10 / CIFAR-100 / synthetic images and their tf.data input pipelines.

Sources:
  * `tfds`: tensorflow-datasets `cifar10` / `cifar100` prepared under `data_dir` (never downloads);
  * `pickle`: the original python-pickle layout in `data_dir` (a local path, or any file system
    TensorFlow reads, such as gs://) — CIFAR-10 `data_batch_1..5` (any
    non-empty subset, e.g. a sample) + optional `test_batch`; CIFAR-100 `train` + optional `test`;
  * `synthetic`: class-dependent smooth patterns plus noise, learnable within a few hundred steps,
    generated offline from a seed (for demos, tests and benchmarks).

Splits (as NAO-WS): `search` holds out the last `num_valid` (5,000) training images as the
validation set; `final` trains on all training images. Images are scaled to [0, 1] and normalised
per channel with the mean and std of the training split. Training augmentation: zero-pad 4 (after
normalisation, i.e. pad with the mean), random 32x32 crop, random horizontal flip, optional cutout
(a square of side `cutout_size` centred at a uniform pixel, clipped at the border, set to 0).
`standardization="per_image"` is the TF NAO release's pipeline instead: the raw pixels are
zero-padded (black), cropped and flipped, then each image is standardised to zero mean and unit
variance (`tf.image.per_image_standardization`), then cut out.
"""

import os
import pickle
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from nao_tf.common.errors import DataError

DATASETS = ("cifar10", "cifar100", "synthetic")
SOURCES = ("auto", "tfds", "pickle")
STANDARDIZATIONS = ("dataset", "per_image")
IMAGE_SIZE = 32
PAD = 4
NUM_VALID = 5000


@dataclass
class Split:
    images: np.ndarray  # uint8 [n, 32, 32, 3]
    labels: np.ndarray  # int32 [n]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class CifarData:
    """Train / valid / test splits; `valid` is None for the final split, `test` None when the source
    has no test set. `mean` and `std` are the per-channel statistics of `train` in [0, 1] units.
    The methods are the pipelines `cnn.fit` reads (as `cnn.imagenet.ImageNetData`'s)."""

    name: str
    num_classes: int
    train: Split
    valid: Split | None
    test: Split | None
    mean: np.ndarray
    std: np.ndarray
    image_size: int = IMAGE_SIZE

    def steps_per_epoch(self, batch_size: int) -> int:
        return steps_per_epoch(len(self.train), batch_size)

    def train_dataset(self, batch_size: int, seed: int | None = None, start_step: int = 0,
                      cutout_size: int = 0, standardization: str = "dataset") -> tf.data.Dataset:
        return train_dataset(self.train, batch_size, self.mean, self.std, cutout_size, seed,
                             start_step, standardization)

    def eval_datasets(self, batch_size: int,
                      standardization: str = "dataset") -> dict[str, tf.data.Dataset]:
        """{"valid", "test"}: each split there is, every image once."""
        return {name: eval_dataset(split, batch_size, self.mean, self.std, standardization)
                for name, split in (("valid", self.valid), ("test", self.test)) if split}

    def explain(self, error: Exception, step: int, batch_size: int) -> Exception:
        """In-memory images cannot fail to decode: the error as it is."""
        return error


def num_classes(dataset: str) -> int:
    return 100 if dataset == "cifar100" else 10


# Readers.

def _unpickle(path: str) -> dict:
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except (OSError, tf.errors.OpError) as err:
        reason = getattr(err, "strerror", None) or getattr(err, "message", str(err))
        raise DataError(f"{path}: cannot be read ({reason})") from None
    except Exception as err:  # noqa: BLE001 -- damaged bytes fail in many ways inside pickle
        raise DataError(f"{path}: not a CIFAR python-pickle batch ({type(err).__name__}: "
                        f"{str(err)[:100]}); replace it with the original file") from None


def _pickle_split(path: str, label_key: bytes, num_classes: int) -> Split:
    batch = _unpickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise DataError(f"{path}: expected a dict with keys b'data' and {label_key!r}; is this the "
                        "python version of the dataset (not the binary or matlab one)?")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE or len(data) != len(labels):
        raise DataError(f"{path}: b'data' has shape {data.shape} for {len(labels)} labels; "
                        "expected [n, 3072] uint8 in CHW order")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels range over [{labels.min()}, {labels.max()}], outside "
                        f"[0, {num_classes}); wrong --dataset?")
    images = data.astype(np.uint8).reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(images), labels.astype(np.int32))


def _is_file(path: str) -> bool:
    return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def _concat(splits: list[Split]) -> Split:
    return Split(np.concatenate([s.images for s in splits]),
                 np.concatenate([s.labels for s in splits]))


def _has_pickle_layout(data_dir: str) -> bool:
    names = {name.rstrip("/") for name in tf.io.gfile.listdir(data_dir)}
    return bool(names & {f"data_batch_{k}" for k in range(1, 6)}) or "train" in names


def read_pickle_dir(data_dir: str, dataset: str) -> tuple[Split, Split | None]:
    """(train, test or None) from the original python-pickle files in `data_dir`."""
    classes = num_classes(dataset)
    if dataset == "cifar10":
        train_files = [os.path.join(data_dir, f"data_batch_{k}") for k in range(1, 6)]
        train_files = [p for p in train_files if _is_file(p)]
        test_file, label_key = os.path.join(data_dir, "test_batch"), b"labels"
        expected = "data_batch_1 .. data_batch_5 and test_batch (cifar-10-batches-py)"
    else:
        train_files = [p for p in [os.path.join(data_dir, "train")] if _is_file(p)]
        test_file, label_key = os.path.join(data_dir, "test"), b"fine_labels"
        expected = "train and test (cifar-100-python)"
    if not train_files:
        raise DataError(f"{data_dir}: no {dataset} training batches found; expected the files "
                        f"{expected}, or a tensorflow-datasets directory with --data_source=tfds")
    train = _concat([_pickle_split(p, label_key, classes) for p in train_files])
    test = _pickle_split(test_file, label_key, classes) if _is_file(test_file) else None
    return train, test


def read_tfds(data_dir: str, dataset: str) -> tuple[Split, Split | None]:
    """(train, test) of the tensorflow-datasets builder `dataset` prepared under `data_dir`."""
    import tensorflow_datasets as tfds

    def load(split: str) -> Split:
        try:
            arrays = tfds.as_numpy(tfds.load(dataset, split=split, data_dir=data_dir,
                                             download=False, batch_size=-1, as_supervised=True))
        except Exception as err:  # tfds raises assorted types for a missing or partial directory
            first_line = str(err).splitlines()[0] if str(err) else ""
            raise DataError(
                f"{data_dir}: tensorflow-datasets {dataset} is not prepared there "
                f"({type(err).__name__}: {first_line}); prepare it on a machine with network "
                f"(tfds build {dataset} --data_dir=...) or point --data_dir at the python-pickle "
                "files") from None
        images, labels = arrays
        return Split(np.asarray(images, np.uint8), np.asarray(labels, np.int32))

    return load("train"), load("test")


def synthetic_splits(num_train: int, num_test: int, num_classes: int = 10,
                     seed: int = 0) -> tuple[Split, Split]:
    """Learnable CIFAR-shaped data: each class is a fixed smooth colour pattern (a random 4x4x3 grid
    upsampled to 32x32); an image is its class pattern plus strong per-pixel noise."""
    rng = np.random.default_rng(seed)
    grids = rng.uniform(0, 1, size=(num_classes, 4, 4, 3))
    patterns = np.repeat(np.repeat(grids, 8, axis=1), 8, axis=2)

    def make(n: int) -> Split:
        labels = rng.integers(0, num_classes, size=n).astype(np.int32)
        noise = rng.normal(0, 0.25, size=(n, IMAGE_SIZE, IMAGE_SIZE, 3))
        images = np.clip(0.2 + 0.6 * patterns[labels] + noise, 0, 1)
        return Split((images * 255).astype(np.uint8), labels)

    return make(num_train), make(num_test)


def load(dataset: str, data_dir: str | None = None, source: str = "auto", split: str = "final",
         num_valid: int = NUM_VALID, synthetic_sizes: tuple[int, int] = (2048, 512),
         seed: int = 0) -> CifarData:
    """Loads `dataset` and splits it (`split`: 'search' = train minus the last `num_valid` images
    + valid; 'final' = all training images, no valid)."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if split not in ("search", "final"):
        raise DataError(f"unknown split {split!r}; choose 'search' (45k/5k) or 'final' (50k)")
    if dataset == "synthetic":
        train, test = synthetic_splits(*synthetic_sizes, seed=seed)
    else:
        if not data_dir:
            raise DataError(f"--data_dir is required for {dataset}: a directory with the python-"
                            "pickle batches or a prepared tensorflow-datasets directory")
        if not tf.io.gfile.isdir(data_dir):
            raise DataError(f"{data_dir}: data directory not found; pass --data_dir with the "
                            f"{dataset} python-pickle batches or a tensorflow-datasets directory")
        if source not in SOURCES:
            raise DataError(f"unknown data source {source!r}; choose one of {', '.join(SOURCES)}")
        use_pickle = source == "pickle" or (source == "auto" and _has_pickle_layout(data_dir))
        train, test = (read_pickle_dir if use_pickle else read_tfds)(data_dir, dataset)
    valid = None
    if split == "search":
        if len(train) <= num_valid:
            raise DataError(f"the search split holds out {num_valid} validation images but the "
                            f"training set has only {len(train)}; lower --num_valid")
        cut = len(train) - num_valid
        train, valid = Split(train.images[:cut], train.labels[:cut]), \
            Split(train.images[cut:], train.labels[cut:])
    scaled = train.images.reshape(-1, 3).astype(np.float64) / 255.0
    mean, std = scaled.mean(axis=0), scaled.std(axis=0)
    return CifarData(dataset, num_classes(dataset), train, valid, test,
                     mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32))


# Pipelines.

def normalize(images: tf.Tensor, mean: np.ndarray, std: np.ndarray) -> tf.Tensor:
    """uint8 (or 0..255 float) images -> float32 normalised per channel."""
    return (tf.cast(images, tf.float32) / 255.0 - mean) / std


def standardize(images: tf.Tensor, mean: np.ndarray, std: np.ndarray,
                standardization: str = "dataset") -> tf.Tensor:
    """uint8 (or 0..255 float) images -> float32 network input: normalised per channel with the
    training split's statistics ("dataset"), or each image on its own ("per_image")."""
    if standardization == "per_image":
        return tf.image.per_image_standardization(tf.cast(images, tf.float32))
    return normalize(images, mean, std)


def cutout(image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """Zeroes a size x size square centred at a uniformly drawn pixel, clipped at the border
    (DeVries & Taylor; the PyTorch port's version)."""
    h, w = IMAGE_SIZE, IMAGE_SIZE
    cy, cx = tf.unstack(tf.random.stateless_uniform([2], seed, 0, h, dtype=tf.int32))
    ys, xs = tf.range(h)[:, None], tf.range(w)[None, :]
    inside = ((ys >= cy - size // 2) & (ys < cy - size // 2 + size)
              & (xs >= cx - size // 2) & (xs < cx - size // 2 + size))
    return image * tf.cast(~inside, image.dtype)[:, :, None]


def augment(image: tf.Tensor, cutout_size: int, seed: tf.Tensor,
            per_image: bool = False) -> tf.Tensor:
    """Pad 4, random 32x32 crop, random horizontal flip, (`per_image`: per-image
    standardisation,) cutout; every draw a function of `seed`."""
    crop, flip, hole = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    image = tf.pad(image, [[PAD, PAD], [PAD, PAD], [0, 0]])
    image = tf.image.stateless_random_crop(image, [IMAGE_SIZE, IMAGE_SIZE, 3], crop)
    image = tf.image.stateless_random_flip_left_right(image, flip)
    if per_image:
        image = tf.image.per_image_standardization(image)
    return cutout(image, cutout_size, hole) if cutout_size > 0 else image


def train_dataset(split: Split, batch_size: int, mean: np.ndarray, std: np.ndarray,
                  cutout_size: int = 0, seed: int | None = None, start_step: int = 0,
                  standardization: str = "dataset") -> tf.data.Dataset:
    """Endless shuffled, augmented batches of exactly `batch_size` (the global batch): an epoch is
    taken as ceil(n / batch_size) batches, as the original's queue-fed input.

    The stream is a pure function of `seed` (None: a random one): pass p over the data is the
    permutation `stateless_shuffle(seed, p)`, and the image at stream position i is augmented
    with the draws of seed (seed, i). So a run resumed at `start_step` sees exactly the batches
    an uninterrupted run sees from that step on.
    """
    n, first, end = len(split), start_step * batch_size, np.iinfo(np.int64).max
    seed = tf.constant(np.random.randint(1 << 31) if seed is None else seed, tf.int64)
    images, labels = tf.constant(split.images), tf.constant(split.labels)

    def one_pass(p: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64),
                                                         tf.stack([seed, p]))
        return tf.data.Dataset.from_tensor_slices(order)

    per_image = standardization == "per_image"

    def example(i: tf.Tensor, position: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.gather(images, i)
        image = tf.cast(image, tf.float32) if per_image else normalize(image, mean, std)
        return (augment(image, cutout_size, tf.stack([seed, position]), per_image),
                tf.gather(labels, i))

    order = tf.data.Dataset.range(first // n, end).flat_map(one_pass).skip(first % n)
    ds = tf.data.Dataset.zip(order, tf.data.Dataset.range(first, end))
    ds = ds.map(example, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(split: Split, batch_size: int, mean: np.ndarray, std: np.ndarray,
                 standardization: str = "dataset") -> tf.data.Dataset:
    """Every image of `split` exactly once, in order, standardised, not augmented."""
    ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels)).batch(batch_size)
    return ds.map(lambda x, y: (standardize(x, mean, std, standardization), y),
                  num_parallel_calls=tf.data.AUTOTUNE).cache().prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """ceil(images / batch), as the original's batches_per_epoch."""
    return -(-num_images // batch_size)
