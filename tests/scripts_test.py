"""`scripts/train_search.sh` and `scripts/train_final.sh` check that the task has the command's
module before they start it, without importing the task (which loads TensorFlow)."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run(["bash", str(ROOT / "scripts" / args[0]), *args[1:]], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def task_package(tmp_path: Path) -> Path:
    """A task package with a `train_final` module only, whose import says so and exits."""
    package = tmp_path / "imported_task"
    package.mkdir()
    (package / "__init__.py").write_text("raise SystemExit('the task package was imported')\n")
    (package / "train_final.py").write_text("")
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (("train_search.sh", "no_such_task"), "error: no module no_such_task.train_search;"),
    (("train_search.sh", "imported_task", "--mode=nao"),
     "error: no module imported_task.train_search_nao;"),
    (("train_final.sh", "no_such_task"), "error: no module no_such_task.train_final;"),
    (("train_final.sh", ".."), "error: no module ...train_final;"),  # not a module name
])
def test_a_task_without_the_module_is_one_error_line(task_package, args, message):
    result = _script(task_package, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert "imported" not in result.stderr.replace("imported_task", "")


def test_the_check_finds_the_module_without_importing_its_package(task_package):
    result = _script(task_package, "train_final.sh", "imported_task", "--flag=1")
    # Only the command itself imported the package.
    assert result.stderr.strip() == "the task package was imported", result.stderr
    assert result.returncode == 1


def test_a_namespace_package_task_is_found(tmp_path):
    (tmp_path / "namespace_task").mkdir()  # no __init__.py
    (tmp_path / "namespace_task" / "train_final.py").write_text("print('trained')\n")
    result = _script(tmp_path, "train_final.sh", "namespace_task")
    assert (result.returncode, result.stdout, result.stderr) == (0, "trained\n", "")
