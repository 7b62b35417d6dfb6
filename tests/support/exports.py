"""Each export format run by the runtime a consumer would load it with, by the names docs/trainer.md gives:
raw float32 pixels in as ``image``, class probabilities out as ``output_0``."""

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

Images = npt.NDArray[np.float32]


def keras_answers(path: str, images: Images) -> Any:
    import keras

    return keras.models.load_model(path).predict(images, verbose=0)


def saved_model_answers(path: str, images: Images) -> Any:
    """The serving signature TF Serving and KServe call, from the version folder (saved_model/1)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)  # keep a reference: it owns the variables the signature reads
    return loaded.signatures["serving_default"](image=tf.constant(images))["output_0"].numpy()


def onnx_answers(path: str, images: Images) -> Any:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(["output_0"], {"image": images})
    return probabilities


def tflite_answers(path: str, images: Images) -> Any:
    # LiteRT's own interpreter: tf.lite.Interpreter is deprecated and due to leave TensorFlow.
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    return runner(image=images)["output_0"]  # any number of images at once: the batch size is dynamic


RUNTIMES: dict[str, Callable[[str, Images], Any]] = {
    "keras": keras_answers,
    "savedmodel": saved_model_answers,
    "onnx": onnx_answers,
    "tflite": tflite_answers,
}


def exported_accuracy(export_format: str, path: str, images: Images, labels: npt.NDArray[np.uint8]) -> float:
    """The test accuracy of the file ``path`` of ``export_format``, run by that format's own runtime."""
    probabilities = np.asarray(RUNTIMES[export_format](path, images))
    assert probabilities.shape == (len(labels), 10), (export_format, probabilities.shape)
    return accuracy(probabilities, labels)


def accuracy(probabilities: Any, labels: npt.NDArray[np.uint8]) -> float:
    return float(np.mean(np.argmax(np.asarray(probabilities), axis=1) == labels))
