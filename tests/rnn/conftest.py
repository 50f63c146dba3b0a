"""Fixtures for the RNN tests: a small generated word corpus (no files from outside the repo)."""

from pathlib import Path

import pytest

from rnn.data import write_generated_corpus


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """train/valid/test.txt of 300/40/40 sentences from a sparse Markov chain over 40 words."""
    return write_generated_corpus(tmp_path / "corpus", seed=0, vocab=40, lines=(300, 40, 40))
