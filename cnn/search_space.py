"""The CIFAR cell search space of NAO: B = 5 nodes per cell, normal and reduction cells.

A cell has two inputs (h[i-2] = node 0, h[i-1] = node 1) and B = 5 computed nodes (2..6). Node i
(0-based among the computed nodes) picks two branches (input, op); each input is any earlier node
(0..i+1, repeats allowed) and the node's output is the sum of its two op outputs. The cell output
concatenates every node no other node consumes.

Text format (the original's `fixed_arc`): 40 integers, normal cell first, then reduction, each cell
`in1 op1 in2 op2` for each of the 5 nodes. Op ids come from one registry shared by every space (the
NAO_pytorch V1 numbering): 0-4 are the NAO-WS (ENAS) ops and 5-15 the 11 ops of NAONet, so a string
means the same network whichever space parses it.

Controller tokens (as the original NAO-WS `utils.parse_arch_to_seq`): input index `in` -> `in + 1`
(1..6), op -> `7 + its index in the space's op list`, token 0 is the decoder's <sos>. The NAO-WS
space thus has the original vocabulary of 12; the NAONet space has 7 + 11 = 18.
"""

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from nao_tf.errors import InvalidArchitectureError
from nao_tf.io import read_json
from nao_tf.search_space import SearchSpace

NUM_NODES = 5  # B
NUM_CELL_INPUTS = 2
INTS_PER_NODE = 4
INTS_PER_CELL = NUM_NODES * INTS_PER_NODE  # 20
ARCH_LENGTH = 2 * INTS_PER_CELL  # 40
FIRST_OP_TOKEN = 1 + NUM_NODES + 1  # 7: tokens 1..6 are input indices 0..5


@dataclass(frozen=True)
class OpSpec:
    """One entry of the op registry: `kind` is 'sep_conv', 'conv', 'factorized_conv' (1xk + kx1),
    'avg_pool', 'max_pool' or 'identity'; `size` is the kernel size."""

    name: str
    kind: str
    size: int

    @property
    def drop_path(self) -> bool:
        """Drop-path applies to every op except identity (as both TF code bases)."""
        return self.kind != "identity"


OPS: tuple[OpSpec, ...] = (
    OpSpec("sep_conv_3x3", "sep_conv", 3),  # 0
    OpSpec("sep_conv_5x5", "sep_conv", 5),  # 1
    OpSpec("avg_pool_3x3", "avg_pool", 3),  # 2
    OpSpec("max_pool_3x3", "max_pool", 3),  # 3
    OpSpec("identity", "identity", 1),  # 4
    OpSpec("identity", "identity", 1),  # 5 (the NAONet space's own identity)
    OpSpec("conv_1x1", "conv", 1),  # 6
    OpSpec("conv_3x3", "conv", 3),  # 7
    OpSpec("conv_1x3_3x1", "factorized_conv", 3),  # 8
    OpSpec("conv_1x7_7x1", "factorized_conv", 7),  # 9
    OpSpec("max_pool_2x2", "max_pool", 2),  # 10
    OpSpec("max_pool_3x3", "max_pool", 3),  # 11
    OpSpec("max_pool_5x5", "max_pool", 5),  # 12
    OpSpec("avg_pool_2x2", "avg_pool", 2),  # 13
    OpSpec("avg_pool_3x3", "avg_pool", 3),  # 14
    OpSpec("avg_pool_5x5", "avg_pool", 5),  # 15
)

NAO_WS_OPS = (0, 1, 2, 3, 4)
NAONET_OPS = tuple(range(5, 16))
ALL_OPS = tuple(range(len(OPS)))


@dataclass(frozen=True)
class Node:
    """One computed node: output = op1(node in1) + op2(node in2)."""

    in1: int
    op1: int
    in2: int
    op2: int

    def swapped(self) -> "Node":
        return Node(self.in2, self.op2, self.in1, self.op1)


