import json

import numpy as np
import pytest

from cnn.cells import CELLS, archs, named_arch
from cnn.search_space import (ANY_SPACE, NAO_WS_SPACE, NAONET_19_SPACE, NAONET_SPACE, OPS,
                              space_for)
from nao_tf.algorithm.search_space import load_arch
from nao_tf.common.errors import InvalidArchitectureError

NAO_WS = CELLS["nao_ws"].text

# `NAO/cnn/epd/vocab.py` VOCAB1 of the TF NAO release, after <sos> and node_1..node_6.
VOCAB1_OPS = ["identity", "sep_conv 3x3", "sep_conv 5x5", "sep_conv 7x7", "avg_pool 2x2",
              "avg_pool 3x3", "avg_pool 5x5", "max_pool 2x2", "max_pool 3x3", "max_pool 5x5",
              "max_pool 7x7", "min_pool 2x2", "conv 1x1", "conv 3x3", "conv 1x3+3x1",
              "conv 1x7+7x1", "dil_sep_conv 3x3", "dil_sep_conv 5x5", "dil_sep_conv 7x7"]


def test_named_archs_round_trip_and_pick_their_space():
    assert space_for(named_arch("nao_ws")) is NAO_WS_SPACE
    assert space_for(named_arch("NAONet")) is NAONET_SPACE
    assert space_for(named_arch("naonet-a")) is NAONET_SPACE
    assert space_for(named_arch("enas")) is NAO_WS_SPACE
    assert space_for(named_arch("amoebanet_b_nao")) is NAONET_19_SPACE
    for cell in CELLS.values():
        assert ANY_SPACE.to_string(ANY_SPACE.parse(cell.text)) == cell.text


def test_naonet_19_space_has_the_tf_release_vocabulary_in_its_order():
    assert NAONET_19_SPACE.vocab_size == 7 + len(VOCAB1_OPS) == 26
    names = [OPS[op].name for op in NAONET_19_SPACE.op_ids]
    assert names == [v.replace(" ", "_").replace("+", "_") for v in VOCAB1_OPS]
    arch = named_arch("amoebanet_b_nao")
    assert NAONET_19_SPACE.from_tokens(NAONET_19_SPACE.to_tokens(arch)) == arch


def test_explicit_cell_outputs_as_dag_py_loose_ends():
    nasnet = named_arch("nasnet_a")
    # dag.py NASNet_A: conv loose_ends node_1, node_3..node_7; reduc node_4..node_7.
    assert nasnet.normal.loose_ends() == (0, 2, 3, 4, 5, 6)
    assert nasnet.reduction.loose_ends() == (3, 4, 5, 6)
    assert "output = concat[0, 2, 3, 4, 5, 6]" in ANY_SPACE.describe(nasnet)
    plain = ANY_SPACE.parse(ANY_SPACE.to_string(nasnet).replace("> 0 2 3 4 5 6", ""))
    assert plain.normal.loose_ends() == (2, 3, 4, 5, 6)
    assert ANY_SPACE.canonical_key(plain) != ANY_SPACE.canonical_key(nasnet)
    with pytest.raises(InvalidArchitectureError, match="no controller encoding"):
        ANY_SPACE.to_tokens(nasnet)
    normal, reduction = CELLS["nasnet_a"].text.split("|")
    with pytest.raises(InvalidArchitectureError, match="separates its two cells with '|'"):
        ANY_SPACE.parse(normal + reduction)
    with pytest.raises(InvalidArchitectureError, match=r"outputs \[3, 2\] must be increasing"):
        ANY_SPACE.parse(normal + "|" + reduction.replace("> 3 4 5 6", "> 3 2"))


def test_nao_ws_cell_matches_the_published_description():
    arch = NAO_WS_SPACE.parse(NAO_WS)
    assert arch.normal.loose_ends() == (3, 4, 5, 6)
    assert arch.reduction.loose_ends() == (3, 4, 5, 6)
    text = NAO_WS_SPACE.describe(arch)
    assert "node 2 = sep_conv_5x5(0) + identity(0)" in text
    assert "node 4 = sep_conv_3x3(1) + sep_conv_5x5(0)" in text


