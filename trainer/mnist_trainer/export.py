"""Write the trained model to the run's directory, once per export format, atomically (temp, then rename).

The serving formats (SavedModel, ONNX, TFLite) all take the raw 28x28 float32 pixels as ``image`` and answer
the class probabilities as ``output_0``, the names Keras gives the SavedModel's serving signature. A converter
that fails raises ``ExportError`` with the converter's own first line, never a file that cannot be loaded.
"""

import contextlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Final

import keras

from .errors import ExportError

log = logging.getLogger(__name__)

ONNX_OPSET: Final = 17
"""What spec.output.formats promises (17+): the lowest such opset, which ONNX Runtime loads since 1.13."""


def export_keras(model: keras.Model, destination: Path) -> Path:
    temporary = destination.with_name(f".partial-{os.getpid()}.keras")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        model.save(temporary)
        os.replace(temporary, destination)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ExportError(f"cannot write {destination}: {error.strerror or error}") from None
    return destination


def export_saved_model(model: keras.Model, version_dir: Path) -> Path:
    """The SavedModel in ``version_dir`` (``<base>/1``), its base folder replaced as a whole: TF Serving and
    KServe poll the base folder for numbered versions, so they never see a half-written or half-deleted one."""
    base = version_dir.parent
    temporary = base.with_name(f".partial-{os.getpid()}-{base.name}")
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)
        _write_saved_model(model, temporary / version_dir.name)
        _replace_dir(temporary, base)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise ExportError(f"cannot write {version_dir}: {error.strerror or error}") from None
    return version_dir


def export_onnx(model: keras.Model, destination: Path) -> Path:
    """``model.onnx``: the inference call converted by tf2onnx, then checked by onnx's own checker.

    tf2onnx directly rather than Keras' ``model.export(format="onnx")``, which calls the same converter: Keras
    first patches tf2onnx for numpy 2 (and sets ``numpy.object`` for the whole process), which tf2onnx 1.17
    no longer needs, and its output is named after a TensorFlow tensor (``Identity:0``) rather than like the
    other formats'. The checker matters because tf2onnx does not fail on a TensorFlow op it cannot
    translate: it logs it and writes it into the graph as is, a file no ONNX runtime loads.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec(tensor.shape, tensor.dtype, name=tensor.name) for tensor in model.inputs]

    def serve(*inputs: Any) -> dict[str, Any]:
        # A dict names the graph's output (tf2onnx renames it after the key); one input goes in bare.
        return {"output_0": model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)}

    try:
        graph, _ = tf2onnx.convert.from_function(
            tf.function(serve, input_signature=signature), input_signature=signature, opset=ONNX_OPSET
        )
        onnx.checker.check_model(graph, full_check=True)
    except Exception as error:  # the converters raise whatever their internals hit; all mean "no file"
        raise ExportError(f"cannot convert the model to ONNX: {_reason(error)}") from error
    return _write_atomically(destination, graph.SerializeToString())


def export_tflite(model: keras.Model, destination: Path) -> Path:
    """``model.tflite``: TensorFlow's TFLite converter, from a SavedModel of the model in a temporary folder
    (under /tmp, the pod's writable emptyDir). Not ``from_concrete_functions`` on a ``tf.function`` of the
    model: with Keras 3 models that writes a file without the weights, whose every answer is NaN.

    Only TFLite's builtin ops are allowed, unlike Keras' ``model.export(format="litert")``, which also lets
    in TensorFlow ops: those need the Flex delegate, which the plain LiteRT runtimes lack, so a model that
    needs one fails here, at export, instead of on the device.
    """
    import tensorflow as tf

    try:
        with tempfile.TemporaryDirectory(prefix="mnist-tflite-") as folder:
            _write_saved_model(model, Path(folder) / "saved_model")
            converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(folder) / "saved_model"))
            converter.target_spec.supported_ops = {tf.lite.OpsSet.TFLITE_BUILTINS}
            flatbuffer = converter.convert()
    except Exception as error:  # ConverterError, or whatever tracing the model raised
        raise ExportError(f"cannot convert the model to TensorFlow Lite: {_reason(error)}") from error
    return _write_atomically(destination, flatbuffer)


def _write_saved_model(model: keras.Model, folder: Path) -> None:
    # model.export prints a signature summary to stdout; keep it out of the progress log.
    with contextlib.redirect_stdout(io.StringIO()) as summary:
        model.export(str(folder), format="tf_saved_model", verbose=False)
    log.debug("SavedModel summary:\n%s", summary.getvalue())


def _replace_dir(new: Path, destination: Path) -> None:
    """Rename ``new`` to ``destination``. A rename cannot replace a folder that holds files, so an old
    ``destination`` is renamed aside first and deleted after: it is never seen half deleted."""
    if not destination.exists():
        os.replace(new, destination)
        return
    stale = destination.with_name(f".stale-{os.getpid()}-{destination.name}")
    shutil.rmtree(stale, ignore_errors=True)
    os.replace(destination, stale)
    os.replace(new, destination)
    shutil.rmtree(stale, ignore_errors=True)


def _write_atomically(destination: Path, content: bytes) -> Path:
    temporary = destination.with_name(f".partial-{os.getpid()}-{destination.name}")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(content)
        os.replace(temporary, destination)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ExportError(f"cannot write {destination}: {error.strerror or error}") from None
    return destination


def _reason(error: Exception) -> str:
    """The converter's own words, first line of each: after it, TFLite's ConverterError and onnx's checker
    append pages of MLIR or graph context that would bury the reason in the log and the status."""
    records = getattr(error, "errors", None)  # ConverterError: one record per op that failed
    messages = [str(record.error_message) for record in records] if records else [str(error)]
    first_lines = dict.fromkeys(m.strip().splitlines()[0] for m in messages if m.strip())
    return "; ".join(first_lines) or type(error).__name__
