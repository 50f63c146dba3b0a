"""Published CNN cells, by name: `--arch=<name>` trains any of them; `python -m cnn.cells` lists
them with their parameter counts in their CIFAR configuration.

Sources (file and line beside each cell): the authors' own code for ENAS (its final cell),
AmoebaNet-A/B (the TPU release's specs) and PNASNet-5 (TF-slim); the NAO release's `NAO/cnn/dag.py`
(NASNet-A, and its copies of ENAS and AmoebaNet-A/B, kept as `enas_nao`, `amoebanet_a_nao`,
`amoebanet_b_nao`: `dag.py` took TF-slim's hidden-state indices literally, so its AmoebaNets swap
h[i-1] and h[i-2] and concatenate other nodes, and its `ENAS()` is not the release's final cell,
its `ENAS_new()`) and `dag.NAONet.json`; the NAO-WS `train_final.sh`; the NAO_pytorch V1/V2
training scripts (NAONet-A, NAONet-B, NAONet-V2). Here node 0 is h[i-2], node 1 h[i-1], nodes 2..6 the blocks (`dag.py`'s
node_k is node k - 1); op names map to the registry of `cnn.search_space.OPS` (TF-slim's
`separable_kxk_2` is sep_conv_kxk, its `none` identity). Cells that use only the NAO-WS ops are
written with those ids, so that they parse in the NAO-WS space. A DARTS cell has 4 nodes, which
this 5-node space cannot express.

Parameter counts are those of `cnn.model.NASNetwork` (this project's macro network: stem
multiplier 3, reductions after N and 2N + 1 cells), without the aux head, counted from the structure
by `cnn.costs.CostNetwork`; networks of other code bases differ in their stem,
calibration and heads, so the figures they report are given beside ours, not instead of them.
"""

from dataclasses import dataclass
from typing import Sequence

from nao_tf.commands import cli
from nao_tf.common.errors import InvalidArchitectureError
from cnn.costs import CostNetwork
from cnn.search_space import ANY_SPACE, ARCH_LENGTH, CellArch, space_for


@dataclass(frozen=True)
class PublishedCell:
    """A cell pair in the text format of `cnn.search_space`, with the CIFAR N and F it was
    published with."""

    text: str
    num_cells: int  # N, cells per stage
    filters: int  # F
    source: str
    reported: str = ""

    @property
    def arch(self) -> CellArch:
        return ANY_SPACE.parse(self.text)


