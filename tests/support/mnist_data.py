"""Small, learnable MNIST-format data for tests: ten fixed class templates plus per-image noise.

Real enough for every code path (idx gz quartet, Keras npz, the real download), small enough that the
convnet trains an epoch in seconds; a model that learns nothing stays near 10% accuracy, one that learns
reaches well over 90%, so accuracy assertions can fail.
"""

import io
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mnist_trainer.datasets import IDX_FILES
from mnist_trainer.idx import encode_idx


def synthetic_mnist(
    n_train: int = 2000, n_test: int = 500, seed: int = 0
) -> dict[str, npt.NDArray[np.uint8]]:
    rng = np.random.default_rng(seed)
    templates = (rng.random((10, 28, 28)) > 0.75).astype(np.float64) * 200
    # Each image mixes its class template with a random other one, so classes overlap and accuracy
    # climbs over a few epochs instead of hitting 100% at once.

    def draw(count: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        labels = rng.integers(0, 10, size=count).astype(np.uint8)
        distractors = rng.integers(0, 10, size=count)
        mix = rng.uniform(0.0, 0.6, size=(count, 1, 1))
        noise = rng.normal(0, 70, size=(count, 28, 28))
        blended = (1 - mix) * templates[labels] + mix * templates[distractors] + noise
        images = np.clip(blended, 0, 255).astype(np.uint8)
        return images, labels

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def write_idx_quartet(folder: Path, arrays: dict[str, npt.NDArray[np.uint8]]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    order = ("x_train", "y_train", "x_test", "y_test")
    paths = {}
    for name, key in zip(IDX_FILES, order, strict=True):
        paths[name] = folder / name
        paths[name].write_bytes(encode_idx(arrays[key]))
    return paths


def write_npz(path: Path, arrays: dict[str, npt.NDArray[np.uint8]]) -> Path:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path
