"""The base layer: errors, atomic files, resume checks, TensorBoard scalars (no other layer)."""
