"""Creating a Keras network's variables with one eager call, without a symbolic trace first; and
counting a built network's multiply-adds from its traced graph."""

from typing import Callable

import keras
import tensorflow as tf


def build_by_calling(model: keras.Model, *args, **kwargs) -> None:
    """Creates every variable of `model` by one eager call `model(*args, **kwargs)`.

    Keras builds a layer that holds sublayers and has no `build()` of its own by running its
    `call` symbolically before the real call: a trace of the whole network, and of each nested
    container again at its own level (for the CNN networks, most of their construction time).
    Such containers are marked built first, so that the one eager call builds each leaf layer
    (whose `build()` creates its weights) where it is first used, in the same order: the same
    variables with the same initial values. The `tf.function`s inside run as plain Python
    during that call: a trace made for it would not serve the compiled steps.
    """
    for layer in model._flatten_layers(include_self=True):
        has_sublayers = any(True for _ in layer._flatten_layers(include_self=False,
                                                                recursive=False))
        if type(layer).build is keras.layers.Layer.build and has_sublayers:
            layer.built = True
    eager = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        model(*args, **kwargs)
    finally:
        tf.config.run_functions_eagerly(eager)


def count_mult_adds(call: Callable[[tf.Tensor], tf.Tensor], input_spec: tf.TensorSpec) -> int:
    """Multiply-adds of `call` on one input of `input_spec` (convolutions and dense layers, the
    figure NAS papers report), read off the traced graph's conv and matmul ops: a conv's output
    pixels times its kernel's size, a matmul's weight count (one image). A dilated conv that
    TensorFlow runs on a space-to-batch rearrangement counts the pixels of its rearranged-back
    output (`BatchToSpaceND`), as the same conv without the rearrangement."""
    graph = tf.function(call).get_concrete_function(input_spec).graph
    total = 0
    for op in graph.get_operations():
        if op.type in ("Conv2D", "DepthwiseConv2dNative"):
            out, kernel = op.outputs[0], op.inputs[1].shape  # kernel [kh, kw, in, out|mult]
            rearranged = [c for c in out.consumers() if c.type == "BatchToSpaceND"]
            shape = (rearranged[0].outputs[0] if rearranged else out).shape
            spatial = shape[2] * shape[3] if op.get_attr("data_format") == b"NCHW" \
                else shape[1] * shape[2]
            total += spatial * kernel.num_elements()
        elif op.type == "MatMul":
            total += op.inputs[1].shape.num_elements()
    return int(total)
