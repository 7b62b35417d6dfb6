"""Evaluate a trained model: test loss and accuracy, per-class accuracy, the confusion matrix, single-image
latency."""

import statistics
import time
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from .models import NUM_CLASSES


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    seconds: float
    per_class_accuracy: dict[int, float]
    inference_time_ms: float
    confusion_matrix: tuple[tuple[int, ...], ...]
    """Test image counts: row = true class, column = predicted class (the model card draws it)."""


def evaluate(
    model: keras.Model,
    test: tf.data.Dataset,
    x_test: npt.NDArray[np.uint8],
    y_test: npt.NDArray[np.uint8],
    callbacks: list[Any],
) -> Evaluation:
    started = time.monotonic()
    results = model.evaluate(test, callbacks=callbacks, return_dict=True, verbose=0)
    seconds = time.monotonic() - started
    probabilities = model.predict(test, verbose=0)
    predicted = np.argmax(probabilities, axis=1)
    return Evaluation(
        loss=float(results["loss"]),
        accuracy=float(results["accuracy"]),
        seconds=seconds,
        per_class_accuracy=per_class_accuracy(y_test, predicted),
        inference_time_ms=single_image_latency_ms(model, x_test[:1]),
        # As many classes as the model has outputs, so a class no test image has still gets its row.
        confusion_matrix=confusion_matrix(y_test, predicted, num_classes=probabilities.shape[1]),
    )


def per_class_accuracy(labels: npt.NDArray[Any], predicted: npt.NDArray[Any]) -> dict[int, float]:
    """Recall per class: of the test images of each class, the share predicted right. Classes without
    test images (an image folder's testing/ may lack some) are left out."""
    totals = np.bincount(labels, minlength=NUM_CLASSES)
    hits = np.bincount(labels[labels == predicted], minlength=len(totals))
    return {c: float(hits[c] / totals[c]) for c in range(len(totals)) if totals[c]}


def confusion_matrix(
    labels: npt.NDArray[Any], predicted: npt.NDArray[Any], num_classes: int
) -> tuple[tuple[int, ...], ...]:
    """Counts of (true, predicted) pairs: ``matrix[t][p]`` test images of class t were predicted as p."""
    pairs = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(predicted, dtype=np.int64)
    counts = np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    return tuple(tuple(int(n) for n in row) for row in counts)


def single_image_latency_ms(model: keras.Model, image: npt.NDArray[np.uint8], repeats: int = 20) -> float:
    """Median wall time of one single-image forward pass, after a warm-up."""
    batch = tf.constant(image, dtype=tf.float32)
    for _ in range(3):
        model(batch, training=False)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        model(batch, training=False)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)
