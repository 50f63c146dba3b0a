"""What a refused rerun must leave exactly as it was."""

from pathlib import Path


def run_dir_snapshot(path: Path) -> dict:
    """Every file under `path` with its bytes and modification time: what a refused rerun must
    leave exactly as it was."""
    return {str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}
