"""ImageNet-like data (a generated JPEG folder, a tiny tensorflow-datasets directory) and the
ImageNet network's final training."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from cnn import imagenet, train_final
from nao_tf.common.errors import DataError, NaoError

SMALL = ["--config=imagenet_mobile", "--image_size=32", "--use_aux_head=false", "--num_cells=1",
         "--filters=8", "--batch_size=8", "--eval_batch_size=8", "--log_every_steps=1",
         "--seed=1"]


@pytest.fixture
def folder(tmp_path):
    return Path(imagenet.write_image_folder(tmp_path / "images"))


def _tfds_dir(root: Path) -> Path:
    """A prepared tensorflow-datasets directory of 3 classes (24 training, 6 validation JPEGs),
    written as `tfds build` leaves one: TFRecord shards plus dataset_info.json."""
    import tensorflow_datasets as tfds

    root.mkdir(parents=True)
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "label": tfds.features.ClassLabel(num_classes=3)})
    rng = np.random.default_rng(0)
    infos = []
    for split, n in (("train", 24), ("validation", 6)):
        with tf.io.TFRecordWriter(str(root / f"tiny-{split}.tfrecord-00000-of-00001")) as w:
            for i in range(n):
                image = rng.integers(0, 255, size=(36 + i % 5, 44, 3), dtype=np.uint8)
                w.write(features.serialize_example({"image": image, "label": i % 3}))
        infos.append(tfds.core.SplitInfo(name=split, shard_lengths=[n], num_bytes=0))
    tfds.folder_dataset.write_metadata(
        data_dir=str(root), features=features, split_infos=infos,
        filename_template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}")
    return root


def _train(*argv):
    values = flags.FlagValues()
    train_final.define_flags(values)
    values(["prog", *SMALL, *argv])
    return train_final.train(values)


def test_the_training_stream_resumes_at_any_step_and_evaluation_reads_every_image(folder):
    data = imagenet.load("imagenet", str(folder), image_size=32)
    assert (data.num_classes, len(data.train), len(data.test)) == (3, 24, 6)
    stream = [batch for batch, _ in zip(data.train_dataset(8, seed=1), range(6))]
    assert stream[0][0].shape == (8, 32, 32, 3) and stream[0][0].dtype == tf.float32
    resumed = next(iter(data.train_dataset(8, seed=1, start_step=4)))  # pass 1, its second batch
    np.testing.assert_array_equal(resumed[0], stream[4][0])
    np.testing.assert_array_equal(resumed[1], stream[4][1])
    # A pass reads every training image once.
    assert sorted(np.concatenate([b[1] for b in stream[:3]])) == sorted(data.train.labels)
    evaluated = [(x.shape[1:], y) for x, y in data.eval_datasets(4)["test"]]
    assert {s for s, _ in evaluated} == {(32, 32, 3)}
    assert sorted(np.concatenate([y for _, y in evaluated])) == sorted(data.test.labels)


def _pipelines_of(data, step, seed, pipelines=2):
    """Each input pipeline's first batch from `step` on, as `distribute_datasets_from_function`
    builds them for `pipelines` workers of one replica each."""
    return [next(iter(data.train_dataset(8, seed=seed, start_step=step,
                                         input_context=tf.distribute.InputContext(
                                             pipelines, i, pipelines))))
            for i in range(pipelines)]


def test_each_worker_reads_its_share_and_together_they_read_the_global_batch(folder):
    """Across machines each worker reads and decodes only its half of every global batch; in
    worker order the halves are the one-process batch of the same step, resumed or not."""
    data = imagenet.load("imagenet", str(folder), image_size=32)
    stream = [batch for batch, _ in zip(data.train_dataset(8, seed=1), range(5))]
    for step in (0, 4):  # 4: a resumed run's first step, in the second pass
        halves = _pipelines_of(data, step, seed=1)
        assert [h[0].shape[0] for h in halves] == [4, 4]
        np.testing.assert_array_equal(np.concatenate([h[0] for h in halves]), stream[step][0])
        np.testing.assert_array_equal(np.concatenate([h[1] for h in halves]), stream[step][1])


@pytest.mark.slow
def test_a_tfds_directory_trains_evaluates_and_resumes_its_stream(tmp_path):
    directory = _tfds_dir(tmp_path / "tiny" / "1.0.0")
    data = imagenet.load("imagenet", str(directory), image_size=32)
    assert (data.num_classes, len(data.train), len(data.test)) == (3, 24, 6)
    stream = [batch for batch, _ in zip(data.train_dataset(8, seed=2), range(5))]
    resumed = next(iter(data.train_dataset(8, seed=2, start_step=4)))  # pass 1, its second batch
    np.testing.assert_array_equal(resumed[0], stream[4][0])
    assert sorted(np.concatenate([b[1] for b in stream[:3]])) == [0] * 8 + [1] * 8 + [2] * 8
    halves = _pipelines_of(data, 4, seed=2)  # each worker decodes its half of the global batch
    np.testing.assert_array_equal(np.concatenate([h[0] for h in halves]), stream[4][0])
    out = tmp_path / "run"
    results = _train(f"--data_dir={directory}", "--epochs=1", f"--output_dir={out}")
    assert results["num_train_images"] == 24 and results["steps"] == 3
    record = results["history"][-1]
    assert 0 <= record["test_accuracy"] <= record["test_top5"] <= 1
    assert json.loads((out / "results.json").read_text())["test_top5"] == record["test_top5"]


def test_a_corrupt_jpeg_stops_training_with_one_error_naming_it(folder, tmp_path):
    bad = folder / "train" / "n00000001" / "train_1_3.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(DataError, match=f"{bad}: not a readable image"):
        _train(f"--data_dir={folder}", "--epochs=1", f"--output_dir={tmp_path / 'run'}")


@pytest.mark.parametrize("content, reason", [
    (b"\xff\xd8\xff\xe0 not a jpeg", "Invalid JPEG data"),
    (b"GIF? no", "Unknown image file format"),
    ("truncated", "Invalid JPEG data")])
def test_a_corrupt_validation_image_is_named_before_the_first_step(folder, tmp_path, content,
                                                                   reason, capfd):
    bad = sorted((folder / "val").rglob("*.JPEG"))[3]
    whole = bad.read_bytes()
    bad.write_bytes(whole[:len(whole) // 2] if content == "truncated" else content)
    capfd.readouterr()
    with pytest.raises(DataError) as raised:
        _train(f"--data_dir={folder}", "--epochs=1", f"--output_dir={tmp_path / 'run'}")
    message = str(raised.value)
    assert message.startswith(f"{bad}: not a readable image (") and reason in message
    assert not any(tf_context in message for tf_context in ("Op:", "{{", "name:"))
    assert not (tmp_path / "run").exists()  # found before anything was written, or trained
    assert "jpeg_mem.cc" not in capfd.readouterr().err  # the decoder's own lines held back


def test_a_missing_split_is_one_error_before_anything_is_written(folder, tmp_path):
    for path in (folder / "val").rglob("*"):
        if path.is_file():
            path.unlink()
    for path in sorted((folder / "val").rglob("*"), reverse=True):
        path.rmdir()
    (folder / "val").rmdir()
    with pytest.raises(DataError, match="val: split not found"):
        _train(f"--data_dir={folder}", f"--output_dir={tmp_path / 'run'}")
    assert not (tmp_path / "run").exists()
    with pytest.raises(DataError, match="tensorflow-datasets imagenet2012 is not prepared"):
        _train(f"--data_dir={tmp_path}", "--data_source=tfds", f"--output_dir={tmp_path / 'x'}")


def test_the_imagenet_network_trains_only_on_imagenet_like_sets(tmp_path):
    with pytest.raises(NaoError, match="the ImageNet-like sets train the ImageNet network"):
        _train("--dataset=cifar10", f"--output_dir={tmp_path}")
    with pytest.raises(NaoError, match="pass --use_aux_head=false"):
        _train("--use_aux_head=true", f"--output_dir={tmp_path}")
    for flag in ("--split=search", "--cutout_size=16"):
        with pytest.raises(NaoError, match=r"\(--split=final\), without cutout"):
            _train(flag, f"--output_dir={tmp_path}")
    with pytest.raises(NaoError, match="--gamma=0.0 must be positive"):
        _train("--gamma=0", f"--output_dir={tmp_path}")
    with pytest.raises(flags.IllegalFlagValueError, match="--decay_period=0: 0 is not a positive"):
        _train("--decay_period=0", f"--output_dir={tmp_path}")
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_naonet_a_at_224_traces_its_train_step_once():
    from cnn.cells import named_arch
    from cnn.model import NASNetwork
    from cnn.training import OptimConfig, Trainer

    cfg = OptimConfig(epochs=1, steps_per_epoch=2, lr_schedule="step", lr_max=0.1,
                      label_smoothing=0.1, l2_reg=1.5e-5, nesterov=False)
    trainer = Trainer(tf.distribute.get_strategy(), lambda: NASNetwork(
        named_arch("naonet_a"), 4, 42, 1000, use_aux_head=True, image_size=224,
        drop_path_keep_prob=0.9, network="imagenet"), cfg, 2)
    rng = np.random.default_rng(0)
    for _ in range(2):
        stats = trainer.train_step(tf.constant(rng.normal(size=(2, 224, 224, 3)), tf.float32),
                                   tf.constant([1, 999]))
        assert np.isfinite(stats["loss"])
    assert trainer.train_tracing_count == 1


def test_data_on_a_tensorflow_file_system_reads_as_local_data():
    """--data_dir on a file system TensorFlow reads (gs:// on a cluster; its in-memory ram://
    here): an image folder and CIFAR python-pickle batches."""
    import pickle

    from cnn import data as data_lib

    folder = imagenet.write_image_folder("ram://imagenet_test/images", train_per_class=4)
    data = imagenet.load("imagenet", folder, image_size=32)
    assert (data.num_classes, len(data.train), len(data.test)) == (3, 12, 6)
    images, labels = next(iter(data.train_dataset(4, seed=1)))
    assert images.shape == (4, 32, 32, 3) and labels.shape == (4,)

    rng = np.random.default_rng(0)
    batch = {b"data": rng.integers(0, 255, size=(20, 3072), dtype=np.uint8),
             b"labels": list(rng.integers(0, 10, size=20))}
    for name in ("data_batch_1", "test_batch"):
        with tf.io.gfile.GFile(f"ram://imagenet_test/cifar/{name}", "wb") as f:
            f.write(pickle.dumps(batch))
    cifar = data_lib.load("cifar10", "ram://imagenet_test/cifar")
    assert len(cifar.train) == len(cifar.test) == 20
