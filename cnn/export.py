"""Exporting a trained network as a TensorFlow SavedModel that needs none of this project's code.

The exported endpoint `serve` takes float32 images [batch, size, size, 3] (32 for CIFAR, the
training size for ImageNet) with pixel values in 0..255
(RGB, channels last) and returns {"logits", "probabilities"}; the standardisation of the
training data (per channel, or per image) is built in. Load with
`tf.saved_model.load(path).serve(images)`.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from cnn.data import standardize

ENDPOINT = "serve"


def export_for_inference(model: keras.Model, path: str | os.PathLike, mean: np.ndarray,
                         std: np.ndarray, standardization: str = "dataset",
                         image_size: int = 32) -> None:
    def serve(images):
        logits = model(standardize(images, mean, std, standardization), training=False)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(ENDPOINT, serve, input_signature=[
        tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")])
    archive.write_out(os.fspath(path), verbose=False)
