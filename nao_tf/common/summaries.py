"""TensorBoard events: one writer per run (the chief's; a no-op elsewhere) and scalars written
with TensorFlow's own summary op, so training needs no tensorboard package."""

import os
from typing import Mapping

import tensorflow as tf

_SCALAR_METADATA = tf.compat.v1.SummaryMetadata(
    plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()


def write_scalars(writer: tf.summary.SummaryWriter, step: int,
                  values: Mapping[str, float]) -> None:
    """TensorBoard scalars (the record `tensorboard.summary.scalar` writes)."""
    with writer.as_default(step=step):
        for tag, value in values.items():
            tf.summary.write(tag, tf.constant(value, tf.float32), metadata=_SCALAR_METADATA)
    writer.flush()


def summary_writer(path: str | os.PathLike, chief: bool) -> tf.summary.SummaryWriter:
    """TensorBoard events into `path` on the chief (`chief`); a writer that writes nothing
    elsewhere."""
    if chief:
        return tf.summary.create_file_writer(str(path))
    return tf.summary.create_noop_writer()
