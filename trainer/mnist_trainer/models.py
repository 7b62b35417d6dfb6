"""The model zoo. Every model takes raw 28x28 uint8-range images and rescales them itself, so an exported
model serves raw pixels without a separate preprocessing step."""

from collections.abc import Callable

import keras
from keras import layers

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)


def _inputs() -> tuple[keras.KerasTensor, keras.KerasTensor]:
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = layers.Reshape((*IMAGE_SHAPE, 1))(inputs)
    return inputs, layers.Rescaling(1.0 / 255)(x)


def convnet(num_classes: int = NUM_CLASSES) -> keras.Model:
    """The seeds' convnet (Chollet, Deep Learning with Python, 2nd ed., ch. 8): 104,202 parameters."""
    inputs, x = _inputs()
    x = layers.Conv2D(filters=32, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=64, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=128, kernel_size=3, activation="relu")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="convnet")


def mlp(num_classes: int = NUM_CLASSES) -> keras.Model:
    """One hidden layer of 64 units: 50,890 parameters, seconds per epoch on a CPU."""
    inputs, x = _inputs()
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mlp")


ZOO: dict[str, Callable[[int], keras.Model]] = {"convnet": convnet, "mlp": mlp}


def build_model(name: str, num_classes: int = NUM_CLASSES) -> keras.Model:
    """A new, uncompiled model of the zoo for images of ``num_classes`` classes."""
    try:
        return ZOO[name](num_classes)
    except KeyError:
        raise ValueError(f"unknown model {name!r}; the zoo has {', '.join(sorted(ZOO))}") from None


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    optimizers: dict[str, Callable[..., keras.optimizers.Optimizer]] = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": keras.optimizers.SGD,
    }
    return optimizers[name](learning_rate=learning_rate)
