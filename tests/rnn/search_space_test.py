import json

import numpy as np
import pytest

from nao_tf.common.errors import InvalidArchitectureError
from rnn.search_space import (ACTIVATIONS, NAMED_ARCHS, RnnSearchSpace, convert_nao_codes,
                              resolve_arch)

SPACE = RnnSearchSpace()


def test_sizes_follow_the_original_controller():
    assert (SPACE.vocab_size, SPACE.source_length, SPACE.encoder_length, SPACE.fold) == \
        (16, 22, 11, 2)
    assert ACTIVATIONS == ("tanh", "relu", "sigmoid", "identity")


def test_published_cells_in_the_project_table():
    nao = SPACE.parse(NAMED_ARCHS["NAO"])
    assert nao.predecessors == (0, 0, 1, 3, 4, 4, 5, 1, 7, 1, 1)
    assert nao.activations == ("relu", "relu", "relu", "tanh", "relu", "relu", "relu", "relu",
                               "relu", "relu", "identity")
    ws = SPACE.parse(NAMED_ARCHS["NAO_WS"])
    assert ws.predecessors == (0, 1, 2, 1, 4, 4, 4, 7, 8, 1, 4)
    assert ws.activations == ("relu", "relu", "sigmoid", "sigmoid", "relu", "relu", "relu",
                              "relu", "sigmoid", "tanh", "relu")


def test_nao_code_table_conversion_swaps_2_and_3():
    assert convert_nao_codes("0 2 1 3" + " 0 0" * 9) == "0 3 1 2" + " 0 0" * 9
    cell, _ = resolve_arch("0 1 0 1 1 1 3 0 4 1 4 1 5 1 1 1 7 1 1 1 1 2", nao_codes=True)
    assert SPACE.to_string(cell) == NAMED_ARCHS["NAO"]


def test_tokens_round_trip_and_mask_accepts_samples():
    rng = np.random.default_rng(0)
    mask = SPACE.valid_token_mask()
    for _ in range(50):
        arch = SPACE.sample(rng)
        tokens = SPACE.to_tokens(arch)
        assert all(mask[k, t] for k, t in enumerate(tokens))
        assert SPACE.from_tokens(tokens) == arch
        assert SPACE.parse(SPACE.to_string(arch)) == arch
    assert SPACE.to_tokens(SPACE.parse(NAMED_ARCHS["NAO_WS"]))[:4] == (1, 13, 2, 13)
    assert mask[0].nonzero()[0].tolist() == [1] and mask[20].nonzero()[0].tolist() == list(
        range(1, 12))


@pytest.mark.parametrize("text, fragment", [
    ("0 1 0 1", "22 integers"),
    ("0 1 " * 10 + "0 x", "only integers"),
    ("0 1 2 1" + " 0 0" * 9, "node 2: predecessor 2"),
    ("0 4" + " 0 0" * 10, "activation code 4"),
])
def test_invalid_strings_give_one_clear_message(text, fragment):
    with pytest.raises(InvalidArchitectureError, match=fragment):
        resolve_arch(text)


def test_invalid_tokens_name_the_position():
    tokens = list(SPACE.to_tokens(SPACE.parse(NAMED_ARCHS["NAO"])))
    tokens[2] = 5  # node 2 may only read s_0 or s_1
    with pytest.raises(InvalidArchitectureError, match="position 2"):
        SPACE.from_tokens(tokens)


def test_resolve_names_and_best_arch_json(tmp_path):
    assert resolve_arch("nao_ws")[0] == SPACE.parse(NAMED_ARCHS["NAO_WS"])
    path = tmp_path / "best_arch.json"
    path.write_text(json.dumps({"space": "nao_rnn", "arch": NAMED_ARCHS["NAO"], "score": 4.1,
                                "description": "x"}))
    assert resolve_arch(str(path))[0] == SPACE.parse(NAMED_ARCHS["NAO"])
    path.write_text(json.dumps({"space": "nao_cnn", "arch": "0 0", "score": 1.0}))
    with pytest.raises(InvalidArchitectureError, match="space 'nao_cnn'"):
        resolve_arch(str(path))
    with pytest.raises(InvalidArchitectureError, match="not found"):
        resolve_arch(str(tmp_path / "missing.json"))


def test_canonical_key_identifies_renumbered_cells():
    # Nodes 1 and 2 both read s_0; swapping them (and their readers) is the same cell.
    a = SPACE.parse("0 1 0 0 1 2 2 3" + " 0 0" * 7)
    b = SPACE.parse("0 0 0 1 2 2 1 3" + " 0 0" * 7)
    c = SPACE.parse("0 0 0 1 1 2 2 3" + " 0 0" * 7)
    assert SPACE.canonical_key(a) == SPACE.canonical_key(b)
    assert SPACE.canonical_key(a) != SPACE.canonical_key(c)