def test_naonet_matches_the_json_dag_and_differs_from_pt_string_in_one_node():
    naonet, naonet_a = named_arch("naonet"), named_arch("naonet_a")
    assert naonet.normal.loose_ends() == (3, 5, 6)  # node_4, node_6, node_7 of the JSON
    assert naonet.reduction.loose_ends() == (3, 4, 5, 6)
    assert naonet.normal == naonet_a.normal
    diff = [i for i, (a, b) in enumerate(zip(naonet.reduction.nodes, naonet_a.reduction.nodes))
            if a != b]
    a, b = naonet.reduction.nodes[2], naonet_a.reduction.nodes[2]
    assert diff == [2] and (a.op1, a.op2) == (b.op1, b.op2) and (a.in1, a.in2) == (b.in2, b.in1)
    assert OPS[a.op1].name == "conv_1x7_7x1" and a.in1 == 1  # on node_2 = h[i-1], as the JSON


def test_tokens_round_trip_with_the_original_vocabulary():
    assert (NAO_WS_SPACE.vocab_size, NAO_WS_SPACE.source_length, NAO_WS_SPACE.encoder_length) == \
        (12, 40, 20)
    arch = NAO_WS_SPACE.parse(NAO_WS)
    tokens = NAO_WS_SPACE.to_tokens(arch)
    assert tokens[:4] == (1, 8, 1, 11)  # in 0 -> 1, sep5 (op 1) -> 8, identity (op 4) -> 11
    assert NAO_WS_SPACE.from_tokens(tokens) == arch
    naonet = named_arch("naonet")
    assert NAONET_SPACE.from_tokens(NAONET_SPACE.to_tokens(naonet)) == naonet


@pytest.mark.parametrize("space", [NAO_WS_SPACE, NAONET_SPACE])
def test_sampled_archs_respect_the_token_mask(space):
    rng = np.random.default_rng(0)
    archs = space.sample_unique(50, rng)
    tokens = space.encode(archs)
    mask = space.valid_token_mask()
    assert mask[np.arange(40)[None, :], tokens].all()
    assert space.decode(tokens) == archs
    assert not mask[0, 3] and mask[0, 2]  # node 2 reads inputs 0..1 only
    assert mask[16, 6] and not mask[1, 1]


def test_symmetry_rewrite_keeps_the_network_and_changes_the_tokens():
    space = NAO_WS_SPACE
    rng = np.random.default_rng(1)
    archs = space.sample_unique(20, rng)
    tokens = space.encode(archs)
    swapped = space.random_equivalent(tokens, rng)
    assert (swapped != tokens).any()
    for original, rewritten in zip(archs, space.decode(swapped)):
        assert space.canonical_key(original) == space.canonical_key(rewritten)
    assert len(space.symmetry_groups()) == 2
    assert all(g.shape == (5, 40) for g in space.symmetry_groups())


@pytest.mark.parametrize("text, message", [
    ("0 1 0 4", "got 4 integers, expected 40"),
    (NAO_WS.replace("0 1 0 4", "0 x 0 4", 1), "'x' is not an integer"),
    (NAO_WS.replace("0 1 0 4", "2 1 0 4", 1), "input 2 does not exist yet"),
    (NAO_WS.replace("0 1 0 4", "0 9 0 4", 1), "op 9 is not in this space"),
])
def test_malformed_strings_raise_clear_errors(text, message):
    with pytest.raises(InvalidArchitectureError, match=message):
        NAO_WS_SPACE.parse(text)


def test_load_arch_accepts_names_strings_and_best_arch_json(tmp_path):
    path = tmp_path / "best_arch.json"
    path.write_text(json.dumps({"space": "nao_ws", "arch": NAO_WS, "score": 0.9,
                                "description": ""}))
    def load(text):
        return load_arch(ANY_SPACE, text, archs())[0]

    assert load(str(path)) == load("NAO_WS") == load("nao-ws") == load(NAO_WS)
    with pytest.raises(InvalidArchitectureError, match="unknown architecture name 'darts'; give "
                       "a name .*amoebanet_a"):
        load("darts")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"arch": 3}))
    with pytest.raises(InvalidArchitectureError, match="'arch' string"):
        load(str(bad))
