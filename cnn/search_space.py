"""The CIFAR cell search space of NAO: B = 5 nodes per cell, normal and reduction cells.

A cell has two inputs (h[i-2] = node 0, h[i-1] = node 1) and B = 5 computed nodes (2..6). Node i
(0-based among the computed nodes) picks two branches (input, op); each input is any earlier node
(0..i+1, repeats allowed) and the node's output is the sum of its two op outputs. The cell output
concatenates every node no other node consumes.

Text format (the original's `fixed_arc`): 40 integers, normal cell first, then reduction, each cell
`in1 op1 in2 op2` for each of the 5 nodes. Op ids come from one registry shared by every space: 0-4
are the NAO-WS (ENAS) ops and 5-15 the 11 ops of NAONet (the NAO_pytorch V1 numbering), 16-23 the
rest of the TF NAO release's `model.py` ops; a string means the same network whichever space parses
it. A published cell whose output is not "every unused node" (NASNet-A) writes its output nodes
after '>', with '|' between the cells: `20 ints > 0 2 3 4 5 6 | 20 ints > 3 4 5 6`.

Controller tokens (as the original NAO-WS `utils.parse_arch_to_seq`): input index `in` -> `in + 1`
(1..6), op -> `7 + its index in the space's op list`, token 0 is the decoder's <sos>. The NAO-WS
space thus has the original vocabulary of 12; the NAONet space has 7 + 11 = 18.
"""

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.common.errors import InvalidArchitectureError

NUM_NODES = 5  # B
NUM_CELL_INPUTS = 2
INTS_PER_NODE = 4
INTS_PER_CELL = NUM_NODES * INTS_PER_NODE  # 20
ARCH_LENGTH = 2 * INTS_PER_CELL  # 40
FIRST_OP_TOKEN = 1 + NUM_NODES + 1  # 7: tokens 1..6 are input indices 0..5


@dataclass(frozen=True)
class OpSpec:
    """One entry of the op registry: `kind` is 'sep_conv', 'conv', 'factorized_conv' (1xk + kx1),
    'avg_pool', 'max_pool', 'min_pool' or 'identity'; `size` is the kernel size, `dilation` the
    dilation rate of a conv."""

    name: str
    kind: str
    size: int
    dilation: int = 1

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
    OpSpec("sep_conv_7x7", "sep_conv", 7),  # 16
    OpSpec("max_pool_7x7", "max_pool", 7),  # 17
    OpSpec("min_pool_2x2", "min_pool", 2),  # 18
    OpSpec("dil_sep_conv_3x3", "sep_conv", 3, 2),  # 19
    OpSpec("dil_sep_conv_5x5", "sep_conv", 5, 2),  # 20
    OpSpec("dil_sep_conv_7x7", "sep_conv", 7, 2),  # 21
    OpSpec("dil_conv_3x3", "conv", 3, 2),  # 22
    OpSpec("dil_conv_5x5", "conv", 5, 2),  # 23
)

NAO_WS_OPS = (0, 1, 2, 3, 4)
NAONET_OPS = tuple(range(5, 16))
# The TF NAO release's search space, in the order of its vocabulary (`NAO/cnn/epd/vocab.py`
# VOCAB1), so that its controller tokens are the original's: identity, sep_conv 3/5/7, avg_pool
# 2/3/5, max_pool 2/3/5/7, min_pool 2, conv 1x1, 3x3, 1x3+3x1, 1x7+7x1, dil_sep_conv 3/5/7.
NAONET_19_OPS = (5, 0, 1, 16, 13, 14, 15, 10, 11, 12, 17, 18, 6, 7, 8, 9, 19, 20, 21)
ALL_OPS = tuple(range(len(OPS)))


@dataclass(frozen=True)
class Node:
    """One computed node: output = op1(node in1) + op2(node in2)."""

    in1: int
    op1: int
    in2: int
    op2: int


@dataclass(frozen=True)
class Cell:
    """B nodes; `outputs` names the nodes the cell output concatenates when they are not the
    unused ones (the `loose_ends` of a published cell in the original's `dag.py`)."""

    nodes: tuple[Node, ...]
    outputs: tuple[int, ...] | None = None

    def loose_ends(self) -> tuple[int, ...]:
        """Indices (0..6) of the nodes the cell output concatenates, in index order: `outputs`,
        else every node, cell inputs included, that no node consumes."""
        if self.outputs is not None:
            return self.outputs
        used = {i for n in self.nodes for i in (n.in1, n.in2)}
        return tuple(i for i in range(NUM_CELL_INPUTS + len(self.nodes)) if i not in used)

    def text(self) -> str:
        ints = " ".join(str(v) for v in self.ints())
        return ints if self.outputs is None else f"{ints} > {' '.join(map(str, self.outputs))}"

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


