"""The base layer: errors, atomic files, resume checks, TensorBoard scalars; imports no other layer."""
