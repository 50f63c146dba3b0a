"""The core's layers stay true: a module of `nao_tf` imports only from its own layer and those below
it (`ALLOWED`), and nothing in the core imports a task package."""

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "nao_tf"
# Each layer (a sub-package of nao_tf) and the layers it may import from.
ALLOWED = {
    "common": {"common"},
    "algorithm": {"common", "algorithm"},
    "spaces": {"common", "algorithm", "spaces"},
    "runtime": {"common", "algorithm", "runtime"},
    "commands": {"common", "algorithm", "spaces", "runtime", "commands"},
    "benchmarks": {"common", "algorithm", "spaces", "runtime", "commands", "benchmarks"},
}
TASKS = {"cnn", "rnn", "tests", "bench"}


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in `tree`; `from nao_tf import cli` counts as
    `nao_tf.cli`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") if node.module == "nao_tf"
                      else (node.lineno, node.module) for alias in node.names]
    return found


def violations(core: Path) -> list[str]:
    """`path:line: layer imports module` for each import in package `core` against `ALLOWED`."""
    found = []
    for path in sorted(core.rglob("*.py")):
        parts = path.relative_to(core).parts
        layer = parts[0] if len(parts) > 1 else None
        if layer is not None and layer not in ALLOWED:
            found.append(f"{path}: {layer} is not a layer of {sorted(ALLOWED)}")
            continue
        for line, module in imported_modules(ast.parse(path.read_text(), str(path))):
            top, _, rest = module.partition(".")
            target = rest.partition(".")[0]
            wrong = (top in TASKS or
                     top == core.name and layer is not None and target not in ALLOWED[layer])
            if wrong:
                found.append(f"{path.relative_to(core.parent)}:{line}: {layer} imports {module}")
    return found


def test_the_core_keeps_its_layers():
    assert violations(CORE) == []


@pytest.mark.parametrize("layer, line", [
    ("algorithm", "from nao_tf.commands import cli"),
    ("algorithm", "from nao_tf.runtime.distribute import is_chief"),
    ("common", "import nao_tf.algorithm.search"),
    ("runtime", "from nao_tf import commands"),
    ("commands", "from cnn.cells import ARCHS"),
])
def test_a_wrong_import_is_found(tmp_path, layer, line):
    core = tmp_path / "nao_tf"
    for name in ALLOWED:
        (core / name).mkdir(parents=True)
        (core / name / "__init__.py").write_text("")
    (core / layer / "module.py").write_text(f'"""A module."""\n\n{line}\n')
    (core / "runtime" / "fine.py").write_text("from nao_tf.algorithm import search\n")
    assert violations(core) == [f"nao_tf/{layer}/module.py:3: {layer} imports "
                                f"{line.split()[1]}" + (f".{line.split()[3]}"
                                                        if line.split()[1] == "nao_tf" else "")]
