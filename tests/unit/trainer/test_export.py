"""Every export format, loaded back by its own runtime, answers like the Keras model it came from; a model a
converter cannot translate fails the export instead of leaving a file nothing can load."""

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from mnist_api.layout import RunPaths
from mnist_trainer.errors import ExportError
from tests.support.exports import accuracy, exported_accuracy

FORMATS = ["keras", "savedmodel", "onnx", "tflite"]


@dataclass(frozen=True)
class Exported:
    files: dict[str, str]
    size_mb: float | None
    run_dir: Path
    images: npt.NDArray[np.float32]
    labels: npt.NDArray[np.uint8]
    keras_accuracy: float


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, synthetic_arrays: dict[str, npt.NDArray[np.uint8]]
) -> Exported:
    """The mlp trained for a few seconds, then exported in every format over a saved_model/ of the old
    layout (the SavedModel straight in it), as a run from before versioned folders would have left it."""
    import keras

    from mnist_trainer.models import build_model
    from mnist_trainer.pipeline import export_model

    keras.utils.set_random_seed(0)
    model = build_model("mlp")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(synthetic_arrays["x_train"], synthetic_arrays["y_train"], epochs=3, batch_size=64, verbose=0)
    images, labels = synthetic_arrays["x_test"].astype("float32"), synthetic_arrays["y_test"]
    keras_accuracy = accuracy(model.predict(images, verbose=0), labels)
    assert keras_accuracy > 0.6, "the model learned nothing: agreeing with it would prove little"

    paths = RunPaths(PurePosixPath(tmp_path_factory.mktemp("output")), "default", "mnist", "uid-1")
    run_dir = Path(paths.run_dir)
    (run_dir / "saved_model" / "variables").mkdir(parents=True)
    (run_dir / "saved_model" / "saved_model.pb").write_bytes(b"from an earlier run")
    result = export_model(model, FORMATS, paths)
    return Exported(result.files, result.size_mb, run_dir, images, labels, keras_accuracy)


def test_each_format_lands_at_its_documented_path(exported: Exported) -> None:
    run_dir = exported.run_dir
    assert exported.files == {
        "keras": str(run_dir / "model.keras"),
        "savedmodel": str(run_dir / "saved_model" / "1"),
        "onnx": str(run_dir / "model.onnx"),
        "tflite": str(run_dir / "model.tflite"),
    }
    assert exported.size_mb == os.path.getsize(run_dir / "model.keras") / 1e6
    # The old SavedModel went with its folder, and no temporary or set-aside copy is left behind.
    assert sorted(os.listdir(run_dir / "saved_model")) == ["1"]
    assert sorted(os.listdir(run_dir)) == ["model.keras", "model.onnx", "model.tflite", "saved_model"]


@pytest.mark.parametrize("export_format", FORMATS)
def test_each_format_reproduces_the_keras_test_accuracy(exported: Exported, export_format: str) -> None:
    path = exported.files[export_format]
    found = exported_accuracy(export_format, path, exported.images, exported.labels)
    assert found == pytest.approx(exported.keras_accuracy, abs=0.001)


def untranslatable_model() -> Any:
    """A model with the Hurwitz zeta function in it: TensorFlow has the op, neither ONNX nor TFLite's
    builtins do."""
    import keras
    import tensorflow as tf

    class Zeta(keras.layers.Layer):  # type: ignore[misc]
        def call(self, inputs: Any) -> Any:
            return tf.math.zeta(inputs + 2.0, inputs + 1.0)

    inputs = keras.Input((4,), name="image")
    return keras.Model(inputs, keras.layers.Dense(2)(Zeta()(inputs)))


@pytest.mark.parametrize(
    ("export_format", "converter"), [("onnx", "ONNX"), ("tflite", "TensorFlow Lite")], ids=["onnx", "tflite"]
)
def test_a_converter_failure_is_an_export_error_naming_the_op(
    tmp_path: Path, export_format: str, converter: str
) -> None:
    from mnist_trainer.export import export_onnx, export_tflite

    export = {"onnx": export_onnx, "tflite": export_tflite}[export_format]
    with pytest.raises(ExportError) as raised:
        export(untranslatable_model(), tmp_path / f"model.{export_format}")
    # The converter's first line only (here "No Op registered for Zeta with domain_version of 17" and
    # "'tf.Zeta' op is neither a custom op nor a flex op"), not the pages of graph dump after it.
    message = str(raised.value)
    assert message.startswith(f"cannot convert the model to {converter}: "), message
    assert "Zeta" in message and "\n" not in message, message
    assert os.listdir(tmp_path) == []