@dataclass(frozen=True)
class Cell:
    nodes: tuple[Node, ...]

    def loose_ends(self) -> tuple[int, ...]:
        """Indices (0..6) of the nodes, cell inputs included, that no node consumes: the cell output
        concatenates these, in index order."""
        used = {i for n in self.nodes for i in (n.in1, n.in2)}
        return tuple(i for i in range(NUM_CELL_INPUTS + len(self.nodes)) if i not in used)

    def ints(self) -> list[int]:
        return [v for n in self.nodes for v in (n.in1, n.op1, n.in2, n.op2)]


@dataclass(frozen=True)
class CellArch:
    """A network architecture: the normal and the reduction cell."""

    normal: Cell
    reduction: Cell

    def ints(self) -> list[int]:
        return self.normal.ints() + self.reduction.ints()

    def op_ids(self) -> set[int]:
        return {op for c in (self.normal, self.reduction) for n in c.nodes for op in (n.op1, n.op2)}


def _cell_from_ints(values: Sequence[int]) -> Cell:
    return Cell(tuple(Node(*values[i:i + INTS_PER_NODE])
                      for i in range(0, INTS_PER_CELL, INTS_PER_NODE)))


def arch_from_ints(values: Sequence[int]) -> CellArch:
    return CellArch(_cell_from_ints(values[:INTS_PER_CELL]),
                    _cell_from_ints(values[INTS_PER_CELL:]))


