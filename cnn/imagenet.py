"""ImageNet-like data for the final training (the mobile setting): a tensorflow-datasets builder
prepared under `--data_dir` (`imagenet2012`, `imagenette`, `imagenet_resized/64x64`, ...), or a
plain folder `train/<class>/*.JPEG`, `val/<class>/*.JPEG` (classes in sorted order), read with
tf.data and decoded in parallel; `--data_dir` may be on any file system TensorFlow reads (gs://).

Training, as NAO_pytorch's `train_imagenet.py` transform: a random-resized crop (8% to 100% of the
area, aspect ratio 3/4 to 4/3; a JPEG is decoded only inside the crop, `decode_and_crop_jpeg`),
resized to `image_size`, a random horizontal flip, colour jitter (brightness, contrast and
saturation factors in [0.6, 1.4], hue shift in [-0.2, 0.2], in this fixed order), then the
ImageNet mean and std. Evaluation: the shorter side resized to `image_size / 0.875` (256 for 224),
the centre `image_size` square.

An epoch is one pass of `len(train) // batch` full batches. The stream is a function of the seed
and the step: pass p of a folder reads file `index_shuffle(k, (seed, p))` at its position k and
augments it with the draws of (seed, p, k), so a run resumed at any step sees what an
uninterrupted one sees; pass p of a tfds builder reads its files in the order of seed (seed, p)
through a seeded shuffle buffer. A file that cannot be decoded stops training with one error
naming it: a folder's validation images are all decoded before the first step
(`check_decodable`), a training image when its batch fails (`explain`).
"""

import os
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import tensorflow as tf

from nao_tf.common.errors import DataError
from nao_tf.runtime import startup

MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # the original's torchvision Normalize
STD = np.array([0.229, 0.224, 0.225], np.float32)
# --dataset name: the tensorflow-datasets builder it reads (a folder needs no builder).
TFDS_NAMES = {"imagenet": "imagenet2012", "imagenette": "imagenette",
              "imagenet64": "imagenet_resized/64x64"}
FOLDER_SPLITS = {"train": "train", "test": "val"}
SHUFFLE_BUFFER = 10_000
JPEG_SUFFIXES = (".jpeg", ".jpg", ".png")


@dataclass
class ImageSplit:
    """One split: image files with labels (a folder), or a tfds split of `size` examples."""

    size: int
    files: np.ndarray | None = None  # str [size]
    labels: np.ndarray | None = None  # int32 [size]
    tfds_split: str = ""

    def __len__(self) -> int:
        return self.size


