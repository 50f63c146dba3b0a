"""The NAO recurrent-cell search space: 11 nodes, each one predecessor and one activation.

A cell has the states s_0 (from x_t and h_{t-1}) and 11 nodes s_1..s_11. Node i (1..11) reads one
predecessor s_{p_i}, p_i in {0..i-1}, and applies one activation f_i; the cell output h_t is the
mean of s_1..s_11 (see `rnn.model`). The text format is the original's 22 integers
`p_1 a_1 p_2 a_2 ... p_11 a_11`.

Activation codes. The original's two code bases disagree on codes 2 and 3 (NAO/rnn reads 2 as
identity and 3 as sigmoid, NAO-WS/rnn the other way round). This project has ONE table,
`ACTIVATIONS` (the NAO-WS order: 0 tanh, 1 relu, 2 sigmoid, 3 identity), and both published cells
are stored re-expressed in it. `convert_nao_codes` rewrites a string written for the NAO (no weight
sharing) code base into this table.

Controller tokens (vocabulary 16): 0 is the decoder's <sos>; predecessor p is token p + 1 (1..11);
activation a is token a + 12 (12..15). The sequence alternates node and activation tokens (22 in
all) and the encoder folds each (node, activation) pair into one step (11 steps).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

import numpy as np

from nao_tf.algorithm.search_space import SearchSpace, load_arch
from nao_tf.common.errors import InvalidArchitectureError

if TYPE_CHECKING:
    from nao_tf.algorithm.draw import CellGraph

NUM_NODES = 11
ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")
NODE_TOKEN_OFFSET = 1
ACTIVATION_TOKEN_OFFSET = 12
VOCAB_SIZE = ACTIVATION_TOKEN_OFFSET + len(ACTIVATIONS)

# The NAO (no weight sharing) code base's activation codes, mapped to this project's codes.
_NAO_CODE_TO_PROJECT = {0: 0, 1: 1, 2: 3, 3: 2}


@dataclasses.dataclass(frozen=True)
class RnnCell:
    """A fixed recurrent cell: `nodes[i-1] = (p_i, a_i)` for node s_i, codes in `ACTIVATIONS`."""

    nodes: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if len(self.nodes) != NUM_NODES:
            raise InvalidArchitectureError(
                f"an RNN cell has {NUM_NODES} nodes, got {len(self.nodes)}")
        for i, (pred, act) in enumerate(self.nodes, 1):
            if not 0 <= pred < i:
                raise InvalidArchitectureError(
                    f"node {i}: predecessor {pred} is out of range; node {i} may read "
                    f"s_0..s_{i - 1} (predecessor 0..{i - 1})")
            if not 0 <= act < len(ACTIVATIONS):
                raise InvalidArchitectureError(
                    f"node {i}: activation code {act} is out of range; codes are "
                    + ", ".join(f"{c}={n}" for c, n in enumerate(ACTIVATIONS)))

    @property
    def activations(self) -> tuple[str, ...]:
        return tuple(ACTIVATIONS[a] for _, a in self.nodes)

    @property
    def predecessors(self) -> tuple[int, ...]:
        return tuple(p for p, _ in self.nodes)


def _parse_ints(text: str) -> list[int]:
    parts = text.split()
    if len(parts) != 2 * NUM_NODES:
        raise InvalidArchitectureError(
            f"an RNN arch string has {2 * NUM_NODES} integers 'p1 a1 ... p11 a11', got "
            f"{len(parts)} in {text!r}")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise InvalidArchitectureError(
            f"an RNN arch string holds only integers, got {text!r}") from None


def cell_from_ints(values: Sequence[int]) -> RnnCell:
    return RnnCell(tuple((int(values[2 * k]), int(values[2 * k + 1])) for k in range(NUM_NODES)))


def convert_nao_codes(text: str) -> str:
    """Rewrites a 22-int string of the NAO (no-WS) code base (2=identity, 3=sigmoid) into
    this project's table (2=sigmoid, 3=identity)."""
    values = _parse_ints(text)
    for k in range(1, len(values), 2):
        if values[k] not in _NAO_CODE_TO_PROJECT:
            raise InvalidArchitectureError(
                f"activation code {values[k]} at position {k} is out of range 0..3 in {text!r}")
        values[k] = _NAO_CODE_TO_PROJECT[values[k]]
    return " ".join(str(v) for v in values)


# The published cells, in this project's code table.
# NAO (train_ptb_final.sh, NAO code table: 0 1 0 1 1 1 3 0 4 1 4 1 5 1 1 1 7 1 1 1 1 2).
# NAO-WS (NAO-WS/rnn/train_final.sh, written in the NAO-WS table, which is this project's table).
NAMED_ARCHS: dict[str, str] = {
    "NAO": convert_nao_codes("0 1 0 1 1 1 3 0 4 1 4 1 5 1 1 1 7 1 1 1 1 2"),
    "NAO_WS": "0 1 1 1 2 2 1 2 4 1 4 1 4 1 7 1 8 2 1 0 4 1",
}