class CellSpace(SearchSpace[CellArch]):
    """A NAO CNN cell space over a subset `op_ids` of the op registry."""

    encoder_length = ARCH_LENGTH // 2  # one (input, op) branch per encoder step
    source_length = ARCH_LENGTH

    def __init__(self, name: str, op_ids: Sequence[int]):
        self.name = name
        self.op_ids = tuple(op_ids)
        self.vocab_size = FIRST_OP_TOKEN + len(self.op_ids)
        self._op_token = {op: FIRST_OP_TOKEN + k for k, op in enumerate(self.op_ids)}

    # Validation and text format.

    def validate(self, arch: CellArch) -> CellArch:
        """Returns `arch`, or raises `InvalidArchitectureError` naming the first bad integer."""
        for cell_name, cell in (("normal", arch.normal), ("reduction", arch.reduction)):
            if len(cell.nodes) != NUM_NODES:
                raise InvalidArchitectureError(
                    f"{self.name}: the {cell_name} cell has {len(cell.nodes)} nodes, expected "
                    f"{NUM_NODES}")
            for i, node in enumerate(cell.nodes):
                for branch, (inp, op) in enumerate(((node.in1, node.op1), (node.in2, node.op2)), 1):
                    where = (f"{self.name}: {cell_name} cell, node {i + NUM_CELL_INPUTS}, "
                             f"branch {branch}")
                    if not 0 <= inp <= i + 1:
                        raise InvalidArchitectureError(
                            f"{where}: input {inp} does not exist yet; node {i + NUM_CELL_INPUTS} "
                            f"may read nodes 0..{i + 1} (0 and 1 are the cell inputs)")
                    if op not in self._op_token:
                        raise InvalidArchitectureError(
                            f"{where}: op {op} is not in this space; allowed op ids: "
                            f"{_op_list(self.op_ids)}")
        return arch

    def to_string(self, arch: CellArch) -> str:
        return " ".join(str(v) for v in arch.ints())

    def parse(self, text: str) -> CellArch:
        """Parses the 40-integer format (normal then reduction; an optional '|' between cells)."""
        fields = text.replace("|", " ").split()
        try:
            values = [int(f) for f in fields]
        except ValueError:
            bad = next(f for f in fields if not f.lstrip("-").isdigit())
            raise InvalidArchitectureError(
                f"{self.name}: {bad!r} is not an integer; an architecture is {ARCH_LENGTH} "
                "space-separated integers (normal cell, then reduction cell)") from None
        if len(values) != ARCH_LENGTH:
            raise InvalidArchitectureError(
                f"{self.name}: got {len(values)} integers, expected {ARCH_LENGTH} (5 nodes x "
                "'in1 op1 in2 op2' for the normal cell, then for the reduction cell)")
        return self.validate(arch_from_ints(values))

    def describe(self, arch: CellArch) -> str:
        lines = []
        for cell_name, cell in (("normal", arch.normal), ("reduction", arch.reduction)):
            lines.append(f"{cell_name} cell (inputs: 0 = h[i-2], 1 = h[i-1]):")
            for i, n in enumerate(cell.nodes):
                lines.append(f"  node {i + NUM_CELL_INPUTS} = {OPS[n.op1].name}({n.in1}) + "
                             f"{OPS[n.op2].name}({n.in2})")
            lines.append(f"  output = concat{list(cell.loose_ends())}")
        return "\n".join(lines)

    def canonical_key(self, arch: CellArch) -> str:
        """Equal for architectures that differ only by swapped branches within nodes."""
        def canon(cell: Cell) -> list[int]:
            out = []
            for n in cell.nodes:
                a, b = sorted([(n.in1, n.op1), (n.in2, n.op2)])
                out.extend(a + b)
            return out
        return " ".join(str(v) for v in canon(arch.normal) + canon(arch.reduction))

    # Tokens for the controller.

    def to_tokens(self, arch: CellArch) -> tuple[int, ...]:
        self.validate(arch)
        values = arch.ints()
        return tuple(v + 1 if pos % 2 == 0 else self._op_token[v] for pos, v in enumerate(values))

    def from_tokens(self, tokens: Sequence[int]) -> CellArch:
        self.check_tokens(tokens)
        values = [t - 1 if pos % 2 == 0 else self.op_ids[t - FIRST_OP_TOKEN]
                  for pos, t in enumerate(tokens)]
        return arch_from_ints(values)

    def valid_token_mask(self) -> np.ndarray:
        mask = np.zeros((self.source_length, self.vocab_size), dtype=bool)
        for pos in range(self.source_length):
            node = (pos % INTS_PER_CELL) // INTS_PER_NODE
            if pos % 2 == 0:
                mask[pos, 1:node + 3] = True  # inputs 0..node+1
            else:
                mask[pos, FIRST_OP_TOKEN:] = True
        return mask

    def sample(self, rng: np.random.Generator) -> CellArch:
        """As the original `utils.generate_arch`: each input uniform in 0..i+1, each op uniform."""
        values = []
        for _ in range(2):
            for i in range(NUM_NODES):
                for _ in range(2):
                    values.append(int(rng.integers(0, i + 2)))
                    values.append(int(self.op_ids[rng.integers(0, len(self.op_ids))]))
        return arch_from_ints(values)

    def symmetry_groups(self) -> list[np.ndarray]:
        """Per cell, one group of 5 rewrites: swap the two branches of node a, a in [0, 5) (the
        original swaps exactly one random node per cell)."""
        groups = []
        for cell_start in (0, INTS_PER_CELL):
            rows = []
            for a in range(NUM_NODES):
                perm = np.arange(self.source_length)
                s = cell_start + a * INTS_PER_NODE
                perm[s:s + 4] = [s + 2, s + 3, s, s + 1]
                rows.append(perm)
            groups.append(np.stack(rows))
        return groups


def _op_list(op_ids: Sequence[int]) -> str:
    return ", ".join(f"{i}={OPS[i].name}" for i in op_ids)


NAO_WS_SPACE = CellSpace("nao_ws", NAO_WS_OPS)
NAONET_SPACE = CellSpace("naonet", NAONET_OPS)
ANY_SPACE = CellSpace("cnn_any", ALL_OPS)
SPACES = {s.name: s for s in (NAO_WS_SPACE, NAONET_SPACE, ANY_SPACE)}