@dataclass
class ImageNetData:
    """An ImageNet-like dataset: `train`, `test` (the validation images, which the original
    reports), and the pipelines `cnn.fit` reads (`train_dataset`, `eval_datasets`)."""

    name: str
    num_classes: int
    train: ImageSplit
    test: ImageSplit
    image_size: int = 224
    builder: object = None  # the tfds builder, None for a folder
    valid: None = None
    seed: int = 0  # of the training stream, once `train_dataset` has drawn it
    mean: np.ndarray = field(default_factory=lambda: MEAN)
    std: np.ndarray = field(default_factory=lambda: STD)

    def steps_per_epoch(self, batch_size: int) -> int:
        steps = len(self.train) // batch_size
        if steps < 1:
            raise DataError(f"{len(self.train)} training images make no batch of {batch_size}; "
                            "lower --batch_size")
        return steps

    # Training.

    def _pass_records(self, seed: tf.Tensor, p: tf.Tensor, count: int,
                      tfds_records: tf.data.Dataset | None,
                      is_mine: Callable[[tf.Tensor], tf.Tensor]) -> tf.data.Dataset:
        """(encoded image, label, k) of the first `count` training examples of pass p whose
        stream position k `is_mine`: only those are read (a folder) or decoded (tfds, whose
        seeded shuffle buffer is read whole)."""
        if tfds_records is None:
            files, labels = tf.constant(self.train.files), tf.constant(self.train.labels)

            def record(k):
                i = self._file_index(k, p, seed)
                return tf.io.read_file(tf.gather(files, i)), tf.gather(labels, i), k

            return tf.data.Dataset.range(count).filter(is_mine).map(
                record, num_parallel_calls=tf.data.AUTOTUNE)
        records = tfds_records.shuffle(SHUFFLE_BUFFER, seed=seed * 1_000_003 + p)
        return records.take(count).enumerate().filter(lambda k, _: is_mine(k)).map(
            lambda k, example: (*example, k))

    def _file_index(self, k, p, seed) -> tf.Tensor:
        """The training file at position k of pass p of a folder's stream."""
        return tf.random.experimental.index_shuffle(
            tf.cast(k, tf.int64), tf.stack([tf.cast(seed, tf.int64), tf.cast(p, tf.int64)]),
            len(self.train) - 1)

    def _tfds_records(self, split: ImageSplit) -> tf.data.Dataset:
        """(encoded image, label) of a tfds split, in its files' order."""
        import tensorflow_datasets as tfds

        ds = self.builder.as_dataset(split=split.tfds_split, shuffle_files=False,
                                     decoders={"image": tfds.decode.SkipDecoding()})
        return ds.map(lambda example: (example["image"], example["label"]))

    def train_dataset(self, batch_size: int, seed: int | None = None, start_step: int = 0,
                      input_context: tf.distribute.InputContext | None = None,
                      **_) -> tf.data.Dataset:
        """Endless augmented batches of exactly `batch_size` (the global batch) from step
        `start_step` on. With `input_context` (`distribute_datasets_from_function`), the batches
        of its input pipeline only: of each global batch, pipeline i of n reads and decodes the
        i-th n-th (stream positions t B + i B / n .. t B + (i + 1) B / n - 1 at step t), batched
        per replica, so the pipelines' batches of a step, in order, are the global batch."""
        steps = self.steps_per_epoch(batch_size)
        self.seed = int(np.random.randint(1 << 31) if seed is None else seed)
        seed = tf.constant(self.seed, tf.int64)
        size = self.image_size
        pipelines = input_context.num_input_pipelines if input_context else 1
        pipeline = input_context.input_pipeline_id if input_context else 0
        share = batch_size // pipelines  # what one pipeline reads of each global batch
        replica_batch = (input_context.get_per_replica_batch_size(batch_size) if input_context
                         else batch_size)

        def is_mine(k):
            return k % batch_size // share == pipeline

        tfds_records = None if self.builder is None else self._tfds_records(self.train)

        def one_pass(p):
            records = self._pass_records(seed, p, steps * batch_size, tfds_records, is_mine)
            return records.map(lambda data, label, k: (
                augment(data, size, tf.stack([seed, p * (1 << 32) + k])), label),
                num_parallel_calls=tf.data.AUTOTUNE)

        first_pass, skip = divmod(start_step, steps)
        ds = tf.data.Dataset.range(first_pass, np.iinfo(np.int64).max).flat_map(one_pass)
        return ds.skip(skip * share).batch(replica_batch, drop_remainder=True).prefetch(
            tf.data.AUTOTUNE)

    # Evaluation.

    def eval_datasets(self, batch_size: int, **_) -> dict[str, tf.data.Dataset]:
        """{"test": every validation image once, resized and centre-cropped}."""
        split = self.test
        if self.builder is None:
            ds = tf.data.Dataset.from_tensor_slices((split.files, split.labels)).map(
                lambda path, label: (tf.io.read_file(path), label))
        else:
            ds = self._tfds_records(split)
        size = self.image_size
        ds = ds.map(lambda data, label: (centre_crop(data, size), label),
                    num_parallel_calls=tf.data.AUTOTUNE)
        return {"test": ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)}

    def explain(self, error: Exception, step: int, batch_size: int) -> Exception:
        """The error for a training input that failed at `step`: for a folder, a `DataError`
        naming the first file of that batch (or the next) that does not decode; else `error`."""
        if self.builder is not None:
            return error
        steps = self.steps_per_epoch(batch_size)
        for s in (step, step + 1):
            p, k0 = divmod(s, steps)
            for k in range(k0 * batch_size, (k0 + 1) * batch_size):
                path = self.train.files[int(self._file_index(k, p, self.seed))]
                unreadable = _unreadable(str(path))
                if unreadable:
                    return unreadable
        return error


# What TensorFlow's image decoders log on their own about a file `_unreadable` names anyway.
DECODER_LINES = re.compile(r"(jpeg_mem|png_io|gif_io)\.cc:\d+\]|local_rendezvous\.cc:\d+\] "
                           r"Local rendezvous is aborting")