class RnnSearchSpace(SearchSpace[RnnCell]):
    """NAO's recurrent-cell space (11!·4^11 ≈ 1.67e14 cells), tokens as in the NAO-WS controller."""

    name = "nao_rnn"
    vocab_size = VOCAB_SIZE
    source_length = 2 * NUM_NODES
    encoder_length = NUM_NODES

    def valid_token_mask(self) -> np.ndarray:
        mask = np.zeros((self.source_length, self.vocab_size), dtype=bool)
        for k in range(NUM_NODES):
            mask[2 * k, NODE_TOKEN_OFFSET:NODE_TOKEN_OFFSET + k + 1] = True
            mask[2 * k + 1, ACTIVATION_TOKEN_OFFSET:] = True
        return mask

    def sample(self, rng: np.random.Generator) -> RnnCell:
        """Uniform predecessor and activation per node, as the original's `generate_arch`."""
        return RnnCell(tuple((int(rng.integers(0, i)), int(rng.integers(0, len(ACTIVATIONS))))
                             for i in range(1, NUM_NODES + 1)))

    def to_tokens(self, arch: RnnCell) -> tuple[int, ...]:
        tokens: list[int] = []
        for pred, act in arch.nodes:
            tokens += [pred + NODE_TOKEN_OFFSET, act + ACTIVATION_TOKEN_OFFSET]
        return tuple(tokens)

    def from_tokens(self, tokens: Sequence[int]) -> RnnCell:
        self.check_tokens(tokens)
        values = [t - (NODE_TOKEN_OFFSET if k % 2 == 0 else ACTIVATION_TOKEN_OFFSET)
                  for k, t in enumerate(tokens)]
        return cell_from_ints(values)

    def to_string(self, arch: RnnCell) -> str:
        return " ".join(f"{p} {a}" for p, a in arch.nodes)

    def parse(self, text: str) -> RnnCell:
        try:
            return cell_from_ints(_parse_ints(text))
        except InvalidArchitectureError as err:
            raise InvalidArchitectureError(f"invalid RNN arch {text!r}: {err}") from None

    def describe(self, arch: RnnCell) -> str:
        lines = [f"s_{i} = highway(s_{p}, {ACTIVATIONS[a]})"
                 for i, (p, a) in enumerate(arch.nodes, 1)]
        return "\n".join(lines + ["h_t = mean(s_1..s_11)"])

    def canonical_key(self, arch: RnnCell) -> str:
        """The cell as an unordered tree rooted at s_0 (edges labelled by activation).

        Renumbering nodes in another topological order gives the same function family (the output
        is a mean over all nodes and every node has its own weights), so such cells share a key.
        """
        children: dict[int, list[int]] = {i: [] for i in range(NUM_NODES + 1)}
        for i, (pred, _) in enumerate(arch.nodes, 1):
            children[pred].append(i)

        def subtree(node: int) -> str:
            label = ACTIVATIONS[arch.nodes[node - 1][1]] if node else "s0"
            return label + "(" + ",".join(sorted(subtree(c) for c in children[node])) + ")"

        return subtree(0)


def cell_graphs(arch: RnnCell) -> list["CellGraph"]:
    """The recurrent cell as one `draw.CellGraph` (for `best_arch.png`): x_t and h_{t-1}
    feed s_0 (the W_0 highway, tanh), node i reads s_{p_i} through its activation, and h_t is the
    mean of s_1..s_11 (the final cell's output)."""
    from nao_tf.algorithm.draw import CellGraph

    edges = [("x_t", "0", ""), ("h_{t-1}", "0", "")]
    edges += [(str(p), str(i), ACTIVATIONS[a]) for i, (p, a) in enumerate(arch.nodes, 1)]
    return [CellGraph(title="recurrent cell", inputs=("x_t", "h_{t-1}"), edges=edges,
                      output="h_t", output_from=[str(i) for i in range(1, NUM_NODES + 1)],
                      output_label="mean")]


def resolve_arch(value: str, nao_codes: bool = False) -> tuple[RnnCell, str]:
    """The cell named by `--arch` (a name in `NAMED_ARCHS`, a search's `best_arch.json` or a 22-int
    string), and where it came from. `nao_codes=True` reads a 22-int string in the NAO (no-WS)
    table."""
    space = RnnSearchSpace()
    if nao_codes and value.strip()[:1].isdigit():
        value = convert_nao_codes(value)
    return load_arch(space, value, {name: space.parse(text) for name, text in NAMED_ARCHS.items()})
