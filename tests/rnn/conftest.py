"""Fixtures for the RNN tests: a small generated word corpus (no files from outside the repo)."""

from pathlib import Path

import numpy as np
import pytest


def write_corpus(directory: Path, vocab: int = 40, lines: tuple[int, int, int] = (300, 40, 40),
                 seed: int = 0) -> Path:
    """train/valid/test.txt drawn from one sparse Markov chain over `vocab` words (learnable)."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(vocab)]
    successors = rng.integers(0, vocab, size=(vocab, 3))
    directory.mkdir(parents=True, exist_ok=True)
    for split, count in zip(("train", "valid", "test"), lines):
        text = []
        for _ in range(count):
            w = int(rng.integers(vocab))
            sentence = []
            for _ in range(int(rng.integers(4, 12))):
                sentence.append(words[w])
                w = int(successors[w, rng.integers(3)])
            text.append(" " + " ".join(sentence) + " \n")
        (directory / f"{split}.txt").write_text("".join(text))
    return directory


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")
