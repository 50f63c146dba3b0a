"""Task-free search spaces: NAS-Bench-201's cell and a synthetic space with a hidden score."""
