import subprocess
import sys

import numpy as np
import pytest

from nao_tf.common.errors import DataError
from rnn.data import EOS, batchify, get_batch, read_corpus, split_file


def _write(directory, train, valid, test):
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (directory / f"{name}.txt").write_text(text)
    return directory


def test_shared_vocabulary_in_order_of_first_appearance(tmp_path):
    corpus = read_corpus(_write(tmp_path, " a b \n\n b c\n", "c d\n", "e a\n"))
    assert corpus.words == ["a", "b", EOS, "c", "d", "e"]
    # Every line ends with <eos>, the empty one too.
    assert corpus.train.tolist() == [0, 1, 2, 2, 1, 3, 2]
    assert corpus.valid.tolist() == [3, 4, 2]
    assert corpus.test.tolist() == [5, 0, 2]
    assert corpus.train.dtype == np.int32


def test_missing_files_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(DataError, match="directory not found.*get_data.sh"):
        read_corpus(tmp_path / "nowhere")
    _write(tmp_path, "a\n", "b\n", "c\n")
    (tmp_path / "valid.txt").unlink()
    with pytest.raises(DataError, match=r"valid\.txt: file not found.*rnn\.data split"):
        read_corpus(tmp_path)


def test_malformed_files_name_file_and_line(tmp_path):
    _write(tmp_path, "a b\n", "b\n", "c\n")
    (tmp_path / "train.txt").write_bytes(b"good line\nbad \xff\xfe line\n")
    with pytest.raises(DataError, match=r"train\.txt:2: not UTF-8"):
        read_corpus(tmp_path)
    (tmp_path / "train.txt").write_bytes(b"a\n\x00\x01\n")
    with pytest.raises(DataError, match=r"train\.txt:2: contains a NUL byte"):
        read_corpus(tmp_path)
    (tmp_path / "train.txt").write_text("\n \n")
    with pytest.raises(DataError, match=r"train\.txt: holds no words"):
        read_corpus(tmp_path)


def test_batchify_is_time_major_and_get_batch_clips():
    data = batchify(np.arange(23, dtype=np.int32), 4)
    assert data.shape == (5, 4)
    assert data[:, 1].tolist() == [5, 6, 7, 8, 9]  # column b is the b-th contiguous slice
    x, y = get_batch(data, 2, 35)
    assert x.tolist() == data[2:4].tolist() and y.tolist() == data[3:5].tolist()
    with pytest.raises(DataError, match="train.txt: 100 tokens are too few for batch size 64"):
        batchify(np.arange(100), 64, "train.txt")


def test_split_file_writes_three_splits(tmp_path):
    src = tmp_path / "all.txt"
    src.write_text("".join(f"line {i}\n" for i in range(20)))
    counts = split_file(src, tmp_path / "out")
    assert counts == {"train": 16, "valid": 2, "test": 2}
    corpus = read_corpus(tmp_path / "out")
    assert len(corpus.train) + len(corpus.valid) + len(corpus.test) == 60


@pytest.mark.slow
def test_cli_reports_missing_input_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "rnn.data", "split", f"--input={tmp_path}/none.txt",
         f"--output_dir={tmp_path}/out"], capture_output=True, text=True, cwd=_repo_root())
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: {tmp_path}/none.txt: file not found"


def _repo_root():
    from pathlib import Path
    return Path(__file__).resolve().parents[2]


def test_download_checks_md5_sums(tmp_path, monkeypatch):
    import hashlib

    from rnn import data
    src = tmp_path / "src"
    src.mkdir()
    sums = {}
    for split in ("train", "valid", "test"):
        (src / f"ptb.{split}.txt").write_text(f" {split} words here \n")
        sums[split] = hashlib.md5((src / f"ptb.{split}.txt").read_bytes()).hexdigest()
    monkeypatch.setattr(data, "_PTB_URL", f"file://{src}/ptb.{{split}}.txt")
    monkeypatch.setattr(data, "_PTB_MD5", sums)
    out = data.download("ptb", tmp_path / "data")
    assert read_corpus(out).words[:2] == ["train", "words"]
    monkeypatch.setattr(data, "_PTB_MD5", dict(sums, valid="0" * 32))
    with pytest.raises(DataError, match="could not download .*ptb.valid.txt"):
        data.download("ptb", tmp_path / "data2")
