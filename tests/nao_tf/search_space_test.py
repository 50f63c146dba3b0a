"""The space registry (`load_space`) and the one `--arch` reader (`load_arch`)."""

import json

import pytest

from nao_tf.algorithm.search_space import load_arch, load_space
from nao_tf.common.errors import InvalidArchitectureError
from nao_tf.spaces.nasbench201 import NasBench201Space
from nao_tf.spaces.synthetic import SyntheticSpace


def test_a_space_by_name_or_factory_and_one_line_for_anything_else():
    assert isinstance(load_space("nasbench201"), NasBench201Space)
    assert isinstance(load_space("nao_tf.spaces.synthetic:SyntheticSpace"), SyntheticSpace)
    with pytest.raises(InvalidArchitectureError, match="'json:dumps' is not a SearchSpace or a "
                                                       "factory of one called without arguments"):
        load_space("json:dumps")
    with pytest.raises(InvalidArchitectureError, match="did not give a SearchSpace"):
        load_space("json:JSONDecoder")
    with pytest.raises(InvalidArchitectureError, match="cannot load search space"):
        load_space("no_such_module:Space")


def test_load_arch_reads_names_the_text_form_and_best_arch_json(tmp_path):
    space = NasBench201Space()
    text = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|" \
           "skip_connect~2|"
    arch = space.parse(text)
    best = tmp_path / "best_arch.json"
    best.write_text(json.dumps({"space": space.name, "arch": text, "description": "d"}))
    assert load_arch(space, text)[0] == arch
    assert load_arch(space, "Best-Cell", {"best_cell": arch}) == (arch, "best_cell")
    assert load_arch(space, str(best))[0] == arch
    with pytest.raises(InvalidArchitectureError, match="missing.json: file not found"):
        load_arch(space, str(tmp_path / "missing.json"))
    best.write_text(json.dumps({"space": "other", "arch": "0 1"}))
    with pytest.raises(InvalidArchitectureError, match="written for space 'other'"):
        load_arch(space, str(best))
    with pytest.raises(InvalidArchitectureError, match="unknown architecture name 'resnet'"):
        load_arch(space, "resnet", {"best_cell": arch})