# Published cells (spec section 1.6), in the 40-integer format.
NAMED_ARCHS: dict[str, str] = {
    # NAO-WS best cell, `NAO-WS/cnn/train_final.sh` fixed_arc (the TF release).
    "nao_ws": "0 1 0 4 2 2 1 3 1 0 2 0 2 3 1 3 1 2 0 4 "
              "1 1 0 3 2 3 2 3 1 0 0 1 0 4 2 4 2 3 2 3",
    # NAONet as `NAO/cnn/dag.NAONet.json` (the TF original), in V1 large-op ids.
    "naonet": "0 7 1 15 2 8 1 7 0 6 1 7 0 8 4 7 1 5 0 7 "
              "0 7 1 13 0 6 0 14 1 9 0 10 0 14 2 6 1 11 0 7",
    # NAONet-A of the PyTorch port: the same cell except reduction node 5, whose inputs are swapped.
    "naonet_a": "0 7 1 15 2 8 1 7 0 6 1 7 0 8 4 7 1 5 0 7 "
                "0 7 1 13 0 6 0 14 0 9 1 10 0 14 2 6 1 11 0 7",
}


def space_for(arch: CellArch) -> CellSpace:
    """The smallest named space that contains `arch` (nao_ws, naonet, else cnn_any)."""
    ops = arch.op_ids()
    for space in (NAO_WS_SPACE, NAONET_SPACE):
        if ops <= set(space.op_ids):
            return space
    return ANY_SPACE


def named_arch(name: str) -> CellArch:
    key = name.strip().lower().replace("-", "_")
    if key not in NAMED_ARCHS:
        raise InvalidArchitectureError(
            f"unknown architecture name {name!r}; known names: {', '.join(sorted(NAMED_ARCHS))}, "
            f"or give {ARCH_LENGTH} integers, or the path of a best_arch.json")
    return ANY_SPACE.parse(NAMED_ARCHS[key])


def cell_graphs(arch: CellArch) -> list:
    """The normal and the reduction cell of `arch` as `nao_tf.draw.CellGraph`s (DARTS-style
    pictures: inputs c_{k-2}, c_{k-1}, nodes 0..4, output c_{k} = concat of the unused nodes)."""
    from nao_tf.draw import CellGraph

    def name(i: int) -> str:
        return ("c_{k-2}", "c_{k-1}")[i] if i < NUM_CELL_INPUTS else str(i - NUM_CELL_INPUTS)

    graphs = []
    for title, cell in (("normal cell", arch.normal), ("reduction cell", arch.reduction)):
        edges = [(name(inp), name(i + NUM_CELL_INPUTS), OPS[op].name)
                 for i, n in enumerate(cell.nodes) for inp, op in ((n.in1, n.op1), (n.in2, n.op2))]
        graphs.append(CellGraph(title, [name(0), name(1)], edges, "c_{k}",
                                [name(i) for i in cell.loose_ends()], "concat"))
    return graphs


def load_arch(text: str) -> CellArch:
    """An architecture from `--arch`: a name (see NAMED_ARCHS), 40 integers, or the path of a
    `best_arch.json` written by a search (its `arch` key holds the 40 integers)."""
    text = text.strip()
    if text.endswith(".json"):
        record = read_json(text)
        if not isinstance(record, dict) or not isinstance(record.get("arch"), str):
            raise InvalidArchitectureError(
                f"{text}: expected a JSON object with an 'arch' string (as best_arch.json)")
        space = SPACES.get(record.get("space", ""), ANY_SPACE)
        return space.parse(record["arch"])
    if not text:
        raise InvalidArchitectureError(
            f"empty architecture; give a name ({', '.join(sorted(NAMED_ARCHS))}), "
            f"{ARCH_LENGTH} integers, or a best_arch.json path")
    if text[0].isdigit():
        return ANY_SPACE.parse(text)
    return named_arch(text)
