"""Atomic file writes and strict readers for the plain-text formats NAO exchanges."""

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from nao_tf.common.errors import DataError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` so that `path` holds either the old or the new content, never a partial one,
    with the permissions an ordinary file of this process gets (0644 under the usual umask 022:
    colleagues and a TensorBoard service can read a run's files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike, fields: Mapping[str, type | tuple[type, ...]] | None = None
              ) -> Any:
    """Reads a JSON file; a missing or malformed file raises `DataError` naming it. With `fields`
    the file must hold an object with each named field of the given type (a file that parses but
    holds something else is named, not a KeyError later)."""
    try:
        with open(path) as f:
            value = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if fields is None:
        return value
    fix = "restore it from the run that wrote it, or move it away (or pass --overwrite) to start over"
    if not isinstance(value, dict):
        raise DataError(f"{path}: holds a JSON {type(value).__name__}, not the object this program "
                        f"writes; {fix}")
    for key, kind in fields.items():
        if not isinstance(value.get(key), kind):
            names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
            raise DataError(f"{path}: field {key!r} is missing or not of type {names}; {fix}")
    return value


def read_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    """Returns the non-empty lines of a text file as (1-based line number, stripped text)."""
    try:
        with open(path) as f:
            return [(i, s.strip()) for i, s in enumerate(f, 1) if s.strip()]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None


def read_scores(path: str | os.PathLike) -> list[float]:
    """Reads one finite float per line (the original's `arch_pool.perf` / `valid_ppl` files)."""
    scores = []
    for lineno, text in read_lines(path):
        try:
            value = float(text)
        except ValueError:
            raise DataError(f"{path}:{lineno}: {text!r} is not a number") from None
        if not math.isfinite(value):
            raise DataError(f"{path}:{lineno}: score is {text}; every score must be a finite number")
        scores.append(value)
    return scores


FINGERPRINT_CONTENT_BYTES = 1 << 30  # larger data is fingerprinted by file names and sizes


def fingerprint(path: str | os.PathLike) -> str:
    """A digest of a data file or directory (every file below it, by relative name), so that a
    run can tell its data from other data wherever the directory was moved: of the contents, or,
    for data over 1 GiB (ImageNet), of every file's name and size, which reading 150 GB at every
    start would not be worth; '' when `path` is empty, missing or not local (generated data, or
    data on gs://)."""
    if not path or not os.path.exists(path):
        return ""
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    sizes = [file.stat().st_size for file in files]
    by_content = sum(sizes) <= FINGERPRINT_CONTENT_BYTES
    digest = hashlib.sha256()
    for file, size in zip(files, sizes):
        digest.update(str(file.relative_to(root) if file != root else file.name).encode())
        if not by_content:
            digest.update(str(size).encode())
            continue
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> None:
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))
