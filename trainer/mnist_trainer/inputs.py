"""The ``tf.data`` input pipeline: a seeded train/validation split, then batch, cast and prefetch."""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from .datasets import MnistData


@dataclass(frozen=True)
class Splits:
    x_train: npt.NDArray[np.uint8]
    y_train: npt.NDArray[np.uint8]
    x_val: npt.NDArray[np.uint8]
    y_val: npt.NDArray[np.uint8]


def split_train_validation(data: MnistData, validation_split: float, seed: int) -> Splits:
    """A random hold-out that is the same on every attempt of a run (the seed is the run's), so a resumed
    run never validates on images it trained on before."""
    order = np.random.default_rng(seed).permutation(len(data.x_train))
    held_out = round(len(order) * validation_split)
    val_idx, train_idx = order[:held_out], order[held_out:]
    return Splits(
        data.x_train[train_idx], data.y_train[train_idx], data.x_train[val_idx], data.y_train[val_idx]
    )


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Batches in one pass over ``images``: the last one may be short."""
    return -(-images // batch_size)


def to_dataset(
    images: npt.NDArray[np.uint8], labels: npt.NDArray[np.uint8], batch_size: int, *, shuffle_seed: int | None
) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    # uint8 through the pipeline (4x less to copy), float32 only per batch; the model rescales itself.
    return (
        dataset.batch(batch_size)
        .map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
