"""NAS-Bench-201 (Dong & Yang, ICLR 2020) as a NAO search space.

A cell is a DAG over 4 nodes; each of its 6 edges j -> i (j < i) carries one of 5 ops. The
benchmark's string lists, for nodes 1..3, the incoming edges as `op~j`:
    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|
Controller tokens: one per edge, 1 + 5 * edge + op (vocab 31, length 6, no folding). Each edge has
its own five tokens, as the original CNN encoding gives node indices and ops their own ranges: the
encoder's embeddings then carry (edge, op) pairs directly, which raised the predictor's pairwise
accuracy from 0.68 to 0.73 with 100 training cells (docs/benchmarks.md).

Equivalent cells: an edge is dead when its source node cannot be reached from the input node 0, or
its target node cannot reach the output node 3, through edges whose op is not 'none'. A dead edge's
op does not change what the cell computes, so `canonical` sets every dead edge to 'none' (a cell
without any path from input to output becomes the all-'none' zero cell). Equivalent cells share a
canonical key and token sequence: the controller only sees ops that matter, and decodes canonical
cells. The 15,625 cells form 9,445 classes; within a class `cifar10_valid` varies by 0.5 points
(std; training noise) against 12.8 over the whole table.

The benchmark's table and the search methods on it are `nao_tf.benchmarks.tabular`
(`--space=nasbench201`).
"""

from typing import Sequence

import numpy as np

from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.common.errors import InvalidArchitectureError

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = tuple((i, j) for i in range(1, 4) for j in range(i))  # (to node, from node), string order
INPUT_NODE, OUTPUT_NODE = 0, 3
Arch = tuple[int, ...]  # one op id per edge, in EDGES order


def _connected_nodes(arch: Arch, start: int, forward: bool) -> set[int]:
    """Nodes reachable from `start` through non-'none' edges, following them forward (from
    source to target) or backward."""
    nodes = {start}
    order = range(start + 1, OUTPUT_NODE + 1) if forward else range(start - 1, INPUT_NODE - 1, -1)
    for node in order:
        for op, (to, source) in zip(arch, EDGES):
            near, far = (source, to) if forward else (to, source)
            if op != 0 and far == node and near in nodes:
                nodes.add(node)
    return nodes


def canonical(arch: Arch) -> Arch:
    """`arch` with every dead edge set to 'none' (op 0): the same function, one representative
    per class of equivalent cells."""
    from_input = _connected_nodes(arch, INPUT_NODE, forward=True)
    to_output = _connected_nodes(arch, OUTPUT_NODE, forward=False)
    return tuple(op if source in from_input and to in to_output else 0
                 for op, (to, source) in zip(arch, EDGES))


def network_costs(arch: Arch, channels: int = 16, cells_per_stage: int = 5,
                  num_classes: int = 10, image_size: int = 32) -> dict[str, int]:
    """Trainable parameters and multiply-adds (of one image's inference: convolutions and the
    classifier) of the benchmark's network for `arch` (`nb201.model.Nb201Network`, the
    benchmark's `TinyNetwork`: C = `channels`, N = `cells_per_stage`; the defaults are its
    CIFAR-10 network). Every edge's conv counts, dead or not, as in the benchmark's own count.
    Stem: 3x3 conv to C + BN; per stage s (width C 2^s, size image_size / 2^s): from the second
    on a residual block (ReLU-conv3x3/2-BN, ReLU-conv3x3-BN, and a 2x2 average pool then a 1x1
    conv), then N cells, each `nor_conv_kxk` edge a k x k conv plus BN; BN; a dense classifier
    with bias."""
    width, size = channels, image_size
    params = 9 * 3 * width + 2 * width
    mult_adds = size * size * 9 * 3 * width
    per_cell = [(int(OPS[op][-1]) if OPS[op].startswith("nor_conv") else 0) for op in arch]
    for stage in range(3):
        if stage:
            narrow, width, size = width, 2 * width, size // 2
            params += 9 * narrow * width + 9 * width * width + narrow * width + 4 * width
            mult_adds += size * size * (9 * narrow * width + 9 * width * width + narrow * width)
        for k in per_cell:
            if k:
                params += cells_per_stage * (k * k * width * width + 2 * width)
                mult_adds += cells_per_stage * size * size * k * k * width * width
    params += 2 * width + width * num_classes + num_classes
    mult_adds += width * num_classes
    return {"params": params, "mult_adds": mult_adds}


