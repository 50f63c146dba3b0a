"""The SearchSpace protocol: what the NAO controller and search loop need to know about a space.

NAO never looks inside an architecture. It sees a fixed-length token sequence `x` of
`source_length` tokens from a vocabulary of `vocab_size` (token 0 is the decoder's start symbol and
is never part of an architecture), and it asks the space to convert, validate, sample and
de-duplicate. Every length and vocabulary size used by the controller is derived from here.

A space also describes its symmetries (the paper's data augmentation): groups of token-position
permutations that map an architecture to an equivalent one, e.g. swapping the two (input, op)
branches of a CNN node.
"""

import abc
from typing import Generic, Hashable, Iterable, Mapping, Sequence, TypeVar

import numpy as np

from nao_tf.common.errors import DataError, InvalidArchitectureError, NaoError
from nao_tf.common.io import read_json

Arch = TypeVar("Arch", bound=Hashable)


class SearchSpace(abc.ABC, Generic[Arch]):
    """A discrete architecture space, seen by NAO as fixed-length token sequences.

    Subclasses set `name`, `vocab_size`, `source_length`, `encoder_length` and implement the
    abstract methods. Architectures are small immutable (hashable) values of the space's own type.
    """

    name: str
    vocab_size: int  # includes token 0, the decoder's <sos> symbol
    source_length: int  # tokens per architecture (also the decoder length)
    encoder_length: int  # encoder steps; `fold` consecutive tokens are concatenated per step

    @property
    def fold(self) -> int:
        """Tokens folded into one encoder step (`source_length / encoder_length`)."""
        return self.source_length // self.encoder_length

    @abc.abstractmethod
    def valid_token_mask(self) -> np.ndarray:
        """Bool array [source_length, vocab_size]: which tokens may stand at each position.

        Decoding restricted to these tokens must only produce members of the space.
        """

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Arch:
        """One architecture drawn as the original's random generator does."""

    @abc.abstractmethod
    def to_tokens(self, arch: Arch) -> tuple[int, ...]:
        """The controller's token sequence for `arch` (length `source_length`)."""

    @abc.abstractmethod
    def from_tokens(self, tokens: Sequence[int]) -> Arch:
        """Inverse of `to_tokens`; raises `InvalidArchitectureError` for a non-member."""

    @abc.abstractmethod
    def to_string(self, arch: Arch) -> str:
        """The space's text format (for CNN/RNN cells: the original's integer strings)."""

    @abc.abstractmethod
    def parse(self, text: str) -> Arch:
        """Inverse of `to_string`; raises `InvalidArchitectureError` naming what is wrong."""

    def describe(self, arch: Arch) -> str:
        """A readable multi-line description; defaults to the text format."""
        return self.to_string(arch)

    def canonical_key(self, arch: Arch) -> str:
        """Equal for equivalent architectures (used to de-duplicate pools and history)."""
        return self.to_string(arch)

    def symmetry_groups(self) -> list[np.ndarray]:
        """Equivalent rewrites, as groups of position permutations.

        Each group is an int array [K, source_length]; row k is a permutation of token positions
        that maps any architecture to an equivalent one. Augmentation picks one row per group
        uniformly and applies the groups in order. The default is no symmetry.
        """
        return []

    def costs(self, arch: Arch) -> Mapping[str, int]:
        """What `arch`'s network costs, by name (`nao_tf.algorithm.costs`: "params",
        "mult_adds"), computed without building it. Spaces without a cost model refuse."""
        raise NaoError(f"the {self.name} space has no cost model, so it cannot search under a "
                       "budget; drop --max_params and --max_mult_adds")

    def allowed(self, arch: Arch) -> bool:
        """Whether a search may propose `arch` (False only outside a budget,
        `nao_tf.algorithm.costs.BudgetedSpace`)."""
        del arch
        return True

    def penalty(self, arch: Arch) -> float:
        """What the acquisition subtracts from `arch`'s predicted score (a soft budget's weighted
        excess cost, `nao_tf.algorithm.costs.BudgetedSpace`; 0 elsewhere)."""
        del arch
        return 0.0

    # Derived helpers, shared by every space.

    def check_tokens(self, tokens: Sequence[int]) -> None:
        """Raises `InvalidArchitectureError` naming the first bad position of `tokens`."""
        if len(tokens) != self.source_length:
            raise InvalidArchitectureError(
                f"{self.name}: expected {self.source_length} tokens, got {len(tokens)}")
        mask = self.valid_token_mask()
        for pos, token in enumerate(tokens):
            if not 0 <= token < self.vocab_size:
                raise InvalidArchitectureError(
                    f"{self.name}: token {token} at position {pos} is outside the vocabulary "
                    f"[0, {self.vocab_size})")
            if not mask[pos, token]:
                allowed = np.flatnonzero(mask[pos]).tolist()
                raise InvalidArchitectureError(
                    f"{self.name}: token {token} is not allowed at position {pos} "
                    f"(allowed: {allowed})")

    def encode(self, archs: Iterable[Arch]) -> np.ndarray:
        """Token sequences of `archs` as an int32 array [N, source_length]."""
        rows = [self.to_tokens(a) for a in archs]
        return np.asarray(rows, dtype=np.int32).reshape(len(rows), self.source_length)

    def decode(self, tokens: np.ndarray) -> list[Arch]:
        return [self.from_tokens([int(t) for t in row]) for row in tokens]

    def sample_unique(self, n: int, rng: np.random.Generator,
                      exclude: Iterable[str] = (), max_tries_factor: int = 100) -> list[Arch]:
        """`n` architectures with distinct canonical keys, none of whose keys is in `exclude`."""
        seen = set(exclude)
        archs: list[Arch] = []
        for _ in range(max(n, 1) * max_tries_factor):
            if len(archs) == n:
                break
            arch = self.sample(rng)
            key = self.canonical_key(arch)
            if key not in seen:
                seen.add(key)
                archs.append(arch)
        if len(archs) < n:
            raise InvalidArchitectureError(
                f"{self.name}: could only sample {len(archs)} of {n} distinct new architectures; "
                "the space is nearly exhausted, ask for fewer")
        return archs

    def mutate(self, arch: Arch, rng: np.random.Generator, max_tries: int = 100) -> Arch:
        """A neighbour of `arch`: one token position changed to another token allowed there (for
        NAS-Bench-201 one edge's op, for a CNN or RNN cell one input, op or activation). Spaces
        whose masks do not capture every constraint rely on `from_tokens` refusing the rest."""
        tokens = list(self.to_tokens(arch))
        mask = self.valid_token_mask()
        for _ in range(max_tries):
            position = int(rng.integers(self.source_length))
            choices = [t for t in np.flatnonzero(mask[position]) if t != tokens[position]]
            if not choices:
                continue
            changed = tokens.copy()
            changed[position] = int(rng.choice(choices))
            try:
                return self.from_tokens(changed)
            except InvalidArchitectureError:
                continue
        raise InvalidArchitectureError(f"{self.name}: found no valid neighbour of "
                                       f"{self.to_string(arch)} in {max_tries} tries")

    def random_equivalent(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Applies one random rewrite from every symmetry group to each row of `tokens` [N, L]."""
        out = np.asarray(tokens)
        rows = np.arange(out.shape[0])[:, None]
        for group in self.symmetry_groups():
            choice = rng.integers(0, group.shape[0], size=out.shape[0])
            out = out[rows, group[choice]]
        return out


BUILTIN_SPACES = {
    "nasbench201": "nao_tf.spaces.nasbench201:NasBench201Space",
    "synthetic": "nao_tf.spaces.synthetic:SyntheticSpace",
}


def load_space(name: str) -> SearchSpace:
    """A space by built-in name (`nasbench201`, `synthetic`) or import path `package.module:factory`
    (a class or function returning a SearchSpace, e.g. a task package's space)."""
    import importlib

    target = BUILTIN_SPACES.get(name, name)
    module_name, _, attr = target.partition(":")
    if not attr:
        raise InvalidArchitectureError(
            f"unknown search space {name!r}: use one of {sorted(BUILTIN_SPACES)} or 'package.module:factory'")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise InvalidArchitectureError(f"cannot load search space {name!r}: {err}") from None
    try:
        space = factory() if callable(factory) else factory
    except TypeError as err:  # a callable that needs arguments: not a space factory
        raise InvalidArchitectureError(f"{name!r} is not a SearchSpace or a factory of one "
                                       f"called without arguments ({err})") from None
    if not isinstance(space, SearchSpace):
        raise InvalidArchitectureError(f"{name!r} did not give a SearchSpace (got {type(space).__name__})")
    return space


def load_arch(space: SearchSpace, text: str,
              names: Mapping[str, Arch] | None = None) -> tuple[Arch, str]:
    """The architecture `--arch=text` gives in `space`, and where it came from: a key of `names`
    (published cells; case, '-' and '_' alike), the path of a search's `best_arch.json` (its
    `arch`), or the space's own text form. Stops with one line naming what is wrong."""
    def key(name: str) -> str:
        return name.strip().lower().replace("-", "_")

    text, named = text.strip(), {key(k): v for k, v in (names or {}).items()}
    if key(text) in named:
        return named[key(text)], key(text)
    if text.endswith(".json"):
        try:
            record = read_json(text)
        except DataError as err:
            raise InvalidArchitectureError(f"--arch={err}") from None
        if not isinstance(record, dict) or not isinstance(record.get("arch"), str):
            raise InvalidArchitectureError(f"{text}: expected a JSON object with an 'arch' string "
                                           "(a search's best_arch.json)")
        try:
            return space.parse(record["arch"]), f"{text} ({record.get('description', '')!r})"
        except InvalidArchitectureError as err:
            raise InvalidArchitectureError(f"{text}: {err} (written for space "
                                           f"{record.get('space')!r})") from None
    choices = (f"a name ({', '.join(sorted(named))}), " if named else "") + \
        f"the {space.name} text form or the path of a best_arch.json"
    if not text:
        raise InvalidArchitectureError(f"empty architecture; give {choices}")
    try:
        return space.parse(text), "command line"
    except InvalidArchitectureError as err:
        if named and not text[:1].isdigit() and not any(c.isspace() for c in text):
            raise InvalidArchitectureError(f"unknown architecture name {text!r}; give "
                                           f"{choices}") from None
        raise InvalidArchitectureError(f"{err}; --arch takes {choices}") from None
