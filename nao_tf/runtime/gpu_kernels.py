"""Which ops of a compiled step would have no GPU kernel: checked from the traced graph on any
machine, GPU or not, against the kernels this TensorFlow build registers.

An op without a GPU kernel for its dtypes is silently placed on the CPU, with a copy each way at
every step. `ops_without_gpu_kernel` walks a concrete function's graph and every function body in
its library (the branches of `switch_case`, loop bodies, nested `tf.function`s), and lists each op
whose type and dtypes match no GPU (or device-agnostic) kernel, unless it is one of `HOST_OPS`.
"""

import functools
from collections.abc import Iterable

import tensorflow as tf
from tensorflow.python.framework import kernels

# Ops that run on the host by design, whatever the device of the step: each with the reason.
HOST_OPS: dict[tuple[str, str], str] = {
    ("Const", "string"): "the message of an Assert or a checkpoint name; never on the data path",
}


@functools.lru_cache(maxsize=None)
def _gpu_kernels(op: str) -> tuple[dict[str, frozenset[int]], ...]:
    """The type constraints of each GPU (or device-agnostic, DEFAULT) kernel of `op`."""
    return tuple({c.name: frozenset(c.allowed_values.list.type) for c in kernel.constraint}
                 for kernel in kernels.get_registered_kernels_for_op(op).kernel
                 if kernel.device_type in ("GPU", "DEFAULT"))


def _has_gpu_kernel(node: tf.compat.v1.NodeDef) -> bool:
    return any(all(name not in node.attr or not node.attr[name].type
                   or node.attr[name].type in allowed for name, allowed in constraints.items())
               for constraints in _gpu_kernels(node.op))


def _dtype(node: tf.compat.v1.NodeDef) -> str:
    types = [tf.dtypes.as_dtype(value.type).name for _, value in sorted(node.attr.items())
             if value.type]
    return ",".join(types)


def ops_without_gpu_kernel(function: tf.types.experimental.ConcreteFunction,
                           allowed: Iterable[tuple[str, str]] = HOST_OPS) -> list[str]:
    """`op (dtypes) in <function or graph>` for every op of `function` with no GPU kernel for its
    dtypes, outside `allowed` ((op, dtypes) pairs); [] when the step can run wholly on a GPU."""
    graph = function.graph.as_graph_def()
    bodies = {f.signature.name: f.node_def for f in graph.library.function}
    places = [("the step", graph.node), *bodies.items()]
    allowed = set(allowed)
    found = set()
    for place, nodes in places:
        for node in nodes:
            if node.op in bodies or (node.op, _dtype(node)) in allowed:
                continue
            if not _has_gpu_kernel(node):
                found.add(f"{node.op} ({_dtype(node)}) in {place}: {node.name}")
    return sorted(found)
