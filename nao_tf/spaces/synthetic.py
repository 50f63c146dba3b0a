"""A synthetic search space with a known objective, for demos, tests and controller benchmarks.

It mirrors the shape of the CNN cell encoding without its meaning: `num_nodes` nodes, each with two
branches, each branch an (input, op) token pair, so a sequence has 4 * num_nodes tokens and the
encoder folds one branch per step. Node i may read inputs 0..min(i + 1, choices - 1) (tokens
1..), so the valid tokens differ by position as in a real cell; op tokens follow the input tokens.
Swapping a node's two branches gives the same architecture (the NAO symmetry).
`SyntheticObjective` is an additive, swap-invariant hidden score.
"""

import numpy as np

from nao_tf.algorithm.search_space import SearchSpace
from nao_tf.common.errors import InvalidArchitectureError

Arch = tuple[int, ...]


class SyntheticSpace(SearchSpace[Arch]):
    """`choices` inputs and `choices` ops; vocab = 2 * choices + 1 (token 0 is <sos>)."""

    def __init__(self, num_nodes: int = 10, choices: int = 5):
        self.num_nodes, self.choices = num_nodes, choices
        self.name = f"synthetic-{num_nodes}x{choices}"
        self.vocab_size = 2 * choices + 1
        self.source_length = 4 * num_nodes
        self.encoder_length = 2 * num_nodes
        mask = np.zeros([self.source_length, self.vocab_size], bool)
        for pos in range(self.source_length):
            if pos % 2 == 0:
                mask[pos, 1:2 + min(pos // 4 + 1, choices - 1)] = True
            else:
                mask[pos, 1 + choices:] = True
        self._mask = mask

    def valid_token_mask(self) -> np.ndarray:
        return self._mask

    def sample(self, rng: np.random.Generator) -> Arch:
        return tuple(int(rng.choice(np.flatnonzero(allowed))) for allowed in self._mask)

    def to_tokens(self, arch: Arch) -> tuple[int, ...]:
        return arch

    def from_tokens(self, tokens) -> Arch:
        tokens = tuple(int(t) for t in tokens)
        self.check_tokens(tokens)
        return tokens

    def to_string(self, arch: Arch) -> str:
        return " ".join(map(str, arch))

    def parse(self, text: str) -> Arch:
        try:
            tokens = [int(t) for t in text.split()]
        except ValueError:
            raise InvalidArchitectureError(f"{self.name}: {text!r} is not a list of integers") from None
        return self.from_tokens(tokens)

    def canonical_key(self, arch: Arch) -> str:
        nodes = [sorted([arch[i:i + 2], arch[i + 2:i + 4]]) for i in range(0, len(arch), 4)]
        return self.to_string(tuple(t for node in nodes for branch in node for t in branch))

    def symmetry_groups(self) -> list[np.ndarray]:
        identity = np.arange(self.source_length)
        swaps = []
        for node in range(self.num_nodes):
            perm = identity.copy()
            i = 4 * node
            perm[i:i + 4] = [i + 2, i + 3, i, i + 1]
            swaps.append(perm)
        return [np.stack(swaps)]


class SyntheticObjective:
    """score(x) = sum over nodes i and branches (a, o) of u[i, a] + v[i, o] + 0.3 w[i, a, o].

    u, v, w ~ N(0, 1), fixed by `seed`: mostly additive with a weaker input-op interaction, and
    invariant to swapping a node's branches.
    """

    def __init__(self, space: SyntheticSpace, seed: int = 0):
        rng = np.random.default_rng(seed)
        shape = [space.num_nodes, space.vocab_size]
        self.u, self.v = rng.normal(size=shape), rng.normal(size=shape)
        self.w = rng.normal(size=shape + [space.vocab_size])

    def __call__(self, arch: Arch) -> float:
        x = np.asarray(arch).reshape(-1, 2, 2)
        nodes = np.arange(len(x))[:, None]
        inputs, ops = x[:, :, 0], x[:, :, 1]
        return float((self.u[nodes, inputs] + self.v[nodes, ops]
                      + 0.3 * self.w[nodes, inputs, ops]).sum())
