import numpy as np
import pytest

from cnn.cells import CELLS
from cnn.costs import FINAL_NETWORKS, CostNetwork
from cnn.model import NASNetwork, count_mult_adds, count_params
from cnn.search_space import ANY_SPACE, OPS


def _cells(seed: int) -> list:
    """Two random cells of every op (dilated convs, 1xk + kx1, pools, identities) and NASNet-A,
    whose outputs are given explicitly."""
    rng = np.random.default_rng(seed)
    return [ANY_SPACE.sample(rng), ANY_SPACE.sample(rng), CELLS["nasnet_a"].arch]


@pytest.mark.parametrize("network,image_size", [("nao_ws", 30), ("nao", 32), ("imagenet", 72)])
def test_costs_are_the_built_networks_counts(network, image_size):
    """Odd sizes (30 -> 15 -> 8; 72 -> 9 -> 5 -> 3) exercise the padded reductions."""
    cells = _cells(seed=len(network))
    assert any(OPS[op].dilation > 1 for arch in cells for op in arch.op_ids())
    counted = CostNetwork(network, 1, 8, num_classes=10, image_size=image_size)
    for arch in cells:
        model = NASNetwork(arch, 1, 8, 10, use_aux_head=False, image_size=image_size,
                           network=network)
        model.build_now()
        assert counted.costs(arch) == {"params": count_params(model),
                                       "mult_adds": count_mult_adds(model)}


def test_naonet_a_in_the_imagenet_mobile_network_costs_what_the_original_counts():
    """The PyTorch original's counts (tests/cnn/model_test.py), from the structure alone."""
    costs = FINAL_NETWORKS["imagenet"].costs(CELLS["naonet_a"].arch)
    assert costs == {"params": 11_353_831, "mult_adds": 1_243_996_992}


def test_thousands_of_cells_are_counted_without_building_anything():
    rng = np.random.default_rng(0)
    archs = ANY_SPACE.sample_unique(1000, rng)
    costs = [FINAL_NETWORKS["nao_ws"].costs(a) for a in archs]
    assert len({c["params"] for c in costs}) > 100
    assert all(c["mult_adds"] > c["params"] > 0 for c in costs)