def _cell_from_ints(values: Sequence[int], outputs: Sequence[int] | None = None) -> Cell:
    return Cell(tuple(Node(*values[i:i + INTS_PER_NODE])
                      for i in range(0, INTS_PER_CELL, INTS_PER_NODE)),
                None if outputs is None else tuple(outputs))


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
            outputs = cell.outputs
            last = NUM_CELL_INPUTS + NUM_NODES - 1
            if outputs is not None and (not outputs or list(outputs) != sorted(set(outputs))
                                        or not 0 <= outputs[0] <= outputs[-1] <= last):
                raise InvalidArchitectureError(
                    f"{self.name}: the {cell_name} cell's outputs {list(outputs)} must be "
                    f"increasing node indices in 0..{last}")
        return arch

    def to_string(self, arch: CellArch) -> str:
        if arch.normal.outputs is None and arch.reduction.outputs is None:
            return " ".join(str(v) for v in arch.ints())
        return f"{arch.normal.text()} | {arch.reduction.text()}"

    def parse(self, text: str) -> CellArch:
        """Parses the 40-integer format (normal then reduction; an optional '|' between cells),
        with explicit cell outputs after '>' (see the module docstring)."""
        if ">" not in text:
            return self.validate(arch_from_ints(self._ints(text, ARCH_LENGTH)))
        cells = text.split("|")
        if len(cells) != 2:
            raise InvalidArchitectureError(
                f"{self.name}: an architecture with explicit outputs ('>') separates its two cells "
                "with '|': '20 ints [> outputs] | 20 ints [> outputs]'")
        parts = [cell.split(">") for cell in cells]
        return self.validate(CellArch(*(
            _cell_from_ints(self._ints(p[0], INTS_PER_CELL),
                            self._ints(p[1], None) if len(p) > 1 else None) for p in parts)))

    def _ints(self, text: str, expected: int | None) -> list[int]:
        fields = text.replace("|", " ").split()
        try:
            values = [int(f) for f in fields]
        except ValueError:
            bad = next(f for f in fields if not f.lstrip("-").isdigit())
            raise InvalidArchitectureError(
                f"{self.name}: {bad!r} is not an integer; an architecture is {ARCH_LENGTH} "
                "space-separated integers (normal cell, then reduction cell)") from None
        if expected is not None and len(values) != expected:
            raise InvalidArchitectureError(
                f"{self.name}: got {len(values)} integers, expected {expected} (5 nodes x "
                "'in1 op1 in2 op2' for the normal cell, then for the reduction cell)")
        return values

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
        key = " ".join(str(v) for v in canon(arch.normal) + canon(arch.reduction))
        outputs = (arch.normal.outputs, arch.reduction.outputs)
        return key if outputs == (None, None) else f"{key} > {outputs}"

    # Tokens for the controller.

    def to_tokens(self, arch: CellArch) -> tuple[int, ...]:
        self.validate(arch)
        if (arch.normal.outputs, arch.reduction.outputs) != (None, None):
            raise InvalidArchitectureError(
                f"{self.name}: a cell with explicit outputs has no controller encoding")
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
NAONET_19_SPACE = CellSpace("naonet_19", NAONET_19_OPS)
ANY_SPACE = CellSpace("cnn_any", ALL_OPS)
SPACES = {s.name: s for s in (NAO_WS_SPACE, NAONET_SPACE, NAONET_19_SPACE, ANY_SPACE)}


def space_for(arch: CellArch) -> CellSpace:
    """The smallest named space that contains `arch` (nao_ws, naonet, naonet_19, else cnn_any)."""
    ops = arch.op_ids()
    for space in (NAO_WS_SPACE, NAONET_SPACE, NAONET_19_SPACE):
        if ops <= set(space.op_ids):
            return space
    return ANY_SPACE


def cell_graphs(arch: CellArch) -> list:
    """The normal and the reduction cell of `arch` as `draw.CellGraph`s (DARTS-style
    pictures: inputs c_{k-2}, c_{k-1}, nodes 0..4, output c_{k} = concat of the output nodes)."""
    from nao_tf.algorithm.draw import CellGraph

    def name(i: int) -> str:
        return ("c_{k-2}", "c_{k-1}")[i] if i < NUM_CELL_INPUTS else str(i - NUM_CELL_INPUTS)

    graphs = []
    for title, cell in (("normal cell", arch.normal), ("reduction cell", arch.reduction)):
        edges = [(name(inp), name(i + NUM_CELL_INPUTS), OPS[op].name)
                 for i, n in enumerate(cell.nodes) for inp, op in ((n.in1, n.op1), (n.in2, n.op2))]
        graphs.append(CellGraph(title, [name(0), name(1)], edges, "c_{k}",
                                [name(i) for i in cell.loose_ends()], "concat"))
    return graphs