def _unreadable(path: str) -> DataError | None:
    """A `DataError` naming image file `path` and why it does not decode; None when it does."""
    try:
        with startup.held_back(DECODER_LINES):
            tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return None
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as err:
        # TensorFlow's message without its op context ({{function_node ...}}, [Op:...]).
        reason = re.sub(r"\{\{[^}]*\}\}|\[Op:[^\]]*\]|\s+name:\s*$", "", err.message).strip()
        return DataError(f"{path}: not a readable image ({reason or 'cannot be decoded'}); "
                         "replace or remove the file, then rerun the same command to resume")


def check_decodable(files: np.ndarray) -> None:
    """Stops with a `DataError` naming the first of image `files` that does not decode (all are
    decoded once, in parallel): the validation images, checked before the first step so that a
    bad one never costs a training epoch."""
    decoded = tf.data.Dataset.from_tensor_slices(files).enumerate().map(
        lambda i, path: (i, tf.shape(tf.io.decode_image(tf.io.read_file(path), channels=3,
                                                        expand_animations=False))),
        num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    with startup.held_back(DECODER_LINES):
        good = {int(i) for i, _ in decoded.as_numpy_iterator()}
    bad = next((i for i in range(len(files)) if i not in good), None)
    if bad is not None:
        raise _unreadable(str(files[bad])) or DataError(f"{files[bad]}: not a readable image")


def _jpeg_or_other(data: tf.Tensor, crop_window: tf.Tensor | None) -> tf.Tensor:
    """uint8 [h, w, 3] of encoded `data`, cut to `crop_window` (y, x, h, w) when given; JPEGs are
    decoded only inside the window."""
    def jpeg():
        if crop_window is None:
            return tf.io.decode_jpeg(data, channels=3)
        return tf.io.decode_and_crop_jpeg(data, crop_window, channels=3)

    def other():
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        if crop_window is None:
            return image
        return tf.image.crop_to_bounding_box(image, crop_window[0], crop_window[1],
                                             crop_window[2], crop_window[3])

    image = tf.cond(tf.io.is_jpeg(data), jpeg, other)
    image.set_shape([None, None, 3])
    return image


def image_shape(data: tf.Tensor) -> tf.Tensor:
    """(h, w, channels) of encoded `data` without decoding a JPEG."""
    return tf.cond(tf.io.is_jpeg(data), lambda: tf.io.extract_jpeg_shape(data),
                   lambda: tf.shape(tf.io.decode_image(data, channels=3,
                                                       expand_animations=False)))


def normalize(image: tf.Tensor) -> tf.Tensor:
    """float32 [0, 255] pixels -> the original's ImageNet normalisation."""
    return (image / 255.0 - MEAN) / STD


def augment(data: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """One training image (see the module docstring); `seed` (int64 [2]) draws every choice."""
    seeds = tf.random.experimental.stateless_split(seed, 7)
    begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
        image_shape(data), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seeds[0],
        min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    window = tf.stack([begin[0], begin[1], crop[0], crop[1]])
    image = tf.image.resize(_jpeg_or_other(data, window), [size, size], antialias=False)
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    image = image * tf.random.stateless_uniform([], seeds[2], 0.6, 1.4)  # brightness
    image = tf.image.adjust_contrast(image, tf.random.stateless_uniform([], seeds[3], 0.6, 1.4))
    image = tf.image.adjust_saturation(image, tf.random.stateless_uniform([], seeds[4], 0.6, 1.4))
    image = tf.image.adjust_hue(tf.clip_by_value(image, 0.0, 255.0) / 255.0,
                                tf.random.stateless_uniform([], seeds[5], -0.2, 0.2)) * 255.0
    return normalize(tf.clip_by_value(image, 0.0, 255.0))


def centre_crop(data: tf.Tensor, size: int) -> tf.Tensor:
    """One evaluation image: shorter side to size / 0.875, then the centre size x size."""
    image = tf.cast(_jpeg_or_other(data, None), tf.float32)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = round(size / 0.875) / tf.reduce_min(shape)
    resized = tf.image.resize(image, tf.cast(tf.round(shape * scale), tf.int32))
    return normalize(tf.image.resize_with_crop_or_pad(resized, size, size))


# Readers.

def _folder_split(directory: str, classes: list[str] | None) -> tuple[ImageSplit, list[str]]:
    if not tf.io.gfile.isdir(directory):
        raise DataError(f"{directory}: split not found; an image folder holds train/<class>/ "
                        "and val/<class>/ directories of JPEG files")
    found = sorted(d.rstrip("/") for d in tf.io.gfile.listdir(directory)
                   if tf.io.gfile.isdir(os.path.join(directory, d)))
    classes = classes or found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{directory}: classes {unknown[:5]} are not in the training split; "
                        "both splits need the same class directories")
    files, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(directory, name)
        if not tf.io.gfile.isdir(folder):
            continue
        names = sorted(f for f in tf.io.gfile.listdir(folder)
                       if f.lower().endswith(JPEG_SUFFIXES))
        files += [os.path.join(folder, f) for f in names]
        labels += [label] * len(names)
    if not files:
        raise DataError(f"{directory}: no .JPEG/.jpg/.png files under its class directories")
    return ImageSplit(len(files), np.array(files), np.array(labels, np.int32)), classes


def read_folder(data_dir: str, image_size: int) -> ImageNetData:
    train, classes = _folder_split(os.path.join(data_dir, FOLDER_SPLITS["train"]), None)
    test, _ = _folder_split(os.path.join(data_dir, FOLDER_SPLITS["test"]), classes)
    check_decodable(test.files)
    return ImageNetData(os.path.basename(os.path.normpath(data_dir)), len(classes), train, test,
                        image_size)


def read_tfds(data_dir: str, name: str, image_size: int) -> ImageNetData:
    import tensorflow_datasets as tfds

    try:
        if tf.io.gfile.exists(os.path.join(data_dir, "dataset_info.json")):  # a version dir
            builder = tfds.builder_from_directory(data_dir)
        else:
            builder = tfds.builder(name, data_dir=data_dir)
        info = builder.info
        splits = dict(info.splits)
        if not builder.is_prepared() and not splits:
            raise FileNotFoundError("not prepared")
    except Exception as err:  # tfds raises assorted types for a missing or partial directory
        first = (str(err).splitlines() or [type(err).__name__])[0][:150]
        raise DataError(f"{data_dir}: tensorflow-datasets {name} is not prepared there ({first}); "
                        f"prepare it with `tfds build {name} --data_dir={data_dir}` (docs/cnn.md) "
                        "or pass an image folder") from None
    test_split = "validation" if "validation" in splits else "test"
    for split in ("train", test_split):
        if split not in splits:
            raise DataError(f"{data_dir}: tensorflow-datasets {name} has no '{split}' split "
                            f"(it has {sorted(splits)}); prepare it again with `tfds build`")
    num_classes = info.features["label"].num_classes
    return ImageNetData(name, num_classes,
                        ImageSplit(splits["train"].num_examples, tfds_split="train"),
                        ImageSplit(splits[test_split].num_examples, tfds_split=test_split),
                        image_size, builder)


def image_size_for(dataset: str, image_size: int) -> int:
    """`--image_size`, or the dataset's own when 0 (64 for imagenet64, else 224)."""
    return image_size or (64 if dataset == "imagenet64" else 224)


def load(dataset: str, data_dir: str, source: str = "auto",
         image_size: int = 224) -> ImageNetData:
    """`dataset` (a key of TFDS_NAMES) from `data_dir`: a tfds directory, or (`source` 'folder',
    or 'auto' with a train/ directory inside) an image folder."""
    if not data_dir or not tf.io.gfile.isdir(data_dir):
        raise DataError(f"--data_dir={data_dir!r}: data directory not found; pass an image folder "
                        f"(train/, val/) or a directory where `tfds build {TFDS_NAMES[dataset]}` "
                        "prepared the data")
    folder = source == "folder" or (source == "auto" and
                                    tf.io.gfile.isdir(os.path.join(data_dir, "train")))
    return (read_folder(data_dir, image_size) if folder
            else read_tfds(data_dir, TFDS_NAMES[dataset], image_size))


def write_image_folder(root: str | os.PathLike, classes: int = 3, train_per_class: int = 8,
                       val_per_class: int = 2, size: tuple[int, int] = (40, 56),
                       seed: int = 0) -> str:
    """A generated image folder (train/, val/ of `classes` class directories of JPEGs of about
    `size` pixels, each class a colour, plus noise), for tests, demos and benchmarks."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(40, 215, size=(classes, 3))
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = os.path.join(root, split, f"n{c:08d}")
            tf.io.gfile.makedirs(folder)
            for i in range(count):
                shape = (size[0] + 4 * (i % 3), size[1], 3)
                image = np.clip(colours[c] + rng.normal(0, 30, size=shape), 0, 255)
                tf.io.write_file(os.path.join(folder, f"{split}_{c}_{i}.JPEG"),
                                 tf.io.encode_jpeg(image.astype(np.uint8)))
    return os.fspath(root)