class NasBench201Space(SearchSpace[Arch]):
    name = "nasbench201"
    vocab_size = len(OPS) * len(EDGES) + 1
    source_length = len(EDGES)
    encoder_length = len(EDGES)

    def valid_token_mask(self) -> np.ndarray:
        mask = np.zeros([self.source_length, self.vocab_size], bool)
        for edge in range(len(EDGES)):
            mask[edge, 1 + edge * len(OPS):1 + (edge + 1) * len(OPS)] = True
        return mask

    def sample(self, rng: np.random.Generator) -> Arch:
        return tuple(int(op) for op in rng.integers(0, len(OPS), len(EDGES)))

    def to_tokens(self, arch: Arch) -> tuple[int, ...]:
        """Tokens of the canonical cell: equivalent cells share them."""
        return tuple(1 + edge * len(OPS) + op for edge, op in enumerate(canonical(arch)))

    def from_tokens(self, tokens: Sequence[int]) -> Arch:
        self.check_tokens(tokens)
        return tuple((int(t) - 1) % len(OPS) for t in tokens)

    def mutate(self, arch: Arch, rng: np.random.Generator, max_tries: int = 100) -> Arch:
        """One edge's op changed to another, on the cell as given (dead edges included), as
        regularized evolution mutates NAS-Bench-201 cells (Dong & Yang's baseline). Mutating the
        canonical cell instead would never touch a dead edge's op, and lowers evolution's result
        by 0.4 points (seeds 100-149, budget 100)."""
        del max_tries  # every edge has other ops
        edge = int(rng.integers(len(EDGES)))
        child = list(arch)
        child[edge] = int(rng.choice([op for op in range(len(OPS)) if op != arch[edge]]))
        return tuple(child)

    def to_string(self, arch: Arch) -> str:
        nodes = []
        for i in range(1, 4):
            nodes.append("|" + "|".join(f"{OPS[arch[k]]}~{j}" for k, (to, j) in enumerate(EDGES)
                                        if to == i) + "|")
        return "+".join(nodes)

    def parse(self, text: str) -> Arch:
        nodes = text.strip().split("+")
        if len(nodes) != 3:
            raise InvalidArchitectureError(
                f"{text!r}: a NAS-Bench-201 cell has 3 nodes separated by '+', found {len(nodes)}")
        arch = []
        for i, node in enumerate(nodes, start=1):
            edges = [e for e in node.strip("|").split("|")]
            if len(edges) != i:
                raise InvalidArchitectureError(f"{text!r}: node {i} needs {i} incoming edges, found {len(edges)}")
            for j, edge in enumerate(edges):
                op, _, source = edge.partition("~")
                if op not in OPS or source != str(j):
                    raise InvalidArchitectureError(
                        f"{text!r}: edge {edge!r} of node {i} should be 'op~{j}' with op in {OPS}")
                arch.append(OPS.index(op))
        return tuple(arch)

    def canonical_key(self, arch: Arch) -> str:
        return self.to_string(canonical(arch))

    def describe(self, arch: Arch) -> str:
        return "\n".join(f"node {to} <- node {j}: {OPS[arch[k]]}" for k, (to, j) in enumerate(EDGES))

    def costs(self, arch: Arch) -> dict[str, int]:
        """The benchmark's CIFAR-10 network's (`network_costs`)."""
        return network_costs(arch)