CELLS: dict[str, PublishedCell] = {
    "nao_ws": PublishedCell(
        "0 1 0 4 2 2 1 3 1 0 2 0 2 3 1 3 1 2 0 4 1 1 0 3 2 3 2 3 1 0 0 1 0 4 2 4 2 3 2 3",
        5, 36, "NAO-WS/cnn/train_final.sh fixed_arc", "2.5M params, 3.53% (NAO paper)"),
    "naonet": PublishedCell(
        "0 7 1 15 2 8 1 7 0 6 1 7 0 8 4 7 1 5 0 7 0 7 1 13 0 6 0 14 1 9 0 10 0 14 2 6 1 11 0 7",
        6, 128, "NAO/cnn/dag.NAONet.json", "128M params, 2.11% (NAO paper)"),
    # NAONet as NAO_pytorch trains it: reduction node 4 reads (h[i-2], h[i-1]) swapped.
    "naonet_a": PublishedCell(
        "0 7 1 15 2 8 1 7 0 6 1 7 0 8 4 7 1 5 0 7 0 7 1 13 0 6 0 14 0 9 1 10 0 14 2 6 1 11 0 7",
        6, 36, "NAO_pytorch NAO_V1/train_NAONet_A_36_cifar10.sh", "2.48% (NAO_V1 README)"),
    "naonet_b": PublishedCell(
        "0 1 0 2 0 1 2 2 1 3 0 2 4 0 1 3 2 1 0 3 1 1 1 0 2 1 2 4 1 0 2 3 3 1 2 2 0 2 0 2",
        6, 36, "NAO_pytorch NAO_V1/train_NAONet_B_36_cifar10.sh (its NAO-WS cell)",
        "2.93% (NAO_V1 README)"),
    "naonet_v2": PublishedCell(
        "1 1 0 1 2 4 0 0 0 0 2 1 0 0 0 2 0 3 0 0 0 2 0 2 2 2 1 0 0 0 0 1 0 0 0 3 0 0 0 1",
        6, 36, "NAO_pytorch NAO_V2/train_NAONet_V2_36_cifar10.sh", "2.57% (NAO_V2 README)"),
    # The authors' own cells (tests/cnn/cells_test.py checks each against its source's text).
    # TF-slim cells (AmoebaNet, PNASNet): hidden state 0 is h[i-1] (after its 1x1 conv), 1 is
    # h[i-2], 2.. the blocks; the output concatenates the states whose `used_hiddenstates` is 0.
    "enas": PublishedCell(
        "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1",
        5, 36, "melodyguan/enas 4bcfd73 scripts/cifar10_micro_final.sh:5-6 fixed_arc "
        "(src/cifar10/micro_child.py:403-470)", "2.89% (ENAS paper)"),
    "amoebanet_a": PublishedCell(
        "1 14 1 11 0 0 0 5 1 5 0 14 1 0 2 1 5 14 1 0 > 0 3 4 6 | "
        "0 0 1 14 1 11 2 16 0 11 1 11 4 0 1 9 0 14 1 16 > 2 3 4 5 6",
        6, 36, "tensorflow/tpu 7dc921f models/official/amoeba_net/model_specs.py:27-32, 59-65 "
        "amoeba_net_a (network_utils.py:321-380)", "3.34% (AmoebaNet paper, N=6 F=36)"),
    "amoebanet_b": PublishedCell(
        "0 6 0 11 0 5 1 0 0 6 1 0 2 6 2 5 0 14 5 6 > 1 3 4 6 | "
        "1 10 1 11 2 5 0 7 2 20 2 11 3 5 0 0 4 14 3 6 > 5 6",
        6, 36, "tensorflow/tpu 7dc921f models/official/amoeba_net/model_specs.py:33-37, 66-71 "
        "amoeba_net_b (network_utils.py:321-380)"),
    "pnasnet": PublishedCell(
        "0 1 0 11 1 16 1 11 1 1 1 0 4 0 1 11 0 0 1 5 > 2 3 4 5 6 | "
        "0 1 0 11 1 16 1 11 1 1 1 0 4 0 1 11 0 0 1 5 > 2 3 4 5 6",
        3, 48, "tensorflow/models research/slim/nets/nasnet/pnasnet.py PNasNetNormalCell "
        "(one cell, stride 2 in the reductions)", "3.41% (PNAS paper, N=3 F=48)"),
    # The NAO release's copies (`dag.py`), which its results used: they read the TF-slim indices
    # literally (0 = h[i-2]) and concatenate the unused nodes.
    "enas_nao": PublishedCell(
        "1 0 1 4 1 1 0 4 0 2 1 0 0 0 1 2 1 1 0 2 0 1 1 2 1 0 1 2 1 2 1 0 4 1 1 2 5 0 0 1",
        5, 36, "NAO/cnn/dag.py ENAS"),
    "amoebanet_a_nao": PublishedCell(
        "0 14 0 11 2 1 0 0 3 14 0 0 1 0 1 5 1 14 0 5 "
        "0 14 1 0 0 11 2 16 0 16 1 14 1 11 0 11 5 0 0 9",
        6, 36, "NAO/cnn/dag.py AmoebaNet_A"),
    "amoebanet_b_nao": PublishedCell(
        "0 0 1 5 1 11 1 6 1 6 0 0 3 5 3 6 1 14 5 6 0 10 0 11 2 20 2 11 2 5 1 7 3 14 4 6 4 5 1 0",
        6, 36, "NAO/cnn/dag.py AmoebaNet_B"),
    # dag.py gives NASNet-A's outputs explicitly (`loose_ends`).
    "nasnet_a": PublishedCell(
        "1 0 1 5 0 0 1 1 1 14 0 5 0 14 0 14 0 1 0 0 > 0 2 3 4 5 6 | "
        "0 16 1 1 1 11 0 16 1 14 0 1 1 11 2 0 2 14 3 5 > 3 4 5 6",
        6, 32, "NAO/cnn/dag.py NASNet_A"),
}


def named_arch(name: str) -> CellArch:
    key = name.strip().lower().replace("-", "_")
    if key not in CELLS:
        raise InvalidArchitectureError(
            f"unknown architecture name {name!r}; known names: {', '.join(sorted(CELLS))} "
            f"(python -m cnn.cells lists them), or give {ARCH_LENGTH} integers, or the path of a "
            "best_arch.json")
    return CELLS[key].arch


def archs() -> dict[str, CellArch]:
    """Every published cell by name, for `--arch` (`nao_tf.algorithm.search_space.load_arch`)."""
    return {name: cell.arch for name, cell in CELLS.items()}


def table() -> str:
    """One line per published cell: name, space, N, F, parameters, source."""
    rows = [("name", "space", "N", "F", "params", "source", "reported")]
    for name, cell in CELLS.items():
        params = CostNetwork("nao_ws", cell.num_cells, cell.filters).costs(cell.arch)["params"]
        rows.append((name, space_for(cell.arch).name, str(cell.num_cells), str(cell.filters),
                     f"{params / 1e6:.2f}M", cell.source, cell.reported))
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)) + "  " + r[-1]
                     for r in rows).rstrip()


def main(argv: Sequence[str]) -> None:
    del argv
    print(table())


if __name__ == "__main__":
    cli.run(main, controller_only=True)
